"""How diffusion samples: the mechanism under every generator in this playground.

DDPM (Ho et al. 2020) noises an image in T = 1000 small Gaussian steps, x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε,
and learns to undo them one by one. DDIM (Song et al. 2021) takes the same network along a
non-Markovian path: η = 1 re-injects noise like DDPM, η = 0 is deterministic and can skip steps.
iDDPM's cosine schedule (Nichol & Dhariwal 2021) spends more steps at low noise. A network may
predict ε, x0 or v = √ᾱ ε − √(1−ᾱ) x0; each converts to the others given x_t. Latent diffusion
(Rombach et al. 2022) runs all of this in a VAE's 4×H/8×W/8 latent, and consistency models
(Song et al. 2023) and LCM-LoRA (Luo et al. 2023) jump from any x_t to x0 in one to a few steps.

Time steps follow the papers: t = 0 is the clean image and t = 1..1000 are noise levels, which
diffusers indexes as t − 1. The formulas themselves are in `models.pipelines.diffusion_maths`; this tab
checks inputs, runs them on the models and lays out the page.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

import models
from demos import ASSETS
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import MAX_SEED, generator_for, resolve_seed
from demos.shared.inputs import number_in_range, one_of, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.few_step import CONSISTENCY, LCM_LORA
from models.pipelines.diffusion_maths import (
    SCHEDULER_CLASSES, TRAIN_STEPS, alpha_bars, decode_latent, denoise, encode_to_latent, make_scheduler, noised,
    parameterisations, velocity,
)
from models.pipelines.samplers import counting_calls
from models.safety import screened_images
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

if TYPE_CHECKING:
    import gradio as gr

PIXEL_MODEL = "ddpm-celebahq-256"  # shared with the face swap tab
SCHEDULES = {"linear": "linear (DDPM)", "squaredcos_cap_v2": "cosine (iDDPM)"}
PIXEL_SAMPLERS = ("DDPM", "DDIM")
FORWARD_SIDE = 256
MAX_LCM_STEPS = 8
MAX_SNAPSHOTS = 12
LCM_ADAPTER = "lcm"
CONSISTENCY_TWO_STEP = [22, 0]  # the official two-step timesteps for CD ImageNet-64 (launch.sh: --ts 0,22,39)
IMAGENET_CLASSES = {"king penguin": 145, "golden retriever": 207, "tabby cat": 281, "goldfinch": 11,
                    "volcano": 980, "espresso": 967}


def default_resolution() -> int:
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


# ---- images and tensors, counting UNet calls -----------------------------------------------

def to_tensor(image: Image.Image, like: torch.nn.Module) -> torch.Tensor:
    """RGB image → [1, 3, H, W] in [-1, 1] on the module's device and dtype."""
    parameter = next(like.parameters())
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    return pixels.to(parameter.device, parameter.dtype)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] in [-1, 1] (clipped) → RGB image."""
    pixels = ((tensor[0].detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())


def channel_images(latent: torch.Tensor, side: int) -> list[Image.Image]:
    """Each latent channel as a grey image (its own min–max range), enlarged without smoothing."""
    images = []
    for channel in latent[0].detach().float().cpu():
        scaled = (channel - channel.min()) / (channel.max() - channel.min()).clamp(min=1e-8)
        picture = Image.fromarray((scaled.numpy() * 255).round().astype(np.uint8))
        images.append(picture.resize((side, side), Image.Resampling.NEAREST))
    return images


# ---- validation -----------------------------------------------------------------------------

def _schedule(name: str) -> str:
    return one_of(name, "noise schedule", SCHEDULES)


def _sampler(name: str, allowed: tuple[str, ...]) -> str:
    return one_of(name, "sampler", allowed)


def _timestep(t: Any) -> int:
    return number_in_range(t, "The time step t", 0, TRAIN_STEPS, whole=True)


def _resolution(value: Any) -> int:
    resolution = number_in_range(value, "The resolution", 64, 1024, whole=True)
    if resolution % 8:
        raise UserError(f"The resolution must be a multiple of 8 (the VAE downsamples by 8); got {resolution}, "
                        f"try {resolution // 8 * 8}.")
    return resolution


def _square(image: Any, side: int, what: str) -> Image.Image:
    return ImageOps.fit(rgb_image(image, what), (side, side), Image.Resampling.LANCZOS)


# ---- forward process ---------------------------------------------------------------------------

@dataclass
class ForwardResult:
    clean: Image.Image
    noise: Image.Image  # the one ε, reused for every t (so scrubbing t only changes the mixing weights)
    noisy: Image.Image  # x_t
    t: int
    alpha_bar: float
    snr: float  # ᾱ / (1 − ᾱ): signal power over noise power
    plot: Image.Image  # ᾱ_t and SNR of both schedules, t marked


def run_forward_process(image: Any, t: Any = 250, schedule: str = "linear", seed: Any = 0) -> ForwardResult:
    """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε for one image and one ε; no network involved."""
    t, schedule, seed = _timestep(t), _schedule(schedule), resolve_seed(seed)
    clean = _square(image, FORWARD_SIDE, "an image to noise (a photo, or a face)")
    x0 = torch.from_numpy(np.asarray(clean, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    noise = torch.randn(x0.shape, generator=generator_for(seed))
    alpha_bar = float(alpha_bars(schedule)[t])
    return ForwardResult(clean=clean, noise=to_image(noise / 3), noisy=to_image(noised(x0, noise, t, schedule)), t=t,
                         alpha_bar=alpha_bar, snr=alpha_bar / max(1 - alpha_bar, 1e-12), plot=schedule_plot(t))


def schedule_plot(t: int) -> Image.Image:
    """ᾱ_t (left) and log-SNR (right) for the linear and cosine schedules, with the chosen t marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(8, 3), dpi=80)
    steps = np.arange(1, TRAIN_STEPS + 1)
    for schedule, label in SCHEDULES.items():
        alpha_bar = alpha_bars(schedule)[1:].numpy()
        left.plot(steps, alpha_bar, label=label)
        right.plot(steps, np.log10(alpha_bar / (1 - alpha_bar)), label=label)
    for axis, title in ((left, "ᾱ_t (signal kept)"), (right, "log10 SNR = log10 ᾱ/(1−ᾱ)")):
        axis.axvline(t, color="black", linewidth=1, linestyle="--")
        axis.set_title(title)
        axis.set_xlabel("t")
    left.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return Image.open(buffer).convert("RGB")


