"""Classifier-free guidance (Ho & Salimans 2022) with its branches kept: one UNet call on the batch
[z_t ; z_t] with the texts [∅ ; c] gives ε_∅ and ε_c, and the step takes ε̂ = ε_∅ + w (ε_c − ε_∅).

w = 0 is the unconditional model, w = 1 the conditional one, w > 1 pushes past it, away from ∅ (a negative
prompt is simply another text in the ∅ slot). Unlike diffusers' pipelines, which skip the ∅ half for w ≤ 1,
both halves are always computed here, so every w means the formula. Each branch's ε also says what it
thinks the clean latent is: x̂0 = (z_t − √(1−ᾱ_t) ε) / √ᾱ_t.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .diffusion_maths import x0_from_epsilon

BRANCHES = ("unconditional", "conditional", "guided")


def guided(unconditional: torch.Tensor, conditional: torch.Tensor, scale: float) -> torch.Tensor:
    """ε̂ = ε_∅ + w (ε_c − ε_∅)."""
    return unconditional + scale * (conditional - unconditional)


@dataclass
class Branches:
    """The three noise predictions at one step of a run, and the latent they were made at."""

    index: int  # the step, 0 = first (noisiest)
    timestep: int  # diffusers' index (paper t − 1)
    alpha_bar: float
    latent: torch.Tensor  # z_t [1, 4, h, w]
    epsilon: dict[str, torch.Tensor]  # BRANCHES → ε [1, 4, h, w]

    def predicted_x0(self) -> dict[str, torch.Tensor]:
        """Each branch's x̂0 = (z_t − √(1−ᾱ_t) ε) / √ᾱ_t."""
        return {name: x0_from_epsilon(self.latent, noise, self.alpha_bar) for name, noise in self.epsilon.items()}


def sample_with_branches(unet: Any, scheduler: Any, x_T: torch.Tensor, texts: torch.Tensor, scale: float,
                         record_at: int | None = None, on_step: Callable[[int], None] | None = None,
                         ) -> tuple[torch.Tensor, Branches | None]:
    """The reverse chain with CFG at scale `scale` from x_T, `texts` being [∅ ; c] embeddings ([2, 77, d]);
    the branches at step `record_at` are kept. `scheduler` has its timesteps set."""
    latent, kept = x_T, None
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latent, timestep)
        output = unet(torch.cat([model_input] * 2), timestep, encoder_hidden_states=texts).sample
        unconditional, conditional = output.chunk(2)
        noise = guided(unconditional, conditional, scale)
        if index == record_at:
            kept = Branches(index, int(timestep), float(scheduler.alphas_cumprod[int(timestep)]), latent.clone(),
                            dict(zip(BRANCHES, (unconditional, conditional, noise))))
        latent = scheduler.step(noise, timestep, latent).prev_sample
        if on_step is not None:
            on_step(index)
    return latent, kept
