"""Stable Diffusion 1.5: the one base pipeline that every SD-1.5 tab derives from.

Tabs never load their own copy: ControlNet, T2I-Adapter, layout guidance and the like build
their pipelines from this handle with `DiffusionPipeline.from_pipe(base, ..., dtype=...)`,
which shares the UNet, VAE and text encoder by reference.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec

SD15 = "sd15"
# SD-1.5's scheduler settings (scheduler/scheduler_config.json of the published repo). PNDM has no
# `clip_sample`, but the file has it (false), and a DDIM made `from_config` of the base reads it.
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1,
                      set_alpha_to_one=False, clip_sample=False)
TINY_IMAGE_SIDE = 128  # tiny UNet sample_size 16 x VAE factor 8


def without_safety_checker(context: LoadContext) -> dict[str, Any]:
    """`from_pretrained` arguments that leave the published safety checker out, unless it is switched on
    (then its files are among the context's and each tab reports what it blanked out)."""
    return {} if context.safety_checker else dict(safety_checker=None, requires_safety_checker=False)


def load_sd_family_pipeline(pipeline_class: Any, context: LoadContext) -> Any:
    """A full SD-family checkpoint on the context's device, from the files the context chose (`fp16` files
    on a GPU where the repository publishes them; pickles where it has no safetensors)."""
    from .safety import watch

    pipe = pipeline_class.from_pretrained(context.source, **context.weights(), **without_safety_checker(context))
    pipe.set_progress_bar_config(disable=True)
    if pipe.safety_checker is not None:
        watch(pipe.safety_checker)
    return pipe.to(context.device)


def load_sd15(context: LoadContext) -> Any:
    from diffusers import StableDiffusionPipeline

    return load_sd_family_pipeline(StableDiffusionPipeline, context)


def tiny_unet_config(in_channels: int = 4, cross_attention_dim: int = 32) -> dict:
    """SD-1.5's UNet block structure (3 cross-attention down blocks, mid, 3 cross-attention up
    blocks, VAE factor 8) at toy width, so processor names like `up_blocks.1.attentions.0...`
    exist as in the real model."""
    return dict(
        sample_size=TINY_IMAGE_SIDE // 8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 16, 32, 32), norm_num_groups=8, attention_head_dim=2,
        cross_attention_dim=cross_attention_dim,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


def tiny_sd_components(unet_in_channels: int = 4) -> dict:
    """Tiny random UNet, VAE, CLIP text encoder, tokenizer and scheduler in SD-1.5's classes."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .clip import image_processor, tiny_text_config, tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=8, sample_size=TINY_IMAGE_SIDE,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    return dict(
        unet=UNet2DConditionModel(**tiny_unet_config(unet_in_channels)),
        vae=vae,
        text_encoder=CLIPTextModel(CLIPTextConfig(**tiny_text_config(tokenizer))),
        tokenizer=tokenizer,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        feature_extractor=image_processor(),
    )


# The UNet of the shared base is one object behind every SD-1.5 tab: one run at a time may swap its
# attention processors.
_PROCESSOR_SWAP = threading.Lock()


@contextmanager
def attention_held(unet: Any) -> Iterator[None]:
    """Hold the (shared) UNet's attention processors for one run, which may change them: another run that
    would change them waits, and the previous ones are always put back."""
    with _PROCESSOR_SWAP:
        previous = dict(unet.attn_processors)
        try:
            yield
        finally:
            unet.set_attn_processor(previous)


@contextmanager
def swapped_attention(unet: Any, processors: Any) -> Iterator[None]:
    """Run with other attention processors on the (shared) UNet, and always put the previous ones back.
    `processors` is one processor for every layer, or a dict of some layers' names to theirs."""
    with attention_held(unet):
        previous = dict(unet.attn_processors)
        unet.set_attn_processor({**previous, **processors} if isinstance(processors, dict) else processors)
        yield


def tiny_safety_checker() -> Any:
    """SD's `StableDiffusionSafetyChecker` (a CLIP vision tower and 17 + 3 concept embeddings) at toy width.
    Its thresholds start at 1, above any cosine, so it flags nothing until a test lowers them."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    from .clip import IMAGE_SIZE

    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2),
                        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=32),
                        projection_dim=8)
    return StableDiffusionSafetyChecker(config)


def save_tiny_pipeline(pipeline_class: Any, components: dict, folder: Path, safety_checker: bool = True) -> None:
    """Write an SD-family pipeline of tiny components in the library's layout, with a tiny safety checker
    where the published repository has one (the tiny cache then keeps the published files only)."""
    checker = tiny_safety_checker() if safety_checker else None
    pipeline_class(**components, safety_checker=checker, requires_safety_checker=False).save_pretrained(
        folder, safe_serialization=True)


def build_tiny_sd15(folder: Path) -> None:
    from diffusers import StableDiffusionPipeline

    save_tiny_pipeline(StableDiffusionPipeline, tiny_sd_components(), folder)


SPECS = [
    ModelSpec(
        name=SD15,
        checkpoint="stable-diffusion-v1-5/stable-diffusion-v1-5",
        loader=load_sd15,
        tiny_builder=build_tiny_sd15,
        files=pipeline_files(),
        description="Stable Diffusion 1.5: UNet 860M, VAE, CLIP text encoder (safety checker 304M when on); "
                    "shared base",
    ),
]
