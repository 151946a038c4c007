"""What a MultiDiffusion panorama costs as it gets wider: windows, UNet passes and seconds per width.

    python bench/panorama_cost.py                      # tiny SD-1.5 stand-in on CPU, 4 steps
    python bench/panorama_cost.py --steps 50 --widths 1 2 4 8

Runs the tab's own loop (`models.pipelines.multidiffusion.generate`) on the tiny profile's SD-1.5 (same
classes, random weights; its window is 128 px, SD-1.5's is 512 px). Widths are given in windows and the
stride defaults to 1/8 of the window (SD-1.5's 8 latents of 64), so the window counts are those of SD-1.5
at 512 px high and 512·k px wide. Next to each panorama, the same width in one pass (one window
the size of the latent) for comparison. Each guided UNet pass is a CFG batch of 2 on one window.
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
from models.pipelines import multidiffusion as md  # noqa: E402
from models.stable_diffusion import SD15  # noqa: E402


def timed(base, views, latent_h: int, latent_w: int, steps: int) -> tuple[int, float]:
    noise = md.initial_noise(base, latent_h * 8, latent_w * 8, torch.Generator().manual_seed(0))
    started = time.perf_counter()
    out = md.generate(base, ["a photo of the dolomites"], torch.ones(1, 1, latent_h, latent_w), views, noise,
                      torch.Generator().manual_seed(0), steps=steps)
    return out.unet_calls, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 3, 4], help="in windows")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--stride", type=int, default=None, help="latent pixels (default: window / 8)")
    args = parser.parse_args()
    base = models.get(SD15)
    window = base.unet.config.sample_size
    stride = args.stride or window // 8
    timed(base, [(0, window, 0, window)], window, window, 1)  # warm-up
    print(f"window {window} latents ({window * 8} px in this profile, 512 px for SD-1.5), stride {stride}, "
          f"{args.steps} DDIM steps, CFG batch of 2 per pass; torch threads {torch.get_num_threads()}")
    print("| width (windows) | windows | UNet passes (windows × steps) | MultiDiffusion s | one pass s | ratio |")
    print("|---|---|---|---|---|---|")
    for multiple in args.widths:
        latent_w = multiple * window
        views = md.windows(window, latent_w, window, stride)
        calls, seconds = timed(base, views, window, latent_w, args.steps)
        _, single = timed(base, [(0, window, 0, latent_w)], window, latent_w, args.steps)
        print(f"| {multiple} ({512 * multiple} px for SD-1.5) | {len(views)} | {calls} | "
              f"{seconds:.2f} | {single:.2f} | {seconds / single:.1f}× |")


if __name__ == "__main__":
    main()
