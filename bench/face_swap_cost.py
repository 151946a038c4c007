"""Cost of the DiffFace-style sampler at the real architecture sizes, and the identity-loss drop
that guidance buys in the tiny profile.

    python bench/face_swap_cost.py                       # CPU, fp32, 2 timed steps
    python bench/face_swap_cost.py --device cuda --steps-timed 5

Part 1 builds the real-size networks with random weights (no download): the CelebA-HQ UNet
(114M, 256²), FaceNet InceptionResnetV1 (8 views at 160²) and the SegFormer MiT-b5 parser (512²),
and times one guided step (UNet forward + backward through all three losses) against one unguided
step (all λ = 0), with peak memory. Part 2 runs the tiny profile's guide and prior with λ_id = 0
and λ_id > 0 from the same seed and prints the final identity loss of each.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Part 2 uses the registry's tiny profile; part 1 builds its networks directly.
os.environ["PP_MODELS"] = "tiny"
os.environ.setdefault("PP_TINY_DIR", tempfile.mkdtemp(prefix="pp-tiny-"))

import torch  # noqa: E402

from models.ddpm import CELEBAHQ_SCHEDULER, CELEBAHQ_UNET  # noqa: E402
from models.faces import FACE_CLASSES, FACENET_SIDE, FaceParser, FaceRecognizer, facenet_network  # noqa: E402
from models.pipelines.face_swap import (face_swap_sample, face_views, identity_loss, parsing_loss,  # noqa: E402
                                        reconstruction_loss)


def real_size_models(device: torch.device, dtype: torch.dtype):
    from diffusers import DDPMScheduler, UNet2DModel
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    unet = UNet2DModel(**CELEBAHQ_UNET).to(device, dtype).eval().requires_grad_(False)
    guide = FaceRecognizer(facenet_network([5, 10, 5]).to(device, dtype).eval().requires_grad_(False), FACENET_SIDE)
    mit_b5 = SegformerConfig(depths=[3, 6, 40, 3], hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8],
                             decoder_hidden_size=768, num_labels=19)
    parser = FaceParser(SegformerForSemanticSegmentation(mit_b5).to(device, dtype).eval().requires_grad_(False), 512,
                        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return unet, DDPMScheduler(**CELEBAHQ_SCHEDULER), guide, parser


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process high-water mark (Linux: KiB)


def time_steps(unet, scheduler, target, mask, losses, count: int, device: torch.device) -> float:
    """Seconds per step over `count` steps (after one warm-up step), the 100-step schedule's last ones."""
    def run(steps_run: int) -> None:
        face_swap_sample(unet, scheduler, target, mask, losses, steps=100, skip=100 - steps_run, threshold=0,
                         generator=torch.Generator(device).manual_seed(0))
    run(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run(count)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / count


def real_size_cost(device: torch.device, dtype: torch.dtype, count: int) -> None:
    unet, scheduler, guide, parser = real_size_models(device, dtype)
    print(f"parameters: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M, FaceNet "
          f"{sum(p.numel() for p in guide.network.parameters()) / 1e6:.0f}M, SegFormer "
          f"{sum(p.numel() for p in parser.model.parameters()) / 1e6:.0f}M; device {device}, {dtype}")
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(1, 3, 256, 256, generator=generator) * 2 - 1).to(device, dtype)
    source = (torch.rand(1, 3, 256, 256, generator=generator) * 2 - 1).to(device, dtype)
    box = torch.tensor([48.0, 48.0, 208.0, 208.0])
    with torch.no_grad():
        target_logits = parser.logits(target)
        source_embedding = guide.embed(face_views(source, box, guide.image_size))
    mask = torch.zeros_like(target[:, :1])
    mask[..., 64:192, 64:192] = 1

    def losses(scale: float) -> dict:
        return {
            "identity": (6000.0 * scale, identity_loss(guide.embed, source_embedding, mask, box, guide.image_size, 8,
                                                       torch.Generator().manual_seed(0))),
            "parsing": (200.0 * scale, parsing_loss(parser.logits, target_logits, FACE_CLASSES)),
            "reconstruction": (50.0 * scale, reconstruction_loss(target)),
        }

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    unguided = time_steps(unet, scheduler, target, mask, losses(0.0), count, device)
    unguided_peak = peak_bytes(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    guided = time_steps(unet, scheduler, target, mask, losses(1.0), count, device)
    guided_peak = peak_bytes(device)
    print(f"unguided step (plain masked SDEdit): {unguided:.2f} s, peak {unguided_peak / 2**30:.2f} GiB")
    print(f"guided step (λ_id, λ_seg, λ_rec > 0): {guided:.2f} s, peak {guided_peak / 2**30:.2f} GiB")
    print(f"guided / unguided: {guided / unguided:.1f}x per step; one 75-step sample ≈ {75 * guided:.0f} s, "
          f"N = 4 candidates ≈ {300 * guided / 60:.1f} min")


def tiny_identity_drop() -> None:
    """The tiny profile's prior and guide, λ_id = 0 against λ_id = 300 (as tests/test_face_swap.py)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    import models
    from models.faces import align_face

    prior, guide, detector = (models.get(name) for name in ("ddpm-celebahq-256", "facenet-vggface2",
                                                           "face-detector-mtcnn"))
    size = prior.unet.config.sample_size
    camera = np.asarray(Image.open(Path(__file__).resolve().parent.parent / "assets" / "camera.jpg").convert("RGB"))
    tensors = []
    for photo in (skimage.data.astronaut(), camera):
        aligned = align_face(photo, detector.detect(Image.fromarray(photo))[0], size)
        pixels = torch.from_numpy(aligned.image).permute(2, 0, 1)[None].float() / 127.5 - 1
        tensors.append((pixels, torch.tensor(aligned.box, dtype=torch.float32)))
    (target, target_box), (source, source_box) = tensors
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    with torch.no_grad():
        embedding = guide.embed(face_views(source, source_box, guide.image_size))
    loss = identity_loss(guide.embed, embedding, mask, target_box, guide.image_size, 1, None)
    weights, seeds = (0.0, 10.0, 30.0, 100.0, 300.0), range(11, 16)
    finals = {}
    for seed in seeds:
        for weight in weights:
            trace = face_swap_sample(prior.unet, prior.scheduler, target, mask, {"identity": (weight, loss)},
                                     steps=25, skip=5, threshold=8, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                finals[seed, weight] = float(loss(trace.image))
    print("tiny profile, 20 steps, seeds 11-15: final L_id without guidance minus with it")
    for weight in weights[1:]:
        drops = [finals[seed, 0.0] - finals[seed, weight] for seed in seeds]
        print(f"  λ_id = {weight:>5g}: median drop {np.median(drops):.4f}, min {min(drops):.4f}, max {max(drops):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA)")
    parser.add_argument("--steps-timed", type=int, default=2)
    parser.add_argument("--skip-real", action="store_true", help="only the tiny identity-loss drop")
    args = parser.parse_args()
    if not args.skip_real:
        real_size_cost(torch.device(args.device), torch.float16 if args.fp16 else torch.float32, args.steps_timed)
    tiny_identity_drop()


if __name__ == "__main__":
    main()
