"""DiffFace's sampler (Kim et al. 2022, hxngiee/DiffFace), training-free on an unconditional face DDPM.

Sampling starts from the noised target (SDEdit: the first `skip` of `steps` respaced steps are
skipped). At each step the UNet's clean-image estimate x0 is mixed with x_t
(x_in = fac·x0 + (1−fac)·x_t, fac = sqrt(1−ᾱ_t), as in Blended Diffusion), a weighted sum of
losses on x_in is differentiated w.r.t. x_t, and the DDPM mean is shifted by −Σ_t·∇L (classifier
guidance on the mean, ADM's `condition_mean`). Then the target-preserving blend keeps the freshly
noised target outside M_t = M·w(τ), where w rises linearly from 0 at the first step to 1 at the
mask-schedule index λ. The final image is M·x0 + (1−M)·target, so everything outside the face
mask is the target exactly. See ALGORITHMS.md §2.

x0 is never clamped, in the guidance nor in the DDPM mean (DiffFace: `clip_denoised=False`), although
the published prior's scheduler config says `clip_sample=True`: with a clamped mean the guidance shift
is differentiated through one x0 and applied around another, and the identity loss stopped falling
monotonically in λ. The shift −λ·β̃_t·∇L is a gradient step; a λ too large for the loss's curvature
overshoots (with λ_id = 300 on the tiny models a step moved the masked latent by 20–40 % of its norm).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor], torch.Tensor]


def mask_weights(steps_run: int, threshold: int) -> list[float]:
    """w(τ) = min(1, (T_s − (τ+1)) / (T_s − λ)) for τ = T_s−1 … 0, in sampling order.

    0 at the first step, rising linearly, 1 from τ = λ−1 on (DiffFace `postprocess_fn`)."""
    if not 0 <= threshold < steps_run:
        raise ValueError(f"the mask-schedule index must be in [0, {steps_run}), got {threshold}")
    return [min(1.0, (steps_run - (tau + 1)) / (steps_run - threshold)) for tau in range(steps_run - 1, -1, -1)]


@dataclass
class SwapTrace:
    image: torch.Tensor  # [1,3,H,W] final M·x0 + (1−M)·target, in [-1,1] (unclamped)
    x0: list[tuple[int, torch.Tensor]]  # (timestep, predicted clean image) along the trajectory
    weights: list[float]  # w(τ) per step
    losses: dict[str, list[float]] = field(default_factory=dict)  # unweighted loss terms per step


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


@dataclass
class GuidedStep:
    """One DDPM step with classifier guidance on the mean, before the target-preserving blend."""

    x_prev: torch.Tensor  # mean − Σ_t·∇L + σ_t·z
    x0: torch.Tensor  # the UNet's clean-image estimate at x_t (unclamped)
    losses: dict[str, float]  # unweighted loss terms at x_in
    shift: torch.Tensor  # −Σ_t·∇L, the guidance's move of the mean


def unclamped_scheduler(scheduler):
    """A fresh DDPMScheduler with the prior's schedule but `clip_sample=False`: DiffFace samples with
    `clip_denoised=False`, so the mean uses the same unclamped x0 the guidance differentiates
    (google/ddpm-celebahq-256 ships `clip_sample=True`). Fresh, so the shared handle's scheduler
    state (its timesteps) is never changed by a run."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config, clip_sample=False)


def guided_step(unet: torch.nn.Module, scheduler, x: torch.Tensor, t: torch.Tensor,
                losses: Mapping[str, tuple[float, LossFn]], generator: torch.Generator | None) -> GuidedStep:
    """x_{t-1} from x_t: the UNet's x0, x_in = fac·x0 + (1−fac)·x_t with fac = sqrt(1−ᾱ_t) (Blended
    Diffusion's mix), L = Σ λ·loss(x_in) differentiated w.r.t. x_t, and the DDPM mean moved by −Σ_t·∇L
    (ADM's `condition_mean`; Σ_t = β̃_t of the respaced step). Terms with λ = 0 are not evaluated."""
    active = {name: (weight, fn) for name, (weight, fn) in losses.items() if weight != 0}
    alpha = scheduler.alphas_cumprod.to(x.device)[t].to(x.dtype)
    values = {}
    with torch.enable_grad():
        x = x.detach().requires_grad_(bool(active))
        eps = unet(x, t).sample
        x0 = (x - (1 - alpha).sqrt() * eps) / alpha.sqrt()
        gradient = torch.zeros_like(x)
        if active:
            fac = (1 - alpha).sqrt()
            x_in = fac * x0 + (1 - fac) * x
            total = 0
            for name, (weight, fn) in active.items():
                value = fn(x_in)
                values[name] = float(value.detach())
                total = total + weight * value
            (gradient,) = torch.autograd.grad(total, x)
    with torch.no_grad():
        step = scheduler.step(eps.detach(), t, x.detach(), generator=generator)
        shift = -scheduler._get_variance(t).to(x.device, x.dtype) * gradient
    return GuidedStep(x_prev=step.prev_sample + shift, x0=x0.detach(), losses=values, shift=shift)


