"""Evolutionary search (He et al., "Scaling Image and Video Generation via Test-Time Evolutionary Search", arXiv
2505.17618): a population over the initial noise and then over the intermediate states at the evolution steps,
each generation rolled out to the end, scored on its final images, and evolved by elitist selection, tournament
selection and a mutation that keeps the noise's distribution.

| paper / authors' code (tinnerhrhe/EvoSearch-codes, SD2.1/evo_pipe.py) | here |
| --- | --- |
| `evolution_schedule` (sampler steps; 0 is the initial noise) | `evolution_steps` s_0 < … < s_{G−1} |
| `population_size_schedule` (G + 1 sizes) | `population` P_0, …, P_G |
| `elite_size` | `elites` E |
| `mutation_rate` β: x_T ← √(1 − β²)·x_T + β·ε | `beta`, the same where s_g = 0 |
| intermediate mutation x_t ← x_t + σ_t·ε (σ_t: the DDIM step's std) | x ← x + √(σ̂_s² − σ_s²)·ε (one churn) |
| tournament: the best of a random 90 % of the population | the same, from each condition's generator |
| the population at step s_g: every state a rollout passed there, scored on its final image | the same |
| the best final image seen | the same |

Generation g (g = 0, …, G − 1) rolls its population out to the end with fresh noise, caching the state of
every member at each later evolution step; the states cached at s_g (from this and earlier generations) with
their final rewards are the population selected from: the E best (elites) and P_{g+1} − E tournament winners,
mutated, start generation g + 1 at s_g. Generation G is the last rollout; with no evolution steps, evo (P_0) is
best-of-P_0 (bit-identical to `best_of_n` with N = P_0). Deviations: the authors cache the state
after the update of step s_g and feed it back in before that step (so it is stepped twice, and their x_T
mutation acts on x after step 0); here the state before step s_g is cached and re-enters at s_g. Where s_g is a
step without churn (gamma = 0) the intermediate mutation adds nothing, and only selection and the later steps'
fresh noise evolve the population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace

TOURNAMENT = 0.9  # the share of the population each tournament draws (the authors' hard-coded 90 %)


def int_tuple(value: object, name: str) -> tuple[int, ...]:
    """A tuple of integers from a list, a tuple or comma-separated text ("8,4,4"); a one-line error otherwise."""
    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    try:
        if not isinstance(items, (list, tuple)) or any(isinstance(v, (bool, float)) for v in items):
            raise ValueError
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise NoiseSearchError(f"{name} must be a list of integers such as 8,4,4, got {value!r}") from None


def tournament(gens: SampleGenerators, scores: torch.Tensor, winners: int) -> torch.Tensor:
    """Indices (C, winners): each the best of a random TOURNAMENT share of the n candidates scored (C, n)."""
    n = scores.shape[1]
    subset = gens.rand(winners, n).argsort(dim=2)[:, :, :max(1, math.floor(TOURNAMENT * n))]
    entrants = scores[:, None, :].expand(-1, winners, -1).gather(2, subset)
    return subset.gather(2, entrants.argmax(dim=2, keepdim=True))[:, :, 0]


@register_algorithm
@dataclass(frozen=True)
class Evo(SearchAlgorithm):
    """EvoSearch: generation g's population (P_g members, `population`) starts at evolution step s_{g−1}
    (`evolution_steps`; the initial noise for g = 0) and is rolled out to the end; the states every rollout
    passed at s_g, scored on their final images, are evolved into P_{g+1} members: the `elites` best, and
    tournament winners mutated (at step 0, x ← √(1 − β²)·x + β·σ_0·ε with β = `beta`; later, x ← x + the noise
    the step's churn injects). The best final image of all rollouts is returned."""

    name = "evo"
    source = "EvoSearch: He et al. ([arXiv 2505.17618](https://arxiv.org/abs/2505.17618)), tinnerhrhe/EvoSearch-codes"
    family = "evolutionary"
    nfe_doc = (f"Σ_g P_g·Σ_{{i ≥ a_g}} c_i, where a_0 = 0 and a_g = s_{{g−1}} (population P_g, evolution steps s), "
               f"{CALLS_DOC}")
    population: tuple[int, ...] | str = (8, 4, 4, 4, 4)
    evolution_steps: tuple[int, ...] | str = (0, 7, 11, 14)
    elites: int = 1
    beta: float = 0.2

    def __post_init__(self) -> None:
        population = int_tuple(self.population, "population")
        steps = int_tuple(self.evolution_steps, "evolution_steps")
        object.__setattr__(self, "population", population)
        object.__setattr__(self, "evolution_steps", steps)
        if len(population) != len(steps) + 1:
            raise NoiseSearchError(f"population needs one size more than evolution_steps (the last generation's), got "
                                   f"{len(population)} sizes for {len(steps)} steps")
        if min(population) < 1:
            raise NoiseSearchError(f"population sizes must be at least 1, got {list(population)}")
        if any(s < 0 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise NoiseSearchError(f"evolution_steps must be increasing sampler steps from 0 on, got {list(steps)}")
        if (not isinstance(self.elites, int) or isinstance(self.elites, bool)
                or not 0 <= self.elites <= min(population)):
            raise NoiseSearchError(f"elites must be an integer from 0 to the smallest population ({min(population)}), "
                                   f"got {self.elites}")
        if not (math.isfinite(self.beta) and 0 <= self.beta <= 1):
            raise NoiseSearchError(f"beta must lie in [0, 1], got {self.beta}")

    def params(self) -> dict:
        return {**super().params(), "population": list(self.population), "evolution_steps": list(self.evolution_steps)}

    def starts(self, sampler: Sampler) -> list[int]:
        """The step at which each generation's rollout starts: 0, then s_0, …, s_{G−1}."""
        if self.evolution_steps and self.evolution_steps[-1] >= sampler.steps:
            raise NoiseSearchError(f"evolution_steps {list(self.evolution_steps)} must lie below the sampler's "
                                   f"{sampler.steps} steps")
        return [0, *self.evolution_steps]

    def nfe_formula(self, sampler: Sampler) -> int:
        return sum(p * cost.steps_calls(sampler, a, sampler.steps)
                   for p, a in zip(self.population, self.starts(sampler), strict=True))

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        sampler, shape, c = problem.sampler, problem.image_shape, problem.n
        starts, steps = self.starts(sampler), self.evolution_steps
        searchable = set(sampler.searchable_steps())
        archive: list[list[torch.Tensor]] = [[] for _ in steps]  # per evolution step: states (C, P, ...) passed there
        finals: list[list[torch.Tensor]] = [[] for _ in steps]  # and their final rewards (C, P)
        best_state, best = torch.zeros(c, *shape), torch.full((c,), -math.inf)
        rows = torch.arange(c)
        x = problem.initial_state(gens.randn(self.population[0], *shape))
        for g, start in enumerate(starts):
            cached = []
            for i in range(start, sampler.steps):
                if i in steps[g:]:
                    cached.append(steps.index(i))
                    archive[cached[-1]].append(x)
                x = problem.step(x, i, gens.randn(x.shape[1], *shape) if i in searchable else None).x_next
            scores = problem.score(x)
            for t in cached:
                finals[t].append(scores)
            win = scores.argmax(dim=1)
            better = scores[rows, win] > best
            best = torch.where(better, scores[rows, win], best)
            best_state[better] = x[rows, win][better]
            if g < len(steps):
                x = self.evolve(problem, gens, torch.cat(archive[g], dim=1), torch.cat(finals[g], dim=1), g)
        return best_state, best, None

    def evolve(self, problem: Problem, gens: SampleGenerators, states: torch.Tensor, scores: torch.Tensor,
               g: int) -> torch.Tensor:
        """Generation g + 1 from the states (C, n, ...) cached at evolution step s_g with their final scores (C, n):
        the elites, then the mutated tournament winners."""
        rows = torch.arange(states.shape[0])[:, None]
        size, s = self.population[g + 1], self.evolution_steps[g]
        elites = scores.topk(self.elites, dim=1).indices
        parents = states[rows, tournament(gens, scores, size - self.elites)]
        noise = gens.randn(size - self.elites, *problem.image_shape)
        sampler = problem.sampler
        if s == 0:
            children = math.sqrt(1 - self.beta ** 2) * parents + self.beta * sampler.sigmas[0] * noise
        else:
            children = parents + (sampler.sigma_hats[s] ** 2 - sampler.sigmas[s] ** 2).sqrt() * noise
        return torch.cat([states[rows, elites], children], dim=1)
