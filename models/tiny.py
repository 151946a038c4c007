"""Tiny random-initialised checkpoints for the offline `tiny` profile.

Each builder writes, with `save_pretrained`, a folder laid out like the published checkpoint
(same model, tokenizer and processor classes and file names) so the real loader reads it.
Weights are random: outputs are noise, but every line of the real pipeline code runs.
"""
from __future__ import annotations

from pathlib import Path

CLIP_IMAGE_SIZE = 224
CLIP_CONTEXT_LENGTH = 77
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


def clip_tokenizer():
    """A real `CLIPTokenizer` built offline: byte-level characters, no merges (one token per byte)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    characters = sorted(ByteLevel.alphabet())
    tokens = [CLIP_BOS, CLIP_EOS] + characters + [c + "</w>" for c in characters]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_CONTEXT_LENGTH)


def clip_image_processor():
    """The processor settings of OpenAI's CLIP checkpoints (resize 224, centre crop, CLIP mean/std)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": CLIP_IMAGE_SIZE},
        crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def build_clip(folder: Path, patch_size: int) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=CLIP_CONTEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=CLIP_IMAGE_SIZE, patch_size=patch_size,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    # Saved part by part, as in the openai/clip-* repos (preprocessor_config.json + tokenizer files).
    clip_image_processor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
