"""Grounding DINO (Liu et al. 2023): an open-set detector that finds boxes for the phrases of a text
prompt; Grounded-SAM hands its boxes to Segment Anything.

`IDEA-Research/grounding-dino-tiny` (Swin-T image backbone + BERT-base text encoder, 172M parameters)
is read with `GroundingDinoForObjectDetection` and its `GroundingDinoProcessor`. The tiny stand-in
keeps the classes and the published file layout (`config.json`, `model.safetensors`,
`preprocessor_config.json`, BERT `vocab.txt` + tokenizer files) with toy sizes.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

GROUNDING_DINO_TINY = "grounding-dino-tiny"
# Words a tiny vocabulary knows whole; every other lowercase word is spelled letter by letter (##x).
TINY_WORDS = ["a", "an", "the", "cat", "dog", "person", "rocket", "cup", "coffee", "horse", "helmet", "remote"]


@dataclass
class DetectorHandle:
    model: Any  # transformers.GroundingDinoForObjectDetection
    processor: Any  # transformers.GroundingDinoProcessor
    device: "torch.device"


def load_grounding_dino(context: LoadContext) -> DetectorHandle:
    """The detector in the context's dtype on its device; the processor's boxes come back in fp32."""
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    model = GroundingDinoForObjectDetection.from_pretrained(context.source, **context.weights())
    processor = AutoProcessor.from_pretrained(context.source, **context.hub())
    return DetectorHandle(model.to(context.device).eval(), processor, context.device)


def build_tiny_grounding_dino(folder: Path) -> None:
    """A toy detector of the same classes: a 1-block-per-stage Swin, a 1-layer BERT, d_model 32 (the
    deformable attention's GroupNorm needs a multiple of 32), 2 decoder layers (the box heads are tied
    across decoder layers, which needs at least two), 20 queries, 96-144 px input (the extra, coarsest
    feature level must stay larger than 1×1)."""
    import torch
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, SwinConfig)

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *string.ascii_lowercase,
             *[f"##{letter}" for letter in string.ascii_lowercase], *TINY_WORDS]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                                   image_size=32, out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4]),
        text_config=BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                               vocab_size=len(vocab), max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20, encoder_n_points=2, decoder_n_points=2,
        max_text_len=64)
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    # Saved part by part, as in the published repo (preprocessor_config.json + BERT tokenizer files).
    GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 144}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


SPECS = [
    ModelSpec(name=GROUNDING_DINO_TINY, checkpoint="IDEA-Research/grounding-dino-tiny",
              loader=load_grounding_dino, tiny_builder=build_tiny_grounding_dino,
              description="Grounding DINO Swin-T (172M parameters): text prompt → boxes, for Grounded-SAM"),
]
