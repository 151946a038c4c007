"""Universal guidance (Bansal et al. 2023, arpitbansal297/Universal-Guided-Diffusion) on Stable Diffusion.

A frozen text-to-image model is steered by any differentiable guide f with loss ℓ(c, f(image)), through
the VAE-decoded clean-latent estimate D(ẑ0). Per DDIM step t (ᾱ = ᾱ_t, ᾱ' = ᾱ_prev), repeated k times:

    ε̂  = CFG(ε_θ(z_t, t, c))                                 (with grad w.r.t. z_t when forward guidance is on)
    ε̂ ← ε̂ + s_t·sqrt(1−ᾱ)·∇_{z_t} ℓ(D(ẑ0(ε̂)))                forward universal guidance
    Δ* = argmin_Δ ℓ(D(ẑ0 + Δ))   (m Adam steps)                backward universal guidance
    ε̂ ← ε̂ − sqrt(ᾱ/(1−ᾱ))·Δ*                                   (= replacing ẑ0 by ẑ0 + Δ*)
    z_{t−1} = DDIM(ε̂)   (η = 0)
    z_t ← sqrt(ᾱ/ᾱ')·z_{t−1} + sqrt(1−ᾱ/ᾱ')·ξ                   self-recurrence: re-noise to t, repeat

The last repetition's z_{t−1} is kept. With s = 0, m = 0 and k = 1 this is plain DDIM. The guide sees
D(ẑ0), optionally decoded from a downsampled latent (`guide_scale` < 1): the VAE decode and its backward
pass are most of the cost of a guided step. See ALGORITHMS.md §3.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor], torch.Tensor]  # image in [-1,1] [1,3,H,W] → scalar


@dataclass
class GuidanceSettings:
    steps: int = 50
    guidance_scale: float = 7.5  # CFG, kept on as in the repo (`--optim_original_conditioning`)
    forward_strength: float = 0.0  # s; 0 = forward guidance off
    backward_steps: int = 0  # m Adam steps on Δ; 0 = backward guidance off
    backward_lr: float = 0.01  # the repo's Adam learning rate
    recurrence: int = 1  # k; 1 = no self-recurrence
    guided_fraction: float = 1.0  # guide the first fraction of the steps (late steps only add texture)
    decay: bool = False  # strength schedule: s_t = s·(1 − i/guided steps) instead of a constant s
    guide_scale: float = 1.0  # decode the guide's image from a latent downsampled by this factor


@dataclass
class StepRecord:
    timestep: int
    loss: float | None  # ℓ at the first repetition's ẑ0, before any guidance (None where the step is not guided)
    backward: tuple[float, float] | None  # ℓ at ẑ0 before and after the last repetition's Δ* (backward guidance)
    strength: float  # s_t used at this step
    unet_calls: int  # UNet evaluations (a CFG pair counts once) at this step
    decode_seconds: float  # time spent decoding ẑ0 for the guide (forward + backward passes)
    seconds: float


@dataclass
class GuidanceTrace:
    latents: torch.Tensor  # final z0
    steps: list[StepRecord] = field(default_factory=list)
    x0: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (t, decoded ẑ0 in [-1,1]) snapshots


def guided_steps(settings: GuidanceSettings) -> int:
    """How many of the first steps are guided (forward and/or backward)."""
    return math.ceil(settings.steps * settings.guided_fraction)


def strength_at(settings: GuidanceSettings, index: int) -> float:
    """s_t at step `index` (0-based): constant or linearly decaying over the guided steps, then 0."""
    guided = guided_steps(settings)
    if index >= guided:
        return 0.0
    return settings.forward_strength * ((1 - index / guided) if settings.decay else 1.0)


def decode(vae: Any, latents: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """D(ẑ0): the VAE image in [-1,1], differentiable; `scale` < 1 decodes a downsampled latent (cheaper)."""
    if scale != 1.0:
        latents = F.interpolate(latents, scale_factor=scale, mode="bilinear", align_corners=False)
    return vae.decode(latents / vae.config.scaling_factor).sample


def ddim_scheduler(scheduler: Any) -> Any:
    """A fresh DDIM scheduler (η = 0) with the base's schedule: the shared handle's scheduler is never changed.

    `clip_sample=False` as in SD-1.5's published DDIM config: latents are not in [-1, 1] (DDIM's default
    would clamp them when the base's scheduler config, e.g. PNDM's, does not say)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config, clip_sample=False)


