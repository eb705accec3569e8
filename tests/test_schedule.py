import math

import pytest
import torch

from noisesearch import EDMSchedule, NoiseSearchError


def test_default_sigmas_follow_karras_rho_schedule():
    s = EDMSchedule().sigmas()
    assert s.shape == (19,)
    assert s[0].item() == pytest.approx(80.0)
    assert s[17].item() == pytest.approx(0.002)
    assert s[18].item() == 0.0
    assert bool((s[:-1][1:] < s[:-1][:-1]).all())
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i].item() == pytest.approx(expected, rel=1e-6)


def test_gamma_is_positive_exactly_inside_s_min_s_max():
    sched = EDMSchedule()
    sig, gam = sched.sigmas()[:-1], sched.gammas()
    g = min(40 / 18, math.sqrt(2) - 1)
    for s, gm in zip(sig.tolist(), gam.tolist(), strict=True):
        assert gm == pytest.approx(g if 0.05 <= s <= 50 else 0.0)
    assert sched.searchable_steps() == [i for i, s in enumerate(sig.tolist()) if 0.05 <= s <= 50]
    assert 0 not in sched.searchable_steps()  # sigma_max = 80 > S_max: the first step injects nothing
    assert torch.allclose(sched.sigma_hats(), sig * (1 + gam))


def test_nfe_per_trajectory_is_heun_without_last_correction():
    assert EDMSchedule().nfe_per_trajectory() == 35
    assert EDMSchedule(steps=1).nfe_per_trajectory() == 1


def test_invalid_schedule_is_a_user_error():
    with pytest.raises(NoiseSearchError):
        EDMSchedule(steps=0)
