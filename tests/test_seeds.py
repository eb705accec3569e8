"""One seed check: integers (not bools) in [0, 2^63 - 1], for base seeds and every seed derived from them."""

import numpy as np
import pytest
import torch

from noisesearch import NoiseSearchError
from noisesearch import seeds as S

TOP = 2**63 - 1


def raises_one_line(fragment, fn, *args):
    with pytest.raises(NoiseSearchError, match=fragment) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_check_seed_accepts_integers_from_zero_to_2_63_minus_1():
    assert S.MAX_SEED == TOP
    assert S.check_seed(0) == 0 and S.check_seed(TOP) == TOP
    assert S.check_seed(np.int64(5)) == 5 and type(S.check_seed(np.int64(5))) is int
    assert S.check_seeds([1, np.int32(2)]) == [1, 2]


@pytest.mark.parametrize("bad", [-1, 2**63, 2**64, 2**70, True, False, 1.0, "3", None])
def test_check_seed_refuses_everything_else_on_one_line(bad):
    message = raises_one_line("seed must be non-negative and below 2\\^63", S.check_seed, bad)
    assert repr(bad) in message
    raises_one_line("--seed must be", S.check_seed, bad, "--seed")
    raises_one_line(r"seeds\[1\] must be", S.check_seeds, [0, bad])


def test_seed_2_63_would_repeat_seed_0():
    """Why the range ends at 2^63 - 1: torch folds 2^63 onto 0, so that seed would silently give seed 0's image."""
    draw = lambda seed: torch.randn(4, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(2**63), draw(0))
    raises_one_line("got 9223372036854775808", S.sample_seeds, 2**63, 1)


def test_sample_seeds_checks_the_base_and_the_last_derived_seed():
    assert S.sample_seeds(TOP - 1, 2) == [TOP - 1, TOP]
    raises_one_line("seed 9223372036854775806 gives sample 2 the seed 9223372036854775808, outside 0 to 2\\^63 - 1",
                    S.sample_seeds, TOP - 1, 3)
    for bad in (-1, 2**64, True):
        raises_one_line("seed must be", S.sample_seeds, bad, 1)


def test_bench_seed_checks_its_base_and_derived_seed():
    assert S.bench_seed(1, 2, 3) == 1_002_003
    raises_one_line("seed must be non-negative", S.bench_seed, -1, 0, 0)  # bench --seed -1 as sample refuses it
    top_base = TOP // 1_000_000
    assert S.bench_seed(top_base, 0, 0) == top_base * 1_000_000
    raises_one_line(f"seed {top_base + 1} gives repeat 0, label 0 the seed", S.bench_seed, top_base + 1, 0, 0)
    raises_one_line("use a smaller seed", S.bench_seed, top_base, 999, 999)


def test_calibration_and_probe_seeds_stay_in_range():
    assert S.calibration_seeds(3, 2) == [S.CALIBRATION_SEED_BASE + 3_000_000 + i for i in range(2)]
    raises_one_line("seed must be", S.calibration_seeds, -1, 2)
    raises_one_line("calibration condition 0", S.calibration_seeds, TOP // 1_000_000, 1)
    raises_one_line(r"seeds\[0\] must be", S.probe_seeds, [-1], 0)
    big = TOP // S.PROBE_SEED_STRIDE
    raises_one_line(f"sample seed {big} gives the gain probe at step {S.PROBE_SEED_STRIDE}", S.probe_seeds, [big],
                    S.PROBE_SEED_STRIDE)
    assert all(0 <= s <= TOP for s in S.probe_seeds(S.calibration_seeds(10**9, 4), 5))


def test_draw_labels_takes_only_checked_seeds():
    assert S.draw_labels(5, 7) == S.draw_labels(5, 7)
    raises_one_line("seed must be", S.draw_labels, 5, -1)
