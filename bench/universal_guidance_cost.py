"""What a universally guided DDIM step costs, as ratios to a plain step (CFG UNet forward, batch 2, no
gradients): forward guidance only (UNet forward with grad + VAE decode + guide + backward through all three),
+ backward guidance (m Adam steps through VAE decode and guide), × k self-recurrence, and forward guidance
with the guide's image decoded from a half-resolution latent.

SD-1.5's UNet and VAE at their real architecture size (random init: timing only); the guide is FaceNet's
InceptionResnetV1 at its published size (random init) on the face crop. Reduced resolution on a CPU.

    python bench/universal_guidance_cost.py                 # 256x256 (32x32 latent), CPU
    python bench/universal_guidance_cost.py --side 512      # SD-1.5's own resolution (meant for a GPU)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.device import pick_device, pick_dtype  # noqa: E402
from models.faces import FACENET_SIDE, facenet_network  # noqa: E402
from models.pipelines import universal_guidance as ug  # noqa: E402
from models.pipelines.face_swap import face_views  # noqa: E402
from models.stable_diffusion import SD15_SCHEDULER  # noqa: E402


def build(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD-1.x's blocks
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512, scaling_factor=0.18215)
    guide = facenet_network([5, 10, 5])
    for module in (unet, vae, guide):
        module.to(device, dtype).eval().requires_grad_(False)
    scheduler = DDIMScheduler.from_config({**SD15_SCHEDULER, "clip_sample": False})
    return unet, vae, guide, scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256, help="image side in pixels (latent = side / 8)")
    parser.add_argument("--backward-steps", type=int, default=2, help="m")
    parser.add_argument("--recurrence", type=int, default=2, help="k")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    device = pick_device()
    dtype = pick_dtype(device)
    unet, vae, guide, scheduler = build(device, dtype)
    scheduler.set_timesteps(50)
    t = scheduler.timesteps[10]
    generator = torch.Generator(device).manual_seed(0)
    z = torch.randn(1, 4, args.side // 8, args.side // 8, generator=generator, device=device, dtype=dtype)
    embeddings = torch.randn(2, 77, 768, generator=generator, device=device, dtype=dtype)
    box = torch.tensor([0.25, 0.18, 0.75, 0.68]) * args.side
    target = F.normalize(torch.randn(1, 512, device=device), dim=-1)

    def loss(image: torch.Tensor) -> torch.Tensor:
        crop_box = box * image.shape[-1] / args.side  # a lower-resolution guide image
        embedding = guide(face_views(image, crop_box, FACENET_SIDE) * (127.5 / 128))
        return 1 - F.cosine_similarity(embedding.float(), target, dim=-1).mean()

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(settings: ug.GuidanceSettings | None) -> float:
        def run() -> None:
            if settings is None:
                with torch.no_grad():
                    ug.guided_ddim_step(unet, vae, scheduler, z, t, embeddings, None, ug.GuidanceSettings(), 0.0, None)
            else:
                ug.guided_ddim_step(unet, vae, scheduler, z, t, embeddings, loss, settings, settings.forward_strength,
                                    torch.Generator(device).manual_seed(1))
        run()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            synchronize()
            started = time.perf_counter()
            run()
            synchronize()
            best = min(best, time.perf_counter() - started)  # the machine may be shared: the least disturbed
        return best

    m, k = args.backward_steps, args.recurrence
    cases = [
        ("plain step (CFG UNet forward, no grad)", None),
        ("forward guidance (s > 0, m = 0, k = 1)", ug.GuidanceSettings(forward_strength=1.0)),
        ("forward guidance, guide image from a ½-res latent", ug.GuidanceSettings(forward_strength=1.0, guide_scale=0.5)),
        (f"forward + backward (m = {m})", ug.GuidanceSettings(forward_strength=1.0, backward_steps=m)),
        (f"forward × self-recurrence (k = {k})", ug.GuidanceSettings(forward_strength=1.0, recurrence=k)),
        (f"forward + backward (m = {m}) × k = {k}",
         ug.GuidanceSettings(forward_strength=1.0, backward_steps=m, recurrence=k)),
    ]
    print(f"device {device}, {dtype}, {args.side}x{args.side} (latent {args.side // 8}²), best of {args.repeats}, "
          f"torch threads {torch.get_num_threads()}")
    plain = None
    for name, settings in cases:
        seconds = timed(settings)
        plain = plain or seconds
        print(f"{name:<52} {seconds:8.2f} s   {seconds / plain:6.1f}× plain")


if __name__ == "__main__":
    main()
