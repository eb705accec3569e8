"""Population metrics (FID, KID, Inception Score, precision/recall) over registered feature extractors.

Ma et al. (arXiv 2501.09732) judge search by population metrics against total NFE; a point-wise verifier
can raise every image's score while the set loses its diversity (their Appendix B). Features come from an
extractor registered here; the statistics come from torchmetrics.
"""

from noisesearch.metrics import transformer_features  # noqa: F401  (registers clip and dino)
from noisesearch.metrics.features import FeatureExtractor, extractor_names, get_extractor, register_extractor

__all__ = ["FeatureExtractor", "extractor_names", "get_extractor", "register_extractor"]
