"""Null-text inversion (Mokady et al. 2022, `null_text_w_ptp.ipynb`, class `NullInversion`) — see
ALGORITHMS.md §10. It turns a real photo into a starting point for prompt-to-prompt:

1. DDIM inversion with the source prompt and no guidance (w = 1) walks z0 = E(x) up to z_T and keeps
   the trajectory z*_0 … z*_T.
2. Sampling back from z_T with CFG (w = 7.5) drifts off that trajectory. So at every step i the
   unconditional ("null-text") embedding ∅_i is optimised (Adam, lr 1e-2·(1 − i/100), at most 10
   iterations, early stop when the loss < 1e-5 + i·2e-5) until the guided DDIM step lands on z*_{i+1}.
3. Sampling with the ∅_i reproduces the photo; prompt-to-prompt edits reuse z_T and the ∅_i.

Inversions are cached per (image, prompt, steps, guidance, inner steps), so several edits of the
same photo pay for it once. Gradients are taken for ∅ only (`torch.autograd.grad`): the shared
UNet's parameters never receive a `.grad`.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .prompt_to_prompt import GUIDANCE_SCALE, DDIMSchedule, decode, encode_text, guided_noise, sample

INNER_STEPS = 10
EPSILON = 1e-5
LEARNING_RATE = 1e-2
CACHE_SIZE = 4


def learning_rate(index: int) -> float:
    """The notebook's schedule: 1e-2·(1 − i/100) at DDIM step i."""
    return LEARNING_RATE * (1.0 - index / 100.0)


def early_stop_threshold(index: int, epsilon: float = EPSILON) -> float:
    """Stop optimising ∅_i once the loss is below ε + i·2e-5."""
    return epsilon + index * 2e-5


@dataclass
class Inversion:
    x_t: torch.Tensor  # [1, 4, h, w]: z*_T, the start of every edit
    null_embeddings: list[torch.Tensor]  # ∅_i per DDIM step, [1, 77, d]
    trajectory: list[torch.Tensor]  # z*_0 … z*_T of the DDIM inversion
    losses: list[list[float]]  # per step, the loss after each Adam update
    image: Image.Image  # the photo as the model saw it (square, model size)
    prompt: str
    steps: int
    guidance_scale: float
    unet_calls: dict[str, int] = field(default_factory=dict)  # forward passes per phase
    seconds: dict[str, float] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)  # reconstruction PSNR in dB, filled by `measure`
    reconstructions: dict[str, Image.Image] = field(default_factory=dict)  # the same three, as images
    latent_error: dict[str, float] = field(default_factory=dict)  # MSE of the sampled-back latent to z*_0

    @property
    def iterations(self) -> int:
        return sum(len(step) for step in self.losses)


def model_side(pipe: Any) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def square_photo(photo: Image.Image, side: int) -> Image.Image:
    """The centre square of the photo at the model's side (the notebook crops then resizes to 512²)."""
    width, height = photo.size
    extent = min(width, height)
    left, top = (width - extent) // 2, (height - extent) // 2
    return photo.crop((left, top, left + extent, top + extent)).resize((side, side), Image.Resampling.LANCZOS)


def encode_image(pipe: Any, image: Image.Image) -> torch.Tensor:
    """z0 = E(x)·scaling_factor, the posterior mean (as the notebook)."""
    pixels = pipe.image_processor.preprocess(image).to(pipe._execution_device, pipe.vae.dtype)
    with torch.no_grad():
        return pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor


def ddim_inversion(unet: Any, z0: torch.Tensor, conditional: torch.Tensor, schedule: DDIMSchedule) -> list[torch.Tensor]:
    """z*_0 … z*_T: each step predicts ε at the current latent with the next (higher) timestep and the
    prompt alone (w = 1), then moves up the schedule (the notebook's `ddim_loop`/`next_step`)."""
    latents = [z0]
    latent = z0
    with torch.no_grad():
        for timestep in reversed(schedule.timesteps):
            noise = unet(latent, timestep, encoder_hidden_states=conditional, return_dict=False)[0]
            latent = schedule.move(noise, latent, timestep - schedule.stride, timestep)
            latents.append(latent)
    return latents