# ---- sampling ------------------------------------------------------------------------------------

@dataclass
class SamplerResult:
    image: Image.Image
    trajectory: list[tuple[Image.Image, str]]  # x_t at the snapshot steps (decoded, for latents)
    predicted_x0: list[tuple[Image.Image, str]]  # the network's x0 at the same steps
    sampler: str
    steps: int
    eta: float
    seed: int
    noise_seed: int  # the generator for the noise each stochastic step adds (not x_T's)
    timesteps: list[int]
    unet_calls: int
    seconds: float
    adapters: list[str] = field(default_factory=list)  # LoRA adapters active on the UNet during the run

    @property
    def caption(self) -> str:
        eta = f", η = {self.eta:g}" if self.sampler == "DDIM" else ""
        return f"{self.sampler}-{self.steps}{eta}: {self.unet_calls} UNet calls, {self.seconds:.2f} s"


def _step_options(sampler: str, eta: float, noise_seed: int) -> dict[str, Any]:
    """DDIM takes η; every sampler draws its per-step noise from its own generator."""
    options: dict[str, Any] = {"generator": generator_for(noise_seed)}
    if sampler == "DDIM":
        options["eta"] = eta
    return options


def run_pixel_sampler(sampler: str = "DDIM", steps: Any = 50, eta: Any = 0.0, seed: Any = 0,
                      noise_seed: Any = None, snapshots: Any = 6, progress: ProgressFn | None = None) -> SamplerResult:
    """Unconditional faces from the CelebA-HQ DDPM with DDPM's or DDIM's update. `seed` draws x_T;
    `noise_seed` (default: the seed) draws the noise added at each step, which η = 0 never uses."""
    sampler = _sampler(sampler, PIXEL_SAMPLERS)
    steps = number_in_range(steps, "The number of steps", 1, TRAIN_STEPS, whole=True)
    eta = number_in_range(eta, "η", 0, 1)
    seed = resolve_seed(seed)
    noise_seed = seed if noise_seed is None else resolve_seed(noise_seed)
    snapshots = number_in_range(snapshots, "The number of snapshots", 1, MAX_SNAPSHOTS, whole=True)
    pipe = models.get(PIXEL_MODEL, progress)
    unet = pipe.unet
    scheduler = make_scheduler(pipe.scheduler.config, sampler)
    scheduler.set_timesteps(steps, device=unet.device)
    side = unet.config.sample_size
    x_T = torch.randn((1, unet.config.in_channels, side, side), generator=generator_for(seed)).to(unet.device, unet.dtype)
    started = time.perf_counter()
    with torch.inference_mode(), counting_calls(unet) as counter:
        x0, trajectory, predicted = denoise(lambda x, t: unet(x, t).sample, scheduler, x_T,
                                            _step_options(sampler, eta, noise_seed), snapshots, to_image, progress,
                                            sampler)
    return SamplerResult(to_image(x0), trajectory, predicted, sampler, steps, eta, seed, noise_seed,
                         [int(t) + 1 for t in scheduler.timesteps], counter.calls, time.perf_counter() - started)


