"""What few-step sampling buys: UNet calls and seconds of DDPM-1000, DDIM-50 and LCM-4 on SD-1.5's
real UNet (860M parameters, random weights, no download), as ratios.

    python bench/diffusion_basics_cost.py                          # CPU, 64 px, 2 timed calls each
    python bench/diffusion_basics_cost.py --device cuda --resolution 512 --timed-calls 10

UNet calls are counted by running each sampler's full schedule through the tab's own loop
(`models.pipelines.diffusion_maths.denoise`, the diffusers schedulers) on a tiny UNet of the same class: the
count depends on the schedule, not on the network's width. Seconds per call are timed on the
real-size UNet: with CFG (DDPM, DDIM) a batch of 2, for LCM a batch of 1 with a rank-64 LoRA on
LCM-LoRA's layers (unfused, as the tab attaches it). A run's seconds are its calls × seconds per
call; next to a UNet call, the scheduler's arithmetic is negligible. On CPU a real-size DDPM-1000
would take hours, which is the point of the comparison.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from models.pipelines.samplers import counting_calls  # noqa: E402
from models.few_step import LCM_LORA_TARGETS  # noqa: E402
from models.pipelines.diffusion_maths import denoise, make_scheduler  # noqa: E402
from models.stable_diffusion import SD15_SCHEDULER, tiny_unet_config  # noqa: E402

SD15_TEXT = (77, 768)  # CLIP ViT-L/14 tokens × width: SD-1.5's cross-attention input
RUNS = {  # name → (sampler, steps, CFG)
    "DDPM-1000": ("DDPM", 1000, True),
    "DDIM-50": ("DDIM", 50, True),
    "LCM-4": ("LCM", 4, False),
}


def lcm_lora_config():
    from peft import LoraConfig

    return LoraConfig(r=64, lora_alpha=64, target_modules=LCM_LORA_TARGETS)


def counted_calls(sampler: str, steps: int, guided: bool) -> int:
    """UNet calls of the full schedule, through the tab's sampling loop on a tiny UNet of SD-1.5's class."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**tiny_unet_config()).eval()
    # SD-1.5's steps_offset of 1 would push DDPM's 1000th step to t = 1000, past the table; counts don't change.
    scheduler = make_scheduler(SD15_SCHEDULER, sampler, clip_sample=False, steps_offset=0)
    scheduler.set_timesteps(steps)
    text = torch.zeros(2 if guided else 1, 77, unet.config.cross_attention_dim)

    def predict(x: torch.Tensor, t) -> torch.Tensor:
        return unet(torch.cat([x] * len(text)), t, encoder_hidden_states=text).sample[:1]
    with torch.inference_mode(), counting_calls(unet) as counter:
        denoise(predict, scheduler, torch.randn(1, 4, 8, 8), {}, 1, lambda x: x, None, sampler)
    return counter.calls


def seconds_per_call(unet, batch: int, latent_side: int, count: int, device: torch.device, dtype: torch.dtype) -> float:
    x = torch.randn(batch, 4, latent_side, latent_side, device=device, dtype=dtype)
    text = torch.randn(batch, *SD15_TEXT, device=device, dtype=dtype)

    def call() -> None:
        unet(x, 500, encoder_hidden_states=text)
    with torch.inference_mode():
        call()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(count):
            call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=64, help="image side in pixels (latent side = /8)")
    parser.add_argument("--timed-calls", type=int, default=2)
    parser.add_argument("--fp16", action="store_true")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), torch.float16 if args.fp16 else torch.float32
    from diffusers import UNet2DConditionModel

    calls = {name: counted_calls(*run) for name, run in RUNS.items()}
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=SD15_TEXT[1], sample_size=64).to(device, dtype).eval()
    parameters = sum(p.numel() for p in unet.parameters())
    latent_side = args.resolution // 8
    guided = seconds_per_call(unet, 2, latent_side, args.timed_calls, device, dtype)
    unet.add_adapter(lcm_lora_config())
    lora_parameters = sum(p.numel() for name, p in unet.named_parameters() if "lora_" in name)
    unet.to(device, dtype)
    with_lora = seconds_per_call(unet, 1, latent_side, args.timed_calls, device, dtype)

    print(f"SD-1.5 UNet {parameters / 1e6:.0f}M (+ LoRA r=64 {lora_parameters / 1e6:.1f}M), {args.resolution} px "
          f"({latent_side}x{latent_side} latent), {device} {dtype}, torch threads {torch.get_num_threads()}")
    print(f"seconds per UNet call: CFG batch 2 {guided:.3f} s, LCM batch 1 with LoRA {with_lora:.3f} s")
    seconds = {name: calls[name] * (guided if RUNS[name][2] else with_lora) for name in RUNS}
    print(f"{'run':<10} {'UNet calls':>10} {'seconds':>10} {'calls vs LCM-4':>15} {'seconds vs LCM-4':>17}")
    for name in RUNS:
        print(f"{name:<10} {calls[name]:>10} {seconds[name]:>10.1f} {calls[name] / calls['LCM-4']:>15.0f}x "
              f"{seconds[name] / seconds['LCM-4']:>16.0f}x")


if __name__ == "__main__":
    main()
