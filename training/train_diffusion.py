"""Train the embedded class-conditional EDM model on all 10,000 MNIST images.

Checkpoints every --checkpoint-every steps and resumes from the checkpoint if it exists, so one
run can span sessions. Every step draws its data, sigmas, noise and label dropout from a generator
seeded by (seed, step), so a resumed run is identical to an uninterrupted one. At the end the EMA
weights and a model card are written into the package assets.

    python training/train_diffusion.py --steps 4000
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from mnist_data import DEFAULT_DIR, load_mnist
from safetensors.torch import save_file

from noisesearch.models.unet import NULL_LABEL, EDMPrecond, UNetConfig

ASSETS = Path(__file__).resolve().parents[1] / "src" / "noisesearch" / "models" / "assets"
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator, argparse.Namespace], torch.Tensor]


def base_parser(description: str, steps: int, name: str) -> argparse.ArgumentParser:
    """The arguments every embedded model's training shares (checkpoint and output named after `name`)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DIR)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--ema-halflife-images", type=float, default=20000.0)
    p.add_argument("--ema-rampup", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=Path(f"training/checkpoints/{name}.pt"))
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--out", type=Path, default=ASSETS)
    return p


def parse_args() -> argparse.Namespace:
    p = base_parser(__doc__, 4000, "diffusion")
    p.add_argument("--p-mean", type=float, default=-1.2)
    p.add_argument("--p-std", type=float, default=1.2)
    return p.parse_args()


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay(step: int, args: argparse.Namespace) -> float:
    """EDM's EMA: half-life in images, ramped up with the number of images seen."""
    seen = (step + 1) * args.batch
    halflife = min(args.ema_halflife_images, seen * args.ema_rampup)
    return 0.5 ** (args.batch / max(halflife, 1e-8))


def edm_loss(model: EDMPrecond, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
             args: argparse.Namespace) -> torch.Tensor:
    """EDM training loss with log-normal sigmas and weight (sigma² + sd²) / (sigma·sd)²."""
    b = x0.shape[0]
    sigma = (torch.randn(b, generator=gen) * args.p_std + args.p_mean).exp()
    noise = torch.randn(x0.shape, generator=gen)
    labels = drop_labels(labels, gen, args.label_dropout)
    sd = model.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    denoised = model(x0 + sigma[:, None, None, None] * noise, sigma, labels)
    return (weight[:, None, None, None] * (denoised - x0).square()).mean()


def drop_labels(labels: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Labels with a fraction p replaced by the null label (classifier-free guidance's training)."""
    drop = torch.rand(labels.shape[0], generator=gen) < p
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


def train(args: argparse.Namespace, model: torch.nn.Module, loss_fn: LossFn, name: str, card: dict) -> None:
    """Train `model` with `loss_fn(model, x0, labels, gen, args)`, resuming from and writing args.checkpoint,
    then write its EMA weights as `<name>.safetensors` and update the model card `<name>.json` with `card`,
    the architecture and the training record."""
    torch.set_num_threads(2)
    images, labels, md5s = load_mnist(args.data)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = {"step": 0, "train_seconds": 0.0, "losses": []}
    if args.checkpoint.exists():
        ckpt = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        state = ckpt["state"]
        print(f"resumed at step {state['step']}", flush=True)
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params} parameters, training to step {args.steps}", flush=True)
    t_last = time.time()
    running = 0.0
    while state["step"] < args.steps:
        step = state["step"]
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(0, images.shape[0], (args.batch,), generator=gen)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args)
        loss = loss_fn(model, images[idx], labels[idx], gen, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            beta = ema_decay(step, args)
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - beta)
        running += loss.item()
        state["step"] = step + 1
        if state["step"] % args.checkpoint_every == 0 or state["step"] == args.steps:
            now = time.time()
            state["train_seconds"] += now - t_last
            t_last = now
            state["losses"].append((state["step"], running / args.checkpoint_every))
            running = 0.0
            tmp = args.checkpoint.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "state": state, "args": vars(args) | {"data": str(args.data)}}, tmp)
            tmp.replace(args.checkpoint)
            print(f"step {state['step']}/{args.steps} loss {state['losses'][-1][1]:.4f} "
                  f"{state['train_seconds'] / 60:.1f} min", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, args.out / f"{name}.safetensors")
    card_path = args.out / f"{name}.json"
    old = json.loads(card_path.read_text()) if card_path.exists() else {}
    training = {
        "command": f"python training/train_{name}.py " + " ".join(sys.argv[1:]),
        "steps": state["step"], "batch": args.batch, "lr": args.lr, "label_dropout": args.label_dropout,
        "ema_halflife_images": args.ema_halflife_images, "seed": args.seed,
        "train_minutes_2_cpu_cores": round(state["train_seconds"] / 60, 1),
        "final_loss": state["losses"][-1][1] if state["losses"] else None,
    }
    old.update({
        "name": card["name"],
        "architecture": {"class": card["class"], "parameters": n_params, **model.cfg.to_dict()},
        "training": training | card.get("training", {}),
        "data": {"images": "MNIST t10k, all 10,000", "md5": md5s},
        "weights": "EMA",
    })
    card_path.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {args.out / f'{name}.safetensors'} and {card_path}", flush=True)


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    train(args, EDMPrecond(UNetConfig()), edm_loss, "diffusion",
          {"name": "noisesearch-mnist-edm", "class": "EDMPrecond(UNet)",
           "training": {"p_mean": args.p_mean, "p_std": args.p_std}})


if __name__ == "__main__":
    main()
