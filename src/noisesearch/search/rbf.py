"""Rollover budget forcing (Kim et al., "Inference-Time Scaling for Flow Models via Stochastic Generation and
Rollover Budget Forcing", arXiv 2503.19385): a total NFE budget spread evenly over the searched steps; at each
step particles are drawn one at a time until one beats the incumbent, and the calls it did not need roll over
to the next step.

| paper / authors' code (KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling, rbf/rbf.py) | here |
| --- | --- |
| `max_nfe` | `target_nfe` (was `max_nfe`: denoiser calls per image, all spent; ×2 NFE with classifier-free guidance) |
| `init_n_particles` initial noises, the best x0 prediction kept | `init_particles`, scored on step 0's call |
| per-step budget ⌊(max_nfe − init) / max_steps⌋ | ⌊(target_nfe − fixed calls) / S⌋, S searchable steps after 0 |
| particle: an SDE step with fresh noise + the call at x_{t−1} (1 NFE) | a candidate noise + its first call (1 call) |
| take the first particle beating `best_rewards`; leftover + default next | the same (incumbent: best accepted reward) |
| budget spent, none better: the step's best; next step the default | the same |
| last steps: particles until max_nfe, the best kept | the last searched step spends what is left |

The total is exactly `target_nfe`: the fixed calls (the init particles and step 0's further calls, the c_i of
steps without noise, the c_i − 1 further calls of each searched step) plus particles that add up to the rest,
since unspent particles roll over until the last searched step spends them; which step spends how many depends
on the rewards. Deviations: the authors return the x0 prediction of the last step's best particle; here its
trajectory is finished by the sampler's remaining (noise-free) steps and the final image is returned. Particles
are drawn from each condition's generator, so results do not depend on the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int
from noisesearch.search.registry import register_algorithm
from noisesearch.search.tracing import TraceRecorder
from noisesearch.types import Proposal, SearchResult, Trace


@register_algorithm
@dataclass(frozen=True)
class RBF(SearchAlgorithm):
    """Rollover budget forcing: `init_particles` initial noises, the best kept after step 0's call; then at
    every searchable step, particles (candidate noises, scored on their x0 prediction) one at a time until one
    beats the incumbent reward (it is taken, and the unspent quota rolls over to the next step) or the step's
    quota is spent (the step's best is taken). Quotas: ⌊rest / S⌋ each, the rest of `target_nfe` after the fixed
    calls spread over the S searched steps; the last searched step spends all that is left. `target_nfe` is a
    plan the search spends exactly, not a hard cap (that is the Problem's `nfe_budget`)."""

    name = "rbf"
    source = ("rollover budget forcing: Kim et al. ([arXiv 2503.19385](https://arxiv.org/abs/2503.19385)), "
              "KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling")
    family = "budget_forcing"
    nfe_doc = (f"exactly `target_nfe`: fixed calls init_particles + c_0 − 1 + Σ over later steps "
               f"(c_i − 1 at searchable steps, c_i elsewhere), the rest spent as particles at the searchable steps, "
               f"{CALLS_DOC}")
    searches_step_noise = True
    renamed = {"max_nfe": "target_nfe"}
    target_nfe: int = 140
    init_particles: int = 4

    def __post_init__(self) -> None:
        check_positive_int(target_nfe=self.target_nfe, init_particles=self.init_particles)

    def searched_steps(self, sampler: Sampler) -> list[int]:
        return [i for i in sampler.searchable_steps() if i > 0]

    def quota(self, sampler: Sampler) -> tuple[int, int, int]:
        """Particles per searched step, the remainder the last one adds, and the fixed calls; a one-line error
        where target_nfe does not leave one particle per searched step."""
        calls = sampler.step_calls()
        searched = self.searched_steps(sampler)
        fixed = self.init_particles + calls[0] - 1 + sum(calls[i] - (i in searched) for i in range(1, sampler.steps))
        rest = self.target_nfe - fixed
        if rest < len(searched):
            raise NoiseSearchError(f"rbf: target_nfe {self.target_nfe} leaves {rest} calls after the {fixed} fixed "
                                   f"ones, fewer than one particle per searched step ({len(searched)}): raise "
                                   f"target_nfe to "
                                   f"at least {fixed + len(searched)} or lower init_particles")
        return (rest // len(searched), rest % len(searched), fixed) if searched else (0, 0, fixed)

    def nfe_formula(self, sampler: Sampler) -> int:
        """target_nfe; only the fixed calls where no step after step 0 injects noise."""
        fixed = self.quota(sampler)[2]
        return self.target_nfe if self.searched_steps(sampler) else fixed

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        """The cost of the particles the trace records at each step (step 0: the initial ones)."""
        trace, calls = result.trace, []
        for c in range(len(result.nfe)):
            steps, counts = trace.step[trace.condition == c].unique(return_counts=True)
            calls.append(cost.searched_calls(sampler, dict(zip(steps.tolist(), counts.tolist(), strict=True))))
        return torch.tensor(calls)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace]:
        gens, sampler, shape = problem.generators(), problem.sampler, problem.image_shape
        searchable, searched = sampler.searchable_steps(), self.searched_steps(sampler)
        per_step, extra, _ = self.quota(sampler)
        recorder = TraceRecorder()
        everyone = torch.arange(problem.n)
        x = problem.initial_state(gens.randn(self.init_particles, *shape))
        proposal = problem.propose(x, 0, gens.randn(self.init_particles, *shape) if 0 in searchable else None)
        scores = problem.score(proposal.x0_hat)
        drawn = torch.ones(problem.n, dtype=torch.bool)
        for k in range(self.init_particles):
            recorder.record(everyone, 0, float(sampler.sigmas[0]), k + 1, scores[:, k], scores[:, :k + 1].amax(dim=1),
                            drawn, ~drawn, scores[:, k])
        incumbent, best = scores.max(dim=1)
        x = problem.advance(Proposal(0, proposal.x_hat[everyone, best][:, None],
                                     proposal.x0_hat[everyone, best][:, None])).x_next
        quota = torch.full((problem.n,), per_step)
        for i in range(1, sampler.steps):
            if i not in searched:
                x = problem.step(x, i, None).x_next
                continue
            last = i == searched[-1]
            x, used, accepted, step_best = self.draw(problem, gens, x, i, quota + extra * last, incumbent, last,
                                                     recorder)
            incumbent = torch.where(accepted, step_best, incumbent)
            quota = per_step + quota + extra * last - used
        return x[:, 0], problem.score(x)[:, 0], recorder.build()

    def draw(self, problem: Problem, gens, x: torch.Tensor, i: int, quota: torch.Tensor, incumbent: torch.Tensor,
             last: bool, recorder: TraceRecorder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Particles at step i, one per condition and round, until one beats the incumbent (not at the last
        searched step) or the condition's quota is spent; returns the next states, the particles used, whether
        one was accepted, and the step's best score."""
        n, shape, sigma = problem.n, problem.image_shape, float(problem.sampler.sigmas[i])
        used = torch.zeros(n, dtype=torch.long)
        accepted = torch.zeros(n, dtype=torch.bool)
        step_best = torch.full((n,), -math.inf)
        kept = torch.empty(n, 2, *shape)
        for k in range(1, int(quota.max()) + 1):
            live = ((k <= quota) & ~accepted).nonzero().flatten()
            if not len(live):
                break
            which = live.tolist()
            proposal = problem.propose(x[live], i, gens.randn(1, *shape, which=which), which)
            score = problem.score(proposal.x0_hat, which)[:, 0]
            better = score > step_best[live]
            kept[live[better]] = torch.stack([proposal.x_hat[better, 0], proposal.x0_hat[better, 0]], dim=1)
            step_best[live] = torch.maximum(step_best[live], score)
            beats = score > incumbent[live]
            if not last:
                accepted[live] = beats
            used[live] += 1
            recorder.record(live, i, sigma, k, score, torch.maximum(incumbent[live], step_best[live]),
                            torch.ones(len(live), dtype=torch.bool), beats, score)
        x_next = problem.advance(Proposal(i, kept[:, None, 0], kept[:, None, 1])).x_next
        return x_next, used, accepted, step_best
