"""Spectral Evolution Search: the cross-entropy method over the low-frequency wavelet band of the initial noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.sampling.sampler import sampler_from_dict
from noisesearch.search.base import (
    CALLS_DOC,
    SearchAlgorithm,
    check_positive_int,
    fixed_step_noise,
    keep_improvements,
    run_with_step_noise,
)
from noisesearch.search.haar import deepest_level, haar_merge, haar_split
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace

MOST_LEVELS = 4  # DiffSynth-Studio's dwt_level


@register_algorithm
@dataclass(frozen=True)
class SpectralEvolution(SearchAlgorithm):
    """Spectral Evolution Search (SES): the initial noise's Haar wavelet transform keeps its detail bands fixed
    while the cross-entropy method searches its low band: each generation draws `popsize` low bands from a
    per-coefficient Gaussian (starting at the standard normal), scores each noise's sample (a preview of
    `preview_steps` steps, or the full sampler), and refits the Gaussian to the `elites` best low bands seen so far;
    after `evaluations` scored samples the best noise is sampled with the full sampler (reusing its preview where
    the preview is the full sampler). `level` is the transform's depth (None: the deepest up to 4 that divides the
    image's sides: 4 for a 64×64 latent, 2 for 28×28 MNIST). A condition's step noises are fixed across its
    candidates, as zero_order_initial's are.

    Parameters against the paper's and DiffSynth-Studio's `ses_search`: evaluations = total_eval_budget
    (`ses_eval_budget`), popsize and elites as there (k_elites), level = dwt_level ('db1' is Haar),
    preview_steps = `ses_inference_steps`."""

    name = "ses"
    source = ("Spectral Evolution Search ([arXiv 2602.03208](https://arxiv.org/abs/2602.03208)), as DiffSynth-Studio "
              "ships it (`diffsynth/utils/ses`: `enable_ses`, `ses_eval_budget`, `ses_inference_steps`)")
    family = "initial"
    nfe_doc = (f"evaluations·Σ_i c'_i + Σ_i c_i, c'_i the calls of the preview sampler's steps, {CALLS_DOC}; "
               "evaluations·Σ_i c_i without preview_steps (the best preview is the result)")
    evaluations: int = 30
    popsize: int = 10
    elites: int = 5
    level: int | None = None
    preview_steps: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(evaluations=self.evaluations, popsize=self.popsize, elites=self.elites)
        if self.preview_steps is not None:
            check_positive_int(preview_steps=self.preview_steps)
        if self.level is not None and (not isinstance(self.level, int) or isinstance(self.level, bool)
                                       or not 0 <= self.level <= 8):
            raise NoiseSearchError(f"level must be an integer from 0 to 8 or None (the deepest that fits), got "
                                   f"{self.level}")

    @property
    def scores_whole_trajectories(self) -> bool:  # type: ignore[override]
        """Without previews, every scored image is a final one with its own trajectory's x0 predictions (what a
        reward declaring x0_sigma needs); previews run other steps, whose x0 predictions are at other sigmas."""
        return self.preview_steps is None

    def preview(self, sampler: Sampler) -> Sampler | None:
        """The preview sampler: the full one's schedule with `preview_steps` steps (None: previews are full runs)."""
        if self.preview_steps is None or self.preview_steps == sampler.steps:
            return None
        return sampler_from_dict(sampler.to_dict() | {"steps": self.preview_steps})

    def nfe_formula(self, sampler: Sampler) -> int:
        preview = self.preview(sampler)
        if preview is None:
            return self.evaluations * cost.trajectory_calls(sampler)
        return self.evaluations * cost.trajectory_calls(preview) + cost.trajectory_calls(sampler)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        shape, c = problem.image_shape, problem.n
        level = deepest_level(*shape[-2:], MOST_LEVELS) if self.level is None else self.level
        gens = problem.generators()
        base = gens.randn(*shape)
        low, details = haar_split(base, level)
        details = [tuple(band[:, None] for band in bands) for bands in details]  # shared by the candidates
        band = low.shape[1:]
        mean, var = torch.zeros(c, low[0].numel()), torch.ones(c, low[0].numel())
        elite_lows, elite_scores = torch.zeros(c, 0, mean.shape[1]), torch.zeros(c, 0)
        best_final = torch.zeros(c, *shape)
        best_noise, best = base.clone(), torch.full((c,), -math.inf)
        preview = self.preview(problem.sampler)
        with problem.with_sampler(preview or problem.sampler) as previewing:
            step_noise = fixed_step_noise(previewing, gens)
            done = 0
            while done < self.evaluations:
                m = min(self.popsize, self.evaluations - done)
                lows = mean[:, None] + gens.randn(m, mean.shape[1]) * var.sqrt()[:, None]
                noise = haar_merge(lows.reshape(c, m, *band), details)
                final, x0 = run_with_step_noise(previewing, noise, step_noise)
                scores = previewing.score(final, x0=x0)
                best, (best_final, best_noise) = keep_improvements(best, scores, (best_final, best_noise),
                                                                   (final, noise))
                elite_lows, elite_scores = fittest(torch.cat([elite_lows, lows], 1),
                                                   torch.cat([elite_scores, scores], 1), self.elites)
                mean = elite_lows.mean(dim=1)
                if elite_lows.shape[1] > 1:
                    var = elite_lows.var(dim=1) + 1e-7
                done += m
        if preview is None:
            return best_final, best, None
        final, x0 = run_with_step_noise(problem, best_noise[:, None], fixed_step_noise(problem, gens))
        return final[:, 0], problem.score(final, x0=x0)[:, 0], None


def fittest(lows: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per condition, the `k` best low bands (C, n, D) by score (C, n), best first (ties: the earlier)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return lows.gather(1, order[..., None].expand(-1, -1, lows.shape[2])), scores.gather(1, order)
