"""Samplers register under a name; the CLI, the bench and the API resolve names here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from noisesearch.checks import shown
from noisesearch.errors import NoiseSearchError
from noisesearch.naming import claim_name
from noisesearch.sampling.noise import Churn
from noisesearch.sampling.sampler import Sampler, StochasticSampler
from noisesearch.sampling.schedules import FlowSchedule, KarrasSchedule
from noisesearch.sampling.solvers import Euler, EulerDDIM, Heun

SamplerFactory = Callable[..., Sampler]
_SAMPLERS: dict[str, tuple[SamplerFactory, str]] = {}

CHURN_FIELDS = tuple(Churn.__dataclass_fields__)


def register_sampler(name: str, description: str, *, replace: bool = False
                     ) -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator: make `factory(steps=..., **settings) -> Sampler` constructible by `name`; a name already
    taken by another factory is a NoiseSearchError unless `replace=True`."""
    def add(factory: SamplerFactory) -> SamplerFactory:
        claim_name(_SAMPLERS, name, (factory, description), "sampler", replace, definition=lambda entry: entry[0])
        return factory
    return add


def sampler_names() -> list[str]:
    return sorted(_SAMPLERS)


def describe_sampler(name: str) -> str:
    return _SAMPLERS[name][1]


def make_sampler(name: str = "heun", steps: int = 18, **settings: Any) -> Sampler:
    """The sampler registered as `name` with `steps` steps; `settings` override its schedule and noise."""
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise NoiseSearchError(f"unknown sampler {shown(name)}: choose one of {', '.join(sampler_names())}")
    try:
        return _SAMPLERS[name][0](steps=steps, **settings)
    except TypeError as err:
        raise NoiseSearchError(f"sampler '{name}': {err}") from None


def edm_sampler(solver: Heun | Euler, steps: int, **settings: Any) -> StochasticSampler:
    """Karras sigmas and EDM's churn with the given solver; settings are schedule and churn fields."""
    noise = {k: settings.pop(k) for k in CHURN_FIELDS if k in settings}
    return StochasticSampler(KarrasSchedule(steps=steps, **settings), solver, Churn(**noise))


FLOW_CHURN = {"S_churn": 40.0, "S_min": 0.05, "S_max": 50.0, "S_noise": 1.0}  # the paper's window, no S_noise boost


@register_sampler("heun", "EDM's stochastic sampler (the paper's setting): Karras sigmas, churn, Heun steps "
                          "(2 calls per step, 1 at the last)")
def heun(steps: int = 18, **settings: Any) -> StochasticSampler:
    return edm_sampler(Heun(), steps, **settings)


@register_sampler("euler", "Karras sigmas and EDM's churn with Euler steps (1 call per step)")
def euler(steps: int = 18, **settings: Any) -> StochasticSampler:
    return edm_sampler(Euler(), steps, **settings)


@register_sampler("flow_euler", "a rectified-flow sampler: shifted flow times (SD3/FLUX) in sigma space, Euler steps "
                                "(the flow ODE's Euler solver where no noise enters; 1 call per step) and EDM's "
                                "churn (S_noise 1): steps with 0.05 <= sigma <= 50 are searchable")
def flow_euler(steps: int = 18, **settings: Any) -> StochasticSampler:
    """Euler (in DDIM form) over a FlowSchedule with churn; settings are FlowSchedule fields (shift, t_max,
    t_min) and churn fields (defaults FLOW_CHURN)."""
    noise = FLOW_CHURN | {k: settings.pop(k) for k in CHURN_FIELDS if k in settings}
    return StochasticSampler(FlowSchedule(steps=steps, **settings), EulerDDIM(), Churn(**noise))
