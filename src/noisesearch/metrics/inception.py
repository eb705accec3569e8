"""The `inception` extractor: Inception-v3, the FID network, from a local file only.

It takes the detector that NVlabs' EDM and StyleGAN3 compute FID and IS with (`inception-2015-12-05.pkl`, a
TorchScript translation of TensorFlow's 2015 Inception-v3), or a TorchScript `.pt` file with its call
convention (StyleGAN2-ADA's `inception-2015-12-05.pt`): `detector(uint8 images (B, 3, H, W) in [0, 255],
return_features=True) -> (B, 2048)` pool features (the network resizes to 299 x 299 itself), and
`detector(images, no_output_bias=True) -> (B, 1008)` class probabilities without the softmax layer's bias, as
StyleGAN3's inception_score.py uses to match the original IS. Images in [-1, 1] become uint8 as EDM's
generate.py writes them (x · 127.5 + 128, clipped, truncated); grey images are repeated to three channels.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from noisesearch.assets import PICKLE_SUFFIXES, first_line, untrusted
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.features import register_extractor

WEIGHTS = "inception-2015-12-05.pkl (NVlabs' EDM/StyleGAN3) or inception-2015-12-05.pt (StyleGAN2-ADA)"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (B, 1 or 3, H, W) as uint8 RGB, the way EDM writes its samples."""
    rgb = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images
    return (rgb * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def load_detector(path: Path | str, trust_model_code: bool = False) -> torch.nn.Module:
    """The detector module of a TorchScript file (any suffix but .pkl/.pickle), or of a pickle, which runs the code
    it names when loaded and so needs `trust_model_code` (NVlabs' pickle needs their torch_utils importable)."""
    path = Path(path)
    if not path.is_file():
        raise NoiseSearchError(f"Inception-v3 weights {path} not found: give a local {WEIGHTS}")
    pickled = path.suffix.lower() in PICKLE_SUFFIXES
    if pickled and not trust_model_code:
        raise untrusted(path, "is a pickle")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export; the detector is not
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            if pickled:
                with path.open("rb") as f:
                    net = pickle.load(f)
            else:
                net = torch.jit.load(str(path), map_location="cpu")
    except (ModuleNotFoundError, AttributeError) as err:
        raise NoiseSearchError(f"cannot unpickle {path} ({err}): put the code it names on PYTHONPATH (NVlabs' "
                               "torch_utils for their pickle)") from None
    except (OSError, pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
        raise NoiseSearchError(f"cannot read {path} as an Inception-v3 detector ({WEIGHTS}): "
                               f"{first_line(err)}") from None
    if not isinstance(net, torch.nn.Module):
        raise NoiseSearchError(f"{path} holds a {type(net).__name__}, not a detector module ({WEIGHTS})")
    return net.eval()


@register_extractor("inception")
class InceptionFeatures:
    """Inception-v3 pool features (2048-d for the FID network) and its class log-probabilities, from `path`."""

    name = "inception"

    def __init__(self, path: Path | str, trust_model_code: bool = False, device: str = "cpu") -> None:
        self.path, self.device = Path(path), device
        self.net = load_detector(path, trust_model_code).to(device)
        probe = torch.zeros(1, 3, 32, 32, dtype=torch.uint8, device=device)
        try:  # the call convention, checked once when the file loads rather than after a search
            features = self._call(probe, return_features=True)
        except (RuntimeError, TypeError) as err:
            raise NoiseSearchError(f"{path} does not take detector(uint8 images (B, 3, H, W), return_features=True) "
                                   f"as the Inception-v3 FID detector does ({first_line(err)})") from None
        if features.dim() != 2 or features.shape[0] != 1:
            raise NoiseSearchError(f"{path} returns features shaped {tuple(features.shape)} for one image: expected "
                                   "(1, d)")
        self.dim = int(features.shape[1])

    @torch.no_grad()
    def _call(self, images: torch.Tensor, **kwargs: bool) -> torch.Tensor:
        return self.net(images.to(self.device), **kwargs).float().cpu()

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise NoiseSearchError(f"feature extractor 'inception' takes grey or RGB images shaped (B, 1 or 3, H, W), "
                                   f"got {tuple(images.shape)}")
        return to_uint8(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._call(self._check(images), return_features=True)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the 1008 classes (softmax without the output bias): their softmax is the
        probabilities StyleGAN3's IS uses."""
        probs = self._call(self._check(images), no_output_bias=True)
        return probs.double().clamp_min(torch.finfo(torch.float64).tiny).log()
