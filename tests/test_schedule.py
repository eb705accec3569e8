import math

import pytest
import torch

from noisesearch import NoiseSearchError, cost, make_sampler
from noisesearch.sampling import Churn, Euler, Heun, KarrasSchedule, StochasticSampler, sampler_from_dict


def test_default_sigmas_follow_karras_rho_schedule():
    s = make_sampler("heun", 18).sigmas
    assert torch.equal(s, KarrasSchedule().sigmas())
    assert s.shape == (19,)
    assert s[0].item() == pytest.approx(80.0)
    assert s[17].item() == pytest.approx(0.002)
    assert s[18].item() == 0.0
    assert bool((s[:-1][1:] < s[:-1][:-1]).all())
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["heun", "euler"])
def test_gamma_is_positive_exactly_inside_s_min_s_max(name):
    sampler = make_sampler(name, 18)
    sig, gam = sampler.sigmas[:-1], sampler.gammas
    g = min(40 / 18, math.sqrt(2) - 1)
    for s, gm in zip(sig.tolist(), gam.tolist(), strict=True):
        assert gm == pytest.approx(g if 0.05 <= s <= 50 else 0.0)
    assert sampler.searchable_steps() == [i for i, s in enumerate(sig.tolist()) if 0.05 <= s <= 50]
    assert 0 not in sampler.searchable_steps()  # sigma_max = 80 > S_max: the first step injects nothing
    assert torch.allclose(sampler.sigma_hats, sig * (1 + gam))


def test_nfe_per_trajectory_is_heun_without_last_correction():
    assert cost.trajectory_calls(make_sampler("heun", 18)) == 35
    assert cost.trajectory_calls(make_sampler("heun", 1)) == 1


def test_nfe_per_trajectory_of_euler_is_one_call_per_step():
    assert cost.trajectory_calls(make_sampler("euler", 18)) == 18
    assert cost.trajectory_calls(make_sampler("euler", 1)) == 1


def test_invalid_schedule_is_a_user_error():
    with pytest.raises(NoiseSearchError):
        make_sampler("heun", 0)
    with pytest.raises(NoiseSearchError):
        KarrasSchedule(steps=0)
    with pytest.raises(NoiseSearchError):
        KarrasSchedule(sigma_min=1.0, sigma_max=0.5)


def test_sampler_is_built_from_its_parts_and_round_trips_through_its_dict():
    sampler = make_sampler("euler", 12, sigma_max=40.0, S_churn=10.0)
    assert sampler == StochasticSampler(KarrasSchedule(12, sigma_max=40.0), Euler(), Churn(S_churn=10.0))
    assert sampler_from_dict(sampler.to_dict()) == sampler
    assert sampler_from_dict(make_sampler("heun", 7).to_dict()) == StochasticSampler(KarrasSchedule(7), Heun(), Churn())


def test_old_flat_schedule_dicts_rebuild_the_heun_sampler():
    old = {"steps": 10, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, "S_churn": 40.0, "S_min": 0.05,
           "S_max": 50.0, "S_noise": 1.003}
    assert sampler_from_dict(old) == make_sampler("heun", 10)
