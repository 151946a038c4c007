"""Paint-by-Example (Yang et al. 2023): exemplar-based inpainting. A 9-channel SD UNet (latent,
masked-image latent, mask) conditioned on a CLIP image embedding of the reference instead of text.

`PaintByExamplePipeline.from_pretrained(folder)` fails in diffusers 0.42.1 (its image-encoder
class cannot be resolved from model_index.json, for the official repo's layout as well), so the
loader reads each subfolder with its own class and calls the pipeline's constructor — the same
code for the hub repo and the tiny folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import folder_files
from .registry import LoadContext, ModelSpec
from .stable_diffusion import save_tiny_pipeline, tiny_sd_components

PARTS = ("vae", "image_encoder", "unet", "scheduler", "feature_extractor")

PAINT_BY_EXAMPLE = "paint-by-example"


def load_paint_by_example(context: LoadContext) -> Any:
    from diffusers import AutoencoderKL, PaintByExamplePipeline, PNDMScheduler, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    where, weights = context.hub(), context.weights()
    index = PaintByExamplePipeline.load_config(context.source, **where)
    safety_checker = (StableDiffusionSafetyChecker.from_pretrained(context.source, subfolder="safety_checker",
                                                                   **weights)
                      if (index.get("safety_checker") or [None])[0] else None)
    pipe = PaintByExamplePipeline(
        vae=AutoencoderKL.from_pretrained(context.source, subfolder="vae", **weights),
        image_encoder=PaintByExampleImageEncoder.from_pretrained(context.source, subfolder="image_encoder", **weights),
        unet=UNet2DConditionModel.from_pretrained(context.source, subfolder="unet", **weights),
        scheduler=PNDMScheduler.from_pretrained(context.source, subfolder="scheduler", **where),
        feature_extractor=CLIPImageProcessor.from_pretrained(context.source, subfolder="feature_extractor", **where),
        safety_checker=safety_checker,
        requires_safety_checker=safety_checker is not None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(context.device)


def build_tiny_paint_by_example(folder: Path) -> None:
    """Tiny 9-channel UNet, VAE and scheduler of SD's layout, and a tiny CLIP-vision image encoder whose
    projection equals the UNet's cross-attention width (`proj_size` is not saved, so it must come from
    `projection_dim`). Four encoder layers give the mapper its one block ((layers + 1) // 5)."""
    from diffusers import PaintByExamplePipeline
    from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
    from transformers import CLIPVisionConfig

    components = tiny_sd_components(unet_in_channels=9)
    for text_part in ("text_encoder", "tokenizer"):
        components.pop(text_part)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                              image_size=224, patch_size=32,
                              projection_dim=components["unet"].config.cross_attention_dim)
    components["image_encoder"] = PaintByExampleImageEncoder(vision)
    save_tiny_pipeline(PaintByExamplePipeline, components, folder, safety_checker=False)


SPECS = [
    ModelSpec(
        name=PAINT_BY_EXAMPLE,
        checkpoint="Fantasy-Studio/Paint-by-Example",
        loader=load_paint_by_example,
        tiny_builder=build_tiny_paint_by_example,
        files=folder_files("", *PARTS),
        description="Paint-by-Example: 9-channel SD UNet + CLIP ViT-L/14 image encoder (fp32 files only)",
    ),
]
