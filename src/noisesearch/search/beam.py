"""Beam search over per-step noises."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Proposal, Trace


@register_algorithm
@dataclass(frozen=True)
class Beam(SearchAlgorithm):
    """(N, B) beam search: B beams from B initial noises; at every searchable step each beam proposes
    N noises, all N·B candidates are scored on their x0 prediction and the best B continue, each from
    its own parent's state; the best final beam is returned."""

    name = "beam"
    source = ("beam search over the step noise, the tree-search baseline of Ramesh and Mardani, *Test-Time Scaling "
              "of Diffusion Models via Noise Trajectory Search* ([arXiv "
              "2506.03164](https://arxiv.org/abs/2506.03164))")
    family = "tree"
    nfe_doc = f"B·[Σ over steps: N + c_i − 1 at searchable steps, c_i elsewhere], {CALLS_DOC}"
    searches_step_noise = True
    N: int = 4
    B: int = 2

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, B=self.B)

    def nfe_formula(self, sampler: Sampler) -> int:
        return self.B * cost.per_step_search_calls(sampler, self.N)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        shape, c = problem.image_shape, problem.n
        rows = torch.arange(c)[:, None]
        x = problem.initial_state(gens.randn(self.B, *shape))
        searchable = set(problem.sampler.searchable_steps())
        for i in range(problem.sampler.steps):
            if i not in searchable:
                x = problem.step(x, i, None).x_next
                continue
            parents = x.repeat_interleave(self.N, dim=1)  # candidate j belongs to beam j // N
            proposal = problem.propose(parents, i, gens.randn(self.B * self.N, *shape))
            scores = problem.score(proposal.x0_hat)
            keep = scores.topk(self.B, dim=1).indices
            chosen = Proposal(i, proposal.x_hat[rows, keep], proposal.x0_hat[rows, keep])
            x = problem.advance(chosen).x_next
        states, rewards = select_best(x, problem.score(x))
        return states, rewards, None
