"""Segment Anything (Kirillov et al. 2023): one shared `Sam` module per variant; tabs wrap it in a
`SamPredictor` per request (the predictor holds one image's embedding, the module is shared).

The official checkpoints are pickled `.pth` files of plain tensors (no safetensors exist); they are
fetched through huggingface_hub from the public mirror `ybelkada/segment-anything` (with download
progress) and read with `torch.load(weights_only=True)`, which executes no code. The network's sizes are
read off the weights' shapes (`sam_config`), so the tiny stand-in — a random state dict under the same file
name — loads through the same code (`build_sam` hard-codes 1024 px, so the network is assembled from
`segment_anything.modeling`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .hub import named_files
from .registry import LoadContext, ModelSpec

SAM_VIT_B = "sam-vit-b"
SAM_VIT_H = "sam-vit-h"
SAM_REPO = "ybelkada/segment-anything"

# The three public builders' arguments (segment_anything/build_sam.py), shared by both variants.
SAM_COMMON = dict(image_size=1024, patch_size=16, window_size=14, prompt_embed_dim=256, decoder_mlp_dim=2048,
                  decoder_heads=8, iou_head_hidden_dim=256, mask_in_chans=16)
VARIANTS = {
    SAM_VIT_B: ("checkpoints/sam_vit_b_01ec64.pth",
                dict(SAM_COMMON, encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                     encoder_global_attn_indexes=[2, 5, 8, 11])),
    SAM_VIT_H: ("checkpoints/sam_vit_h_4b8939.pth",
                dict(SAM_COMMON, encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
                     encoder_global_attn_indexes=[7, 15, 23, 31])),
}
TINY_CONFIG = dict(image_size=64, patch_size=16, window_size=2, prompt_embed_dim=32, decoder_mlp_dim=64,
                   decoder_heads=8, iou_head_hidden_dim=32, mask_in_chans=4, encoder_embed_dim=32,
                   encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])


def sam_network(config: dict) -> Any:
    """`segment_anything.modeling.Sam` with the given sizes, wired as `build_sam` wires it."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    embedding_side = config["image_size"] // config["patch_size"]
    width = config["prompt_embed_dim"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=config["encoder_depth"], embed_dim=config["encoder_embed_dim"], img_size=config["image_size"],
            mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=config["encoder_num_heads"],
            patch_size=config["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config["encoder_global_attn_indexes"], window_size=config["window_size"],
            out_chans=width),
        prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(embedding_side, embedding_side),
                                     input_image_size=(config["image_size"], config["image_size"]),
                                     mask_in_chans=config["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=config["decoder_mlp_dim"],
                                          num_heads=config["decoder_heads"]),
            transformer_dim=width, iou_head_depth=3, iou_head_hidden_dim=config["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def sam_config(state: dict[str, Any]) -> dict[str, Any]:
    """The sizes `build_sam` would use, read off a checkpoint's tensor shapes: the published vit_b/vit_h
    files give their `VARIANTS` configs, a tiny file its own."""
    blocks = sorted({int(key.split(".")[2]) for key in state if key.startswith("image_encoder.blocks.")})
    patch = state["image_encoder.patch_embed.proj.weight"]
    side = state["image_encoder.pos_embed"].shape[1]
    window_rows = {index: state[f"image_encoder.blocks.{index}.attn.rel_pos_h"].shape[0] for index in blocks}
    head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    width = state["prompt_encoder.no_mask_embed.weight"].shape[1]
    return dict(image_size=side * patch.shape[-1], patch_size=patch.shape[-1],
                window_size=(min(window_rows.values()) + 1) // 2, prompt_embed_dim=width,
                decoder_mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
                decoder_heads=SAM_COMMON["decoder_heads"],
                iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
                mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
                encoder_embed_dim=patch.shape[0], encoder_depth=len(blocks),
                encoder_num_heads=patch.shape[0] // head_dim,
                encoder_global_attn_indexes=[i for i in blocks if window_rows[i] == 2 * side - 1])


def load_sam(context: LoadContext, variant: str) -> Any:
    """The `Sam` module in fp32 on the context's device. SamPredictor feeds fp32 pixels and prompt
    coordinates into the network, so it stays fp32 (vit_b holds 0.36 GiB, vit_h 2.4 GiB)."""
    import torch

    path = context.file(VARIANTS[variant][0])
    state = torch.load(path, map_location="cpu", weights_only=True)
    network = sam_network(sam_config(state))
    network.load_state_dict(state)
    return network.eval().to(context.device)


def build_tiny_sam(folder: Path, variant: str) -> None:
    """A toy `Sam` (64 px input, 4×4 embedding) saved under the published file name, as a plain
    tensor state dict like the official file."""
    import torch

    filename = VARIANTS[variant][0]
    torch.manual_seed(0)
    (folder / filename).parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam_network(TINY_CONFIG).state_dict(), folder / filename)


SPECS = [
    ModelSpec(
        name=variant, checkpoint=SAM_REPO,
        loader=lambda context, variant=variant: load_sam(context, variant),
        tiny_builder=lambda folder, variant=variant: build_tiny_sam(folder, variant),
        files=named_files(filename), dtype="float32", smaller=None if variant == SAM_VIT_B else SAM_VIT_B,
        description=f"Segment Anything {variant[4:].replace('-', '_')} ({filename.split('/')[-1]}, the official "
                    "pickled weights via a public hub mirror)",
    ) for variant, (filename, _) in VARIANTS.items()
]
