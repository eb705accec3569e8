"""The embedded class-conditional UNet, its EDM preconditioning (Karras et al. 2022) and its rectified-flow
wrapping."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from noisesearch.flow import flow_inputs, flow_x0

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # index of the "no label" embedding used for unconditional predictions


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the embedded UNet; stored in the model card so weights reload exactly."""

    img_channels: int = 1
    img_size: int = 28
    channels: tuple[int, ...] = (32, 64, 96)
    emb_dim: int = 128
    attention_at_lowest: bool = True
    sigma_data: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


def _groups(channels: int) -> int:
    return min(8, channels // 4)


class ResBlock(nn.Module):
    """Pre-norm residual block with FiLM (scale, shift) conditioning on the embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class SelfAttention(nn.Module):
    """Single-head self-attention over the spatial positions of the lowest resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        out = (v @ attn.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """Raw network F(c_in·x, c_noise, label); labels in 0..9, NULL_LABEL for unconditional."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, emb = cfg.channels, cfg.emb_dim
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(64.0), emb // 2)))
        self.label_emb = nn.Embedding(NUM_CLASSES + 1, emb)
        self.emb_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(cfg.img_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [ch[0]]
        c = ch[0]
        for level, c_out in enumerate(ch):
            self.down.append(ResBlock(c, c_out, emb))
            c = c_out
            skips.append(c)
            if level < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb)
        self.attn = SelfAttention(c) if cfg.attention_at_lowest else nn.Identity()
        self.mid2 = ResBlock(c, c, emb)
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch))):
            blocks = nn.ModuleList()
            for _ in range(2):
                blocks.append(ResBlock(c + skips.pop(), ch[level], emb))
                c = ch[level]
            self.up.append(blocks)
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, cfg.img_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        phase = c_noise[:, None] * self.freqs[None]
        emb = torch.cat([phase.cos(), phase.sin()], dim=1) + self.label_emb(labels)
        emb = self.emb_mlp(emb)
        h = self.stem(x)
        hs = [h]
        for level, block in enumerate(self.down):
            h = block(h, emb)
            hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for level, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if level < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.out(F.silu(self.out_norm(h)))


class EDMPrecond(nn.Module):
    """EDM preconditioning: D(x, sigma, label) = c_skip·x + c_out·F(c_in·x, ln(sigma)/4, label)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sigma_data = cfg.sigma_data
        self.net = UNet(cfg)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log().flatten() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, labels)


class FlowPrecond(nn.Module):
    """A rectified-flow velocity model v = F(x_t, t, label) (t in [0, 1] as the noise embedding) as the x0
    predictor D(x, sigma, label) of the one denoiser convention (noisesearch.flow)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = UNet(cfg)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t.to(x_t.dtype).reshape(-1).expand(x_t.shape[0]), labels)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x_t, t = flow_inputs(x, sigma.reshape(-1).expand(x.shape[0]))
        return flow_x0(x_t, t, self.velocity(x_t, t, labels))
