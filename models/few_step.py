"""Few-step samplers: LCM-LoRA for the shared SD-1.5 base (Luo et al. 2023) and a distilled
consistency model on ImageNet-64 (Song et al. 2023).

The LCM-LoRA handle is only its weights (a state dict), never a pipeline: a tab attaches it to
the shared `sd15` base for one run as a named adapter and removes it after, so no other tab sees it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import named_files, pipeline_files
from .registry import LoadContext, ModelSpec

LCM_LORA = "lcm-lora-sd15"
CONSISTENCY = "cd-imagenet64"
LCM_LORA_FILE = "pytorch_lora_weights.safetensors"  # the file name in latent-consistency/lcm-lora-sdv1-5
# The layers LCM-LoRA adapts in SD-1.5's UNet: attention, feed-forward and ResNet convolutions.
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]

# openai/diffusers-cd_imagenet64_l2: unet/config.json (ADM at 64 px, class-conditional) and scheduler.
IMAGENET64_UNET = dict(
    sample_size=64, in_channels=3, out_channels=3, layers_per_block=3, num_class_embeds=1000,
    block_out_channels=(192, 384, 576, 768), attention_head_dim=64, norm_num_groups=32,
    down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"),
    resnet_time_scale_shift="scale_shift", upsample_type="resnet", downsample_type="resnet",
)
CD_SCHEDULER = dict(num_train_timesteps=40, sigma_min=0.002, sigma_max=80.0)
TINY_CONSISTENCY_SIDE = 32


def load_lcm_lora(context: LoadContext) -> dict[str, Any]:
    """The raw LoRA state dict as published; `load_lora_weights` converts its keys on each attach."""
    from safetensors.torch import load_file

    return {key: tensor.to(context.device, context.dtype)
            for key, tensor in load_file(context.file(LCM_LORA_FILE)).items()}


def build_tiny_lcm_lora(folder: Path) -> None:
    """A LoRA for the tiny SD-1.5 UNet, saved by diffusers under the published file name. B is random
    (not zero as at training start), so attaching it visibly changes the UNet's output."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from .stable_diffusion import tiny_unet_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**tiny_unet_config())
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=LCM_LORA_TARGETS))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name=LCM_LORA_FILE, safe_serialization=True)


def load_consistency(context: LoadContext) -> Any:
    from diffusers import ConsistencyModelPipeline

    pipe = ConsistencyModelPipeline.from_pretrained(context.source, **context.weights())
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval().requires_grad_(False)
    return pipe.to(context.device)


def build_tiny_consistency(folder: Path) -> None:
    """The ImageNet-64 consistency UNet's block types (1000 class embeddings) at toy width and 32 px."""
    import torch
    from diffusers import CMStochasticIterativeScheduler, ConsistencyModelPipeline, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**{**IMAGENET64_UNET, "sample_size": TINY_CONSISTENCY_SIDE, "layers_per_block": 1,
                          "block_out_channels": (16, 32, 32, 32), "attention_head_dim": 8, "norm_num_groups": 8})
    pipe = ConsistencyModelPipeline(unet=unet, scheduler=CMStochasticIterativeScheduler(**CD_SCHEDULER))
    pipe.save_pretrained(folder, safe_serialization=True)


SPECS = [
    ModelSpec(
        name=LCM_LORA,
        checkpoint="latent-consistency/lcm-lora-sdv1-5",
        loader=load_lcm_lora,
        tiny_builder=build_tiny_lcm_lora,
        files=named_files(LCM_LORA_FILE),
        description="LCM-LoRA for SD-1.5 (67M LoRA parameters): 2-8 step sampling on the shared base",
    ),
    ModelSpec(
        name=CONSISTENCY,
        checkpoint="openai/diffusers-cd_imagenet64_l2",
        loader=load_consistency,
        tiny_builder=build_tiny_consistency,
        files=pipeline_files(),
        description="Consistency model distilled from EDM, class-conditional ImageNet 64x64 (UNet2DModel 296M)",
    ),
]
