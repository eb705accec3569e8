"""The SearchAlgorithm base: a frozen dataclass whose fields are its parameters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import EDMSchedule
from noisesearch.types import SearchResult, Trace


@dataclass(frozen=True)
class SearchAlgorithm:
    """Chooses the sampler's noises through a metered Problem.

    Subclasses set `name`, declare their parameters as dataclass fields, document their NFE formula
    in `nfe_formula` and implement `_search`, which returns one final sampler state per condition
    (in the denoiser's space: pixels, or latents that the Problem decodes), its reward and, for
    per-step searches, a Trace.
    """

    name: ClassVar[str] = ""
    nfe_doc: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Append the NFE formula to the docstring, so that `help()` and the docs show it."""
        super().__init_subclass__(**kwargs)
        if cls.nfe_doc and cls.__doc__ and "NFE per image:" not in cls.__doc__:
            cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    NFE per image: {cls.nfe_doc}."

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def nfe_formula(self, schedule: EDMSchedule) -> int | None:
        """Denoiser calls per image (×2 with classifier-free guidance); None where it depends on the run."""
        raise NotImplementedError

    def nfe_estimate(self, schedule: EDMSchedule) -> int:
        """Denoiser calls per image to expect before running (the formula where it is exact)."""
        return self.nfe_formula(schedule)

    def expected_calls(self, schedule: EDMSchedule, result: SearchResult) -> torch.Tensor:
        """Denoiser calls per image that the documented formula gives for this result, (C,)."""
        return torch.full_like(result.nfe, self.nfe_formula(schedule))

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        raise NotImplementedError

    def run(self, problem: Problem) -> SearchResult:
        """Search every condition of `problem` and return the chosen images with their rewards."""
        start = time.perf_counter()
        problem.start_progress(self.nfe_estimate(problem.schedule) * problem.denoiser.nfe_per_call, self.name)
        try:
            states, rewards, trace = self._search(problem)
        finally:
            problem.close_progress()
        return SearchResult(
            images=problem.to_images(states[:, None])[:, 0],
            rewards=rewards,
            nfe=problem.nfe.clone(),
            wall_time=time.perf_counter() - start,
            config={"algorithm": self.name, "params": self.params()},
            trace=trace,
        )


def run_steps(problem: Problem, gens: SampleGenerators, x: torch.Tensor, start: int, stop: int,
              which: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sampler steps start..stop-1 on x (C', M, ...) with fresh noise from each condition's generator at
    searchable steps; returns the state and the last step's x0 prediction (None if no step ran)."""
    searchable = set(problem.schedule.searchable_steps())
    x0_hat = None
    for i in range(start, stop):
        noise = gens.randn(x.shape[1], *x.shape[2:], which=which) if i in searchable else None
        out = problem.step(x, i, noise, which)
        x, x0_hat = out.x_next, out.x0_hat
    return x, x0_hat


def select_best(images: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per condition, the image (C, M, ...) with the highest score (C, M); ties go to the first."""
    best = scores.argmax(dim=1)
    rows = torch.arange(images.shape[0])
    return images[rows, best], scores[rows, best]
