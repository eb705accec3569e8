"""The seed policy in one place: which integer seed each sample of each kind of run uses.

Every sample (condition × seed) owns a generator seeded by its own integer (see `rng`), so these
functions decide all randomness of a run. Kinds stay disjoint: sample and bench seeds lie far below
CALIBRATION_SEED_BASE, and probe climbs derive theirs from the calibration sample's seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noisesearch.errors import NoiseSearchError

CALIBRATION_SEED_BASE = 2**50  # calibration samples use seeds from here on; bench and sample seeds stay far below
PROBE_SEED_STRIDE = 1 << 8  # the climb at searchable step t of a sample with seed s draws from seed s·stride + t + 1


def sample_seeds(seed: int, n: int) -> list[int]:
    """Seeds of n samples of a run with base `seed`: sample i uses seed + i (as EDM's --seeds)."""
    if seed < 0:
        raise NoiseSearchError(f"seed must be non-negative, got {seed}")
    return [seed + i for i in range(n)]


def draw_labels(n: int, seed: int) -> list[int]:
    """n class labels drawn uniformly from 0-9 by a generator seeded with `seed` (random labels, as the
    paper's MNIST experiments)."""
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def bench_seed(seed: int, repeat: int, index: int) -> int:
    """Seed of label `index` in repeat `repeat` of a bench with base seed `seed`."""
    return seed * 1_000_000 + repeat * 1_000 + index


def calibration_seeds(seed: int, n: int) -> list[int]:
    """Sample seeds of n calibration conditions: disjoint from every evaluation seed of `sample` and `bench`."""
    return [CALIBRATION_SEED_BASE + seed * 1_000_000 + i for i in range(n)]


def probe_seeds(seeds: Sequence[int], t: int) -> list[int]:
    """Seeds of the climbs that a gain probe runs at the t-th searchable step of samples with `seeds`."""
    return [s * PROBE_SEED_STRIDE + t + 1 for s in seeds]
