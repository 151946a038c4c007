"""Visual QA: answer latency per model (tiny profile by default) and the weight memory each
published checkpoint needs, from its architecture (parameters × bytes per dtype).

    python bench/vqa.py                  # tiny models, offline; memory table from the configs
    PP_MODELS=hub python bench/vqa.py    # latency of the published checkpoints (downloads ~47 GB)

The real architectures are instantiated on the meta device (no weights allocated) from configs
written out below to match each repository's config.json; parameters are counted exactly.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PP_MODELS", "tiny")
os.environ.setdefault("PP_TINY_DIR", tempfile.mkdtemp(prefix="pp-bench-"))

from PIL import Image  # noqa: E402

import models  # noqa: E402
from demos import ASSETS  # noqa: E402
from demos.tabs.vqa import (BLIP2_DECODING, LEFT_MODELS, LLAVA_DECODING, LLAVA_MODELS,  # noqa: E402
                       answer_blip2, stream_llava)

REPEATS = 5
QUESTION = "What is in the cup?"
BYTES_PER_PARAMETER = {"fp32": 4, "fp16": 2, "int8": 1, "nf4": 0.5}

# The published config.json of each checkpoint, reduced to what fixes the parameter count.
OPT_2_7B = dict(model_type="opt", hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
                vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=2560)
FLAN_T5_XL = dict(model_type="t5", d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24,
                  num_decoder_layers=24, vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
BLIP2_VIT_G = dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                   image_size=224, patch_size=14)
BLIP2_QFORMER = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     cross_attention_frequency=2, encoder_hidden_size=1408, vocab_size=30522)
CLIP_L_336 = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
INSTRUCTBLIP_QFORMER = dict(BLIP2_QFORMER, vocab_size=30523)  # BERT's vocabulary + the [DEC] token
VICUNA_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
SIGLIP_SO400M = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                     num_hidden_layers=26, num_attention_heads=16, image_size=384, patch_size=14,
                     vision_use_head=False)
QWEN15_0_5B = dict(model_type="qwen2", hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                   num_attention_heads=16, num_key_value_heads=16, vocab_size=152000, tie_word_embeddings=True,
                   max_position_embeddings=32768)


def real_configs() -> dict:
    from transformers import Blip2Config, InstructBlipConfig, LlavaConfig

    blip2 = dict(vision_config=BLIP2_VIT_G, qformer_config=BLIP2_QFORMER, num_query_tokens=32)
    return {
        "blip2-opt-2.7b": ("Blip2ForConditionalGeneration", Blip2Config(text_config=OPT_2_7B, **blip2)),
        "blip2-flan-t5-xl": ("Blip2ForConditionalGeneration", Blip2Config(text_config=FLAN_T5_XL, **blip2)),
        "instructblip-vicuna-7b": ("InstructBlipForConditionalGeneration", InstructBlipConfig(
            vision_config=BLIP2_VIT_G, qformer_config=INSTRUCTBLIP_QFORMER, text_config=dict(VICUNA_7B, vocab_size=32001),
            num_query_tokens=32)),
        "llava-1.5-7b": ("LlavaForConditionalGeneration", LlavaConfig(
            vision_config=CLIP_L_336, text_config=VICUNA_7B, vision_feature_layer=-2,
            vision_feature_select_strategy="default")),
        "llava-interleave-qwen-0.5b": ("LlavaForConditionalGeneration", LlavaConfig(
            vision_config=SIGLIP_SO400M, text_config=QWEN15_0_5B, vision_feature_layer=-1,
            vision_feature_select_strategy="full", tie_word_embeddings=True)),
    }


def parameter_count(model_class: str, config) -> int:
    """Exact parameter count of the architecture, allocated on the meta device (no memory used)."""
    import torch
    import transformers

    with torch.device("meta"):
        model = getattr(transformers, model_class)(config)
    return sum(parameter.numel() for parameter in model.parameters())


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def latency(name: str, image: Image.Image) -> tuple[float, float, int]:
    """(first call incl. loading, median answer seconds, new tokens) with the tab's default decoding,
    LLaVA greedy so every run generates the same tokens."""
    if name in LEFT_MODELS:
        def answer():
            return answer_blip2(image, QUESTION, "vqa", name, BLIP2_DECODING)
    else:
        def answer():
            return list(stream_llava(image, [], QUESTION, name, replace(LLAVA_DECODING, strategy="greedy")))[-1]
    first = seconds(answer)
    runs = [seconds(answer) for _ in range(REPEATS)]
    return first, statistics.median(runs), answer().new_tokens


def main() -> None:
    image = Image.open(ASSETS / "coffee.jpg")
    from models.device import pick_device

    print(f"Answer latency, profile {models.model_settings.profile}, device {pick_device()}; "
          f"median of {REPEATS}; BLIP-2 and InstructBLIP: beam search 5 beams, max 30 tokens; LLaVA: greedy, max 200 tokens, streamed")
    print(f"{'model':28} {'first (load+answer)':>20} {'answer':>9} {'new tokens':>11} {'ms/token':>9}")
    for name in LEFT_MODELS + LLAVA_MODELS:
        first, median, tokens = latency(name, image)
        print(f"{name:28} {first:19.2f}s {median:8.3f}s {tokens:11d} {1000 * median / max(tokens, 1):9.1f}")

    print("\nWeights of the published checkpoints (parameters counted from the architecture; activations, "
          "KV cache and CUDA context come on top)")
    print(f"{'model':28} {'parameters':>12} " + " ".join(f"{dtype:>8}" for dtype in BYTES_PER_PARAMETER))
    for name, (model_class, config) in real_configs().items():
        count = parameter_count(model_class, config)
        sizes = " ".join(f"{count * size / 1e9:7.2f}G" for size in BYTES_PER_PARAMETER.values())
        print(f"{name:28} {count / 1e9:11.3f}B {sizes}")


if __name__ == "__main__":
    main()