def face_swap_sample(
    unet: torch.nn.Module,
    scheduler,
    target: torch.Tensor,
    mask: torch.Tensor,
    losses: Mapping[str, tuple[float, LossFn]],
    steps: int = 100,
    skip: int = 25,
    threshold: int = 30,
    generator: torch.Generator | None = None,
    snapshots: int = 8,
    callback: Callable[[int, int], None] | None = None,
) -> SwapTrace:
    """One guided DDPM trajectory. `target` [1,3,H,W] in [-1,1], `mask` [1,1,H,W] in {0,1};
    `losses` maps a name to (weight λ, loss of x_in); terms with λ = 0 are not evaluated.
    `scheduler` is the prior's; the run uses an unclamped copy of it."""
    scheduler = unclamped_scheduler(scheduler)
    scheduler.set_timesteps(steps, device=target.device)
    timesteps = scheduler.timesteps[skip:]
    weights = mask_weights(len(timesteps), threshold)
    every = max(1, math.ceil(len(timesteps) / max(snapshots, 1)))
    trace = SwapTrace(image=target, x0=[], weights=weights)

    x = scheduler.add_noise(target, _noise(target, generator), timesteps[:1])
    x0 = target
    for index, t in enumerate(timesteps):
        step = guided_step(unet, scheduler, x, t, losses, generator)
        x0 = step.x0
        for name, value in step.losses.items():  # the terms `guided_step` evaluated (λ ≠ 0)
            trace.losses.setdefault(name, []).append(value)
        with torch.no_grad():
            previous = scheduler.previous_timestep(t)
            if previous >= 0:
                background = scheduler.add_noise(target, _noise(target, generator), previous.view(1))
            else:
                background = target
            blend = mask * weights[index]
            x = blend * step.x_prev + (1 - blend) * background
        if index % every == 0 or index == len(timesteps) - 1:
            trace.x0.append((int(t), x0))
        if callback is not None:
            callback(index + 1, len(timesteps))
    trace.image = mask * x0 + (1 - mask) * target
    return trace


# ---- loss terms ------------------------------------------------------------------------------

def region_affine(region: torch.Tensor, size: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) with p = A·q + b, from the crop's normalised coordinates q ∈ [-1,1]² to the image's p (grid_sample,
    align_corners=False). `region` is a box (x0,y0,x1,y1) in pixels, or a 2×3 similarity matrix from image pixels
    to the pixels of a `size`² crop (as insightface's `norm_crop` warps with cv2: pixel-index coordinates)."""
    region = region.to(torch.float64 if region.shape == (2, 3) else torch.float32)
    if region.shape == (2, 3):
        inverse = torch.linalg.inv(torch.cat([region, torch.tensor([[0.0, 0.0, 1.0]], dtype=region.dtype)]))[:2]
        scale = torch.tensor([2 / width, 2 / height], dtype=region.dtype)
        linear = scale[:, None] * inverse[:, :2] * (size / 2)
        offset = scale * (inverse[:, :2] @ torch.full((2,), size / 2 - 0.5, dtype=region.dtype) + inverse[:, 2] + 0.5) - 1
        return linear.float(), offset.float()
    x0, y0, x1, y1 = region.tolist()
    centre = torch.tensor([(x0 + x1) / width - 1, (y0 + y1) / height - 1])
    half = torch.tensor([(x1 - x0) / width, (y1 - y0) / height])
    return torch.diag(half), centre


def face_views(images: torch.Tensor, region: torch.Tensor, size: int, views: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Crops of `region` resized to `size`: a square box (x0,y0,x1,y1 in pixels; FaceNet) or a 2×3 matrix onto a
    `size`² template crop (ArcFace's 5-point alignment). One clean view, then random affine views (±15°, ±10 %
    shift, each applied with p = 0.7, as DiffFace's kornia augmentation; its perspective jitter is left out).
    Differentiable w.r.t. `images`."""
    batch, _, height, width = images.shape
    linear, offset = region_affine(region, size, height, width)
    angles = torch.zeros(views)
    shifts = torch.zeros(views, 2)
    if views > 1:
        applied = (torch.rand(views - 1, generator=generator) < 0.7).float()
        angles[1:] = (torch.rand(views - 1, generator=generator) * 2 - 1) * math.radians(15) * applied
        shifts[1:] = (torch.rand(views - 1, 2, generator=generator) * 2 - 1) * 0.2 * applied[:, None]
    cos, sin = angles.cos(), angles.sin()
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [V,2,2]
    theta = torch.cat([linear @ rotation, (shifts @ linear.T + offset)[..., None]], dim=-1)  # [V,2,3]
    theta = theta.to(images.device, images.dtype).repeat(batch, 1, 1)
    grid = F.affine_grid(theta, [batch * views, 3, size, size], align_corners=False)
    return F.grid_sample(images.repeat_interleave(views, dim=0), grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def identity_loss(embed: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor, mask: torch.Tensor,
                  region: torch.Tensor, size: int, views: int, generator: torch.Generator | None) -> LossFn:
    """L_id = mean over views of 1 − cos(FR(view of x_in·M), e_src); `region` as in `face_views`."""
    def loss(x_in: torch.Tensor) -> torch.Tensor:
        embeddings = embed(face_views(x_in * mask, region, size, views, generator))
        return (1 - F.cosine_similarity(embeddings.float(), source.float(), dim=-1)).mean()
    return loss


def parsing_loss(parse: Callable[[torch.Tensor], torch.Tensor], target_logits: torch.Tensor,
                 classes: tuple[int, ...]) -> LossFn:
    """L_seg = Σ over face classes of the mean L1 between the logit maps of x_in and of the target."""
    index = list(classes)

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        return (parse(x_in)[:, index].float() - target_logits[:, index].float()).abs().mean(dim=(0, 2, 3)).sum()
    return loss


def reconstruction_loss(target: torch.Tensor) -> LossFn:
    """L_rec = MSE(x_in, target) over the whole image: keeps lighting and colour."""
    return lambda x_in: F.mse_loss(x_in.float(), target.float())
