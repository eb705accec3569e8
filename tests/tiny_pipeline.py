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


def tiny_clip_text(projection: bool = False, hidden: int = 16):
    """A tiny random CLIP text encoder over the character tokenizer's 80 ids (with a projection head: SDXL's
    and SD3's second encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=80, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_t5(d_model: int = 16):
    """A tiny random T5 encoder over the same 80 ids (any length: relative positions)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=80, d_model=d_model, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                                   pad_token_id=1, eos_token_id=1, decoder_start_token_id=0))


def tiny_vae(latent_channels: int, sample_size: int, **kwargs):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=4, sample_size=2 * sample_size, **kwargs)


def in_eval_mode(pipe):
    """The pipeline with its networks in eval mode, as from_pretrained leaves them (a model built in train mode
    may take other attention kernels: last-bit differences)."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def tiny_sdxl_pipeline(directory: Path, sample_size: int = 8):
    """A tiny random StableDiffusionXLPipeline (its default EulerDiscreteScheduler, as SDXL base ships it)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=2, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + 16)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    tokenizer = tiny_tokenizer(directory / "tok")
    return in_eval_mode(StableDiffusionXLPipeline(vae=tiny_vae(4, sample_size), text_encoder=tiny_clip_text(),
                                                  text_encoder_2=tiny_clip_text(projection=True), tokenizer=tokenizer,
                                                  tokenizer_2=tokenizer, unet=unet, scheduler=scheduler))


def tiny_sd3_pipeline(directory: Path, sample_size: int = 8):
    """A tiny random StableDiffusion3Pipeline: CLIP-L, CLIP-G and T5 encoders (the character tokenizer in all
    three slots), SD3's shift of 3."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=sample_size, patch_size=1, in_channels=4, out_channels=4,
                                        num_layers=1, attention_head_dim=8, num_attention_heads=2,
                                        caption_projection_dim=16, joint_attention_dim=16, pooled_projection_dim=32)
    tokenizer = tiny_tokenizer(directory / "tok")
    return in_eval_mode(StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(4, sample_size, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=tiny_clip_text(projection=True), tokenizer=tokenizer,
        text_encoder_2=tiny_clip_text(projection=True), tokenizer_2=tokenizer,
        text_encoder_3=tiny_t5(16), tokenizer_3=tokenizer))


def tiny_flux_pipeline(directory: Path, sample_size: int = 8, guidance_embeds: bool = True):
    """A tiny random FluxPipeline (FLUX.1-dev's scheduler config: resolution-dependent shift; its guidance
    embedding unless guidance_embeds=False, as FLUX.1-schnell). Latents sample_size² (1 channel, packed into
    4 for the transformer)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=16, axes_dims_rope=[2, 2, 4],
                                         guidance_embeds=guidance_embeds)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    tokenizer = tiny_tokenizer(directory / "tok")
    pipe = FluxPipeline(scheduler=scheduler, vae=tiny_vae(1, sample_size, shift_factor=0.0609, scaling_factor=1.5035),
                        text_encoder=tiny_clip_text(), tokenizer=tokenizer, text_encoder_2=tiny_t5(16),
                        tokenizer_2=tokenizer, transformer=transformer)
    pipe.default_sample_size = sample_size  # FluxPipeline fixes 128 (1024 px); the tiny one is small
    return in_eval_mode(pipe)