@dataclass
class DeterminismResult:
    first: SamplerResult
    second: SamplerResult  # same seed (same x_T), another noise seed
    max_difference: int  # largest pixel difference (0–255) between the two images


def run_determinism(steps: Any = 50, eta: Any = 0.0, seed: Any = 0, progress: ProgressFn | None = None) -> DeterminismResult:
    """The same x_T twice with different per-step noise: identical at η = 0, different once η > 0."""
    first = run_pixel_sampler("DDIM", steps, eta, seed, snapshots=1, progress=progress)
    second = run_pixel_sampler("DDIM", steps, eta, seed, noise_seed=(first.seed + 1) % MAX_SEED, snapshots=1,
                               progress=progress)
    difference = np.abs(np.asarray(first.image, dtype=np.int16) - np.asarray(second.image, dtype=np.int16))
    return DeterminismResult(first, second, int(difference.max()))


# ---- ε / x0 / v ----------------------------------------------------------------------------------

@dataclass
class ParameterisationResult:
    noisy: Image.Image  # x_t
    true: dict[str, Image.Image]  # ε, x0, v that made x_t
    predicted: dict[str, Image.Image]  # the network's output, converted to all three
    errors: dict[str, float]  # mean squared error of each prediction
    prediction_type: str  # what the checkpoint's network outputs (its scheduler config)
    t: int
    alpha_bar: float


def run_parameterisations(image: Any, t: Any = 500, seed: Any = 0,
                          progress: ProgressFn | None = None) -> ParameterisationResult:
    """Noise a face to x_t, let the CelebA-HQ network predict, and express the prediction as ε, x0 and v."""
    t, seed = _timestep(t), resolve_seed(seed)
    if t == 0:
        raise UserError("At t = 0 there is no noise to predict; choose t between 1 and 1000.")
    pipe = models.get(PIXEL_MODEL, progress)
    unet = pipe.unet
    x0 = to_tensor(_square(image, unet.config.sample_size, "a face image"), unet)
    epsilon = torch.randn(x0.shape, generator=generator_for(seed)).to(x0.device, x0.dtype)
    alpha_bar = float(pipe.scheduler.alphas_cumprod[t - 1])
    x_t = pipe.scheduler.add_noise(x0, epsilon, torch.tensor([t - 1]))
    prediction_type = pipe.scheduler.config.prediction_type
    with torch.inference_mode():
        predicted = parameterisations(unet(x_t, t - 1).sample, x_t, alpha_bar, prediction_type)
    true = {"epsilon": epsilon, "x0": x0, "v": velocity(epsilon, x0, alpha_bar)}
    return ParameterisationResult(
        noisy=to_image(x_t), true={k: to_image(v) for k, v in true.items()},
        predicted={k: to_image(v) for k, v in predicted.items()},
        errors={k: float((predicted[k] - true[k]).float().pow(2).mean()) for k in true},
        prediction_type=prediction_type, t=t, alpha_bar=alpha_bar)


# ---- latent diffusion ----------------------------------------------------------------------------

@dataclass
class LatentResult:
    reconstruction: Image.Image  # decode(encode(x)), the input's size
    original: Image.Image  # the input as encoded (square crop)
    channels: list[Image.Image]  # the 4 latent channels
    latent_shape: tuple[int, ...]
    pixel_elements: int
    latent_elements: int
    scaling_factor: float
    latent_std: float  # after scaling: about 1 for the published VAE
    mean_abs_error: float  # reconstruction error in 0–255 pixel levels


