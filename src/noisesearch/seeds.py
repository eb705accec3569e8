"""The seed policy in one place: which integer seed each sample of each kind of run uses.

Every sample (condition × seed) owns a generator seeded by its own integer (see `rng`), so these
functions decide all randomness of a run. Kinds stay disjoint: sample and bench seeds lie far below
CALIBRATION_SEED_BASE, and probe climbs derive theirs from the calibration sample's seed.

A seed is an integer in [0, MAX_SEED]: torch's generators take 64 bits and fold 2^63 + k onto the
same stream as k, so larger seeds would silently repeat smaller ones. `check_seed` is the one check;
every function here checks its inputs and the seeds it derives.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence

import torch

from noisesearch.errors import NoiseSearchError

MAX_SEED = 2**63 - 1  # the largest seed: torch.Generator.manual_seed folds larger ones onto smaller ones
CALIBRATION_SEED_BASE = 2**50  # calibration samples use seeds from here on; bench and sample seeds stay far below
PROBE_SEED_STRIDE = 1 << 8  # the climb at searchable step t of a sample with seed s draws from seed s·stride + t + 1


def check_seed(seed: object, name: str = "seed") -> int:
    """`seed` as an int if it is an integer (not a bool) in [0, 2^63 − 1]; a one-line NoiseSearchError otherwise."""
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise NoiseSearchError(f"{name} must be non-negative and below 2^63 (an integer from 0 to {MAX_SEED}), "
                               f"got {seed!r}")
    return value


def check_seeds(seeds: Sequence[object], name: str = "seeds") -> list[int]:
    """Every seed of `seeds` checked by `check_seed` (errors name the position, e.g. seeds[2])."""
    return [check_seed(s, f"{name}[{i}]") for i, s in enumerate(seeds)]


def derived_seed(seed: int, name: str, base: int, what: str) -> int:
    """`seed`, derived from the base seed `base` (called `name`) for `what`, if it is in range; else a
    one-line error that names the base seed."""
    if not 0 <= seed <= MAX_SEED:
        advice = f": use a smaller {name}" if seed > MAX_SEED else ""
        raise NoiseSearchError(f"{name} {base} gives {what} the seed {seed}, outside 0 to 2^63 - 1{advice}")
    return seed


def sample_seeds(seed: int, n: int) -> list[int]:
    """Seeds of n samples of a run with base `seed`: sample i uses seed + i (as EDM's --seeds)."""
    seed = check_seed(seed)
    if n > 0:
        derived_seed(seed + n - 1, "seed", seed, f"sample {n - 1}")
    return [seed + i for i in range(n)]


def draw_labels(n: int, seed: int) -> list[int]:
    """n class labels drawn uniformly from 0-9 by a generator seeded with `seed` (random labels, as the
    paper's MNIST experiments)."""
    generator = torch.Generator().manual_seed(check_seed(seed))
    return torch.randint(0, 10, (n,), generator=generator).tolist()


def bench_seed(seed: int, repeat: int, index: int) -> int:
    """Seed of label `index` in repeat `repeat` of a bench with base seed `seed`."""
    seed = check_seed(seed)
    return derived_seed(seed * 1_000_000 + repeat * 1_000 + index, "seed", seed, f"repeat {repeat}, label {index}")


def candidate_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the n candidate streams of a sample with seed `seed` (nested best-of-N): a hash of (seed, j), so
    that no arithmetic on seeds makes two samples' candidates share a stream."""
    seed = check_seed(seed)
    return [int.from_bytes(hashlib.sha256(f"candidate {seed} {j}".encode()).digest()[:8], "big") & MAX_SEED
            for j in range(n)]


def calibration_seeds(seed: int, n: int) -> list[int]:
    """Sample seeds of n calibration conditions: disjoint from every evaluation seed of `sample` and `bench`."""
    base = CALIBRATION_SEED_BASE + check_seed(seed) * 1_000_000
    if n > 0:
        derived_seed(base + n - 1, "seed", seed, f"calibration condition {n - 1}")
    return [base + i for i in range(n)]


def probe_seeds(seeds: Sequence[int], t: int) -> list[int]:
    """Seeds of the climbs that a gain probe runs at the t-th searchable step of samples with `seeds`."""
    return [derived_seed(s * PROBE_SEED_STRIDE + t + 1, "sample seed", s, f"the gain probe at step {t}")
            for s in check_seeds(seeds)]
