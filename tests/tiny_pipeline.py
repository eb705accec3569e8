"""A tiny randomly initialised Stable Diffusion pipeline saved to disk, as diffusers' own tests build them."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def tiny_tokenizer(directory: Path):
    """A CLIPTokenizer over single characters (no merges), written to and loaded from `directory`."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for ch in string.ascii_lowercase + string.digits:
        tokens += [ch, ch + "</w>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16,
                         pad_token="<|endoftext|>")


def save_tiny_pipeline(directory: Path, prediction_type: str = "epsilon", sample_size: int = 8) -> Path:
    """Build a tiny StableDiffusionPipeline (latents sample_size², images twice that) with seeded random
    weights and save it under `directory`."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=2 * sample_size)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=80, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tiny_tokenizer(directory / "tok"),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(directory / "pipe")
    return directory / "pipe"


def save_tiny_clip(directory: Path) -> Path:
    """A tiny random CLIPModel with the character tokenizer, saved under `directory`."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": 80, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"image_size": 16, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=8)
    CLIPModel(config).save_pretrained(directory / "clip")
    tiny_tokenizer(directory / "clip-tok").save_pretrained(directory / "clip")
    return directory / "clip"
