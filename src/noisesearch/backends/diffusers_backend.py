"""Diffusers text-to-image pipelines as D(x, sigma, cond) denoisers: the base for every family and the UNet
families, Stable Diffusion 1.x/2.x and SDXL (SD3/SD3.5 and FLUX.1 in noisesearch.backends.diffusers_flow; the
family table, the factory and the backends' registration in noisesearch.backends.diffusers_families).

A UNet's wrapping follows k-diffusion's DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser: the model's
training schedule gives sigma_t = sqrt((1 − ᾱ_t) / ᾱ_t); a continuous sigma maps to a fractional
timestep by interpolating log sigma; the UNet sees x / sqrt(sigma² + 1) and its epsilon (or v)
output becomes an x0 prediction. The search space is the (scaled) VAE latent; `decode` turns
latents into images in [-1, 1] for rewards. Conditions are prompt ids into `prompts`; each prompt's
conditioning (embeddings, pooled embeddings, SDXL's time ids) is encoded once by the pipeline's own
`encode_prompt` (or its text encoder), and the unconditional branch uses the pipeline's negative ("").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from noisesearch.denoiser import DenoiserBase
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import Sampler, make_sampler

Conditioning = dict[str, torch.Tensor]  # network keyword -> one row per prompt


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
        index = DiffusionPipeline.load_config(str(model), local_files_only=True)
        extra = {"safety_checker": None} if "safety_checker" in index else {}  # SD 1.x/2.x: never run it
        pipe = DiffusionPipeline.from_pretrained(str(model), torch_dtype=dtype, local_files_only=True, **extra)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NoiseSearchError(f"cannot load diffusers model '{model}' offline ({first}): "
                               "pass a local pipeline directory") from None
    return pipe.to(device)


class DiffusersDenoiser(DenoiserBase):
    """D(x, sigma, prompt_id) for a Stable Diffusion 1.x/2.x pipeline with classifier-free guidance.

    guidance_scale w: D = D_uncond + w·(D_prompt − D_uncond); w = 1 uses only the prompt and w = 0
    only the empty prompt (1 NFE per image per call); any other w costs 2 NFE per image per call.
    Subclasses (other families) override `network`, `encode`, `predict` and the sampler fitting.
    """

    latent = True
    family = "sd"

    def __init__(self, pipe, prompts: Sequence[str], guidance_scale: float = 7.5) -> None:
        if not prompts:
            raise NoiseSearchError("give at least one prompt")
        self.pipe = pipe
        self.net, self.vae = self.network(pipe), pipe.vae
        self.prompts = list(prompts)
        self.guidance = float(guidance_scale)
        self.nfe_per_call = 1 if self.guidance in (0.0, 1.0) else 2
        self.device, self.dtype = self.net.device, self.net.dtype
        self.scaling = float(self.vae.config.scaling_factor)
        self.shift_factor = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.setup()
        with torch.no_grad():
            self.conditioning, self.null = self.encode(self.prompts)

    def network(self, pipe) -> torch.nn.Module:
        return pipe.unet

    def setup(self) -> None:
        """The UNet's training sigmas, prediction type and latent shape."""
        alphas = self.pipe.scheduler.alphas_cumprod.to(torch.float64)
        self.train_sigmas = ((1 - alphas) / alphas).sqrt()
        self.log_sigmas = self.train_sigmas.log()
        self.prediction_type = self.pipe.scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise NoiseSearchError(f"unsupported prediction_type '{self.prediction_type}'")
        size = self.net.config.sample_size
        self.image_shape = (self.net.config.in_channels, size, size)

    def encode(self, texts: list[str]) -> tuple[Conditioning, Conditioning]:
        """Each prompt's conditioning and the unconditional one (one row)."""
        return {"encoder_hidden_states": self.encode_text(texts)}, {"encoder_hidden_states": self.encode_text([""])}

    def encode_text(self, texts: list[str]) -> torch.Tensor:
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

    def unet_kwargs(self, cond: Conditioning) -> dict:
        return {"encoder_hidden_states": cond["encoder_hidden_states"]}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        s = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_in = 1 / (s**2 + 1).sqrt()
        t = self.sigma_to_t(sigma).to(torch.float32)
        model_in = (x * c_in).to(self.device, self.dtype)
        out = self.net(model_in, t.to(self.device), **self.unet_kwargs(cond)).sample.float().to(x.device)
        if self.prediction_type == "epsilon":
            return x - s * out
        return x / (s**2 + 1) - s / (s**2 + 1).sqrt() * out

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        rows = cond.long().to(self.device)
        prompt = {k: v[rows] for k, v in self.conditioning.items()}
        if self.guidance == 1.0:
            return self.predict(x, sigma, prompt)
        null = {k: v.expand(len(rows), *v.shape[1:]) for k, v in self.null.items()}
        if self.guidance == 0.0:
            return self.predict(x, sigma, null)
        both = self.predict(torch.cat([x, x]), torch.cat([sigma, sigma]),
                            {k: torch.cat([prompt[k], null[k]]) for k in prompt})
        d_prompt, d_null = both.chunk(2)
        return d_null + self.guidance * (d_prompt - d_null)

    def unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's latents (unscaled) of states."""
        return latents / self.scaling + self.shift_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from (scaled) latents through the VAE."""
        images = self.vae.decode(self.unpack(latents).to(self.device, self.dtype)).sample
        return images.float().to(latents.device).clamp(-1, 1)


class SDXLDenoiser(DiffusersDenoiser):
    """D(x, sigma, prompt_id) for an SDXL pipeline: both text encoders' embeddings, the pooled embedding and
    the time ids (original size, crop (0, 0), target size: the default resolution) of the pipeline's
    `encode_prompt` and `_get_add_time_ids`; the unconditional branch is its negative (zeros where its
    config forces them for an empty prompt)."""

    family = "sdxl"

    def encode(self, texts: list[str]) -> tuple[Conditioning, Conditioning]:
        emb, neg, pooled, neg_pooled = self.pipe.encode_prompt(texts, device=self.device,
                                                               do_classifier_free_guidance=True)
        size = (self.image_shape[1] * self.vae_scale, self.image_shape[2] * self.vae_scale)
        time_ids = self.pipe._get_add_time_ids(size, (0, 0), size, dtype=emb.dtype,
                                               text_encoder_projection_dim=int(pooled.shape[-1])).to(self.device)
        return ({"encoder_hidden_states": emb, "text_embeds": pooled, "time_ids": time_ids.expand(len(texts), -1)},
                {"encoder_hidden_states": neg[:1], "text_embeds": neg_pooled[:1], "time_ids": time_ids})

    def unet_kwargs(self, cond: Conditioning) -> dict:
        return {"encoder_hidden_states": cond["encoder_hidden_states"],
                "added_cond_kwargs": {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}}
