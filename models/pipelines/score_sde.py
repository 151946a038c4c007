"""Score-based sampling (Song et al. 2021) on diffusers' `ScoreSdeVeScheduler`, free of any widget.

- the score of the DDPM forward process: ∇ log q(x_t | x0) = −ε / √(1−ᾱ_t), so an ε-prediction network is a
  score model up to that factor;
- VE SDE: dx = √(dσ²/dt) dw with σ(t) = σ_min (σ_max/σ_min)^t; the network outputs the score s(x, σ) itself;
- predictor–corrector (PC) sampling: at each noise level, `correct_steps` Langevin corrections
  (`step_correct`, step size from the signal-to-noise ratio `snr`), then one reverse-diffusion predictor step
  (`step_pred`: x ← x + (σ_i² − σ_{i+1}²) s + √(σ_i² − σ_{i+1}²) z) — diffusers' `ScoreSdeVePipeline` loop;
- the probability-flow ODE dx = −½ g(t)² ∇ log p_t(x) dt has the same marginals and no noise; Euler on the
  scheduler's own σ grid: x ← x + ½ (σ_i² − σ_{i+1}²) s(x, σ_i). diffusers has no sampler for it.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from models import ProgressFn

Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, σ) → score


def score_from_epsilon(epsilon: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """∇_x log q(x_t | x0) = −(x_t − √ᾱ x0)/(1−ᾱ) = −ε/√(1−ᾱ): an ε-prediction read as a score."""
    return -epsilon / (1 - alpha_bar) ** 0.5


def ve_sigma(t: torch.Tensor, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """σ(t) = σ_min (σ_max/σ_min)^t of the variance-exploding SDE, t in [0, 1]."""
    return sigma_min * (sigma_max / sigma_min) ** t


def prepare(scheduler: Any, steps: int, device: Any = None) -> None:
    """The scheduler's time grid (1 → ε) and σ grid for `steps` noise levels, as the pipeline sets them."""
    scheduler.set_timesteps(steps, device=device)
    scheduler.set_sigmas(steps)


def sigma_pair(scheduler: Any, t: torch.Tensor) -> tuple[float, float]:
    """(σ_i, σ_{i+1}) exactly as `step_pred` reads them at continuous time t (its discrete σ grid; 0 at the end)."""
    index = (t * (len(scheduler.timesteps) - 1)).long().reshape(1).to(scheduler.discrete_sigmas.device)
    sigma = scheduler.discrete_sigmas[index]
    adjacent = scheduler.get_adjacent_sigma(index, t.reshape(1))
    return float(sigma), float(adjacent)


def network_sigma(scheduler: Any, index: int, x: torch.Tensor) -> torch.Tensor:
    """The noise level the network is told at step `index` (the pipeline's `sigmas[i]`, one per image)."""
    return scheduler.sigmas[index].to(x.device, x.dtype) * torch.ones(x.shape[0], device=x.device, dtype=x.dtype)


def pc_sample(network: Network, scheduler: Any, x: torch.Tensor, generator: torch.Generator | None,
              correct_steps: int, progress: ProgressFn | None = None) -> torch.Tensor:
    """`ScoreSdeVePipeline.__call__`'s loop on an `x` already at σ_max (set `prepare` first): per noise level,
    `correct_steps` Langevin corrector steps, then the predictor; returns the last predictor mean."""
    mean = x
    count = len(scheduler.timesteps)
    for index, t in enumerate(scheduler.timesteps):
        sigma = network_sigma(scheduler, index, x)
        for _ in range(correct_steps):
            x = scheduler.step_correct(network(x, sigma), x, generator=generator).prev_sample
        output = scheduler.step_pred(network(x, sigma), t, x, generator=generator)
        x, mean = output.prev_sample, output.prev_sample_mean
        if progress is not None:
            progress((index + 1) / count, desc=f"PC sampler: noise level {index + 1}/{count}")
    return mean


def probability_flow_sample(network: Network, scheduler: Any, x: torch.Tensor,
                            progress: ProgressFn | None = None) -> torch.Tensor:
    """Euler steps of the VE probability-flow ODE on the scheduler's σ grid: x ← x + ½(σ_i² − σ_{i+1}²)·s(x, σ_i).
    No random number is drawn: the same x_T always gives the same image."""
    count = len(scheduler.timesteps)
    for index, t in enumerate(scheduler.timesteps):
        sigma, adjacent = sigma_pair(scheduler, t)
        x = x + 0.5 * (sigma ** 2 - adjacent ** 2) * network(x, network_sigma(scheduler, index, x))
        if progress is not None:
            progress((index + 1) / count, desc=f"Probability-flow ODE: noise level {index + 1}/{count}")
    return x
