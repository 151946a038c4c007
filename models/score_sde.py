"""Score-based generative model with a variance-exploding SDE (Song et al., Score-Based Generative Modeling
through Stochastic Differential Equations, ICLR 2021; `google/ncsnpp-celebahq-256`): an NCSN++ network
(diffusers `UNet2DModel` with skip blocks and a Gaussian Fourier time embedding) that outputs the score
∇_x log p_σ(x) at noise level σ, and diffusers' `ScoreSdeVeScheduler` for predictor–corrector sampling.

The published repository is flat (config.json, pickled diffusion_pytorch_model.bin, scheduler_config.json
and model_index.json at its root). Its model_index.json names the network's component either `unet` or
`model` (see models/published/google--ncsnpp-celebahq-256.json), so the loader reads the network and the
scheduler directly and builds the `ScoreSdeVePipeline` itself: that works whichever key it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec

SCORE_SDE = "ncsnpp-celebahq-256"
# google/ncsnpp-celebahq-256's config.json (the same architecture as google/ncsnpp-church-256's): NCSN++ with
# skip (progressive) blocks, attention at 16x16, Fourier features of σ as the time embedding.
NCSNPP_CELEBAHQ_UNET = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 256, 256, 256),
    down_block_types=("SkipDownBlock2D",) * 4 + ("AttnSkipDownBlock2D",) + ("SkipDownBlock2D",) * 2,
    up_block_types=("SkipUpBlock2D",) * 2 + ("AttnSkipUpBlock2D",) + ("SkipUpBlock2D",) * 4,
    time_embedding_type="fourier", flip_sin_to_cos=True, freq_shift=0, center_input_sample=True,
    mid_block_scale_factor=1.41421356237, downsample_padding=1, norm_eps=1e-6, norm_num_groups=None, act_fn="silu",
)
# Its scheduler_config.json (σ_max 380 and snr 0.075 as read from the repository's first scheduler file).
NCSNPP_CELEBAHQ_SCHEDULER = dict(num_train_timesteps=2000, snr=0.075, sigma_min=0.01, sigma_max=380.0,
                                 sampling_eps=1e-5, correct_steps=1)
TINY_IMAGE_SIDE = 32


def load_score_sde(context: LoadContext) -> Any:
    """A `ScoreSdeVePipeline` of the published network and scheduler, read from the flat repository root."""
    from diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(context.source, **context.weights())
    scheduler = ScoreSdeVeScheduler.from_pretrained(context.source, **context.hub())
    unet.eval().requires_grad_(False)
    pipe = ScoreSdeVePipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(context.device)


def tiny_unet_config() -> dict:
    """NCSN++'s block types (skip blocks, one attention level, Fourier time features) at toy width and 32 px."""
    return {**NCSNPP_CELEBAHQ_UNET, "sample_size": TINY_IMAGE_SIDE, "layers_per_block": 1,
            "block_out_channels": (32, 32, 64, 64),  # skip up blocks norm with 32 groups
            "down_block_types": ("SkipDownBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"),
            "up_block_types": ("SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D", "SkipUpBlock2D")}


def build_tiny_score_sde(folder: Path) -> None:
    import torch
    from diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_config())
    pipe = ScoreSdeVePipeline(unet=unet, scheduler=ScoreSdeVeScheduler(**NCSNPP_CELEBAHQ_SCHEDULER))
    unet.save_pretrained(folder, safe_serialization=True)  # the flat layout of Google's 2022 repositories
    pipe.scheduler.save_pretrained(folder)
    pipe.save_config(folder)


SPECS = [
    ModelSpec(
        name=SCORE_SDE,
        checkpoint="google/ncsnpp-celebahq-256",
        loader=load_score_sde,
        tiny_builder=build_tiny_score_sde,
        files=pipeline_files(),
        description="Score SDE (VE) face model, pixel space 256x256 (NCSN++ UNet2DModel, 263 MB) + ScoreSdeVeScheduler",
    ),
]
