"""Diffusion theory: what the sampler in "How diffusion samples" is made of.

1. **Posterior and variance** (Ho et al. 2020; Nichol & Dhariwal 2021): the forward-process posterior
   q(x_{t−1} | x_t, x0) has mean μ̃_t = c0·x0 + ct·x_t and variance β̃_t; DDPM samples with Σ = β̃_t
   ("fixed_small") or β_t ("fixed_large"), iDDPM learns Σ between them in the log domain.
2. **Score-based models** (Song et al., ICLR 2021): ε-prediction is the score up to −1/√(1−ᾱ_t); a VE-SDE
   score network (NCSN++) samples with a predictor–corrector loop (diffusers' `ScoreSdeVeScheduler`) or,
   deterministically, with the probability-flow ODE (`models.pipelines.score_sde`).
3. **The UNet**: the blocks of the pixel DDPM's and SD-1.5's UNets, where the timestep embedding enters, and
   the sinusoidal embedding itself.

Time steps follow the papers: t = 0 is the clean image and t = 1..1000 are noise levels (diffusers' t − 1).
"""
from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

import models
from demos import ASSETS
from demos.shared.generation import MAX_SEED, generator_for, resolve_seed
from demos.shared.inputs import number_in_range, one_of, rgb_image
from models import ProgressFn
from models.pipelines.diffusion_maths import TRAIN_STEPS, alpha_bars, denoise, make_scheduler
from models.pipelines.posterior import posterior, step_coefficients
from models.pipelines.samplers import counting_calls
from models.pipelines.score_sde import (
    pc_sample, prepare, probability_flow_sample, score_from_epsilon, ve_sigma,
)
from models.score_sde import SCORE_SDE
from models.stable_diffusion import SD15

PIXEL_MODEL = "ddpm-celebahq-256"
SCHEDULES = {"linear": "linear (DDPM)", "squaredcos_cap_v2": "cosine (iDDPM)"}
VARIANCES = {"fixed_small": "Σ = β̃_t (fixed_small)", "fixed_large": "Σ = β_t (fixed_large)"}
UNETS = {PIXEL_MODEL: "pixel DDPM (CelebA-HQ 256)", SD15: "Stable Diffusion 1.5 (latent)"}
UNET_HEADERS = ["block", "class", "resolution in → out", "channels out", "parameters", "cross-attention",
                "timestep embedding enters"]
MAX_CORRECT_STEPS = 5
EXAMPLE_FACE = str(ASSETS / "astronaut.jpg")


# ---- images, figures, counting UNet calls --------------------------------------------------------

def to_image(tensor: torch.Tensor, low: float = -1.0) -> Image.Image:
    """[1, 3, H, W] in [low, 1] (clipped) → RGB image; `low` 0 for the score model's [0, 1] data."""
    scaled = (tensor[0].detach().float().cpu().clamp(low, 1) - low) / (1 - low)
    return Image.fromarray((scaled * 255).round().byte().permute(1, 2, 0).numpy())


def figure_image(figure: Any) -> Image.Image:
    from matplotlib import pyplot

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return Image.open(buffer).convert("RGB")


def subplots(columns: int, width: float = 8) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.subplots(1, columns, figsize=(width, 3), dpi=80, squeeze=False)


def _seeds(seed: Any, noise_seed: Any) -> tuple[int, int]:
    seed = resolve_seed(seed)
    return seed, (seed + 1) % MAX_SEED if noise_seed is None else resolve_seed(noise_seed)


# ---- 1. posterior and reverse variance ---------------------------------------------------------------

@dataclass
class PosteriorResult:
    t: int
    coefficients: dict[str, dict[str, float]]  # schedule → c0, ct, β, β̃ at t
    plot: Image.Image


def run_posterior(t: Any = 500) -> PosteriorResult:
    """μ̃_t's two coefficients and β̃_t against β_t over t, for the linear and cosine schedules (no network)."""
    return _posterior_view(number_in_range(t, "The time step t", 1, TRAIN_STEPS, whole=True))


