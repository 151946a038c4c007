"""Masked image modelling: BEiT (Bao et al. 2022) predicts the DALL·E dVAE token of each masked patch;
MAE (He et al. 2022) reconstructs the masked patches' pixels. Both published checkpoints cut a 224²
image into 14×14 patches of 16 px, so one mask fits both.

`microsoft/beit-base-patch16-224-pt22k` is the self-supervised checkpoint (`BeitForMaskedImageModeling`,
its MIM head over the 8192-token vocabulary kept); `facebook/vit-mae-base` is `ViTMAEForPreTraining`
with its decoder. The tiny stand-ins keep the classes and file layouts at 64² with 8-px patches (8×8).

What the pre-training buys: `microsoft/beit-base-finetuned-ade-640-640` is BEiT-base (self-supervised on
ImageNet-22k) fine-tuned for semantic segmentation on ADE20K at 640² with a
UperNet head over layers 4, 6, 8 and 12 (`BeitForSemanticSegmentation`, 150 classes, one pickled
`pytorch_model.bin`). Its tiny stand-in keeps the class, the pickle, the four-level UperNet head, the
auxiliary FCN head and the 150 ADE20K labels, at 64² with 8-px patches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

BEIT_BASE = "beit-base-pt22k"
MAE_BASE = "vit-mae-base"
BEIT_ADE = "beit-base-ade-640"
TINY_SIDE, TINY_PATCH = 64, 8
TINY_LAYERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@dataclass
class MimHandle:
    model: Any  # BeitForMaskedImageModeling or ViTMAEForPreTraining
    processor: Any  # its image processor
    device: "torch.device"


def load_beit(context: LoadContext) -> MimHandle:
    from transformers import BeitForMaskedImageModeling, BeitImageProcessor

    model = BeitForMaskedImageModeling.from_pretrained(context.source, **context.weights())
    processor = BeitImageProcessor.from_pretrained(context.source, **context.hub())
    return MimHandle(model.to(context.device).eval(), processor, context.device)


def load_mae(context: LoadContext) -> MimHandle:
    """MAE (its spec runs it in fp32: the reconstruction is compared pixel by pixel with the input)."""
    from transformers import ViTImageProcessor, ViTMAEForPreTraining

    model = ViTMAEForPreTraining.from_pretrained(context.source, **context.weights())
    processor = ViTImageProcessor.from_pretrained(context.source, **context.hub())
    return MimHandle(model.to(context.device).eval(), processor, context.device)


def load_beit_segmentation(context: LoadContext) -> MimHandle:
    from transformers import BeitForSemanticSegmentation, BeitImageProcessor

    model = BeitForSemanticSegmentation.from_pretrained(context.source, **context.weights())
    processor = BeitImageProcessor.from_pretrained(context.source, **context.hub())
    return MimHandle(model.to(context.device).eval(), processor, context.device)


def build_tiny_beit(folder: Path) -> None:
    """BEiT-base's settings (mask token, shared relative position bias, layer scale, 8192 tokens) at toy size."""
    import torch
    from transformers import BeitConfig, BeitForMaskedImageModeling, BeitImageProcessor

    config = BeitConfig(image_size=TINY_SIDE, patch_size=TINY_PATCH, **TINY_LAYERS, vocab_size=8192,
                        use_mask_token=True, use_shared_relative_position_bias=True, layer_scale_init_value=0.1)
    torch.manual_seed(0)
    BeitForMaskedImageModeling(config).save_pretrained(folder)
    side = {"height": TINY_SIDE, "width": TINY_SIDE}
    BeitImageProcessor(size=side, crop_size=side,
                       do_center_crop=False, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)


