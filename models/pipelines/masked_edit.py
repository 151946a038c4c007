"""Masked diffusion editing over SD-1.5's components: SDEdit (Meng et al. 2022) inside a mask, with
the region outside re-imposed from the noised original at every step (the blend of RePaint-style
inpainting and of DiffFace's M_t):

    z_k = √ᾱ_k·z0 + √(1−ᾱ_k)·ε                      (start part-way: strength k)
    z_{t−1} ← DDIM step of z_t with CFG              (inside the mask the prompt decides)
    z_{t−1} ← m·z_{t−1} + (1 − m)·(√ᾱ_{t−1}·z0 + √(1−ᾱ_{t−1})·ε)   (outside: the original, as noisy)

The last step re-imposes z0 itself, so outside the mask only the VAE round trip differs from the
photo; the tab then pastes the result back through the mask, so the pixels outside are the photo's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .null_text_inversion import encode_image
from .prompt_to_prompt import decode, guided_noise


@dataclass
class MaskedEditOutput:
    image: Any  # PIL, the model's square
    start: Any  # PIL: the noised photo z_k the edit starts from, decoded
    latent_mask: np.ndarray  # [h, w] the mask at the latent's resolution (1 = edit)
    latent: torch.Tensor  # the final latent: z0 itself outside the mask
    steps_run: int


def latent_mask(region: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """[1, 1, h, w]: 1 where any pixel of the latent cell is in the region (max-pool), so the edited
    latent covers every masked pixel."""
    pixels = torch.from_numpy(region.astype(np.float32))[None, None]
    return F.adaptive_max_pool2d(pixels, size)


def masked_sdedit(pipe: Any, image: Image.Image, region: np.ndarray, prompt: str, strength: float, steps: int,
                  guidance_scale: float, generator: torch.Generator, negative_prompt: str = "",
                  on_step: Callable[[int, int], None] | None = None) -> MaskedEditOutput:
    """Edit `image` (square, the model's size) inside `region` (bool, same size) toward `prompt`."""
    from diffusers import DDIMScheduler

    device, dtype = pipe._execution_device, pipe.unet.dtype
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(steps, device=device)
    start = steps - min(max(int(steps * strength), 1), steps)  # as img2img: strength·N steps are run
    timesteps = scheduler.timesteps[start:]
    z0 = encode_image(pipe, image).to(dtype)
    with torch.no_grad():
        conditional, unconditional = pipe.encode_prompt(prompt, device, 1, True, negative_prompt)
    noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32).to(device, dtype)
    mask = latent_mask(region, tuple(z0.shape[-2:])).to(device, dtype)
    latent = scheduler.add_noise(z0, noise, timesteps[:1])
    start_image = decode(pipe, latent)[0]
    with torch.no_grad():
        for index, timestep in enumerate(timesteps):
            guided = guided_noise(pipe.unet, latent, timestep, unconditional, conditional, guidance_scale)
            latent = scheduler.step(guided, timestep, latent).prev_sample
            known = (scheduler.add_noise(z0, noise, timesteps[index + 1:index + 2])
                     if index + 1 < len(timesteps) else z0)
            latent = mask * latent + (1 - mask) * known
            if on_step is not None:
                on_step(index, len(timesteps))
    return MaskedEditOutput(decode(pipe, latent)[0], start_image, mask[0, 0].float().cpu().numpy(), latent,
                            len(timesteps))
