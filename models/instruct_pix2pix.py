"""InstructPix2Pix (Brooks, Holynski, Efros, CVPR 2023): an SD-1.5 UNet fine-tuned on generated
(image, instruction, edited image) triplets. Its first convolution takes 8 channels: the noisy
latent and the input image's VAE latent, concatenated; text and image each get a guidance scale."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec
from .stable_diffusion import load_sd_family_pipeline, save_tiny_pipeline, tiny_sd_components

INSTRUCT_PIX2PIX = "instruct-pix2pix"


def load_instruct_pix2pix(context: LoadContext) -> Any:
    from diffusers import StableDiffusionInstructPix2PixPipeline

    return load_sd_family_pipeline(StableDiffusionInstructPix2PixPipeline, context)


def build_tiny_instruct_pix2pix(folder: Path) -> None:
    """SD-1.5's tiny components with the published layout's 8-channel UNet and Euler-ancestral
    scheduler (the sampler of the authors' k-diffusion code and of the published repo)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    components = tiny_sd_components(unet_in_channels=8)
    components["scheduler"] = EulerAncestralDiscreteScheduler.from_config(components["scheduler"].config)
    save_tiny_pipeline(StableDiffusionInstructPix2PixPipeline, components, folder)


SPECS = [
    ModelSpec(
        name=INSTRUCT_PIX2PIX,
        checkpoint="timbrooks/instruct-pix2pix",
        loader=load_instruct_pix2pix,
        tiny_builder=build_tiny_instruct_pix2pix,
        files=pipeline_files(),
        description="InstructPix2Pix: SD-1.5 with an 8-channel UNet (noisy latent + image latent), "
                    "Euler-ancestral scheduler; fp32 files only (cast to fp16 on a GPU)",
    ),
]