@functools.lru_cache(maxsize=64)
def _posterior_view(t: int) -> PosteriorResult:
    """Drawn once per t: it depends on t alone, and the page draws the default one on every page load."""
    tables = {schedule: posterior(alpha_bars(schedule)[1:]) for schedule in SCHEDULES}
    coefficients = {schedule: {"c0": float(p.x0_coefficient[t - 1]), "ct": float(p.xt_coefficient[t - 1]),
                               "beta": float(p.beta[t - 1]), "beta_tilde": float(p.beta_tilde[t - 1])}
                    for schedule, p in tables.items()}
    figure, axes = subplots(2, width=9)
    left, right = axes[0]
    steps = np.arange(1, TRAIN_STEPS + 1)
    for (schedule, label), colour in zip(SCHEDULES.items(), ("tab:blue", "tab:orange")):
        table = tables[schedule]
        left.plot(steps, table.x0_coefficient.numpy(), color=colour, label=f"{label}: on x0")
        left.plot(steps, table.xt_coefficient.numpy(), color=colour, linestyle="--", label=f"{label}: on x_t")
        right.semilogy(steps, table.beta.clamp(min=1e-12).numpy(), color=colour, label=f"{label}: β_t")
        right.semilogy(steps, table.beta_tilde.clamp(min=1e-12).numpy(), color=colour, linestyle="--",
                       label=f"{label}: β̃_t")
    for axis, title in ((left, "μ̃_t = c0·x0 + ct·x_t"), (right, "β_t (solid) and β̃_t (dashed)")):
        axis.axvline(t, color="black", linewidth=1, linestyle=":")
        axis.set_title(title)
        axis.set_xlabel("t")
        axis.legend(fontsize=7)
    return PosteriorResult(t, coefficients, figure_image(figure))


@dataclass
class VarianceResult:
    images: dict[str, Image.Image]  # variance type → sample
    noise_scales: dict[str, list[float]]  # variance type → √Σ added at each step (0 at the last)
    timesteps: list[int]
    steps: int
    seed: int  # x_T
    noise_seed: int  # the per-step noise, the same for both runs
    unet_calls: int
    max_difference: int
    plot: Image.Image


def noise_scales(scheduler: Any) -> dict[str, list[float]]:
    """√β and √β̃ of each step of a (respaced) DDPM chain, from its ᾱ; no noise at the last step."""
    scales: dict[str, list[float]] = {"fixed_large": [], "fixed_small": []}
    for t in scheduler.timesteps:
        previous = int(scheduler.previous_timestep(t))
        alpha_bar_prev = scheduler.alphas_cumprod[previous] if previous >= 0 else torch.tensor(1.0)
        step = step_coefficients(scheduler.alphas_cumprod[int(t)].double(), alpha_bar_prev.double())
        last = int(t) == 0
        scales["fixed_large"].append(0.0 if last else float(step.beta) ** 0.5)
        scales["fixed_small"].append(0.0 if last else float(step.beta_tilde) ** 0.5)
    return scales


