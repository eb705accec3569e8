"""The one cost model: denoiser calls per step come from the sampler's solver, NFE per call from the denoiser.

Every NFE formula of an algorithm's docstring, every budget, allocator and bench estimate asks here.
c_i below is the sampler's calls of step i run once: Heun 2 (1 at the last step), Euler 1. A searchable
step that scores P candidate noises on their first call's x0 prediction and then steps the chosen one
costs P + c_i − 1 calls; scored after the full step (full_step), each candidate costs c_i: P·c_i.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from noisesearch.sampling import Sampler


class HasCallCost(Protocol):
    nfe_per_call: int  # NFE of one call for one image: 2 with classifier-free guidance


class StepPlan(Protocol):
    """A search schedule's per-step iterations K_t and candidates N_t at sampler steps `steps`."""

    steps: tuple[int, ...]
    K: tuple[int, ...]
    N: tuple[int, ...]


def nfe(calls: int, denoiser: HasCallCost) -> int:
    """NFE per image of `calls` denoiser calls per image."""
    return calls * denoiser.nfe_per_call


def trajectory_calls(sampler: Sampler) -> int:
    """Calls of one plain trajectory: Σ c_i (Heun: 2·steps − 1; Euler: steps)."""
    return sum(sampler.step_calls())


def search_step_calls(sampler: Sampler, i: int, proposals: int, full_step: bool = False) -> int:
    """Calls of step i when `proposals` candidate noises are scored there (0: the plain step)."""
    calls = sampler.step_calls()[i]
    if proposals == 0:
        return calls
    return proposals * calls if full_step else proposals + calls - 1


def per_step_search_calls(sampler: Sampler, proposals: int, full_step: bool = False) -> int:
    """Calls of one trajectory that scores `proposals` candidates at every searchable step."""
    searchable = set(sampler.searchable_steps())
    return sum(search_step_calls(sampler, i, proposals if i in searchable else 0, full_step)
               for i in range(sampler.steps))


def searched_calls(sampler: Sampler, proposals: Mapping[int, int], full_step: bool = False) -> int:
    """Calls of one trajectory that scores proposals[i] candidates at step i (none at steps not listed)."""
    return sum(search_step_calls(sampler, i, proposals.get(i, 0), full_step) for i in range(sampler.steps))


def schedule_calls(sampler: Sampler, schedule: StepPlan, full_step: bool = False) -> int:
    """Calls per image of a local search under a search schedule, every K_t iterations run."""
    return searched_calls(sampler, {i: schedule.N[t] * schedule.K[t] for t, i in enumerate(schedule.steps)}, full_step)


def iteration_costs(sampler: Sampler, steps: Sequence[int], N: Sequence[int],
                    full_step: bool = False) -> tuple[list[int], list[int]]:
    """Extra calls of the first and of each further search iteration at the given sampler steps, over
    their plain step."""
    first, then = [], []
    for i, n in zip(steps, N, strict=True):
        once = search_step_calls(sampler, i, n, full_step)
        first.append(once - search_step_calls(sampler, i, 0))
        then.append(search_step_calls(sampler, i, 2 * n, full_step) - once)
    return first, then


def tree_simulation_calls(sampler: Sampler, N: int) -> tuple[int, dict[int, int]]:
    """MCTS: calls before the first searchable step, and those of a simulation that expands searchable
    step j: N·(c_j + the calls of the gamma = 0 steps up to the next searchable step k) + a rollout from k."""
    steps, searchable, calls = sampler.steps, sampler.searchable_steps(), sampler.step_calls()

    def next_searchable(s: int) -> int:
        return next((k for k in searchable if k >= s), steps)

    per_sim = {j: N * sum(calls[j:next_searchable(j + 1)]) + sum(calls[next_searchable(j + 1):]) for j in searchable}
    return sum(calls[:next_searchable(0)]), per_sim


def steps_calls(sampler: Sampler, start: int, stop: int) -> int:
    """Calls of the plain steps start..stop-1."""
    return sum(sampler.step_calls()[start:stop])


def reliability_probe_calls(sampler: Sampler, candidates: int) -> int:
    """R(σ) probe (adaptive.reliability): one plain trajectory, and at each searchable step i `candidates`
    candidates each run from step i to the end."""
    return trajectory_calls(sampler) + sum(candidates * steps_calls(sampler, i, sampler.steps)
                                           for i in sampler.searchable_steps())
