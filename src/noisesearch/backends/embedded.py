"""The embedded MNIST models (EDM diffusion, rectified flow) as D(x, sigma, cond) denoisers with a
classifier-free guidance weight."""

from __future__ import annotations

from pathlib import Path

import torch

from noisesearch.assets import card_path, load_card, load_fitting
from noisesearch.backends.registry import Backend, register_backend
from noisesearch.denoiser import DenoiserBase
from noisesearch.errors import NoiseSearchError
from noisesearch.models.unet import NULL_LABEL, NUM_CLASSES, EDMPrecond, FlowPrecond, UNetConfig


class EmbeddedDenoiser(DenoiserBase):
    """D = D_null + w·(D_label − D_null) on labels 0..9.

    w = 1 (default) is the conditional model and w = 0 the unconditional one, each 1 NFE per image
    per call; any other w is classifier-free guidance, 2 NFE per image per call (both predictions
    go through the network in one batch). dtype bfloat16 runs the network under bfloat16 autocast
    (faster on CPUs with AVX512-BF16 or AMX; x0 predictions differ from float32's by up to ~3e-2) and
    returns float32. compile=True runs the network through torch.compile (inductor; one compilation of ~20 s per call
    shape on 2 CPU cores, up to torch's recompile limit, beyond which calls run eager; x0 predictions
    within ~1e-5 of the eager path's, 1.1-1.5x faster per call at 1-64 rows: benchmarks/network_variants.py).
    """

    label_dim = NUM_CLASSES

    def __init__(self, model: EDMPrecond | FlowPrecond, guidance: float = 1.0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, compile: bool = False) -> None:
        if dtype not in (torch.float32, torch.bfloat16):
            raise NoiseSearchError(f"the embedded model runs in float32 or bfloat16, not {str(dtype)[6:]}")
        self.device = device
        self.dtype = dtype
        self.model = model.eval().requires_grad_(False).to(device)
        self.compiled = compile
        self.network = torch.compile(self.model, dynamic=False) if compile else self.model
        self.guidance = float(guidance)
        cfg = model.cfg
        self.image_shape = (cfg.img_channels, cfg.img_size, cfg.img_size)
        self.nfe_per_call = 1 if self.guidance in (0.0, 1.0) else 2

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x0 predictions on x's device (the network runs on `device`)."""
        return self.predict(x.to(self.device), sigma.to(self.device), cond.to(self.device)).to(x.device)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.guided(x, sigma, cond)
        with torch.autocast(torch.device(self.device).type, dtype=self.dtype):
            return self.guided(x, sigma, cond).float()

    def guided(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.guidance == 1.0:
            return self.network(x, sigma, cond)
        null = torch.full_like(cond, NULL_LABEL)
        if self.guidance == 0.0:
            return self.network(x, sigma, null)
        both = self.network(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null]))
        d_label, d_null = both.chunk(2)
        return d_null + self.guidance * (d_label - d_null)


MODELS = {"diffusion": EDMPrecond, "flow": FlowPrecond}  # asset name: the module its weights load into


def load_model(guidance: float = 1.0, weights_dir: Path | str | None = None, device: str = "cpu",
               kind: str = "diffusion", dtype: torch.dtype = torch.float32, compile: bool = False
               ) -> EmbeddedDenoiser:
    """The embedded class-conditional MNIST model of `kind` ("diffusion": EDM; "flow": rectified flow) from
    its packaged EMA weights (or those in weights_dir) on `device`, in float32 or under bfloat16 autocast,
    eager or through torch.compile."""
    card = load_card(kind, weights_dir)
    model = build_model(kind, card.get("architecture", {}), card_path(kind, weights_dir))
    load_fitting(model, kind, weights_dir, f"the architecture of {card_path(kind, weights_dir)}")
    return EmbeddedDenoiser(model, guidance, device, dtype, compile)


def build_model(kind: str, architecture: object, card: Path) -> EDMPrecond | FlowPrecond:
    """The untrained module of `kind` with a card's architecture (one-line errors naming the card)."""
    if not isinstance(architecture, dict):
        raise NoiseSearchError(f"model card {card}: 'architecture' must be a JSON object, got {architecture!r:.60}")
    try:
        cfg = UNetConfig.from_dict({k: v for k, v in architecture.items() if k in UNetConfig.__dataclass_fields__})
        return MODELS[kind](cfg)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as err:
        text = str(err).strip().splitlines()
        raise NoiseSearchError(f"model card {card}: its architecture {architecture} does not build the UNet "
                               f"({text[0] if text else type(err).__name__})") from None


register_backend(Backend(
    name="embedded", description="the embedded class-conditional MNIST EDM model (labels 0-9; --model: a weights "
                                 "directory to use instead of the packaged one)",
    load=lambda r: load_model(r.guidance, weights_dir=r.model, device=r.device, dtype=r.dtype, compile=r.compile),
    default_guidance=1.0, evaluator="evaluator", features="mnist",
    reference="mnist_t10k", compiles=True))

register_backend(Backend(
    name="embedded_flow", description="the embedded class-conditional MNIST rectified-flow model (labels 0-9; "
                                      "velocity UNet wrapped into sigma space; --model: a weights directory)",
    load=lambda r: load_model(r.guidance, weights_dir=r.model, device=r.device, kind="flow", dtype=r.dtype,
                              compile=r.compile), default_guidance=1.0,
    default_sampler="flow_euler", evaluator="evaluator", features="mnist",
    reference="mnist_t10k", compiles=True))