def run_reverse_variance(steps: Any = 50, seed: Any = 0, noise_seed: Any = None,
                         progress: ProgressFn | None = None) -> VarianceResult:
    """The face DDPM from one x_T and one per-step noise sequence, with Σ = β̃_t and with Σ = β_t."""
    steps = number_in_range(steps, "The number of steps", 1, TRAIN_STEPS, whole=True)
    seed, noise_seed = _seeds(seed, noise_seed)
    pipe = models.get(PIXEL_MODEL, progress)
    unet = pipe.unet
    side = unet.config.sample_size
    x_T = torch.randn((1, unet.config.in_channels, side, side), generator=generator_for(seed)).to(unet.device, unet.dtype)
    images, scales, calls = {}, {}, 0
    for variance in VARIANCES:
        scheduler = make_scheduler(pipe.scheduler.config, "DDPM", variance_type=variance)
        scheduler.set_timesteps(steps, device=unet.device)
        with torch.inference_mode(), counting_calls(unet) as counter:
            x0, _, _ = denoise(lambda x, t: unet(x, t).sample, scheduler, x_T, {"generator": generator_for(noise_seed)},
                               1, to_image, progress, variance)
        images[variance], scales[variance], calls = to_image(x0), noise_scales(scheduler)[variance], calls + counter.calls
    timesteps = [int(t) + 1 for t in scheduler.timesteps]
    difference = np.abs(np.asarray(images["fixed_small"], np.int16) - np.asarray(images["fixed_large"], np.int16))
    figure, axes = subplots(1, width=6)
    for variance, label in VARIANCES.items():
        axes[0][0].plot(range(1, steps + 1), scales[variance], marker=".", label=label)
    axes[0][0].set(title="noise added per step: √Σ", xlabel="step")
    axes[0][0].legend(fontsize=7)
    return VarianceResult(images, scales, timesteps, steps, seed, noise_seed, calls, int(difference.max()),
                          figure_image(figure))


# ---- 2. score-based models -----------------------------------------------------------------------

@dataclass
class ScoreResult:
    noisy: Image.Image
    epsilon: Image.Image  # the network's ε̂ (shown ÷3)
    score: Image.Image  # −ε̂/√(1−ᾱ_t), shown at its own scale
    true_score: Image.Image  # −ε/√(1−ᾱ_t) of the noise actually added, same scale
    t: int
    alpha_bar: float
    factor: float  # 1/√(1−ᾱ_t): how much larger the score is than ε
    score_rms: float
    cosine: float  # between the predicted and the true score


