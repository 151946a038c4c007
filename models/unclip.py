"""unCLIP (Ramesh et al. 2022, "DALL·E 2") with the Kandinsky 2.2 checkpoints: a **prior** turns a caption
into a CLIP *image* embedding, a **decoder** turns that embedding (and nothing else) into pixels.

Kandinsky 2.2 rather than Karlo: its two pipelines live in diffusers' maintained `kandinsky2_2` folder
(Karlo's `UnCLIPPipeline` moved to `pipelines/deprecated`), both repos are Apache-2.0, and the decoder is a
single latent UNet + MoVQ at 512 px (Karlo needs a 64-px decoder plus two super-resolution stages).

`REAL_CONFIGS` are the published `config.json`s (architecture keys) of the five networks; `bench/unclip_split.py`
builds them on the meta device to count their parameters without downloading anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import pipeline_files
from .registry import LoadContext, ModelSpec

PRIOR = "kandinsky22-prior"
DECODER = "kandinsky22-decoder"
TINY_EMBEDDING = 32  # the image-embedding width of the tiny pair (1280 in the real one)
TINY_CLIP_SIDE = 32
TINY_IMAGE_SIDE = 64  # tiny decoder output: 8x8 latents through a 4-level MoVQ (x8), as the real one

REAL_CONFIGS: dict[str, dict[str, Any]] = {
    # kandinsky-2-2-prior/prior: 20 layers of width 32x64 = 2048 over 1280-d CLIP embeddings.
    "prior": dict(num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=1280,
                  num_embeddings=77, additional_embeddings=4),
    # kandinsky-2-2-prior/image_encoder: OpenCLIP ViT-bigG/14 vision tower, 1280-d projection.
    "image_encoder": dict(hidden_size=1664, intermediate_size=8192, num_hidden_layers=48, num_attention_heads=16,
                          image_size=224, patch_size=14, projection_dim=1280, hidden_act="gelu"),
    # kandinsky-2-2-prior/text_encoder: OpenCLIP ViT-bigG/14 text tower.
    "text_encoder": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                         max_position_embeddings=77, vocab_size=49408, projection_dim=1280, hidden_act="gelu"),
    # kandinsky-2-2-decoder/unet: image-embedding-conditioned UNet (no text input at all).
    "unet": dict(in_channels=4, out_channels=8, layers_per_block=3, block_out_channels=(384, 768, 1152, 1536),
                 down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                                   "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"),
                 up_block_types=("SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                                 "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                 mid_block_type="UNetMidBlock2DSimpleCrossAttn", addition_embed_type="image",
                 encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", cross_attention_dim=768,
                 attention_head_dim=64, resnet_time_scale_shift="scale_shift", class_embed_type=None),
    # kandinsky-2-2-decoder/movq: the VQ autoencoder (x8) the decoder's latents live in.
    "movq": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_type="spatial",
                 block_out_channels=(128, 256, 256, 512), num_vq_embeddings=16384, vq_embed_dim=4,
                 down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D",
                                   "AttnDownEncoderBlock2D"),
                 up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
                                 "UpDecoderBlock2D")),
}


def build_network(part: str, config: dict[str, Any]) -> Any:
    """One of the five networks from a config in `REAL_CONFIGS`' shape (real or tiny)."""
    from diffusers import PriorTransformer, UNet2DConditionModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

    if part == "prior":
        return PriorTransformer(**config)
    if part == "image_encoder":
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    if part == "text_encoder":
        return CLIPTextModelWithProjection(CLIPTextConfig(**config))
    if part == "unet":
        return UNet2DConditionModel(**config)
    if part == "movq":
        return VQModel(**config)
    raise ValueError(f"unknown unCLIP part {part!r}")


def _load(pipeline_name: str, context: LoadContext) -> Any:
    import diffusers

    pipe = getattr(diffusers, pipeline_name).from_pretrained(context.source, **context.weights())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(context.device)


