"""CLIP (OpenAI): the checkpoints, their loader, and the tiny stand-in with the same layout."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import LoadContext, ModelSpec

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 224
CONTEXT_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class ClipHandle:
    model: Any  # transformers.CLIPModel
    processor: Any  # transformers.CLIPProcessor
    device: "torch.device"


def load_clip(context: LoadContext) -> ClipHandle:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(context.source, **context.weights())
    processor = CLIPProcessor.from_pretrained(context.source, **context.hub())
    return ClipHandle(model.to(context.device).eval(), processor, context.device)


def tiny_tokenizer():
    """A real `CLIPTokenizer` built offline: byte-level characters, no merges (one token per byte).

    Shared by every tiny model with a CLIP text encoder (Stable Diffusion, GLIGEN, ...)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    characters = sorted(ByteLevel.alphabet())
    tokens = [BOS, EOS] + characters + [c + "</w>" for c in characters]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CONTEXT_LENGTH)


def image_processor():
    """The processor settings of OpenAI's CLIP checkpoints (resize 224, centre crop, CLIP mean/std)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def tiny_text_config(tokenizer, hidden_size: int = 32) -> dict:
    return dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_clip(folder: Path, patch_size: int) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config=tiny_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=patch_size),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    # Saved part by part, as in the openai/clip-* repos (preprocessor_config.json + tokenizer files).
    image_processor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _spec(name: str, checkpoint: str, patch_size: int, description: str) -> ModelSpec:
    return ModelSpec(name=name, checkpoint=checkpoint, loader=load_clip,
                     tiny_builder=lambda folder: build_tiny_clip(folder, patch_size=patch_size),
                     description=description)


SPECS = [
    _spec("clip-vit-base-patch32", "openai/clip-vit-base-patch32", 32, "CLIP ViT-B/32, 151M parameters"),
    _spec("clip-vit-base-patch16", "openai/clip-vit-base-patch16", 16, "CLIP ViT-B/16, 150M parameters"),
    _spec("clip-vit-large-patch14", "openai/clip-vit-large-patch14", 14, "CLIP ViT-L/14, 428M parameters"),
]
