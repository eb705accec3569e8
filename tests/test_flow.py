"""Rectified flow in sigma space: the flow schedule, the flow Euler sampler against the flow ODE's Euler solver,
its churn, and the contract suite over every algorithm on the embedded flow architecture."""

from dataclasses import replace

import pytest
import torch
from test_contract import CASES, for_sampler

from noisesearch import NoiseSearchError, make_sampler
from noisesearch.backends import EmbeddedDenoiser
from noisesearch.flow import flow_inputs, flow_x0
from noisesearch.models.unet import FlowPrecond
from noisesearch.sampling import Churn, FlowSchedule, sampler_from_dict
from noisesearch.search import get_algorithm
from noisesearch.testing import CHECKS, TINY, Contract


def velocity(x_t, t):
    """An arbitrary nonlinear velocity field (the equivalence holds for any)."""
    t = t.reshape(-1, 1, 1, 1)
    return torch.tanh(x_t) * (1 + t) - 0.3 * x_t.square() * (1 - t)


def as_denoiser(v):
    """D(x, sigma) of a velocity field, through noisesearch.flow."""
    def denoise(x, sigma):
        x_t, t = flow_inputs(x, torch.as_tensor(sigma).reshape(-1).expand(x.shape[0]))
        return flow_x0(x_t, t, v(x_t, t))
    return denoise


def flow_euler_ode(noise, times, v):
    """The flow ODE's Euler solver as the flow pipelines run it: x_t' = x_t + (t' − t)·v(x_t, t), from
    x_{t_0} = t_0·noise (the sigma-space start sigma_0·noise) down to t = 0."""
    x = times[0] * noise
    for t, t_next in zip(times, [*times[1:], 0.0], strict=True):
        x = x + (t_next - t) * v(x, torch.full((x.shape[0],), t))
    return x


def run_sampler(sampler, noise, denoise, noises=None):
    x = sampler.initial_state(noise)
    for i in range(sampler.steps):
        x_hat = sampler.propose(x, i, None if noises is None else noises[i])
        x = sampler.advance(denoise, x_hat, denoise(x_hat, sampler.sigma_hats[i]), i)[0]
    return x


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_deterministic_flow_euler_is_the_flow_odes_euler_solver(shift):
    sampler = make_sampler("flow_euler", 10, shift=shift, S_churn=0.0)
    assert sampler.searchable_steps() == []
    noise = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = run_sampler(sampler, noise, as_denoiser(velocity))
    ref = flow_euler_ode(noise, sampler.schedule.times().tolist(), velocity)
    assert (ours - ref).abs().max() < 1e-6  # float32 sigmas (float64 ones agree to ~1e-12)


def test_euler_ddim_is_eulers_step_without_its_float32_cancellation_at_large_sigma():
    from noisesearch.sampling import Euler, EulerDDIM

    g = torch.Generator().manual_seed(0)
    noise, x0 = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    for t_hat, t_next in ((2.0, 1.3), (1e5, 3.0)):
        x = x0 + t_hat * noise
        exact = Euler().update(None, x.double(), x0.double(), torch.tensor(t_hat, dtype=torch.float64),
                               torch.tensor(t_next, dtype=torch.float64), False)[0]
        euler, ddim = (solver.update(None, x, x0, torch.tensor(t_hat), torch.tensor(t_next), False)[0]
                       for solver in (Euler(), EulerDDIM()))
        assert (ddim.double() - exact).abs().max() < 1e-5
        if t_hat > 1e4:  # Euler's x + (t' − t)·d cancels two numbers of size ~x: float32 loses ~2e-2 here
            assert (euler.double() - exact).abs().max() > 1e-4
        else:
            assert (euler.double() - exact).abs().max() < 1e-5


