"""The diffusers families in one table: each family's denoiser class and backend name, the factory that picks
them for a loaded pipeline, and the registration of one backend per family.

It sits above diffusers_backend (the base denoiser, SD and SDXL) and diffusers_flow (SD3, FLUX), so that
neither of those imports the other upward.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from noisesearch.backends.diffusers_backend import DiffusersDenoiser, SDXLDenoiser, load_pipeline
from noisesearch.backends.diffusers_flow import FluxDenoiser, SD3Denoiser
from noisesearch.backends.registry import Backend, LoadRequest, get_backend, register_backend
from noisesearch.errors import NoiseSearchError

FAMILY_BACKENDS = {"sd": "diffusers", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}  # family: its backend's name
FAMILY_DENOISERS: dict[str, type[DiffusersDenoiser]] = {
    "sd": DiffusersDenoiser, "sdxl": SDXLDenoiser, "sd3": SD3Denoiser, "flux": FluxDenoiser}


def pipeline_family(pipe) -> str:
    """'flux', 'sd3', 'sdxl' or 'sd' from a pipeline's class and components; a one-line error for others."""
    name = type(pipe).__name__
    if hasattr(pipe, "transformer"):
        if name.startswith("Flux"):
            return "flux"
        if name.startswith("StableDiffusion3"):
            return "sd3"
    elif hasattr(pipe, "unet"):
        return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None or "XL" in name else "sd"
    raise NoiseSearchError(f"unsupported diffusers pipeline {name}: noisesearch takes Stable Diffusion 1.x/2.x, "
                           "SDXL, SD3/SD3.5 and FLUX.1 text-to-image pipelines")


def make_denoiser(pipe, prompts: Sequence[str], guidance_scale: float | None = None) -> DiffusersDenoiser:
    """The denoiser of a loaded pipeline of any supported family (guidance None: the family's default)."""
    family = pipeline_family(pipe)
    guidance = get_backend(FAMILY_BACKENDS[family]).guidance_or_default(guidance_scale)
    return FAMILY_DENOISERS[family](pipe, prompts, guidance)


def load_denoiser(model: str | Path, prompts: Sequence[str], guidance_scale: float | None = None,
                  dtype: torch.dtype = torch.float32, device: str = "cpu", family: str | None = None
                  ) -> DiffusersDenoiser:
    """The denoiser of a local pipeline for these prompts; with `family`, a pipeline of another family is a
    one-line error naming the backend to use."""
    pipe = load_pipeline(model, dtype, device)
    found = pipeline_family(pipe)
    if family is not None and found != family:
        raise NoiseSearchError(f"'{model}' is a {found.upper()} pipeline ({type(pipe).__name__}): use --backend "
                               f"{FAMILY_BACKENDS[found]}")
    return make_denoiser(pipe, prompts, guidance_scale)


def family_loader(family: str):
    def load(request: LoadRequest) -> DiffusersDenoiser:
        return load_denoiser(request.model, request.prompts or (), request.guidance, request.dtype, request.device,
                             family)
    load.__qualname__ = f"load_{family}"
    return load


MODEL_HELP = "a local pipeline directory or a hub id in the local cache"
for _family, _backend, _description, _guidance, _sampler in (
        ("sd", "diffusers", "a diffusers Stable Diffusion 1.x/2.x pipeline (epsilon or v-prediction UNet; prompts; "
                            "VAE latents)", 7.5, "heun"),
        ("sdxl", "sdxl", "a diffusers SDXL pipeline (two text encoders, pooled embeddings and time ids; prompts; "
                         "VAE latents)", 5.0, "heun"),
        ("sd3", "sd3", "a diffusers SD3/SD3.5 pipeline (rectified-flow transformer, CLIP + T5 text encoders, "
                       "pooled embeddings, the scheduler's shift; prompts; VAE latents)", 7.0, "flow_euler"),
        ("flux", "flux", "a diffusers FLUX.1 pipeline (rectified-flow transformer, CLIP + T5; --guidance is FLUX.1-"
                         "dev's embedded guidance, 1 NFE per call; resolution-dependent shift; packed latents)",
         3.5, "flow_euler")):
    register_backend(Backend(name=_backend, description=_description, load=family_loader(_family),
                             conditions="prompts", default_guidance=_guidance, default_sampler=_sampler,
                             needs_model=True, model_help=MODEL_HELP))
