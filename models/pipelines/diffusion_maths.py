"""The DDPM/DDIM mathematics the diffusion lecture tab shows, on tensors and free of any widget.

It lives here, not in the tab, so that the tab only checks inputs, calls and wires widgets, and so that
the tests and the cost bench exercise the same functions the page runs. Callers pass checked values
(a schedule diffusers knows, a sampler in SCHEDULER_CLASSES); the tab's `run_*` functions do the checking.

Time steps follow the papers: t = 0 is the clean image and t = 1..1000 are noise levels, which
diffusers indexes as t − 1. The formulas, with ᾱ_t = ∏_{s≤t} (1 − β_s):

- forward process (DDPM): x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε;
- ε ↔ x0 given x_t: x0 = (x_t − √(1−ᾱ) ε) / √ᾱ and ε = (x_t − √ᾱ x0) / √(1−ᾱ);
- velocity (Salimans & Ho 2022): v = √ᾱ ε − √(1−ᾱ) x0, so x0 = √ᾱ x_t − √(1−ᾱ) v and ε = √ᾱ v + √(1−ᾱ) x_t;
- latent diffusion: z = scaling_factor · mode(VAE encoder(x)), decoded as VAE decoder(z / scaling_factor);
- the reverse chain: at each step the network predicts from x_t and the scheduler's update gives x_{t−1}.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from PIL import Image

from models import ProgressFn, UserError
from models.ddpm import CELEBAHQ_SCHEDULER

TRAIN_STEPS = 1000  # the noise levels the networks were trained on
SCHEDULER_CLASSES = {"DDPM": "DDPMScheduler", "DDIM": "DDIMScheduler", "LCM": "LCMScheduler"}  # sampler → diffusers class


# ---- the forward process ---------------------------------------------------------------------------

def _ddpm_scheduler(schedule: str) -> Any:
    """The CelebA-HQ DDPM's scheduler with another β schedule: diffusers' own ᾱ and `add_noise`, not a copy."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{**CELEBAHQ_SCHEDULER, "beta_schedule": schedule})


@functools.lru_cache(maxsize=None)
def alpha_bars(schedule: str) -> torch.Tensor:
    """ᾱ for t = 0..1000 (ᾱ_0 = 1: the clean image), from diffusers' own scheduler for `schedule`."""
    return torch.cat([torch.ones(1, dtype=torch.float64), _ddpm_scheduler(schedule).alphas_cumprod.double()])


def noised(x0: torch.Tensor, noise: torch.Tensor, t: int, schedule: str = "linear") -> torch.Tensor:
    """q(x_t | x0) with the given ε, through the scheduler's `add_noise`; t = 0 is x0 itself."""
    if t == 0:
        return x0
    return _ddpm_scheduler(schedule).add_noise(x0, noise, torch.tensor([t - 1]))


# ---- ε, x0 and v: one prediction, three meanings -------------------------------------------------

def x0_from_epsilon(x_t: torch.Tensor, epsilon: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """x0 = (x_t − √(1−ᾱ) ε) / √ᾱ: the forward process solved for the clean image."""
    return (x_t - (1 - alpha_bar) ** 0.5 * epsilon) / alpha_bar ** 0.5


def epsilon_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """ε = (x_t − √ᾱ x0) / √(1−ᾱ): the forward process solved for the noise."""
    return (x_t - alpha_bar ** 0.5 * x0) / (1 - alpha_bar) ** 0.5


def velocity(epsilon: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho 2022); diffusers' `get_velocity`."""
    return alpha_bar ** 0.5 * epsilon - (1 - alpha_bar) ** 0.5 * x0


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """x0 = √ᾱ x_t − √(1−ᾱ) v: what a v-prediction network's output says the clean image is."""
    return alpha_bar ** 0.5 * x_t - (1 - alpha_bar) ** 0.5 * v


def epsilon_from_velocity(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """ε = √ᾱ v + √(1−ᾱ) x_t: what a v-prediction network's output says the noise is."""
    return alpha_bar ** 0.5 * v + (1 - alpha_bar) ** 0.5 * x_t


def parameterisations(prediction: torch.Tensor, x_t: torch.Tensor, alpha_bar: float,
                      prediction_type: str) -> dict[str, torch.Tensor]:
    """What a network's output means as ε, x0 and v, whichever of the three it was trained to predict."""
    if prediction_type == "epsilon":
        epsilon, x0 = prediction, x0_from_epsilon(x_t, prediction, alpha_bar)
    elif prediction_type == "sample":
        epsilon, x0 = epsilon_from_x0(x_t, prediction, alpha_bar), prediction
    elif prediction_type == "v_prediction":
        epsilon, x0 = epsilon_from_velocity(x_t, prediction, alpha_bar), x0_from_velocity(x_t, prediction, alpha_bar)
    else:
        raise UserError(f"Unknown prediction type {prediction_type!r}; expected epsilon, sample or v_prediction.")
    return {"epsilon": epsilon, "x0": x0, "v": velocity(epsilon, x0, alpha_bar)}


# ---- latent diffusion ------------------------------------------------------------------------------

def encode_to_latent(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] → the latent diffusion runs in: the VAE posterior's mode times `scaling_factor`,
    which brings the latent to about unit variance, the noise level the schedule assumes."""
    return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor


def decode_latent(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    """A diffusion latent → pixels in about [-1, 1]: undo `scaling_factor` before the VAE decoder."""
    return vae.decode(latent / vae.config.scaling_factor).sample


# ---- the reverse chain -----------------------------------------------------------------------------

def make_scheduler(config: Any, sampler: str, **overrides: Any) -> Any:
    """A fresh scheduler of the sampler's class from a model's scheduler config; the model's own is never changed."""
    import diffusers

    return getattr(diffusers, SCHEDULER_CLASSES[sampler]).from_config(config, **overrides)


def snapshot_steps(steps: int, snapshots: int) -> set[int]:
    """`snapshots` step indices spread evenly from the first to the last."""
    count = min(snapshots, steps)
    return {round(i * (steps - 1) / max(count - 1, 1)) for i in range(count)}


def denoise(predict: Callable[[torch.Tensor, Any], torch.Tensor], scheduler: Any, x: torch.Tensor,
            step_options: dict[str, Any], snapshots: int, decode: Callable[[torch.Tensor], Image.Image],
            progress: ProgressFn | None, label: str) -> tuple[torch.Tensor, list, list]:
    """The reverse chain: predict with the network, let the scheduler step, keep x_t and x0 at snapshots."""
    trajectory, predicted = [], []
    shown = snapshot_steps(len(scheduler.timesteps), snapshots)
    for index, t in enumerate(scheduler.timesteps):
        output = scheduler.step(predict(scheduler.scale_model_input(x, t), t), t, x, **step_options)
        x = output.prev_sample
        if index in shown:
            x0 = output.pred_original_sample if hasattr(output, "pred_original_sample") else output.denoised
            caption = f"step {index + 1}/{len(scheduler.timesteps)}, t = {int(t) + 1}"
            trajectory.append((decode(x), caption))
            predicted.append((decode(x0), caption))
        if progress is not None:
            progress((index + 1) / len(scheduler.timesteps), desc=f"{label}: step {index + 1}")
    return x, trajectory, predicted
