"""unCLIP's split between prior and decoder: parameters of the real Kandinsky 2.2 networks, seconds of each stage.

    python bench/unclip_split.py                      # tiny profile on CPU, the tab's default step counts

Parameter counts come from the published architectures (`models.unclip.REAL_CONFIGS`) built on the meta
device: nothing is downloaded and no memory is used. Seconds are measured on the tiny profile's prior and
decoder (random weights, toy widths; the decoder at 64 px) with the hub profile's step counts (prior 25,
decoder 50), so only the *split* of the time between the stages says anything, and only roughly: the real
prior is a transformer over 81 tokens, the real decoder a 1.2B UNet at 64x64 latents.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PP_MODELS", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import models  # noqa: E402
from demos.tabs.unclip import decode  # noqa: E402
from models.unclip import DECODER, PRIOR, REAL_CONFIGS, build_network  # noqa: E402

STAGES = {"prior": ("prior", "text_encoder", "image_encoder"), "decoder": ("unet", "movq")}


def real_parameters() -> dict[str, int]:
    counts = {}
    with torch.device("meta"):
        for part, config in REAL_CONFIGS.items():
            counts[part] = sum(p.numel() for p in build_network(part, config).parameters())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior-steps", type=int, default=25)
    parser.add_argument("--decoder-steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = real_parameters()
    print("| network (published config) | stage | parameters |\n|---|---|---|")
    for stage, parts in STAGES.items():
        for part in parts:
            print(f"| {part} | {stage} | {counts[part] / 1e6:,.0f} M |")
    for stage, parts in STAGES.items():
        print(f"| **{stage} total** | | **{sum(counts[p] for p in parts) / 1e9:.2f} B** |")
    prior, decoder = models.get(PRIOR), models.get(DECODER)
    times = {"prior": [], "decoder": []}
    for run in range(args.runs + 1):  # the first run warms up
        started = time.perf_counter()
        out = prior("a red cat, 4k photo", num_inference_steps=args.prior_steps,
                    generator=torch.Generator().manual_seed(run))
        middle = time.perf_counter()
        decode(decoder, out.image_embeds, out.negative_image_embeds, run, args.decoder_steps)
        if run:
            times["prior"].append(middle - started)
            times["decoder"].append(time.perf_counter() - middle)
    prior_s, decoder_s = (sorted(times[k])[len(times[k]) // 2] for k in ("prior", "decoder"))
    print(f"\ntiny profile, median of {args.runs}: prior {args.prior_steps} steps {prior_s:.2f} s "
          f"({prior_s / (prior_s + decoder_s):.0%}), decoder {args.decoder_steps} steps {decoder_s:.2f} s "
          f"({decoder_s / (prior_s + decoder_s):.0%}); torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
