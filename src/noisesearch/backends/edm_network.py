"""A user's EDM-style network (NVlabs/edm's EDMPrecond and kin) as a D(x, sigma, cond) denoiser.

Such networks already compute D(x; sigma) with EDM preconditioning inside and take class labels
one-hot: `net(x, sigma, class_labels)`, with attributes img_channels, img_resolution, label_dim
and sigma_min / sigma_max. Conditions are class indices.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch.nn import functional as F

from noisesearch.assets import PICKLE_SUFFIXES, first_line, untrusted
from noisesearch.backends.registry import Backend, register_backend
from noisesearch.denoiser import DenoiserBase
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import Sampler, make_sampler


class EDMNetworkDenoiser(DenoiserBase):
    """D(x, sigma, label) of an EDM-style network; classifier-free guidance is not part of EDM's nets."""

    def __init__(self, net: torch.nn.Module, device: str = "cpu") -> None:
        for attr in ("img_channels", "img_resolution", "label_dim"):
            if not hasattr(net, attr):
                raise NoiseSearchError(f"the EDM network has no attribute '{attr}': is it an EDMPrecond-style net?")
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = device
        self.image_shape = (net.img_channels, net.img_resolution, net.img_resolution)
        self.label_dim = int(net.label_dim)

    def default_sampler(self, name: str = "heun", steps: int = 18) -> Sampler:
        """The registered sampler with EDM's reference sigmas, clipped to the network's sigma range where it
        declares one."""
        lo = max(0.002, float(getattr(self.net, "sigma_min", 0.002)))
        hi = min(80.0, float(getattr(self.net, "sigma_max", 80.0)))
        return make_sampler(name, steps, sigma_min=lo, sigma_max=hi)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        labels = None
        if self.label_dim:
            labels = F.one_hot(cond.long(), self.label_dim).float().to(self.device)
        out = self.net(x.to(self.device), sigma.to(self.device), labels)
        return out.float().to(x.device)


def load_edm_network(path: str | Path, device: str = "cpu", trust_model_code: bool = False) -> EDMNetworkDenoiser:
    """An EDM network from a pickle (NVlabs' network-snapshot-*.pkl, its 'ema' entry; their code must be
    importable) or a torch file holding the module (or a dict with 'ema' or 'net').

    Unpickling runs whatever code the file names, so files that need it load only with
    `trust_model_code=True` (the CLI's --trust-model-code), as transformers' `trust_remote_code`: a pickle
    always (refused before it is opened), a torch file when `torch.load(weights_only=True)` cannot read it
    (its module classes are not allowlisted with torch.serialization.add_safe_globals)."""
    path = Path(path)
    if not path.is_file():
        raise NoiseSearchError(f"EDM network file {path} not found")
    obj = read_network_file(path, trust_model_code)
    net = obj.get("ema", obj.get("net")) if isinstance(obj, dict) else obj
    if not isinstance(net, torch.nn.Module):
        raise NoiseSearchError(f"{path} holds no network module (expected a module or a dict with 'ema'): "
                               "a state dict alone does not say the architecture")
    return EDMNetworkDenoiser(net, device)


def read_network_file(path: Path, trust_model_code: bool) -> object:
    """The unpickled contents of a network file; code-carrying files only with `trust_model_code`."""
    try:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            if not trust_model_code:
                raise untrusted(path, "is a pickle")
            with path.open("rb") as f:
                return pickle.load(f)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # names a class or function torch does not allowlist, or worse
            needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            why = (f"needs code to load ({needed.group(1)})" if needed else
                   "is not a file that torch.load(weights_only=True) can read"
                   + (f" ({detail.group(1).strip()})" if detail else ""))
        except RuntimeError as err:
            if "TorchScript" not in str(err):
                raise
            why = "is a TorchScript archive"
        if not trust_model_code:
            raise untrusted(path, why)
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as err:
        raise NoiseSearchError(f"cannot unpickle {path} ({err}): put the network's code on PYTHONPATH") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError) as err:
        raise NoiseSearchError(f"cannot read {path} as a network file ({first_line(err)})") from None


register_backend(Backend(
    name="edm", description="a user's EDM-style network (NVlabs/edm's EDMPrecond and kin; class labels)",
    load=lambda r: load_edm_network(r.model, r.device, r.trust_model_code), default_guidance=None, needs_model=True,
    model_help="a network pickle or torch file; one that runs code when loaded needs --trust-model-code"))
