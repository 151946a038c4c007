"""What each personalisation method adds to SD-1.5, from the published architecture's shapes, and what a
training step costs at SD-1.5's real size (random weights, no download).

    python bench/personalisation_cost.py                     # table + CPU training steps at 128 px
    python bench/personalisation_cost.py --table-only
    python bench/personalisation_cost.py --device cuda --resolution 512 --timed-steps 10

The table counts parameters from the modules the methods touch in SD-1.5's UNet (built on the meta
device: no memory) and CLIP ViT-L/14's 768-wide token embeddings: textual inversion one 768-d row;
LoRA / DreamBooth-LoRA rank 4 on every attention's to_q/to_k/to_v/to_out.0 (the diffusers scripts'
default); Custom Diffusion full copies of every cross-attention's K and V plus one row per modifier
token — whose published `<newN>.bin` files hold the whole 49410 × 768 table, because the training
script `torch.save`s a row *view* and a view pickles its whole storage; full DreamBooth the whole UNet.
File sizes are the tensors' bytes in the dtype the published files use (fp32), without container
overhead. Training steps run the tab's own loop (`train_concept`, batch of 4 photos, AdamW).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from controlnet_memory import sd15_components  # noqa: E402
from models.pipelines.personalisation_training import LORA, LORA_TARGETS, TEXTUAL_INVERSION, train_concept  # noqa: E402

WIDTH, VOCABULARY = 768, 49408 + 2  # CLIP ViT-L/14 token width; the table after adding <new1>, <new2>
RANK = 4


def attention_projections(unet) -> list[tuple[str, int, int]]:
    """(name, in, out) of every to_q/to_k/to_v/to_out.0 Linear in the UNet's attention layers."""
    found = []
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name.endswith(f".{t}") for t in LORA_TARGETS) \
                and ".attn" in name:
            found.append((name, module.in_features, module.out_features))
    return found


def footprint_table() -> list[tuple[str, int, int]]:
    """(method, parameters added or changed, bytes of its published files in fp32)."""
    with torch.device("meta"):
        unet = sd15_components(torch.float32, torch.device("meta"))["unet"]
    projections = attention_projections(unet)
    lora = sum(RANK * (n_in + n_out) for _, n_in, n_out in projections)
    kv = sum(n_in * n_out for name, n_in, n_out in projections if ".attn2.to_k" in name or ".attn2.to_v" in name)
    full = sum(p.numel() for p in unet.parameters())
    return [
        ("textual inversion (1 token)", WIDTH, 4 * WIDTH),
        (f"LoRA rank {RANK} (UNet attention q,k,v,out)", lora, 4 * lora),
        (f"DreamBooth-LoRA rank {RANK}", lora, 4 * lora),
        ("Custom Diffusion (cross-attn K,V + 2 tokens)", kv + 2 * WIDTH, 4 * kv + 2 * 4 * VOCABULARY * WIDTH),
        ("DreamBooth full fine-tune (whole UNet; the fp16 file is half)", full, 4 * full),
    ]


def training_step_seconds(method: str, side: int, device: str, dtype, timed: int) -> float:
    """Mean seconds of one step of the tab's training loop at real size (first step not timed)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**sd15_components(dtype, torch.device(device)))
    photos = [Image.new("RGB", (side, side), colour) for colour in ("red", "green", "blue")]
    stamps = []
    for _ in train_concept(pipe, photos, method, timed + 1, 1e-4, RANK, "<my-concept>", "toy", 0, side,
                           sample_every=10**6, sample=lambda _text: None):
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return (stamps[-1] - stamps[0]) / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--timed-steps", type=int, default=2)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    print("| method | parameters | file (fp32) |\n|---|---|---|")
    for method, parameters, nbytes in footprint_table():
        print(f"| {method} | {parameters:,} | {nbytes / 1e6:,.3f} MB |")
    if args.table_only:
        return
    print(f"\nTraining step at real size, {args.device} {args.dtype}, {args.resolution} px, batch 4:")
    for method in (TEXTUAL_INVERSION, LORA):
        seconds = training_step_seconds(method, args.resolution, args.device, getattr(torch, args.dtype),
                                        args.timed_steps)
        print(f"  {method}: {seconds:.2f} s/step", flush=True)


if __name__ == "__main__":
    main()