def _eps(unet: Any, z: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guided ε̂ ([uncond; cond] embeddings), or the conditional ε alone at scale 1."""
    if guidance_scale == 1.0:
        return unet(z, t, encoder_hidden_states=embeddings[1:]).sample
    uncond, cond = unet(torch.cat([z, z]), t, encoder_hidden_states=embeddings).sample.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def backward_correction(vae: Any, z0: torch.Tensor, loss: LossFn, steps: int, lr: float,
                        scale: float = 1.0) -> tuple[torch.Tensor, float, float]:
    """Δ* = argmin_Δ ℓ(D(ẑ0 + Δ)) by `steps` Adam steps from Δ = 0. Returns (Δ*, ℓ before, ℓ after)."""
    delta = torch.zeros_like(z0, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=lr)
    before = None
    with torch.enable_grad():
        for _ in range(steps):
            value = loss(decode(vae, z0 + delta, scale))
            before = float(value.detach()) if before is None else before
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
        with torch.no_grad():
            after = float(loss(decode(vae, z0 + delta, scale)))
    return delta.detach(), before, after


def guided_ddim_step(unet: Any, vae: Any, scheduler: Any, z: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor,
                     loss: LossFn | None, settings: GuidanceSettings, strength: float,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, StepRecord]:
    """One universally guided DDIM step from z_t, with k-fold self-recurrence. Returns (z_{t−1}, ẑ0, record)."""
    alpha = scheduler.alphas_cumprod[t].to(z.device, z.dtype)
    previous = int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps  # as DDIMScheduler.step
    alpha_prev = (scheduler.alphas_cumprod[previous] if previous >= 0 else scheduler.final_alpha_cumprod).to(z.device, z.dtype)
    forward = loss is not None and strength != 0
    backward = loss is not None and settings.backward_steps > 0
    started = time.perf_counter()
    decode_seconds = 0.0
    first_loss = backward_losses = None
    calls = 0
    for repeat in range(settings.recurrence):
        with torch.enable_grad():
            z_in = z.detach().requires_grad_(forward)
            eps = _eps(unet, z_in, t, embeddings, settings.guidance_scale)
            calls += 1
            z0 = (z_in - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            if forward:
                tick = time.perf_counter()
                value = loss(decode(vae, z0, settings.guide_scale))
                (gradient,) = torch.autograd.grad(value, z_in)
                decode_seconds += time.perf_counter() - tick
                first_loss = float(value.detach()) if first_loss is None else first_loss
                eps = eps + strength * (1 - alpha).sqrt() * gradient
        eps = eps.detach()
        z0 = ((z - (1 - alpha).sqrt() * eps) / alpha.sqrt()).detach()
        if backward:
            tick = time.perf_counter()
            delta, before, after = backward_correction(vae, z0, loss, settings.backward_steps, settings.backward_lr,
                                                       settings.guide_scale)
            decode_seconds += time.perf_counter() - tick
            first_loss = before if first_loss is None else first_loss
            backward_losses = (before, after)
            eps = eps - (alpha / (1 - alpha)).sqrt() * delta
            z0 = (z - (1 - alpha).sqrt() * eps) / alpha.sqrt()  # = ẑ0 + Δ*: what the DDIM step below uses
        z_prev = scheduler.step(eps, t, z.detach()).prev_sample
        if repeat < settings.recurrence - 1:  # re-noise back to t and repeat the step
            from diffusers.utils.torch_utils import randn_tensor

            noise = randn_tensor(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = (alpha / alpha_prev).sqrt() * z_prev + (1 - alpha / alpha_prev).sqrt() * noise
    record = StepRecord(int(t), first_loss, backward_losses, strength, calls, decode_seconds,
                        time.perf_counter() - started)
    return z_prev, z0, record


def universal_guidance_sample(pipe: Any, prompt: str, loss: LossFn | None, settings: GuidanceSettings,
                              generator: torch.Generator, height: int | None = None, width: int | None = None,
                              snapshots: int = 6, callback: Callable[[int, int], None] | None = None) -> GuidanceTrace:
    """Text-to-image with universal guidance on an SD pipeline's UNet/VAE/text encoder (shared, never
    modified). `loss` None (or s = 0, m = 0, k = 1) gives plain DDIM. Returns the final latents and a trace."""
    unet, vae = pipe.unet, pipe.vae
    device, dtype = unet.device, unet.dtype
    scheduler = ddim_scheduler(pipe.scheduler)
    scheduler.set_timesteps(settings.steps, device=device)
    factor = pipe.vae_scale_factor
    height = height or unet.config.sample_size * factor
    width = width or unet.config.sample_size * factor
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(prompt, device, 1, True, "")
    embeddings = torch.cat([uncond, cond]).to(dtype)
    from diffusers.utils.torch_utils import randn_tensor

    z = randn_tensor((1, unet.config.in_channels, height // factor, width // factor), generator=generator,
                     device=device, dtype=dtype) * scheduler.init_noise_sigma
    trace = GuidanceTrace(latents=z)
    every = max(1, math.ceil(settings.steps / max(snapshots, 1)))
    for index, t in enumerate(scheduler.timesteps):
        strength = strength_at(settings, index)
        guided = index < guided_steps(settings)
        z, z0, record = guided_ddim_step(unet, vae, scheduler, z, t, embeddings, loss if guided else None, settings,
                                         strength, generator)
        trace.steps.append(record)
        if index % every == 0 or index == settings.steps - 1:
            with torch.no_grad():
                trace.x0.append((int(t), decode(vae, z0).float().cpu()))
        if callback is not None:
            callback(index + 1, settings.steps)
    trace.latents = z
    return trace
