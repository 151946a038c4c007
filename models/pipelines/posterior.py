"""DDPM's forward-process posterior q(x_{t−1} | x_t, x0) and the reverse variances, on tensors.

With α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s (Ho et al. 2020, eq. 6–7):

    μ̃_t(x_t, x0) = √ᾱ_{t−1} β_t / (1−ᾱ_t) · x0 + √α_t (1−ᾱ_{t−1}) / (1−ᾱ_t) · x_t
    β̃_t = (1−ᾱ_{t−1}) / (1−ᾱ_t) · β_t

DDPM samples with Σ = β̃_t I ("fixed_small") or β_t I ("fixed_large"); iDDPM (Nichol & Dhariwal 2021) learns
v per pixel and uses Σ = exp(v log β_t + (1−v) log β̃_t) (diffusers' "learned_range"). On a respaced chain the
same formulas hold with β_t = 1 − ᾱ_t/ᾱ_{t_prev}, as diffusers' schedulers compute it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Posterior:
    """The posterior's coefficients and both reverse variances for t = 1..T (index 0 is t = 1)."""

    x0_coefficient: torch.Tensor  # √ᾱ_{t−1} β_t / (1−ᾱ_t)
    xt_coefficient: torch.Tensor  # √α_t (1−ᾱ_{t−1}) / (1−ᾱ_t)
    beta: torch.Tensor  # β_t: "fixed_large"
    beta_tilde: torch.Tensor  # β̃_t: "fixed_small"


def step_coefficients(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor) -> Posterior:
    """The posterior of one (respaced) step from ᾱ_t and ᾱ_{t_prev} (1 for the last step)."""
    beta = 1 - alpha_bar / alpha_bar_prev
    return Posterior(x0_coefficient=alpha_bar_prev ** 0.5 * beta / (1 - alpha_bar),
                     xt_coefficient=(1 - beta) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar),
                     beta=beta, beta_tilde=(1 - alpha_bar_prev) / (1 - alpha_bar) * beta)


def posterior(alphas_cumprod: torch.Tensor) -> Posterior:
    """The coefficients for every t = 1..T of a schedule given as diffusers' `alphas_cumprod` (ᾱ_1..ᾱ_T)."""
    alpha_bar = alphas_cumprod.double()
    return step_coefficients(alpha_bar, torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]]))


def posterior_mean(x0: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, alpha_bar_prev: float) -> torch.Tensor:
    """μ̃(x_t, x0) of one step."""
    coefficients = step_coefficients(torch.tensor(alpha_bar, dtype=torch.float64),
                                     torch.tensor(alpha_bar_prev, dtype=torch.float64))
    return float(coefficients.x0_coefficient) * x0 + float(coefficients.xt_coefficient) * x_t


def learned_range_variance(v: torch.Tensor, beta: torch.Tensor, beta_tilde: torch.Tensor) -> torch.Tensor:
    """iDDPM's Σ = exp(v log β + (1−v) log β̃): v = 0 gives β̃ (fixed_small), v = 1 gives β (fixed_large)."""
    return torch.exp(v * torch.log(beta) + (1 - v) * torch.log(beta_tilde))
