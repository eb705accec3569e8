"""FID, KID, Inception Score and precision/recall of generated features against a reference, with torchmetrics
computing the statistics (its Fréchet distance, its polynomial-kernel MMD, its Inception Score class).

Why torchmetrics: it computes every statistic from features given to it (a custom feature module), needs only
torch; torch-fidelity, pytorch-fid and clean-fid all require torchvision, which this project does not install.
Precision and recall (Kynkäänniemi et al. 2019, k = 3) are not in torchmetrics: they are written here from the
paper's definition (k-NN balls), in float64, chunked. Every random choice (KID subsets, IS split order,
bootstrap draws) comes from an explicit seed, so the same features always give the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from noisesearch.errors import NoiseSearchError

try:  # the statistics need torchmetrics; import errors surface as a one-line message at first use
    from torchmetrics.image.fid import _compute_fid
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import poly_mmd
except ImportError:  # pragma: no cover - torchmetrics is a dependency
    _compute_fid = InceptionScore = poly_mmd = None

PR_NEIGHBOURS = 3  # Kynkäänniemi et al.'s k


def _library() -> None:
    if _compute_fid is None:
        raise NoiseSearchError("population metrics need torchmetrics: pip install torchmetrics")


def _features(features: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] < 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise NoiseSearchError(f"{what} must be a (n, d) tensor with n >= 2, got {shape}")
    if not bool(torch.isfinite(features).all()):
        raise NoiseSearchError(f"{what} hold NaN or inf")
    return features.double()


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of (n, d) features, in float64."""
    f = _features(features, "features")
    return f.mean(dim=0), torch.cov(f.T)


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """The Fréchet distance between N(mean1, cov1) and N(mean2, cov2) (torchmetrics' own computation)."""
    _library()
    return float(_compute_fid(mean1.double(), cov1.double(), mean2.double(), cov2.double()))


def fid(features: torch.Tensor, reference: torch.Tensor) -> float:
    """FID of generated features (n, d) against reference features (m, d)."""
    return frechet_distance(*moments(features), *moments(_features(reference, "reference features")))