def null_optimization(unet: Any, trajectory: list[torch.Tensor], conditional: torch.Tensor, null: torch.Tensor,
                      schedule: DDIMSchedule, guidance_scale: float = GUIDANCE_SCALE, inner_steps: int = INNER_STEPS,
                      epsilon: float = EPSILON, on_step: Callable[[int], None] | None = None,
                      ) -> tuple[list[torch.Tensor], list[list[float]], int]:
    """The per-step ∅_i (each starts from ∅_{i-1}), the losses, and the number of UNet forward passes."""
    steps = len(schedule.timesteps)
    latent = trajectory[-1]
    current = null.detach().float().clone()
    embeddings, losses, calls = [], [], 0
    for index, timestep in enumerate(schedule.timesteps):
        target = trajectory[steps - index - 1]
        with torch.no_grad():
            cond_noise = unet(latent, timestep, encoder_hidden_states=conditional, return_dict=False)[0]
        calls += 1
        current = current.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([current], lr=learning_rate(index))
        step_losses = []
        for _ in range(inner_steps):
            with torch.enable_grad():
                uncond_noise = unet(latent, timestep, encoder_hidden_states=current.to(unet.dtype),
                                    return_dict=False)[0]
                noise = uncond_noise + guidance_scale * (cond_noise - uncond_noise)
                loss = F.mse_loss(schedule.step(noise, timestep, latent).float(), target.float())
                (current.grad,) = torch.autograd.grad(loss, [current])
            calls += 1
            optimizer.step()
            step_losses.append(loss.item())
            if step_losses[-1] < early_stop_threshold(index, epsilon):
                break
        embeddings.append(current.detach().clone())
        losses.append(step_losses)
        with torch.no_grad():
            noise = guided_noise(unet, latent, timestep, current.detach().to(unet.dtype), conditional, guidance_scale)
            latent = schedule.step(noise, timestep, latent)
        calls += 1
        if on_step is not None:
            on_step(index)
    return embeddings, losses, calls


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio of two RGB images of the same size, in dB."""
    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * math.log10(255.0 ** 2 / error)


_CACHE: OrderedDict[tuple, Inversion] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cache_key(pipe: Any, image: Image.Image, prompt: str, steps: int, guidance_scale: float,
              inner_steps: int) -> tuple:
    digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()
    return digest, prompt, steps, float(guidance_scale), inner_steps, id(pipe.unet)


def invert(pipe: Any, photo: Image.Image, prompt: str, steps: int, guidance_scale: float = GUIDANCE_SCALE,
           inner_steps: int = INNER_STEPS, on_step: Callable[[str, int, int], None] | None = None) -> Inversion:
    """DDIM inversion + null-text optimisation of `photo` under `prompt`, cached. `on_step(phase,
    index, total)` reports progress."""
    image = square_photo(photo.convert("RGB"), model_side(pipe))
    key = cache_key(pipe, image, prompt, steps, guidance_scale, inner_steps)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    schedule = DDIMSchedule.for_scheduler(pipe.scheduler.config, steps)
    unet = pipe.unet
    conditional = encode_text(pipe, [prompt]).to(unet.dtype)
    started = time.perf_counter()
    z0 = encode_image(pipe, image)
    trajectory = ddim_inversion(unet, z0, conditional, schedule)
    inverted = time.perf_counter()
    embeddings, losses, calls = null_optimization(
        unet, trajectory, conditional, encode_text(pipe, [""]), schedule, guidance_scale, inner_steps,
        on_step=(lambda index: on_step("null-text optimisation", index, steps)) if on_step else None)
    result = Inversion(trajectory[-1], embeddings, trajectory, losses, image, prompt, steps, guidance_scale,
                       unet_calls={"DDIM inversion": steps, "null-text optimisation": calls},
                       seconds={"DDIM inversion": inverted - started,
                                "null-text optimisation": time.perf_counter() - inverted})
    measure(pipe, result)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def measure(pipe: Any, inversion: Inversion) -> None:
    """Reconstruction PSNR against the photo: the VAE alone (the bound), DDIM inversion sampled back
    with the plain ∅ and guidance (before optimisation), and with the optimised ∅_i (after)."""
    schedule = DDIMSchedule.for_scheduler(pipe.scheduler.config, inversion.steps)
    vae_only = decode(pipe, inversion.trajectory[0])[0]
    before = sample(pipe, [inversion.prompt], inversion.x_t, schedule, inversion.guidance_scale)
    after = sample(pipe, [inversion.prompt], inversion.x_t, schedule, inversion.guidance_scale,
                   null_embeddings=inversion.null_embeddings)
    inversion.reconstructions = {"VAE round trip": vae_only, "DDIM inversion": before.images[0],
                                 "null-text inversion": after.images[0]}
    z0 = inversion.trajectory[0].float()
    inversion.latent_error = {"DDIM inversion": float(F.mse_loss(before.latents.float(), z0)),
                              "null-text inversion": float(F.mse_loss(after.latents.float(), z0))}
    inversion.psnr = {name: psnr(image, inversion.image) for name, image in inversion.reconstructions.items()}
