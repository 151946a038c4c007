"""GLIGEN (Li et al., CVPR 2023): Stable Diffusion 1.4 with trained gated self-attention layers that
read grounding tokens (phrase embedding + box). Its own full checkpoint, not derived from SD-1.5: the
UNet differs (fuser layers and the box/phrase position net)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec
from .stable_diffusion import load_sd_family_pipeline, save_tiny_pipeline, tiny_sd_components, tiny_unet_config

GLIGEN = "gligen-text-box"
GLIGEN_INPAINTING = "gligen-inpainting-text-box"
MAX_OBJECTS = 30  # StableDiffusionGLIGENPipeline keeps only the first 30 boxes


def load_gligen(context: LoadContext) -> Any:
    from diffusers import StableDiffusionGLIGENPipeline  # lives in diffusers' deprecated pipelines

    return load_sd_family_pipeline(StableDiffusionGLIGENPipeline, context)


def build_tiny_gligen(folder: Path, unet_in_channels: int = 4) -> None:
    """Tiny SD components with a gated (GLIGEN) UNet; phrase features are the text encoder's pooled
    output, so the text hidden size must equal the UNet's cross-attention dim (32 here). The
    inpainting UNet reads 9 channels: latent, masked image latent, mask."""
    from diffusers import StableDiffusionGLIGENPipeline, UNet2DConditionModel

    components = tiny_sd_components()
    components["unet"] = UNet2DConditionModel(**tiny_unet_config(unet_in_channels), attention_type="gated")
    save_tiny_pipeline(StableDiffusionGLIGENPipeline, components, folder)


SPECS = [
    ModelSpec(
        name=GLIGEN,
        checkpoint="masterful/gligen-1-4-generation-text-box",
        loader=load_gligen,
        tiny_builder=build_tiny_gligen,
        files=pipeline_files(),
        description="GLIGEN text-box grounding on SD-1.4 (published as pickles): UNet with gated self-attention",
    ),
    ModelSpec(
        name=GLIGEN_INPAINTING,
        checkpoint="masterful/gligen-1-4-inpainting-text-box",
        loader=load_gligen,
        tiny_builder=lambda folder: build_tiny_gligen(folder, unet_in_channels=9),
        files=pipeline_files(),
        description="GLIGEN inpainting: regenerates the boxes of a given image, grounded by the phrases",
    ),
]