def load_prior(context: LoadContext) -> Any:
    return _load("KandinskyV22PriorPipeline", context)


def load_decoder(context: LoadContext) -> Any:
    return _load("KandinskyV22Pipeline", context)


def build_tiny_prior(folder: Path) -> None:
    """The prior repo's layout (prior, image_encoder, text_encoder, tokenizer, scheduler, image_processor)
    with toy widths: every embedding is 32-d, the CLIP towers see 32-px images."""
    import torch
    from diffusers import KandinskyV22PriorPipeline, UnCLIPScheduler
    from transformers import CLIPImageProcessor

    from .clip import tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    width = TINY_EMBEDDING
    prior = build_network("prior", dict(num_attention_heads=2, attention_head_dim=16, num_layers=1,
                                        embedding_dim=width, num_embeddings=77, additional_embeddings=4))
    # Published priors store the CLIP image-embedding statistics; the random init leaves std = 0, which
    # would collapse every prediction to the mean.
    prior.clip_std.data.fill_(1.0)
    pipe = KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=build_network("image_encoder", dict(
            hidden_size=width, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            image_size=TINY_CLIP_SIDE, patch_size=8, projection_dim=width)),
        text_encoder=build_network("text_encoder", dict(
            hidden_size=width, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, vocab_size=tokenizer.vocab_size, projection_dim=width,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)),
        tokenizer=tokenizer,
        # kandinsky-2-2-prior/scheduler/scheduler_config.json
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0),
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": TINY_CLIP_SIDE}, crop_size={"height": TINY_CLIP_SIDE, "width": TINY_CLIP_SIDE},
            image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]),
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def build_tiny_decoder(folder: Path) -> None:
    """The decoder repo's layout (unet, scheduler, movq): the real block types at toy width."""
    import torch
    from diffusers import DDPMScheduler, KandinskyV22Pipeline

    torch.manual_seed(0)
    unet = {**REAL_CONFIGS["unet"], "layers_per_block": 1, "block_out_channels": (16, 16, 32, 32),
            "norm_num_groups": 8, "encoder_hid_dim": TINY_EMBEDDING, "cross_attention_dim": 16,
            "attention_head_dim": 4, "sample_size": TINY_IMAGE_SIDE // 8}
    # 32 channels: the MoVQ decoder's SpatialNorm hard-codes 32 groups.
    movq = {**REAL_CONFIGS["movq"], "layers_per_block": 1, "block_out_channels": (32, 32, 32, 32),
            "norm_num_groups": 8, "num_vq_embeddings": 12}
    pipe = KandinskyV22Pipeline(
        unet=build_network("unet", unet),
        # DDPM with a learned variance range (the UNet predicts 8 channels: ε and the variance)
        scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085,
                                beta_end=0.012, clip_sample=False, prediction_type="epsilon",
                                variance_type="learned_range", thresholding=False),
        movq=build_network("movq", movq),
    )
    pipe.save_pretrained(folder, safe_serialization=True)


SPECS = [
    ModelSpec(
        name=PRIOR,
        checkpoint="kandinsky-community/kandinsky-2-2-prior",
        loader=load_prior,
        tiny_builder=build_tiny_prior,
        files=pipeline_files(),
        cpu_dtype="bfloat16",
        description="Kandinsky 2.2 prior (Apache-2.0): text → CLIP ViT-bigG image embedding; "
                    "prior 1.0B + image encoder 1.8B + text encoder 0.7B params",
    ),
    ModelSpec(
        name=DECODER,
        checkpoint="kandinsky-community/kandinsky-2-2-decoder",
        loader=load_decoder,
        tiny_builder=build_tiny_decoder,
        files=pipeline_files(),
        cpu_dtype="bfloat16",
        description="Kandinsky 2.2 decoder (Apache-2.0): CLIP image embedding → 512 px image; UNet 1.2B + MoVQ 67M",
    ),
]
