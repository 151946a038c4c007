"""Loaders: a folder or hub repo id in, a ready-to-run handle out. Same code for both profiles.

Heavy libraries are imported inside each loader so the app starts without loading them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .registry import LoadContext

if TYPE_CHECKING:
    import torch


@dataclass
class ClipHandle:
    model: Any  # transformers.CLIPModel
    processor: Any  # transformers.CLIPProcessor
    device: "torch.device"


def load_clip(context: LoadContext) -> ClipHandle:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(context.source, revision=context.revision, dtype=context.dtype)
    processor = CLIPProcessor.from_pretrained(context.source, revision=context.revision)
    return ClipHandle(model.to(context.device).eval(), processor, context.device)
