"""Train the embedded class-conditional rectified-flow MNIST model on all 10,000 MNIST images.

The same UNet as the EDM model (training/train_diffusion.py; about 1.7 M parameters), predicting the
velocity v = noise − x0 on x_t = (1 − t)·x0 + t·noise with the rectified-flow loss |F(x_t, t, label) − v|²,
times t drawn logit-normal (SD3's: sigmoid of N(t_mean, t_std²)) and labels dropped to the null label at
--label-dropout for classifier-free guidance. Checkpoints, resumption, EMA and the learning-rate schedule
are train_diffusion's, so a resumed run equals an uninterrupted one. The default 2,800 steps of 64 images
cost one UNet forward and backward each, as the EDM model's 3,000 steps that took 56 min on 2 cores: about
52 min. At the end the EMA weights (flow.safetensors) and a model card (flow.json) go into the package
assets, where `--backend embedded_flow` loads them.

    python training/train_flow.py
"""

from __future__ import annotations

import argparse

import torch
from train_diffusion import base_parser, drop_labels, train

from noisesearch.models.unet import FlowPrecond, UNetConfig


def parse_args() -> argparse.Namespace:
    p = base_parser(__doc__, 2800, "flow")
    p.add_argument("--t-mean", type=float, default=0.0, help="mean of logit(t)")
    p.add_argument("--t-std", type=float, default=1.0, help="standard deviation of logit(t)")
    return p.parse_args()


def flow_loss(model: FlowPrecond, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
              args: argparse.Namespace) -> torch.Tensor:
    """The rectified-flow loss: mean |F(x_t, t, label) − (noise − x0)|² at logit-normal times."""
    t = torch.sigmoid(torch.randn(x0.shape[0], generator=gen) * args.t_std + args.t_mean)
    noise = torch.randn(x0.shape, generator=gen)
    labels = drop_labels(labels, gen, args.label_dropout)
    x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
    return (model.velocity(x_t, t, labels) - (noise - x0)).square().mean()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    train(args, FlowPrecond(UNetConfig()), flow_loss, "flow",
          {"name": "noisesearch-mnist-flow", "class": "FlowPrecond(UNet)",
           "training": {"loss": "rectified flow (velocity)", "t_mean": args.t_mean, "t_std": args.t_std}})


if __name__ == "__main__":
    main()
