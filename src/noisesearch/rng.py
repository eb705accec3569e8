"""Per-sample random generators (EDM's StackedRandomGenerator).

Each sample (condition × seed) owns one torch.Generator seeded by its own integer seed, so its
draws do not depend on which other samples share the batch or in which order work is done.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.seeds import candidate_seeds, check_seeds


class SampleGenerators:
    """One generator per sample; draws return a tensor with the samples stacked on dim 0."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = check_seeds(seeds)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int, which: Sequence[int] | None = None) -> torch.Tensor:
        """Standard normal draws of `shape` for each sample (or the samples listed in `which`)."""
        gens = self.generators if which is None else [self.generators[i] for i in which]
        return torch.stack([torch.randn(shape, generator=g) for g in gens])

    def rand(self, *shape: int, which: Sequence[int] | None = None) -> torch.Tensor:
        """Uniform [0, 1) draws of `shape` for each sample (or the samples listed in `which`)."""
        gens = self.generators if which is None else [self.generators[i] for i in which]
        return torch.stack([torch.rand(shape, generator=g) for g in gens])


class CandidateGenerators:
    """One generator per candidate of each sample (seeds.candidate_seeds), for searches that draw M candidates
    per sample as a stack of M (randn(M, *shape) as SampleGenerators takes it): candidate j's draws depend only on
    its sample's seed and j, not on how many candidates there are, so the first n of a run with N candidates
    are exactly a run with n (nested best-of-N)."""

    def __init__(self, seeds: Sequence[int], candidates: int) -> None:
        self.seeds = check_seeds(seeds)
        self.candidates = candidates
        self.generators = [[torch.Generator().manual_seed(s) for s in candidate_seeds(seed, candidates)]
                           for seed in self.seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, m: int, *shape: int, which: Sequence[int] | None = None) -> torch.Tensor:
        """Standard normal draws (C', m, *shape): row j of each sample from its candidate j's generator."""
        if m > self.candidates:
            raise NoiseSearchError(f"{m} candidates drawn from generators of {self.candidates}")
        rows = self.generators if which is None else [self.generators[i] for i in which]
        return torch.stack([torch.stack([torch.randn(shape, generator=g) for g in gens[:m]]) for gens in rows])