def run_score(image: Any, t: Any = 500, seed: Any = 0, progress: ProgressFn | None = None) -> ScoreResult:
    """Noise a face to x_t; the face DDPM's ε̂ is the score −ε̂/√(1−ᾱ_t) of q(x_t) up to that factor."""
    t, seed = number_in_range(t, "The time step t", 1, TRAIN_STEPS, whole=True), resolve_seed(seed)
    pipe = models.get(PIXEL_MODEL, progress)
    unet = pipe.unet
    face = ImageOps.fit(rgb_image(image, "a face image"), (unet.config.sample_size,) * 2, Image.Resampling.LANCZOS)
    x0 = torch.from_numpy(np.asarray(face, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None].to(unet.device, unet.dtype)
    epsilon = torch.randn(x0.shape, generator=generator_for(seed)).to(x0.device, x0.dtype)
    alpha_bar = float(pipe.scheduler.alphas_cumprod[t - 1])
    x_t = pipe.scheduler.add_noise(x0, epsilon, torch.tensor([t - 1]))
    with torch.inference_mode():
        predicted = unet(x_t, t - 1).sample
    score, true_score = score_from_epsilon(predicted, alpha_bar), score_from_epsilon(epsilon, alpha_bar)
    shown = 3 * float(true_score.float().std())  # both scores on one scale, ±3 standard deviations
    cosine = torch.nn.functional.cosine_similarity(score.flatten().float(), true_score.flatten().float(), dim=0)
    return ScoreResult(to_image(x_t), to_image(predicted / 3), to_image(score / shown), to_image(true_score / shown), t,
                       alpha_bar, (1 - alpha_bar) ** -0.5, float(score.float().pow(2).mean().sqrt()), float(cosine))


@dataclass
class ScoreSdeResult:
    pc_image: Image.Image  # predictor–corrector (stochastic)
    ode_image: Image.Image  # probability-flow ODE (deterministic)
    steps: int
    correct_steps: int
    snr: float
    seed: int  # x_T
    noise_seed: int  # the PC sampler's Langevin and predictor noise
    pc_unet_calls: int
    ode_unet_calls: int
    pc_seconds: float
    ode_seconds: float
    sigma_max: float
    sigma_min: float
    plot: Image.Image


def run_score_sde(steps: Any = 100, correct_steps: Any = 1, snr: Any = 0.075, seed: Any = 0, noise_seed: Any = None,
                  progress: ProgressFn | None = None) -> ScoreSdeResult:
    """One x_T at σ_max, sampled by diffusers' PC loop and by the probability-flow ODE on the same σ grid."""
    from diffusers import ScoreSdeVeScheduler

    steps = number_in_range(steps, "The number of noise levels", 1, 2000, whole=True)
    correct_steps = number_in_range(correct_steps, "The number of corrector steps", 0, MAX_CORRECT_STEPS, whole=True)
    snr = number_in_range(snr, "The corrector's signal-to-noise ratio", 0.001, 1)
    seed, noise_seed = _seeds(seed, noise_seed)
    pipe = models.get(SCORE_SDE, progress)
    unet = pipe.unet
    scheduler = ScoreSdeVeScheduler.from_config(pipe.scheduler.config, snr=snr, correct_steps=correct_steps)
    prepare(scheduler, steps)
    side = unet.config.sample_size
    x_T = (torch.randn((1, 3, side, side), generator=generator_for(seed)) * scheduler.init_noise_sigma).to(unet.device)
    network = lambda x, sigma: unet(x, sigma).sample  # noqa: E731 - NCSN++ outputs the score itself
    with torch.inference_mode():
        with counting_calls(unet) as pc_calls:
            started = time.perf_counter()
            pc = pc_sample(network, scheduler, x_T, generator_for(noise_seed), correct_steps, progress)
            pc_seconds = time.perf_counter() - started
        with counting_calls(unet) as ode_calls:
            ode = probability_flow_sample(network, scheduler, x_T, progress)
            ode_seconds = time.perf_counter() - started - pc_seconds
    config = scheduler.config
    return ScoreSdeResult(to_image(pc, low=0), to_image(ode, low=0), steps, correct_steps, snr, seed, noise_seed,
                          pc_calls.calls, ode_calls.calls, pc_seconds, ode_seconds, config.sigma_max, config.sigma_min,
                          ve_vp_plot(config.sigma_min, config.sigma_max))


def ve_vp_plot(sigma_min: float, sigma_max: float) -> Image.Image:
    """VE's σ(t) = σ_min(σ_max/σ_min)^t against VP's noise: √(1−ᾱ) and, rescaled to VE, √((1−ᾱ)/ᾱ)."""
    figure, axes = subplots(2, width=9)
    left, right = axes[0]
    time_axis = torch.linspace(0, 1, 200, dtype=torch.float64)
    left.semilogy(time_axis, ve_sigma(time_axis, sigma_min, sigma_max), label=f"VE σ(t), σ_max = {sigma_max:g}")
    alpha_bar = alpha_bars("linear")[1:]
    vp_time = torch.arange(1, TRAIN_STEPS + 1) / TRAIN_STEPS
    left.semilogy(vp_time, ((1 - alpha_bar) / alpha_bar).sqrt(), label="VP as VE: √((1−ᾱ)/ᾱ)")
    right.plot(vp_time, (1 - alpha_bar).sqrt(), label="VP: √(1−ᾱ_t) (linear β)")
    right.plot(vp_time, alpha_bar.sqrt(), linestyle="--", label="VP: √ᾱ_t (signal kept)")
    for axis, title in ((left, "noise scale (log)"), (right, "VP keeps the variance at 1")):
        axis.set(title=title, xlabel="t (0 = data, 1 = noise)")
        axis.legend(fontsize=7)
    return figure_image(figure)


# ---- 3. the UNet ------------------------------------------------------------------------------------

@dataclass
class UnetTableResult:
    model: str
    checkpoint: str
    rows: list[list[Any]]  # UNET_HEADERS
    total_parameters: int
    embedding: torch.Tensor  # [dims, t] sinusoidal embedding of t = 0..999
    embedding_settings: dict[str, Any]
    plot: Image.Image


def _dummy_call(model: str, unet: Any) -> dict[str, Any]:
    """A forward pass's inputs at the model's sample size (SD's text embedding as zeros)."""
    side = unet.config.sample_size
    parameter = next(unet.parameters())
    call = {"sample": torch.zeros((1, unet.config.in_channels, side, side), dtype=parameter.dtype, device=parameter.device),
            "timestep": 500}
    if model == SD15:
        call["encoder_hidden_states"] = torch.zeros((1, 77, unet.config.cross_attention_dim), dtype=parameter.dtype,
                                                    device=parameter.device)
    return call


def block_rows(model: str, unet: Any) -> list[list[Any]]:
    """One row per down, mid and up block, the resolutions read by forward hooks during a dummy pass."""
    blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)] + [("mid_block", unet.mid_block)]
    blocks += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    shapes: dict[str, tuple[int, int, int]] = {}

    def hook(name: str):
        def record(_module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            given = args[0] if args else kwargs["hidden_states"]
            produced = output[0] if isinstance(output, tuple) else output
            shapes[name] = (given.shape[-1], produced.shape[-1], produced.shape[1])
        return record
    handles = [block.register_forward_hook(hook(name), with_kwargs=True) for name, block in blocks]
    try:
        with torch.inference_mode():
            unet(**_dummy_call(model, unet))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for name, block in blocks:
        given, produced, channels = shapes[name]
        with_temb = sum(getattr(resnet, "time_emb_proj", None) is not None for resnet in block.resnets)
        rows.append([name, type(block).__name__, f"{given}×{given} → {produced}×{produced}", channels,
                     sum(p.numel() for p in block.parameters()), "yes" if getattr(block, "has_cross_attention", False)
                     else "no", f"{with_temb} of {len(block.resnets)} resnets (time_emb_proj)"])
    return rows


def run_unet_table(model: str = PIXEL_MODEL, progress: ProgressFn | None = None) -> UnetTableResult:
    """The UNet's blocks and its sinusoidal timestep embedding (diffusers' `get_timestep_embedding`)."""
    from diffusers.models.embeddings import get_timestep_embedding

    model = one_of(model, "UNet", list(UNETS))
    unet = models.get(model, progress).unet
    config = unet.config
    settings = {"dims": config.block_out_channels[0], "flip_sin_to_cos": config.flip_sin_to_cos,
                "downscale_freq_shift": config.freq_shift}
    embedding = get_timestep_embedding(torch.arange(TRAIN_STEPS), settings["dims"], settings["flip_sin_to_cos"],
                                       settings["downscale_freq_shift"]).T
    figure, axes = subplots(1, width=7)
    shown = axes[0][0].imshow(embedding.numpy(), aspect="auto", cmap="RdBu", interpolation="nearest")
    axes[0][0].set(title=f"sinusoidal embedding of t ({settings['dims']} dims)", xlabel="t (diffusers index)",
                   ylabel="dimension")
    figure.colorbar(shown)
    return UnetTableResult(model, models.REGISTRY[model].checkpoint, block_rows(model, unet),
                           sum(p.numel() for p in unet.parameters()), embedding, settings, figure_image(figure))


# ---- presentation ------------------------------------------------------------------------------------

POSTERIOR_TEXT = (
    "Given x0, the forward process can be run backwards exactly: q(x_{t−1} | x_t, x0) is Gaussian. The network "
    "only replaces x0 by its estimate; the variance is a choice. DDPM found β̃_t and β_t give similar samples "
    "(they are the two extremes for a single data point and for data ~ N(0, I)); iDDPM learns where in between.\n\n"
    r"$$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,"
    r"(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}"
    r"\,\beta_t,\qquad \Sigma_\theta = \exp\big(v\log\beta_t + (1-v)\log\tilde\beta_t\big)$$")
LEARNED_RANGE_TEXT = (
    "**Learned variance (iDDPM).** The network outputs v per pixel and Σ interpolates β_t and β̃_t in the log "
    "domain (diffusers' `learned_range`). None of this app's checkpoints can show it: the face DDPM "
    "`google/ddpm-celebahq-256` predicts only ε (3 output channels, `fixed_small`); `openai/diffusers-cd_imagenet64_l2` "
    "is a consistency model (`CMStochasticIterativeScheduler`, no β at all); iDDPM's own weights (openai/improved-"
    "diffusion) are PyTorch `.pt` files, not in diffusers' format. The Kandinsky 2.2 decoder's UNet does output 8 "
    "channels (ε and v), but in a latent space behind an image prior, not as a pixel-space comparison.")
SCORE_TEXT = (
    "A score model learns the gradient of the log density of noisy data. For the DDPM forward process the score "
    "of q(x_t | x0) is −ε/√(1−ᾱ_t), so an ε-prediction network is a score model. A VE-SDE model (NCSN++) is told "
    "σ and outputs the score directly; it samples with predictor–corrector steps or, with no noise at all, "
    "along the probability-flow ODE.\n\n"
    r"$$\nabla_x\log q(x_t\mid x_0) = -\frac{\varepsilon}{\sqrt{1-\bar\alpha_t}},\qquad \sigma(t) = "
    r"\sigma_{\min}\Big(\frac{\sigma_{\max}}{\sigma_{\min}}\Big)^t,\qquad dx = -\tfrac12\,g(t)^2\,\nabla_x\log p_t(x)"
    r"\,dt,\quad g^2 = \frac{d\sigma^2}{dt}$$" "\n\n"
    r"**Predictor:** $x \leftarrow x + (\sigma_i^2-\sigma_{i+1}^2)\,s_\theta + \sqrt{\sigma_i^2-\sigma_{i+1}^2}\,z$ · "
    r"**Corrector (Langevin):** $x \leftarrow x + \epsilon\,s_\theta + \sqrt{2\epsilon}\,z$, "
    r"$\epsilon = 2\,(r\,\lVert z\rVert/\lVert s_\theta\rVert)^2$ · **ODE (Euler):** "
    r"$x \leftarrow x + \tfrac12(\sigma_i^2-\sigma_{i+1}^2)\,s_\theta$")
UNET_TEXT = (
    "Both UNets halve the resolution block by block and double it back, with skip connections between blocks of "
    "the same size. The time step enters as a sinusoidal embedding, an MLP turns it into a vector, and every "
    "resnet adds its own projection of it (`time_emb_proj`). SD-1.5's blocks also attend to the text (cross-"
    "attention).\n\n"
    r"$$\mathrm{emb}(t)_i = \sin\!\big(t\,e^{-\ln(10000)\,i/(d/2-s)}\big),\quad \mathrm{emb}(t)_{i+d/2} = "
    r"\cos\!\big(t\,e^{-\ln(10000)\,i/(d/2-s)}\big)$$")


def posterior_summary(result: PosteriorResult) -> str:
    lines = [f"{SCHEDULES[schedule]}: μ̃ = {c['c0']:.4f}·x0 + {c['ct']:.4f}·x_t, β_t = {c['beta']:.3g}, "
             f"β̃_t = {c['beta_tilde']:.3g} (β̃/β = {c['beta_tilde'] / c['beta']:.3f})"
             for schedule, c in result.coefficients.items()]
    return f"t = **{result.t}** · " + " · ".join(lines)


def variance_summary(result: VarianceResult) -> str:
    first = {variance: scales[0] for variance, scales in result.noise_scales.items()}
    return (f"DDPM-{result.steps}, same x_T (seed {result.seed}) and the same per-step noise (seed "
            f"{result.noise_seed}): only its scale differs. First step: √β = {first['fixed_large']:.3f}, √β̃ = "
            f"{first['fixed_small']:.3f}. The images differ by up to {result.max_difference}/255; "
            f"{result.unet_calls} UNet calls in all.")


def score_summary(result: ScoreResult) -> str:
    return (f"t = {result.t}, ᾱ_t = {result.alpha_bar:.4f}: the score is ε̂ times −{result.factor:.3g} "
            f"(RMS {result.score_rms:.3g}). Cosine between the predicted and the true score: {result.cosine:.3f}.")


def score_sde_summary(result: ScoreSdeResult) -> str:
    return (f"{result.steps} noise levels from σ_max = {result.sigma_max:g} to σ_min = {result.sigma_min:g}, x_T seed "
            f"{result.seed}. PC sampler: {result.correct_steps} corrector step(s) per level, snr {result.snr:g}, noise "
            f"seed {result.noise_seed}: {result.pc_unet_calls} UNet calls, {result.pc_seconds:.1f} s. Probability-flow "
            f"ODE: {result.ode_unet_calls} UNet calls, {result.ode_seconds:.1f} s, no noise drawn.")


def unet_summary(result: UnetTableResult) -> str:
    settings = result.embedding_settings
    return (f"`{result.checkpoint}`: {result.total_parameters:,} parameters. Timestep embedding: {settings['dims']} "
            f"dimensions, flip_sin_to_cos = {settings['flip_sin_to_cos']}, freq_shift = "
            f"{settings['downscale_freq_shift']}.")


def posterior_tab() -> None:
    """The posterior's coefficients and variances over t (live), and one x_T sampled with β̃_t and with β_t."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import MATH, RESULT, seed_controls

    with gr.Tab("Posterior and variance"):
        gr.Markdown(POSTERIOR_TEXT, latex_delimiters=MATH)
        t = gr.Slider(1, TRAIN_STEPS, value=500, step=1, label="t")
        plot = gr.Image(label="Posterior coefficients and variances", format="png")
        info = gr.Markdown()
        with gr.Row():
            with gr.Column():
                steps = gr.Slider(1, TRAIN_STEPS, value=50, step=1, label="Steps")
                seed, randomize = seed_controls()
                sample = gr.Button("Sample one x_T with β̃_t and with β_t", variant="primary")
            with gr.Column():
                with gr.Row():
                    small = gr.Image(label=VARIANCES["fixed_small"], format="png", height=200, elem_classes=RESULT)
                    large = gr.Image(label=VARIANCES["fixed_large"], format="png", height=200, elem_classes=RESULT)
                noise_plot = gr.Image(label="Noise added per step", format="png")
                variance_info = gr.Markdown()
        gr.Markdown(LEARNED_RANGE_TEXT)

    @user_errors
    def posterior_for_ui(t):
        result = run_posterior(t)
        return result.plot, posterior_summary(result)

    @user_errors
    def variance_for_ui(steps, seed, randomize, progress=gr.Progress()):
        result = run_reverse_variance(steps, resolve_seed(seed, randomize), progress=progress)
        return (result.images["fixed_small"], result.images["fixed_large"], result.plot, variance_summary(result),
                result.seed)

    # No triggers named: on page load (the plot is there before t is touched) and whenever t changes.
    gr.on(None, posterior_for_ui, inputs=[t], outputs=[plot, info], api_name="posterior_coefficients",
          trigger_mode="always_last")
    sample.click(variance_for_ui, inputs=[steps, seed, randomize],
                 outputs=[small, large, noise_plot, variance_info, seed], api_name="reverse_variance")


def score_tab() -> None:
    """The face DDPM's ε̂ read as a score, and the VE score model's PC sampler against its probability-flow ODE."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import MATH, RESULT, seed_controls

    with gr.Tab("Score-based models"):
        gr.Markdown(SCORE_TEXT, latex_delimiters=MATH)
        with gr.Row():
            with gr.Column():
                image = gr.Image(EXAMPLE_FACE, label="A face x0", type="pil", image_mode=None, height=200)
                t = gr.Slider(1, TRAIN_STEPS, value=500, step=1, label="t")
                noise = gr.Number(0, label="Noise seed", precision=0, minimum=0)
                show = gr.Button("ε̂ and the score", variant="primary")
            with gr.Column():
                views = gr.Gallery(label="x_t, ε̂, predicted score, true score", columns=4, height=200, format="png")
                score_info = gr.Markdown()
        with gr.Row():
            with gr.Column():
                steps = gr.Slider(1, 2000, value=100, step=1, label="Noise levels (steps)")
                correct = gr.Slider(0, MAX_CORRECT_STEPS, value=1, step=1, label="Corrector steps per noise level")
                snr = gr.Slider(0.01, 0.5, value=0.075, step=0.005, label="Corrector snr")
                seed, randomize = seed_controls()
                sample = gr.Button("PC sampler vs probability-flow ODE", variant="primary")
            with gr.Column():
                with gr.Row():
                    pc = gr.Image(label="Predictor–corrector (stochastic)", format="png", height=200, elem_classes=RESULT)
                    ode = gr.Image(label="Probability-flow ODE (deterministic)", format="png", height=200,
                                   elem_classes=RESULT)
                sde_info = gr.Markdown()
                plot = gr.Image(label="VE σ(t) against VP's noise", format="png")

    @user_errors
    def score_for_ui(image, t, noise, progress=gr.Progress()):
        result = run_score(image, t, noise, progress)
        gallery = [(result.noisy, "x_t"), (result.epsilon, "ε̂ (÷3)"), (result.score, "−ε̂/√(1−ᾱ)"),
                   (result.true_score, "−ε/√(1−ᾱ)")]
        return gallery, score_summary(result)

    @user_errors
    def score_sde_for_ui(steps, correct, snr, seed, randomize, progress=gr.Progress()):
        result = run_score_sde(steps, correct, snr, resolve_seed(seed, randomize), progress=progress)
        return result.pc_image, result.ode_image, score_sde_summary(result), result.plot, result.seed

    show.click(score_for_ui, inputs=[image, t, noise], outputs=[views, score_info], api_name="score_view")
    sample.click(score_sde_for_ui, inputs=[steps, correct, snr, seed, randomize],
                 outputs=[pc, ode, sde_info, plot, seed], api_name="score_sde")


def unet_tab() -> None:
    """The block table of either UNet and its timestep embedding as a heat map."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import MATH

    with gr.Tab("The UNet"):
        gr.Markdown(UNET_TEXT, latex_delimiters=MATH)
        with gr.Row():
            model = gr.Radio([(label, name) for name, label in UNETS.items()], value=PIXEL_MODEL, label="UNet")
            inspect = gr.Button("Show its blocks", variant="primary")
        table = gr.Dataframe(headers=UNET_HEADERS, label="Blocks (resolutions from a forward pass)", interactive=False,
                             wrap=True, elem_id="unet-blocks")
        info = gr.Markdown()
        plot = gr.Image(label="Sinusoidal timestep embedding (dimensions × t)", format="png")

    @user_errors
    def unet_for_ui(model, progress=gr.Progress()):
        result = run_unet_table(model, progress)
        return result.rows, unet_summary(result), result.plot

    inspect.click(unet_for_ui, inputs=[model], outputs=[table, info, plot], api_name="unet_blocks")


def build_ui() -> None:
    """The theory behind the samplers, one sub-tab per part."""
    import gradio as gr

    gr.Markdown("Under the samplers: the **posterior** the reverse step imitates and its variance, **scores** and "
                "the SDE view of diffusion, and the **UNet** that predicts the noise. t = 0 is the clean image.")
    with gr.Tabs():
        posterior_tab()
        score_tab()
        unet_tab()
