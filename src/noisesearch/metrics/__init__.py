"""Population metrics (FID, KID, Inception Score, precision/recall) over registered feature extractors.

Ma et al. (arXiv 2501.09732) judge search by population metrics against total NFE; a point-wise verifier
can raise every image's score while the set loses its diversity (their Appendix B). Features come from an
extractor registered here (`mnist`, `inception`); the statistics come from torchmetrics.
"""

from noisesearch.metrics import inception, transformer_features  # noqa: F401  (register inception, clip, dino)
from noisesearch.metrics.features import FeatureExtractor, extractor_names, get_extractor, register_extractor
from noisesearch.metrics.population import METRICS, parse_metrics, plan_metrics, population_metrics

__all__ = ["METRICS", "FeatureExtractor", "extractor_names", "get_extractor", "parse_metrics", "plan_metrics",
           "population_metrics", "register_extractor"]