def run_vae_roundtrip(image: Any, resolution: Any = None, progress: ProgressFn | None = None) -> LatentResult:
    """Encode an image with the shared SD-1.5 VAE, show its latent, and decode it back."""
    side = _resolution(resolution or default_resolution())
    original = _square(image, side, "an image to encode")
    vae = models.get(SD15, progress).vae
    with torch.inference_mode():
        latent = encode_to_latent(vae, to_tensor(original, vae))
        reconstruction = to_image(decode_latent(vae, latent))
    difference = np.abs(np.asarray(reconstruction, dtype=np.float32) - np.asarray(original, dtype=np.float32))
    return LatentResult(
        reconstruction=reconstruction, original=original, channels=channel_images(latent, side // 2),
        latent_shape=tuple(latent.shape[1:]), pixel_elements=3 * side * side, latent_elements=latent[0].numel(),
        scaling_factor=float(vae.config.scaling_factor), latent_std=float(latent.float().std()),
        mean_abs_error=float(difference.mean()))


@contextmanager
def lcm_lora_attached(pipe: Any, progress: ProgressFn | None) -> Iterator[None]:
    """LCM-LoRA on the shared base for this run only, as a named adapter deleted afterwards."""
    pipe.load_lora_weights(dict(models.get(LCM_LORA, progress)), adapter_name=LCM_ADAPTER)
    try:
        yield
    finally:
        pipe.delete_adapters(LCM_ADAPTER)


def run_latent_sampler(prompt: str, sampler: str = "DDIM", steps: Any = 25, eta: Any = 0.0,
                       guidance_scale: Any = 7.5, seed: Any = 0, resolution: Any = None, snapshots: Any = 4,
                       progress: ProgressFn | None = None) -> SamplerResult:
    """Text to image on the shared SD-1.5 in its VAE latent, with decoded x_t and x0 previews.
    LCM attaches LCM-LoRA for the run and samples without CFG (its distillation folded guidance in)."""
    prompt = prompt_text(prompt, "the image to generate")
    sampler = _sampler(sampler, tuple(SCHEDULER_CLASSES))
    lcm = sampler == "LCM"
    steps = number_in_range(steps, "The number of steps", 1, MAX_LCM_STEPS if lcm else LIMITS.max_steps, whole=True)
    eta = number_in_range(eta, "η", 0, 1)
    guidance_scale = 1.0 if lcm else number_in_range(guidance_scale, "The guidance scale (CFG)", 0, 30)
    seed = resolve_seed(seed)
    side = _resolution(resolution or default_resolution())
    snapshots = number_in_range(snapshots, "The number of snapshots", 1, MAX_SNAPSHOTS, whole=True)
    pipe = models.get(SD15, progress)
    unet, vae = pipe.unet, pipe.vae
    # Latents are not bounded to [-1, 1] as pixels are: never clip the predicted x0 (SD-1.5's own config).
    scheduler = make_scheduler(pipe.scheduler.config, sampler, clip_sample=False)
    scheduler.set_timesteps(steps, device=unet.device)
    guided = guidance_scale > 1
    shape = (1, unet.config.in_channels, side // pipe.vae_scale_factor, side // pipe.vae_scale_factor)
    x_T = torch.randn(shape, generator=generator_for(seed)).to(unet.device, unet.dtype) * scheduler.init_noise_sigma

    def predict(x: torch.Tensor, t: Any) -> torch.Tensor:
        if not guided:
            return unet(x, t, encoder_hidden_states=text).sample
        unconditional, conditional = unet(torch.cat([x, x]), t, encoder_hidden_states=text).sample.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def decode(latent: torch.Tensor) -> Image.Image:
        return screened_images(pipe, decode_latent(vae, latent))[0]

    started = time.perf_counter()
    # The adapter's layers are built outside inference mode: other tabs may take gradients through them.
    with lcm_lora_attached(pipe, progress) if lcm else nullcontext(), torch.inference_mode():
        adapters = list(pipe.get_active_adapters()) if lcm else []
        positive, negative = pipe.encode_prompt(prompt, unet.device, 1, guided)
        text = torch.cat([negative, positive]) if guided else positive
        with counting_calls(unet) as counter:
            latent, trajectory, predicted = denoise(predict, scheduler, x_T, _step_options(sampler, eta, seed),
                                                    snapshots, decode, progress, sampler)
        image = decode(latent)
    return SamplerResult(image, trajectory, predicted, sampler, steps, eta, seed, seed,
                         [int(t) + 1 for t in scheduler.timesteps], counter.calls, time.perf_counter() - started,
                         adapters)


# ---- consistency model -----------------------------------------------------------------------

@dataclass
class ConsistencyResult:
    image: Image.Image
    steps: int
    class_label: int
    unet_calls: int
    seconds: float


def run_consistency(class_label: Any = 145, steps: Any = 1, seed: Any = 0,
                    progress: ProgressFn | None = None) -> ConsistencyResult:
    """One network evaluation maps noise at σ_max = 80 straight to an image; a second step re-noises
    to σ ≈ 1.4 (the official two-step timesteps) and maps again."""
    class_label = number_in_range(class_label, "The ImageNet class", 0, 999, whole=True)
    steps = number_in_range(steps, "The number of consistency steps", 1, 2, whole=True)
    seed = resolve_seed(seed)
    pipe = models.get(CONSISTENCY, progress)
    timing = {"num_inference_steps": 1} if steps == 1 else {"num_inference_steps": None,
                                                             "timesteps": CONSISTENCY_TWO_STEP}
    started = time.perf_counter()
    with counting_calls(pipe.unet) as counter:
        image = pipe(**timing, class_labels=class_label, generator=generator_for(seed)).images[0]
    return ConsistencyResult(image, steps, class_label, counter.calls, time.perf_counter() - started)


# ---- presentation ------------------------------------------------------------------------------

FORMULAS = (  # rendered by the page's Markdown as mathematics (MATH delimiters)
    r"**Forward:** $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\qquad \bar\alpha_t = "
    r"\prod_{s=1}^{t}(1-\beta_s)$$" "\n\n"
    r"**Conversions** (given $x_t$): $$x_0 = \frac{x_t-\sqrt{1-\bar\alpha}\,\varepsilon}{\sqrt{\bar\alpha}},\quad "
    r"v = \sqrt{\bar\alpha}\,\varepsilon-\sqrt{1-\bar\alpha}\,x_0,\quad x_0 = \sqrt{\bar\alpha}\,x_t-"
    r"\sqrt{1-\bar\alpha}\,v,\quad \varepsilon = \sqrt{\bar\alpha}\,v+\sqrt{1-\bar\alpha}\,x_t$$" "\n\n"
    r"**DDIM:** $$x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0+\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,\hat\varepsilon+"
    r"\sigma_t z,\qquad \sigma_t = \eta\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}"
    r"{\bar\alpha_{t-1}}}$$"
)


def forward_summary(result: ForwardResult) -> str:
    return (f"t = **{result.t}** · ᾱ_t = **{result.alpha_bar:.4f}** · x_t = {result.alpha_bar ** 0.5:.3f}·x0 + "
            f"{(1 - result.alpha_bar) ** 0.5:.3f}·ε · SNR = ᾱ/(1−ᾱ) = **{result.snr:.3g}**")


def sampler_summary(result: SamplerResult) -> str:
    noise = ("η = 0 adds no noise: the noise seed is unused." if result.sampler == "DDIM" and result.eta == 0
             else f"Per-step noise seed {result.noise_seed}.")
    adapters = f" · adapters on the UNet during the run: {', '.join(result.adapters)}" if result.adapters else ""
    return (f"**{result.caption}** · seed {result.seed} (x_T) · {noise}{adapters}\n\n"
            f"t visited: {', '.join(map(str, result.timesteps[:12]))}{' …' if len(result.timesteps) > 12 else ''}")


def parameterisation_summary(result: ParameterisationResult) -> str:
    errors = " · ".join(f"{name}: {value:.4f}" for name, value in result.errors.items())
    return (f"The checkpoint predicts **{result.prediction_type}** (its scheduler's `prediction_type`); the other two "
            f"follow from x_t. t = {result.t}, ᾱ_t = {result.alpha_bar:.4f}. Mean squared error against the truth: "
            f"{errors}. An error in ε̂ reaches x̂0 multiplied by (1−ᾱ)/ᾱ = {(1 - result.alpha_bar) / result.alpha_bar:.3g}.")


def latent_summary(result: LatentResult) -> str:
    channels, height, width = result.latent_shape
    side = result.original.width
    return (f"Pixels 3×{side}×{side} = **{result.pixel_elements:,}** numbers; latent {channels}×{height}×{width} = "
            f"**{result.latent_elements:,}** — **{result.pixel_elements / result.latent_elements:g}×** fewer for the UNet "
            f"to denoise. The latent is multiplied by `scaling_factor` = {result.scaling_factor:g} before diffusion "
            f"(std now {result.latent_std:.3f}) and divided by it before decoding. Reconstruction error: "
            f"{result.mean_abs_error:.1f} / 255 per pixel.")


EXAMPLE_FACE = str(ASSETS / "astronaut.jpg")  # the starting image of the forward, ε/x0/v and VAE sub-tabs


def _image_pair(first: str, second: str) -> tuple[gr.Image, gr.Image, gr.Markdown]:
    """Two results side by side and a line that compares them: the pixel and few-step sub-tabs set them
    against each other (two noise seeds, two samplers, one and two steps)."""
    import gradio as gr

    from demos.shared.widgets import RESULT

    with gr.Row():
        images = tuple(gr.Image(label=label, format="png", height=200, elem_classes=RESULT)
                       for label in (first, second))
    return *images, gr.Markdown()


def forward_process_tab() -> None:
    """Scrub t and the schedule: x_t, ᾱ_t and SNR update on every change, no network and no button."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT

    with gr.Tab("Forward process"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(EXAMPLE_FACE, label="Image x0", type="pil", image_mode=None, height=240)
                t = gr.Slider(0, TRAIN_STEPS, value=250, step=1, label="t", elem_id="forward-t")
                schedule = gr.Radio([(label, name) for name, label in SCHEDULES.items()], value="linear",
                                    label="Noise schedule")
                seed = gr.Number(0, label="Noise seed (one ε for every t)", precision=0, minimum=0)
            with gr.Column():
                with gr.Row():
                    clean = gr.Image(label="x0", format="png", height=200, elem_classes=RESULT)
                    noise = gr.Image(label="ε (shown ÷3)", format="png", height=200, elem_classes=RESULT)
                    noisy = gr.Image(label="x_t", format="png", height=200, elem_id="forward-noisy")
                info = gr.Markdown(elem_id="forward-info")
                plot = gr.Image(label="ᾱ_t and SNR: linear vs cosine", format="png")

    @user_errors
    def forward_for_ui(image, t, schedule, seed):
        result = run_forward_process(image, t, schedule, seed)
        return result.clean, result.noise, result.noisy, forward_summary(result), result.plot

    gr.on([image.change, t.change, schedule.change, seed.change], forward_for_ui,
          inputs=[image, t, schedule, seed], outputs=[clean, noise, noisy, info, plot],
          api_name="diffusion_forward", trigger_mode="always_last")


def pixel_sampler_tab() -> None:
    """Unconditional faces with DDPM's or DDIM's update, and two comparisons on the same x_T:
    η = 0 against η > 0 (determinism) and DDIM-50 against DDPM-1000 (speed)."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, seed_controls

    with gr.Tab("DDPM / DDIM (pixels)"):
        gr.Markdown(f"Unconditional faces from `{models.REGISTRY[PIXEL_MODEL].checkpoint}` (pixel space, "
                    "the face swap's prior). DDIM re-uses the DDPM network with another update; the seed draws x_T, "
                    "the noise seed the noise each stochastic step adds.")
        with gr.Row():
            with gr.Column():
                sampler = gr.Radio(list(PIXEL_SAMPLERS), value="DDIM", label="Sampler")
                steps = gr.Slider(1, TRAIN_STEPS, value=50, step=1, label="Steps", elem_id="pixel-steps")
                eta = gr.Slider(0, 1, value=0.0, step=0.05, label="η (DDIM only)")
                snapshots = gr.Slider(2, MAX_SNAPSHOTS, value=6, step=1, label="Filmstrip frames")
                seed, randomize = seed_controls()
                sample = gr.Button("Sample", variant="primary")
                determinism = gr.Button("Same seed twice, different step noise")
                race = gr.Button("DDIM-50 vs DDPM-1000")
            with gr.Column():
                image = gr.Image(label="Sample", format="png", height=200, elem_classes=RESULT)
                info = gr.Markdown(elem_id="pixel-info")
                trajectory = gr.Gallery(label="x_t along the chain", columns=6, height=160, format="png",
                                        elem_id="pixel-trajectory")
                x0 = gr.Gallery(label="Predicted x0 at the same steps", columns=6, height=160, format="png")
                first_image, second_image, pair_info = _image_pair("First", "Second")

    @user_errors
    def sample_for_ui(sampler, steps, eta, snapshots, seed, randomize, progress=gr.Progress()):
        result = run_pixel_sampler(sampler, steps, eta, resolve_seed(seed, randomize), snapshots=snapshots,
                                   progress=progress)
        return result.image, sampler_summary(result), result.trajectory, result.predicted_x0, result.seed

    @user_errors
    def determinism_for_ui(steps, eta, seed, randomize, progress=gr.Progress()):
        result = run_determinism(steps, eta, resolve_seed(seed, randomize), progress)
        verdict = "identical" if result.max_difference == 0 else f"differ by up to {result.max_difference}/255"
        text = (f"DDIM-{result.first.steps}, η = {result.first.eta:g}, same x_T (seed {result.first.seed}), noise seeds "
                f"{result.first.noise_seed} and {result.second.noise_seed}: the images are **{verdict}**.")
        return result.first.image, result.second.image, text, result.first.seed

    @user_errors
    def race_for_ui(seed, randomize, progress=gr.Progress()):
        seed = resolve_seed(seed, randomize)
        ddim = run_pixel_sampler("DDIM", 50, 0.0, seed, snapshots=2, progress=progress)
        ddpm = run_pixel_sampler("DDPM", TRAIN_STEPS, 0.0, seed, snapshots=2, progress=progress)
        text = (f"Same x_T. {ddim.caption} · {ddpm.caption} — DDIM is {ddpm.seconds / max(ddim.seconds, 1e-9):.0f}× "
                "faster here.")
        return ddim.image, ddpm.image, text, seed

    sample.click(sample_for_ui, inputs=[sampler, steps, eta, snapshots, seed, randomize],
                 outputs=[image, info, trajectory, x0, seed], api_name="pixel_sampler")
    determinism.click(determinism_for_ui, inputs=[steps, eta, seed, randomize],
                      outputs=[first_image, second_image, pair_info, seed], api_name="ddim_determinism")
    race.click(race_for_ui, inputs=[seed, randomize], outputs=[first_image, second_image, pair_info, seed],
               api_name="ddim_vs_ddpm")


def parameterisation_tab() -> None:
    """Noise a face and show the network's one prediction as ε, x0 and v next to the true ones."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT

    with gr.Tab("ε / x0 / v"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(EXAMPLE_FACE, label="A face x0", type="pil", image_mode=None, height=240)
                t = gr.Slider(1, TRAIN_STEPS, value=500, step=1, label="t")
                seed = gr.Number(0, label="Noise seed", precision=0, minimum=0)
                predict = gr.Button("Noise it and predict", variant="primary")
            with gr.Column():
                noisy = gr.Image(label="x_t", format="png", height=200, elem_classes=RESULT)
                gallery = gr.Gallery(label="True (top) and predicted (bottom) ε, x0, v", columns=3,
                                     height=320, format="png")
                info = gr.Markdown()

    @user_errors
    def parameterisations_for_ui(image, t, seed, progress=gr.Progress()):
        result = run_parameterisations(image, t, seed, progress)
        names = {"epsilon": "ε", "x0": "x0", "v": "v"}
        gallery = [(result.true[key], f"true {name}") for key, name in names.items()]
        gallery += [(result.predicted[key], f"predicted {name}") for key, name in names.items()]
        return result.noisy, gallery, parameterisation_summary(result)

    predict.click(parameterisations_for_ui, inputs=[image, t, seed], outputs=[noisy, gallery, info],
                  api_name="parameterisations")


def latent_tab() -> gr.Slider:
    """SD-1.5's VAE round trip and text-to-image in its latent. Returns the resolution slider, which
    the few-step sub-tab shares."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, seed_controls

    with gr.Tab("Latent vs pixel (LDM)"):
        with gr.Row():
            with gr.Column():
                vae_image = gr.Image(EXAMPLE_FACE, label="Image", type="pil", image_mode=None, height=240)
                resolution = gr.Slider(64, 1024, value=default_resolution(), step=8, label="Resolution (VAE and generation)")
                roundtrip = gr.Button("Encode and decode with SD-1.5's VAE", variant="primary")
            with gr.Column():
                with gr.Row():
                    vae_original = gr.Image(label="Input", format="png", height=200, elem_classes=RESULT)
                    vae_reconstruction = gr.Image(label="decode(encode(x))", format="png", height=200, elem_classes=RESULT)
                vae_channels = gr.Gallery(label="The 4 latent channels", columns=4, height=160, format="png")
                vae_info = gr.Markdown()
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox("a photo of an astronaut riding a horse", label="Prompt")
                sampler = gr.Radio(list(SCHEDULER_CLASSES)[:2], value="DDIM", label="Sampler")
                steps = gr.Slider(1, LIMITS.max_steps, value=25, step=1, label="Steps")
                guidance = gr.Slider(0, 15, value=7.5, step=0.5, label="Guidance scale (CFG)")
                seed, randomize = seed_controls()
                generate = gr.Button("Generate in latent space", variant="primary")
            with gr.Column():
                image = gr.Image(label="Decoded sample", format="png", height=200, elem_classes=RESULT)
                info = gr.Markdown()
                trajectory = gr.Gallery(label="Decoded x_t", columns=4, height=160, format="png")
                x0 = gr.Gallery(label="Decoded predicted x0", columns=4, height=160, format="png")

    @user_errors
    def roundtrip_for_ui(image, resolution, progress=gr.Progress()):
        result = run_vae_roundtrip(image, resolution, progress)
        channels = [(channel, f"channel {index}") for index, channel in enumerate(result.channels)]
        return result.original, result.reconstruction, channels, latent_summary(result)

    @user_errors
    def latent_for_ui(prompt, sampler, steps, guidance, resolution, seed, randomize, progress=gr.Progress()):
        result = run_latent_sampler(prompt, sampler, steps, guidance_scale=guidance, seed=resolve_seed(seed, randomize),
                                    resolution=resolution, progress=progress)
        return result.image, sampler_summary(result), result.trajectory, result.predicted_x0, result.seed

    roundtrip.click(roundtrip_for_ui, inputs=[vae_image, resolution],
                    outputs=[vae_original, vae_reconstruction, vae_channels, vae_info], api_name="vae_roundtrip")
    generate.click(latent_for_ui, inputs=[prompt, sampler, steps, guidance, resolution, seed, randomize],
                   outputs=[image, info, trajectory, x0, seed], api_name="latent_sampler")
    return resolution


def few_step_tab(resolution: gr.Slider) -> None:
    """LCM-LoRA against DDIM on the same prompt and seed (at the latent sub-tab's `resolution`), and a
    consistency model in one and two steps."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import seed_controls

    with gr.Tab("Few-step: LCM-LoRA, consistency"):
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox("a photo of an astronaut riding a horse", label="Prompt")
                lcm_steps = gr.Radio([1, 2, 4, 8], value=4, label="LCM steps")
                ddim_steps = gr.Slider(25, 50, value=25, step=1, label="DDIM steps (base, CFG 7.5)")
                few_seed, few_randomize = seed_controls()
                few = gr.Button("LCM-LoRA vs DDIM, same prompt and seed", variant="primary")
            with gr.Column():
                lcm_image, ddim_image, few_info = _image_pair("LCM-LoRA", "DDIM on the base")
        with gr.Row():
            with gr.Column():
                class_label = gr.Dropdown(list(IMAGENET_CLASSES.items()), value=145, label="ImageNet class")
                cm_seed, cm_randomize = seed_controls()
                consistency = gr.Button("Consistency model: 1 and 2 steps", variant="primary")
            with gr.Column():
                cm_one, cm_two, cm_info = _image_pair("1 step", "2 steps")

    @user_errors
    def few_step_for_ui(prompt, lcm_steps, ddim_steps, resolution, seed, randomize, progress=gr.Progress()):
        seed = resolve_seed(seed, randomize)
        lcm = run_latent_sampler(prompt, "LCM", lcm_steps, seed=seed, resolution=resolution, snapshots=1,
                                 progress=progress)
        ddim = run_latent_sampler(prompt, "DDIM", ddim_steps, seed=seed, resolution=resolution, snapshots=1,
                                  progress=progress)
        text = (f"{lcm.caption} (no CFG) · {ddim.caption} (CFG 7.5: both halves in one batched call) — LCM-LoRA "
                f"took {ddim.seconds / max(lcm.seconds, 1e-9):.1f}× less time. The adapter is removed after its run.")
        return lcm.image, ddim.image, text, seed

    @user_errors
    def consistency_for_ui(class_label, seed, randomize, progress=gr.Progress()):
        seed = resolve_seed(seed, randomize)
        one, two = (run_consistency(class_label, steps, seed, progress) for steps in (1, 2))
        text = (f"`{models.REGISTRY[CONSISTENCY].checkpoint}`, class {one.class_label}: 1 step = {one.unet_calls} UNet "
                f"call ({one.seconds:.2f} s), 2 steps = {two.unet_calls} calls ({two.seconds:.2f} s).")
        return one.image, two.image, text, seed

    few.click(few_step_for_ui, inputs=[prompt, lcm_steps, ddim_steps, resolution, few_seed, few_randomize],
              outputs=[lcm_image, ddim_image, few_info, few_seed], api_name="lcm_vs_ddim")
    consistency.click(consistency_for_ui, inputs=[class_label, cm_seed, cm_randomize], outputs=[cm_one, cm_two, cm_info, cm_seed],
                      api_name="consistency_model")


def build_ui() -> None:
    """The lecture's introduction and formulas, then one sub-tab per step of the story, in teaching order."""
    import gradio as gr

    from demos.shared.widgets import MATH

    gr.Markdown(
        "The lecture before every other tab: how a diffusion model turns noise into an image. Scrub the "
        "**forward process**, sample faces with **DDPM** and **DDIM** (η = 0 deterministic, η = 1 DDPM-like), see "
        "what **ε / x0 / v** predictions mean, move to the **latent** space of Stable Diffusion, and jump there in "
        "a few steps with **LCM-LoRA** and a **consistency model**. t = 0 is the clean image.\n\n" + FORMULAS,
        latex_delimiters=MATH)
    with gr.Tabs():
        forward_process_tab()
        pixel_sampler_tab()
        parameterisation_tab()
        resolution = latent_tab()
        few_step_tab(resolution)


# ---- Compare -------------------------------------------------------------------------------------

def _compare_sampler(sampler: str, eta: float) -> Callable[..., Output]:
    """A Compare cell through `run_latent_sampler` itself, on the shared SD-1.5."""
    def run(prompt: str, seed: int = 0, steps: int = 25, **_unused: Any) -> Output:
        return Output(image=run_latent_sampler(prompt, sampler, steps, eta=eta, seed=seed).image)
    return run


COMPARE_SAMPLERS = {  # Compare method → (sampler, η, default steps)
    "SD-1.5 DDPM sampler": ("DDPM", 0.0, 25),
    "SD-1.5 DDIM η=0": ("DDIM", 0.0, 25),
    "SD-1.5 DDIM η=1": ("DDIM", 1.0, 25),
    "SD-1.5 + LCM-LoRA": ("LCM", 0.0, 4),
}
COMPARE_METHODS = [Method(IMAGE, method_name, _compare_sampler(sampler_name, method_eta), {"seed": 0, "steps": steps})
                   for method_name, (sampler_name, method_eta, steps) in COMPARE_SAMPLERS.items()]
