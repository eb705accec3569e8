"""A diffusers text-to-image pipeline (Stable Diffusion family) as a D(x, sigma, cond) denoiser.

The wrapping follows k-diffusion's DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser: the model's
training schedule gives sigma_t = sqrt((1 − ᾱ_t) / ᾱ_t); a continuous sigma maps to a fractional
timestep by interpolating log sigma; the UNet sees x / sqrt(sigma² + 1) and its epsilon (or v)
output becomes an x0 prediction. The search space is the (scaled) VAE latent; `decode` turns
latents into images in [-1, 1] for rewards. Conditions are prompt ids into `prompts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from noisesearch.backends.registry import Backend, LoadRequest, register_backend
from noisesearch.denoiser import DenoiserBase
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import Sampler, make_sampler


def load_pipeline(model: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """A diffusers pipeline from a local directory or a hub id already in the local cache (never downloads)."""
    try:
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise NoiseSearchError("the diffusers backend needs `pip install diffusers transformers`") from None
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        pipe = DiffusionPipeline.from_pretrained(str(model), torch_dtype=dtype, local_files_only=True,
                                                 safety_checker=None)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NoiseSearchError(f"cannot load diffusers model '{model}' offline ({first}): "
                               "pass a local pipeline directory") from None
    return pipe.to(device)


class DiffusersDenoiser(DenoiserBase):
    """D(x, sigma, prompt_id) for a text-to-image pipeline with classifier-free guidance.

    guidance_scale w: D = D_uncond + w·(D_prompt − D_uncond); w = 1 uses only the prompt and w = 0
    only the empty prompt (1 NFE per image per call); any other w costs 2 NFE per image per call.
    """

    latent = True

    def __init__(self, pipe, prompts: Sequence[str], guidance_scale: float = 7.5) -> None:
        if not prompts:
            raise NoiseSearchError("give at least one prompt")
        self.pipe = pipe
        self.unet, self.vae = pipe.unet, pipe.vae
        self.prompts = list(prompts)
        self.guidance = float(guidance_scale)
        self.nfe_per_call = 1 if self.guidance in (0.0, 1.0) else 2
        self.device, self.dtype = self.unet.device, self.unet.dtype
        alphas = pipe.scheduler.alphas_cumprod.to(torch.float64)
        self.train_sigmas = ((1 - alphas) / alphas).sqrt()
        self.log_sigmas = self.train_sigmas.log()
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise NoiseSearchError(f"unsupported prediction_type '{self.prediction_type}'")
        self.scaling = float(self.vae.config.scaling_factor)
        size = self.unet.config.sample_size
        self.image_shape = (self.unet.config.in_channels, size, size)
        self.embeddings = self.encode(self.prompts)
        self.null_embedding = self.encode([""])[0]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer(texts, padding="max_length", max_length=self.pipe.tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt")
        return self.pipe.text_encoder(tok.input_ids.to(self.device))[0]

    def default_sampler(self, name: str = "heun", steps: int = 18) -> Sampler:
        """The registered sampler with Karras sigmas spanning the model's training range."""
        return make_sampler(name, steps, sigma_min=float(self.train_sigmas[0]), sigma_max=float(self.train_sigmas[-1]))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional training timestep of each sigma, interpolating log sigma (k-diffusion's DiscreteSchedule)."""
        log_sigma = sigma.to(torch.float64).log()
        dists = log_sigma - self.log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=len(self.log_sigmas) - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)

    @torch.no_grad()
    def _predict(self, x: torch.Tensor, sigma: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        s = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_in = 1 / (s**2 + 1).sqrt()
        t = self.sigma_to_t(sigma).to(torch.float32)
        model_in = (x * c_in).to(self.device, self.dtype)
        out = self.unet(model_in, t.to(self.device), encoder_hidden_states=emb).sample.float().to(x.device)
        if self.prediction_type == "epsilon":
            return x - s * out
        return x / (s**2 + 1) - s / (s**2 + 1).sqrt() * out

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings[cond.long().to(self.embeddings.device)]
        null = self.null_embedding.expand_as(emb)
        if self.guidance == 1.0:
            return self._predict(x, sigma, emb)
        if self.guidance == 0.0:
            return self._predict(x, sigma, null)
        both = self._predict(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([emb, null]))
        d_prompt, d_null = both.chunk(2)
        return d_null + self.guidance * (d_prompt - d_null)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from (scaled) latents through the VAE."""
        images = self.vae.decode((latents / self.scaling).to(self.device, self.dtype)).sample
        return images.float().to(latents.device).clamp(-1, 1)


def load_denoiser(model: str | Path, prompts: Sequence[str], guidance_scale: float = 7.5,
                  dtype: torch.dtype = torch.float32, device: str = "cpu") -> DiffusersDenoiser:
    """The denoiser of a local pipeline for these prompts."""
    return DiffusersDenoiser(load_pipeline(model, dtype, device), prompts, guidance_scale)


def load_from_request(request: LoadRequest) -> DiffusersDenoiser:
    return load_denoiser(request.model, request.prompts or (), request.guidance, request.dtype, request.device)


register_backend(Backend(
    name="diffusers", description="a diffusers text-to-image pipeline of the Stable Diffusion family (epsilon or "
                                  "v-prediction UNet; prompts; VAE latents)",
    load=load_from_request, conditions="prompts", default_guidance=7.5, needs_model=True,
    model_help="a local pipeline directory"))
