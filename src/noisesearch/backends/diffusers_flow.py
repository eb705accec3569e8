"""Diffusers' rectified-flow pipelines (SD3/SD3.5, FLUX.1) as D(x, sigma, cond) denoisers (noisesearch.flow).

The transformer predicts a velocity on x_t = (1 − t)·x0 + t·noise; the state x is x_t / (1 − t) at
sigma = t / (1 − t), so x0 = x_t − t·v. The named samplers with a flow schedule (flow_euler) take the
pipeline scheduler's shift (SD3: its config's; FLUX: e^mu of the image's sequence length, as FluxPipeline
computes it) and last time (SD3: the scheduler's sigma_min; FLUX: 1/steps), so that without injected noise
they follow FlowMatchEulerDiscreteScheduler's times (the first at t_max rather than 1).
"""

from __future__ import annotations

import math

import torch

from noisesearch.backends.diffusers_backend import Conditioning, DiffusersDenoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.flow import flow_inputs, flow_x0
from noisesearch.sampling import Sampler, make_sampler

UNSUPPORTED = ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas")


def calculate_shift(seq_len: int, config) -> float:
    """The pipelines' mu of an image of `seq_len` latent tokens (linear in seq_len between the config's ends)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (top - base) / (max_len - base_len)
    return seq_len * m + base - m * base_len


class FlowDenoiser(DiffusersDenoiser):
    """Shared by SD3 and FLUX: the transformer, the flow scheduler's settings, the flow sampler fitting."""

    def network(self, pipe) -> torch.nn.Module:
        return pipe.transformer

    def setup(self) -> None:
        config = self.pipe.scheduler.config
        bad = [k for k in UNSUPPORTED if config.get(k)]
        if bad or config.get("time_shift_type", "exponential") != "exponential":
            raise NoiseSearchError(f"unsupported flow scheduler settings {', '.join(bad) or 'time_shift_type'}: "
                                   "noisesearch follows FlowMatchEulerDiscreteScheduler's shifted linear times")
        self.image_shape = self.latent_shape()

    def latent_shape(self) -> tuple[int, int, int]:
        size = self.pipe.default_sample_size
        return (self.net.config.in_channels, size, size)

    def seq_len(self) -> int:
        patch = self.net.config.get("patch_size", 1)
        return (self.image_shape[1] // patch) * (self.image_shape[2] // patch)

    def flow_settings(self, steps: int) -> dict[str, float]:
        """The flow schedule's shift and t_min as the pipeline's scheduler makes them for `steps` steps."""
        config = self.pipe.scheduler.config
        shift = math.exp(calculate_shift(self.seq_len(), config)) if config.get("use_dynamic_shifting") else \
            float(config.get("shift", 1.0))
        return {"shift": shift, "t_min": float(self.pipe.scheduler.sigma_min)}

    def default_sampler(self, name: str = "flow_euler", steps: int = 28) -> Sampler:
        """The registered sampler; a flow schedule takes the pipeline's shift and last time, a Karras one EDM's
        sigmas."""
        sampler = make_sampler(name, steps)
        if sampler.schedule.kind != "flow":
            return sampler
        return make_sampler(name, steps, **self.flow_settings(steps))

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        x_t, t = flow_inputs(x, sigma.to(torch.float32))
        v = self.velocity(x_t.to(self.device, self.dtype), t.to(self.device), cond)
        return flow_x0(x_t, t, v.float().to(x.device))


class SD3Denoiser(FlowDenoiser):
    """D(x, sigma, prompt_id) for an SD3/SD3.5 pipeline: CLIP-L, CLIP-G and T5 embeddings and the pooled CLIP
    embeddings of its `encode_prompt`, classifier-free guidance against its negative ("") as for SD."""

    family = "sd3"

    def encode(self, texts: list[str]) -> tuple[Conditioning, Conditioning]:
        emb, neg, pooled, neg_pooled = self.pipe.encode_prompt(texts, None, None, device=self.device,
                                                               do_classifier_free_guidance=True)
        return ({"encoder_hidden_states": emb, "pooled_projections": pooled},
                {"encoder_hidden_states": neg[:1], "pooled_projections": neg_pooled[:1]})

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.net(hidden_states=x_t, timestep=t * 1000, encoder_hidden_states=cond["encoder_hidden_states"],
                        pooled_projections=cond["pooled_projections"], return_dict=False)[0]


class FluxDenoiser(FlowDenoiser):
    """D(x, sigma, prompt_id) for a FLUX.1 pipeline: T5 embeddings and the pooled CLIP embedding of its
    `encode_prompt`; states are unpacked latents (channels, H, W), packed into 2×2 patches for the
    transformer as FluxPipeline packs them.

    FLUX.1-dev's guidance is distilled into a guidance embedding: guidance_scale is that embedding's value
    (as FluxPipeline's guidance_scale), 1 NFE per call at any value. A model without it (FLUX.1-schnell)
    takes classifier-free guidance against the empty prompt as for SD (w = 1: none)."""

    family = "flux"

    def setup(self) -> None:
        super().setup()
        self.embedded_guidance = bool(self.net.config.get("guidance_embeds", False))
        if self.embedded_guidance:
            self.nfe_per_call = 1
        _, h, w = self.image_shape
        self.img_ids = self.pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device, self.dtype)

    def latent_shape(self) -> tuple[int, int, int]:
        size = 2 * (self.pipe.default_sample_size // 2)
        return (self.net.config.in_channels // 4, size, size)

    def seq_len(self) -> int:
        return (self.image_shape[1] // 2) * (self.image_shape[2] // 2)

    def flow_settings(self, steps: int) -> dict[str, float]:
        return super().flow_settings(steps) | {"t_min": 1 / steps}

    def encode(self, texts: list[str]) -> tuple[Conditioning, Conditioning]:
        emb, pooled, text_ids = self.pipe.encode_prompt(texts, None, device=self.device)
        self.txt_ids = text_ids
        null_emb, null_pooled, _ = self.pipe.encode_prompt([""], None, device=self.device)
        return ({"encoder_hidden_states": emb, "pooled_projections": pooled},
                {"encoder_hidden_states": null_emb, "pooled_projections": null_pooled})

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if not self.embedded_guidance:
            return super().__call__(x, sigma, cond)
        rows = cond.long().to(self.device)
        return self.predict(x, sigma, {k: v[rows] for k, v in self.conditioning.items()})

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        b, c, h, w = x_t.shape
        packed = self.pipe._pack_latents(x_t, b, c, h, w)
        guidance = torch.full((b,), self.guidance, device=self.device, dtype=torch.float32) \
            if self.embedded_guidance else None
        out = self.net(hidden_states=packed, timestep=t, guidance=guidance, txt_ids=self.txt_ids, img_ids=self.img_ids,
                       pooled_projections=cond["pooled_projections"],
                       encoder_hidden_states=cond["encoder_hidden_states"], return_dict=False)[0]
        return self.pipe._unpack_latents(out, h * self.vae_scale, w * self.vae_scale, self.vae_scale)