def kid(features: torch.Tensor, reference: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets of min(subset_size, n, m) rows of each set): unbiased at any n,
    which FID is not (FID's bias grows as n shrinks: prefer KID below a few thousand samples)."""
    _library()
    fake, real = _features(features, "features"), _features(reference, "reference features")
    size = min(subset_size, fake.shape[0], real.shape[0])
    gen = torch.Generator().manual_seed(seed)
    values = torch.stack([
        poly_mmd(real[torch.randperm(real.shape[0], generator=gen)[:size]],
                 fake[torch.randperm(fake.shape[0], generator=gen)[:size]])
        for _ in range(subsets)])
    return float(values.mean()), float(values.std(correction=0))  # torchmetrics' std over subsets


class _Passthrough(torch.nn.Module):
    """A torchmetrics feature module that returns what it is given (features computed elsewhere)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score (mean, std over `splits` splits) from class logits (n, K), by torchmetrics' InceptionScore;
    its split order is seeded."""
    _library()
    values = _features(logits, "logits")
    with warnings.catch_warnings():  # its warning that it buffers features: these are the logits we hold anyway
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = InceptionScore(feature=_Passthrough(values.shape[1]), splits=min(splits, values.shape[0]))
    metric.update(values)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_radii(points: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row."""
    radii = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], points)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the row itself (distance 0)
    return torch.cat(radii)


def _covered(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Whether each query lies within the k-NN ball of any centre."""
    inside = []
    for start in range(0, queries.shape[0], chunk):
        inside.append((torch.cdist(queries[start:start + chunk], centres) <= radii[None]).any(dim=1))
    return torch.cat(inside)


def precision_recall(features: torch.Tensor, reference: torch.Tensor, k: int = PR_NEIGHBOURS,
                     chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision = share of generated samples inside the
    reference manifold (the union of each reference sample's ball reaching its k-th nearest reference neighbour),
    recall = share of reference samples inside the generated manifold."""
    fake, real = _features(features, "features"), _features(reference, "reference features")
    if min(fake.shape[0], real.shape[0]) <= k:
        raise NoiseSearchError(f"precision/recall with k = {k} needs more than {k} samples in each set")
    precision = _covered(fake, real, _kth_radii(real, k, chunk), chunk).double().mean()
    recall = _covered(real, fake, _kth_radii(fake, k, chunk), chunk).double().mean()
    return float(precision), float(recall)


def precision_recall_draws(features: torch.Tensor, reference: torch.Tensor, k: int = PR_NEIGHBOURS,
                           chunk: int = 1024, reference_radii: torch.Tensor | None = None
                           ) -> Callable[[torch.Tensor], tuple[float, float]]:
    """precision_recall of `features[index]` for many row indices (a bootstrap's draws) at the cost of one: every
    distance is computed once and held in memory (n·m floats: for sets of a few thousand generated rows), and the
    reference's k-NN radii may be given (`reference_radii`, see knn_radii) to share them between sets. A row drawn
    twice counts twice in precision (a mean over samples) and once in the generated manifold (a second copy adds
    no ball, and is no neighbour), so index = arange(n) gives precision_recall's values."""
    fake, real = _features(features, "features"), _features(reference, "reference features")
    if min(fake.shape[0], real.shape[0]) <= k:
        raise NoiseSearchError(f"precision/recall with k = {k} needs more than {k} samples in each set")
    radii = knn_radii(real, k, chunk) if reference_radii is None else reference_radii.double()
    cross = torch.cat([torch.cdist(fake[s:s + chunk], real) for s in range(0, fake.shape[0], chunk)])
    inside = (cross <= radii[None]).any(dim=1).double()
    own = torch.cdist(fake, fake)

    def draw(index: torch.Tensor) -> tuple[float, float]:
        rows = index.unique()
        if rows.numel() <= k:
            raise NoiseSearchError(f"precision/recall with k = {k} needs more than {k} distinct generated samples")
        own_radii = own[rows][:, rows].kthvalue(k + 1, dim=1).values
        return float(inside[index].mean()), float((cross[rows] <= own_radii[:, None]).any(dim=0).double().mean())

    return draw


def knn_radii(points: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1024) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row, float64: the radii of precision/recall's manifold."""
    return _kth_radii(_features(points, "features"), k, chunk)


def bootstrap(statistic: Callable[[torch.Tensor], float], rows: int, draws: int = 200, seed: int = 0,
              level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(index)` over `draws` resamples (with replacement) of `rows`
    row indices: the caller's statistic indexes its own tensors, so paired quantities resample together."""
    values = bootstrap_draws(statistic, rows, draws, seed)
    tail = (1 - level) / 2
    return float(values.quantile(tail)), float(values.quantile(1 - tail))


def centred_bootstrap(statistic: Callable[[torch.Tensor], float], value: float, rows: int, draws: int = 200,
                      seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A bootstrap interval about `value` (the statistic on all rows) from the resamples' spread about their own
    median: [value − (q_high − median), value + (median − q_low)]. For population metrics a resample repeats rows,
    which FID, KID and recall read as lost diversity, so resampled values sit far from `value` (at 500 MNIST images
    the resamples' FID is about twice the value): percentile and basic (reflected) intervals then exclude the value
    itself. Taking only the spread keeps the interval about the value; for an unbiased statistic (a mean) it is the
    basic bootstrap interval."""
    values = bootstrap_draws(statistic, rows, draws, seed)
    tail = (1 - level) / 2
    low, median, high = (float(values.quantile(q)) for q in (tail, 0.5, 1 - tail))
    return value - (high - median), value + (median - low)


def bootstrap_draws(statistic: Callable[[torch.Tensor], float], rows: int, draws: int, seed: int) -> torch.Tensor:
    """`statistic(index)` over `draws` resamples (with replacement) of `rows` row indices, float64."""
    gen = torch.Generator().manual_seed(seed)
    return torch.tensor([statistic(torch.randint(rows, (rows,), generator=gen)) for _ in range(draws)],
                        dtype=torch.float64)
