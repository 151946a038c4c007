"""What layout guidance costs: one guidance iteration (UNet forward with attention capture + backward to
the latent, conditional batch of 1) and one guided step (default 5 iterations + the normal CFG step) as
ratios to a plain CFG step (UNet forward, batch 2, no gradients); and the peak memory of the backward pass.

    python bench/layout_guidance_cost.py               # tiny SD-1.5-layout UNet (CPU, seconds)
    python bench/layout_guidance_cost.py --real-size   # SD-1.5's UNet config, random init, 512x512
                                                       # (meant for a GPU: fp16 there, peak memory reported)
    python bench/layout_guidance_cost.py --real-size --side 256 --repeats 3   # the same UNet on a CPU
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.device import pick_device, pick_dtype  # noqa: E402
from models.pipelines import layout_guidance as lg  # noqa: E402
from models.stable_diffusion import TINY_IMAGE_SIDE, tiny_unet_config  # noqa: E402

TOKENS = [[2, 3], [6]]  # two objects, one of two tokens
BOXES = [[[0.1, 0.1, 0.5, 0.9]], [[0.55, 0.4, 0.95, 0.9]]]


def build_unet(real_size: bool, side: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    if real_size:  # UNet2DConditionModel's defaults are SD-1.x's blocks; SD-1.5 reads 768-d CLIP-L text
        return UNet2DConditionModel(sample_size=64, cross_attention_dim=768), side
    return UNet2DConditionModel(**tiny_unet_config()), TINY_IMAGE_SIDE


def timed(function, repeats: int, synchronize) -> float:
    function()  # warm-up
    synchronize()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize()
        seconds.append(time.perf_counter() - started)
    return min(seconds)  # best of N: the machine may be shared, the minimum is the least disturbed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="SD-1.5-sized UNet at 512x512 (random init)")
    parser.add_argument("--side", type=int, default=512, help="image side with --real-size (256 keeps a CPU run short)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    device = pick_device()
    dtype = pick_dtype(device)
    unet, side = build_unet(args.real_size, args.side)
    unet = unet.to(device, dtype).eval()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    latent = torch.randn(1, 4, side // 8, side // 8, device=device, dtype=dtype)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    timestep = torch.tensor(981, device=device)
    cuda = device.type == "cuda"
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)

    def plain_step() -> None:
        with torch.no_grad():
            unet(torch.cat([latent] * 2), timestep, encoder_hidden_states=text)

    def guidance_iteration(store: lg.AttentionStore) -> None:
        with torch.enable_grad():
            z = latent.detach().requires_grad_(True)
            unet(z, timestep, encoder_hidden_states=text[1:])
            energy = lg.layout_energy(store.layer_maps(conditional_half=False), TOKENS, BOXES)
            torch.autograd.grad(lg.LOSS_SCALE * energy, z)
        store.maps.clear()

    plain = timed(plain_step, args.repeats, synchronize)
    with lg.capture_cross_attention(unet) as store:
        store.recording = True
        plain_captured = timed(plain_step, args.repeats, synchronize)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        iteration = timed(lambda: guidance_iteration(store), args.repeats, synchronize)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    guided_step = lg.ITERATIONS * iteration + plain_captured
    steps, guided = lg.STEPS, lg.GUIDED_STEPS
    image_ratio = (guided * guided_step + (steps - guided) * plain_captured) / (steps * plain)
    print(f"UNet: {'SD-1.5 size' if args.real_size else 'tiny SD-1.5 layout'} at {side}x{side}, "
          f"{sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M parameters, {device}, {dtype}, "
          f"best of {args.repeats}")
    print(f"plain CFG step (batch 2, SDPA):            {plain * 1000:8.1f} ms  = 1.00")
    print(f"plain CFG step, attention captured:        {plain_captured * 1000:8.1f} ms  = {plain_captured / plain:.2f}")
    print(f"one guidance iteration (fwd+bwd, batch 1): {iteration * 1000:8.1f} ms  = {iteration / plain:.2f}")
    print(f"one guided step ({lg.ITERATIONS} iterations + CFG step):  {guided_step * 1000:8.1f} ms  = "
          f"{guided_step / plain:.2f}")
    print(f"whole image, {guided} of {steps} steps guided (worst case, no early stop): {image_ratio:.2f}x a plain image")
    if peak is not None:
        print(f"peak GPU memory during a guidance iteration (weights included): {peak:.2f} GiB")
    else:
        print("peak memory of the backward pass: run on a CUDA GPU to measure it")


if __name__ == "__main__":
    main()
