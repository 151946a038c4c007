"""What null-text inversion costs, and what it buys.

    python bench/null_text_inversion_cost.py                  # the tiny profile, end to end
    python bench/null_text_inversion_cost.py --real-size      # SD-1.5's UNet (random init), per pass

The tiny run inverts a photo exactly as the Prompt-to-prompt tab does (50 DDIM steps, ≤ 10 Adam
iterations per step, early stop) and reports seconds, UNet passes and Adam iterations of the
optimisation, and the reconstruction before and after it (PSNR against the photo, and the error of
the sampled-back latent to z0). With `--real-size`, SD-1.5's UNet (random weights: the cost does
not depend on them) is timed at `--resolution` for the three kinds of pass one optimisation makes
— per step one conditional forward, up to 10 forward+backward passes to ∅, one CFG forward of
batch 2 — and the cost of a whole optimisation is their sum (the worst case: no early stop).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tiny_end_to_end(steps: int, inner_steps: int, photo: str, prompt: str) -> None:
    os.environ.setdefault("PP_MODELS", "tiny")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PIL import Image

    import models
    from models.pipelines import null_text_inversion as nti
    from models.stable_diffusion import SD15

    base = models.get(SD15)
    inversion = nti.invert(base, Image.open(ROOT / "assets" / photo), prompt, steps, inner_steps=inner_steps)
    early = sum(len(step) < inner_steps for step in inversion.losses)
    print(f"tiny profile, {photo} '{prompt}', {steps} DDIM steps, <= {inner_steps} Adam iterations per step, "
          f"{base.device}, {torch.get_num_threads()} threads")
    for phase in ("DDIM inversion", "null-text optimisation"):
        print(f"  {phase}: {inversion.seconds[phase]:.1f} s, {inversion.unet_calls[phase]} UNet passes")
    print(f"  Adam iterations: {inversion.iterations} ({early} of {steps} steps stopped early)")
    for name, value in inversion.psnr.items():
        print(f"  PSNR {name}: {value:.2f} dB")
    for name, value in inversion.latent_error.items():
        print(f"  latent MSE to z0, {name}: {value:.4f}")


def timed(function, repeats: int) -> float:
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best  # the machine may be shared: the minimum is the least disturbed


def real_size_passes(resolution: int, steps: int, inner_steps: int, repeats: int) -> None:
    from diffusers import UNet2DConditionModel

    from models.device import pick_device, pick_dtype

    device = pick_device()
    dtype = pick_dtype(device)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=resolution // 8, cross_attention_dim=768).to(device, dtype).eval()
    unet.requires_grad_(False)
    latent = torch.randn((1, 4, resolution // 8, resolution // 8), device=device, dtype=dtype)
    text = torch.randn((1, 77, 768), device=device, dtype=dtype)
    null = torch.randn((1, 77, 768), device=device, dtype=torch.float32, requires_grad=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def forward() -> None:
        with torch.no_grad():
            unet(latent, 500, encoder_hidden_states=text)
        synchronize()

    def forward_backward() -> None:
        noise = unet(latent, 500, encoder_hidden_states=null.to(dtype)).sample
        torch.autograd.grad(noise.float().square().mean(), [null])
        synchronize()

    def cfg_forward() -> None:
        with torch.no_grad():
            unet(torch.cat([latent] * 2), 500, encoder_hidden_states=torch.cat([null.detach().to(dtype), text]))
        synchronize()

    seconds = {name: timed(function, repeats) for name, function in
               [("conditional forward", forward), ("forward + backward to ∅", forward_backward),
                ("CFG forward, batch 2", cfg_forward)]}
    passes = steps * (2 + inner_steps)
    total = steps * (seconds["conditional forward"] + inner_steps * seconds["forward + backward to ∅"]
                     + seconds["CFG forward, batch 2"])
    print(f"SD-1.5 UNet (random init), {resolution}x{resolution}, {device} {dtype}, "
          f"{torch.get_num_threads()} threads, best of {repeats}")
    for name, value in seconds.items():
        print(f"  {name}: {value:.3f} s")
    print(f"  one optimisation, {steps} steps x (1 + {inner_steps} + 1) passes = {passes} UNet passes "
          f"({steps * inner_steps} with backward): {total:.0f} s without early stops")
    print(f"  DDIM inversion before it: {steps} conditional forwards = "
          f"{steps * seconds['conditional forward']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="time SD-1.5's UNet passes instead")
    parser.add_argument("--resolution", type=int, default=64, help="image side for --real-size")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photo", default="chelsea.jpg")
    parser.add_argument("--prompt", default="a cat")
    args = parser.parse_args()
    if args.real_size:
        real_size_passes(args.resolution, args.steps, args.inner_steps, args.repeats)
    else:
        tiny_end_to_end(args.steps, args.inner_steps, args.photo, args.prompt)


if __name__ == "__main__":
    main()
