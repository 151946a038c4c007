"""Pixel-space DDPM face prior (Ho et al. 2020, `google/ddpm-celebahq-256`): the unconditional
face model the DiffFace-style swap samples from. A `DDPMPipeline` holds the UNet2DModel and the
DDPMScheduler; the swap sampler drives them step by step itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec

# google/ddpm-celebahq-256's unet/config.json (114M parameters) and scheduler_config.json.
CELEBAHQ_UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512), norm_num_groups=32, norm_eps=1e-6,
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, act_fn="silu",
)
CELEBAHQ_SCHEDULER = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")
TINY_IMAGE_SIDE = 32


def load_ddpm(context: LoadContext) -> Any:
    """The published repository is flat (model_index.json, the UNet's config.json and pickled
    `diffusion_pytorch_model.bin`, scheduler_config.json at its root); diffusers reads the pickle with
    `torch.load(weights_only=True)`."""
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(context.source, **context.weights())
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval().requires_grad_(False)
    return pipe.to(context.device)


def tiny_unet_config() -> dict:
    """The CelebA-HQ UNet's block types (an attention level, same schedule) at toy width and 32 px."""
    return {**CELEBAHQ_UNET, "sample_size": TINY_IMAGE_SIDE, "layers_per_block": 1,
            "block_out_channels": (16, 16, 32, 32), "norm_num_groups": 8,
            "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")}


def build_tiny_ddpm(folder: Path) -> None:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_config())
    # A near-zero output layer (ADM zero-initialises it): the random noise prediction stays small, so
    # the tiny sampler is a stable, almost-identity denoiser instead of amplifying every change chaotically.
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.05)
        unet.conv_out.bias.zero_()
    save_flat_pipeline(DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**CELEBAHQ_SCHEDULER)), folder)


def save_flat_pipeline(pipe: Any, folder: Path) -> None:
    """A one-model pipeline in the flat layout of Google's 2022 DDPM repositories: the model's config and
    weights, the scheduler's config and model_index.json, all at the root."""
    pipe.unet.save_pretrained(folder, safe_serialization=True)
    pipe.scheduler.save_pretrained(folder)
    pipe.save_config(folder)


SPECS = [
    ModelSpec(
        name="ddpm-celebahq-256",
        checkpoint="google/ddpm-celebahq-256",
        loader=load_ddpm,
        tiny_builder=build_tiny_ddpm,
        files=pipeline_files(),
        description="DDPM face prior, pixel space 256x256 (UNet2DModel 114M) + DDPMScheduler",
    ),
]