def build_tiny_mae(folder: Path) -> None:
    """MAE-base's settings (75 % masking, pixel targets without per-patch normalisation) at toy size."""
    import torch
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(image_size=TINY_SIDE, patch_size=TINY_PATCH, **TINY_LAYERS, decoder_hidden_size=32,
                          decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
                          mask_ratio=0.75, norm_pix_loss=False)
    torch.manual_seed(0)
    ViTMAEForPreTraining(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": TINY_SIDE, "width": TINY_SIDE}, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


def build_tiny_beit_segmentation(folder: Path) -> None:
    """The fine-tuned model's settings (relative position bias per layer, UperNet on four layers' features,
    auxiliary FCN head, ADE20K's 150 labels with the background reduced away) at toy size."""
    import torch
    from transformers import BeitConfig, BeitForSemanticSegmentation, BeitImageProcessor

    config = BeitConfig(image_size=TINY_SIDE, patch_size=TINY_PATCH, **{**TINY_LAYERS, "num_hidden_layers": 4},
                        use_relative_position_bias=True, layer_scale_init_value=0.1, out_indices=[0, 1, 2, 3],
                        pool_scales=[1, 2, 3, 6], channels=16, auxiliary_channels=16, use_auxiliary_head=True,
                        semantic_loss_ignore_index=255, id2label=dict(enumerate(ADE20K_LABELS)),
                        label2id={label: index for index, label in enumerate(ADE20K_LABELS)})
    torch.manual_seed(0)
    BeitForSemanticSegmentation(config).save_pretrained(folder)
    side = {"height": TINY_SIDE, "width": TINY_SIDE}
    BeitImageProcessor(size=side, crop_size=side, do_center_crop=False, do_reduce_labels=True,
                       image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)


# ADE20K's 150 scene-parsing classes in the order of the published config's id2label (the SceneParsing
# benchmark's objectInfo150 short names; ids 0–85 as read from a stored copy of that label file, "bed " with
# its trailing space, the rest in the benchmark's order).
ADE20K_LABELS = tuple(quoted or word for quoted, word in re.findall(r"\|([^|]*)\||(\S+)", (
    "wall building sky floor tree ceiling road |bed |windowpane grass cabinet sidewalk person earth door table "
    "mountain plant curtain chair car water painting sofa shelf house sea mirror rug field armchair seat fence "
    "desk rock wardrobe lamp bathtub railing cushion base box column signboard |chest of drawers|counter sand "
    "sink skyscraper fireplace refrigerator grandstand path stairs runway case |pool table|pillow "
    "|screen door|stairway river bridge bookcase blind |coffee table|toilet flower book hill bench countertop "
    "stove palm |kitchen island|computer |swivel chair|boat bar |arcade machine|hovel bus towel light truck "
    "tower chandelier awning streetlight booth |television receiver|airplane |dirt track|apparel pole land "
    "bannister escalator ottoman bottle buffet poster stage van ship fountain |conveyer belt|canopy washer "
    "plaything |swimming pool|stool barrel basket waterfall tent bag minibike cradle oven ball food step tank "
    "|trade name|microwave pot animal bicycle lake dishwasher screen blanket sculpture hood sconce vase "
    "|traffic light|tray ashcan fan pier |crt screen|plate monitor |bulletin board|shower radiator glass clock "
    "flag")))
assert len(ADE20K_LABELS) == 150


SPECS = [
    ModelSpec(name=BEIT_BASE, checkpoint="microsoft/beit-base-patch16-224-pt22k",
              loader=load_beit, tiny_builder=build_tiny_beit,
              description="BEiT-base, self-supervised on ImageNet-22k (92M parameters with the 8192-token MIM head)"),
    ModelSpec(name=MAE_BASE, checkpoint="facebook/vit-mae-base", dtype="float32",
              loader=load_mae, tiny_builder=build_tiny_mae,
              description="MAE ViT-B/16 with its pixel decoder (112M parameters)"),
    ModelSpec(name=BEIT_ADE, checkpoint="microsoft/beit-base-finetuned-ade-640-640",
              loader=load_beit_segmentation, tiny_builder=build_tiny_beit_segmentation,
              description="BEiT-base fine-tuned on ADE20K at 640² with a UperNet head (150 classes, 900 MB pickle)"),
]
