"""Segment Anything (Kirillov et al. 2023): one shared `Sam` module per variant; tabs wrap it in a
`SamPredictor` per request (the predictor holds one image's embedding, the module is shared).

The official checkpoints are pickled `.pth` files of plain tensors (no safetensors exist); they are
fetched through huggingface_hub from the public mirror `ybelkada/segment-anything` (with download
progress) and read with `torch.load(weights_only=True)`, which executes no code. The tiny stand-in
writes a random state dict under the same file name, plus a `config.json` with its toy sizes
(`build_sam` hard-codes 1024 px, so the network is assembled from `segment_anything.modeling`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .registry import LoadContext, ModelSpec

SAM_VIT_B = "sam-vit-b"
SAM_VIT_H = "sam-vit-h"
SAM_REPO = "ybelkada/segment-anything"

# The three public builders' arguments (segment_anything/build_sam.py), shared by both variants.
SAM_COMMON = dict(image_size=1024, patch_size=16, window_size=14, prompt_embed_dim=256, decoder_mlp_dim=2048,
                  decoder_heads=8, iou_head_hidden_dim=256, mask_in_chans=16)
VARIANTS = {
    SAM_VIT_B: ("checkpoints/sam_vit_b_01ec64.pth", 0.375,
                dict(SAM_COMMON, encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                     encoder_global_attn_indexes=[2, 5, 8, 11])),
    SAM_VIT_H: ("checkpoints/sam_vit_h_4b8939.pth", 2.56,
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


def load_sam(context: LoadContext, variant: str) -> Any:
    """The `Sam` module in fp32 on the context's device. SamPredictor feeds fp32 pixels and prompt
    coordinates into the network, so it stays fp32 (vit_b holds 0.36 GiB, vit_h 2.4 GiB)."""
    import torch

    filename, _, config = VARIANTS[variant]
    folder = Path(context.source)
    if folder.is_dir():
        path = folder / filename
        config = json.loads((folder / "config.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(context.source, filename, revision=context.revision)
    network = sam_network(config)
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.eval().to(context.device)


def build_tiny_sam(folder: Path, variant: str) -> None:
    """A toy `Sam` (64 px input, 4×4 embedding) saved under the published file name, as a plain
    tensor state dict like the official file."""
    import torch

    filename = VARIANTS[variant][0]
    torch.manual_seed(0)
    (folder / filename).parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam_network(TINY_CONFIG).state_dict(), folder / filename)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG, indent=2))


SPECS = [
    ModelSpec(
        name=variant, checkpoint=SAM_REPO, download_gb=size,
        loader=lambda context, variant=variant: load_sam(context, variant),
        tiny_builder=lambda folder, variant=variant: build_tiny_sam(folder, variant),
        description=f"Segment Anything {variant[4:].replace('-', '_')} ({filename.split('/')[-1]}, the official "
                    "pickled weights via a public hub mirror)",
        pickled=True,
    ) for variant, (filename, size, _) in VARIANTS.items()
]