def test_flow_times_are_shifted_linspace_with_the_first_at_t_max():
    schedule = FlowSchedule(steps=5, shift=3.0, t_min=0.01)
    t = torch.linspace(1, 0.01, 5, dtype=torch.float64)
    expected = 3 * t / (1 + 2 * t)
    expected[0] = 0.99999
    assert torch.allclose(schedule.times(), expected, rtol=0, atol=1e-15)
    sigmas = schedule.sigmas()
    assert sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert torch.allclose(sigmas[:-1].double(), expected / (1 - expected), rtol=1e-6)


def test_flow_schedule_settings_are_checked_in_one_line():
    for steps, bad in ((4, {"t_max": 1.0}), (4, {"t_min": 0.0}), (4, {"shift": 0.0}), (0, {}),
                       (4, {"t_max": 0.5, "t_min": 0.1})):
        with pytest.raises(NoiseSearchError) as err:
            make_sampler("flow_euler", steps, **bad)
        assert "\n" not in str(err.value)


def test_flow_sampler_round_trips_through_its_description():
    sampler = make_sampler("flow_euler", 7, shift=3.0, t_min=0.003, S_churn=5.0)
    assert sampler_from_dict(sampler.to_dict()) == sampler
    assert sampler.to_dict()["schedule"] == "flow" and sampler.to_dict()["solver"] == "euler_ddim"


def test_searchable_steps_are_those_with_sigma_in_the_churn_window():
    sampler = make_sampler("flow_euler", 12, shift=3.0)
    sigmas = sampler.sigmas[:-1]
    inside = [i for i, s in enumerate(sigmas.tolist()) if 0.05 <= s <= 50.0]
    assert sampler.searchable_steps() == inside and 0 < len(inside) < 12
    gamma = min(40.0 / 12, 2**0.5 - 1)
    assert torch.allclose(sampler.sigma_hats[inside], sigmas[inside] * (1 + gamma))


def test_churned_flow_sampler_samples_a_gaussian_with_its_variance():
    """On data ~ N(0, 0.25) with its exact velocity, the stochastic sampler's samples have variance 0.25 in the
    limit of many steps: the churn adds exactly the noise that raises sigma to sigma_hat (a wrong amount would
    inflate or shrink it). Euler's bias at few steps is to shrink it (shift 1, 18 steps: 0.21 without churn, 0.17 with
    the default churn), and it vanishes as steps grow."""
    var = 0.25

    def exact_velocity(x_t, t):
        t = t.reshape(-1, 1, 1, 1)
        denom = (1 - t) ** 2 * var + t**2
        return (t - (1 - t) * var) / denom * x_t  # E[noise | x_t] − E[x0 | x_t]

    sampler = make_sampler("flow_euler", 3000, shift=3.0)
    assert len(sampler.searchable_steps()) > 2500
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2000, 1, 2, 2, generator=g)
    noises = torch.randn(sampler.steps, *noise.shape, generator=g)
    samples = run_sampler(sampler, noise, as_denoiser(exact_velocity), noises)
    deterministic = run_sampler(replace(sampler, noise=Churn(S_churn=0.0)), noise, as_denoiser(exact_velocity))
    assert abs(float(samples.var()) - var) < 0.01
    assert abs(float(deterministic.var()) - var) < 0.01
    assert (samples - deterministic).abs().mean() > 0.1  # the injected noise changed the samples


def tiny_flow_denoiser(seed: int = 0) -> EmbeddedDenoiser:
    """The embedded flow model's architecture at toy width with random (perturbed) weights."""
    torch.manual_seed(seed)
    model = FlowPrecond(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return EmbeddedDenoiser(model)


FLOW_SAMPLER = make_sampler("flow_euler", 6)
_CONTRACTS: dict[str, Contract] = {}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_contract_on_the_embedded_flow_architecture(case, check):
    if case not in _CONTRACTS:
        name, params = CASES[case]
        _CONTRACTS[case] = Contract(get_algorithm(name, **for_sampler(params, FLOW_SAMPLER)), FLOW_SAMPLER,
                                    tiny_flow_denoiser())
    getattr(_CONTRACTS[case], check)()
