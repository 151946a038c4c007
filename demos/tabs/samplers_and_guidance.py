"""Samplers & guidance: what happens between "same network" and "different picture".

Three views on the shared SD-1.5 base, after the lecture tab "How diffusion samples":

1. **Samplers.** DDIM, PNDM, Euler, Euler ancestral, Heun and DPM-Solver++ are diffusers schedulers
   built from the base's own scheduler config and put into the base pipeline for one run only
   (`models.pipelines.samplers.swapped_scheduler`). One prompt and seed, a sweep of step counts: the
   images, how many UNet calls each took (Heun evaluates twice a step) and the seconds per image.
2. **Classifier-free guidance, opened up.** At one step of a DDIM run, the unconditional ε_∅, the
   conditional ε_c and ε̂ = ε_∅ + w(ε_c − ε_∅), each turned into its predicted clean image
   x̂0 = (z_t − √(1−ᾱ_t) ε)/√ᾱ_t; a sweep of w from one seed; the negative prompt is the ∅ branch.
   Classifier guidance, which adds a classifier's gradient instead, is named where this playground uses it.
3. **DDIM inversion on its own.** Photo → x_T (DDIM run backwards) → back, and the reconstruction error
   against the number of steps, sampled back without guidance (w = 1) and with it (w = 7.5): why
   prompt-to-prompt needs null-text inversion. The inversion is prompt-to-prompt's own code
   (`models.pipelines.null_text_inversion`).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import quote

import torch
from PIL import Image

import models
from demos import ASSETS, DEMOS
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, resolve_seed
from demos.shared.inputs import number_in_range, one_of, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.pipelines import null_text_inversion as nti
from models.pipelines import prompt_to_prompt as p2p
from models.pipelines.cfg_branches import BRANCHES, Branches, sample_with_branches
from models.pipelines.diffusion_maths import decode_latent
from models.pipelines.samplers import SAMPLERS, counting_calls, make_sampler, swapped_scheduler
from models.safety import screened_images
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

if TYPE_CHECKING:
    import gradio as gr

SAMPLER_NAMES = list(SAMPLERS)
STEP_CHOICES = [5, 10, 25, 50]
SWEEP_STEPS = (5, 10, 25)
GUIDANCE_SWEEP = (1.0, 3.0, 7.5, 15.0)
INVERSION_STEPS = (5, 10, 25, 50)
INVERSION_SCALES = (1.0, 7.5)
MAX_SWEEP_VALUES = 6
MAX_GUIDANCE = 30
EXAMPLE_PHOTO = str(ASSETS / "chelsea.jpg")
PROMPT_EXAMPLES = [  # prompt, negative prompt, seed
    ("a photo of an astronaut riding a horse", "", 0),
    ("a watercolour painting of a lighthouse at dusk", "blurry, low quality", 3),
    ("a red sports car on a mountain road", "rain", 7),
]


def default_resolution() -> int:
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


# ---- validation ---------------------------------------------------------------------------------------

def _side(value: Any) -> int:
    side = number_in_range(value or default_resolution(), "The resolution", 64, 1024, whole=True)
    if side % 8:
        raise UserError(f"The resolution must be a multiple of 8 (the VAE downsamples by 8); got {side}, "
                        f"try {side // 8 * 8}.")
    return side


def _values(values: Any, what: str, low: float, high: float, whole: bool) -> list:
    """A sweep: a list (or comma-separated text) of 1..MAX_SWEEP_VALUES numbers in [low, high], in order, once each."""
    if isinstance(values, str):
        values = values.split(",")
    items = [item for item in (values if isinstance(values, (list, tuple)) else [values]) if str("" if item is None else item).strip()]
    if not items:
        raise UserError(f"Give at least one value for {what}.")
    numbers = sorted({number_in_range(str(item).strip() if isinstance(item, str) else item, what, low, high, whole)
                      for item in items})
    if len(numbers) > MAX_SWEEP_VALUES:
        raise UserError(f"At most {MAX_SWEEP_VALUES} values for {what}; got {len(numbers)}.")
    return numbers


def _step_values(values: Any, what: str = "The number of steps") -> list[int]:
    return _values(values, what, 1, LIMITS.max_steps, whole=True)


def _scale(value: Any) -> float:
    return number_in_range(value, "The guidance scale w", 0, MAX_GUIDANCE)


def _sampler_names(names: Any) -> list[str]:
    names = list(names) if isinstance(names, (list, tuple)) else [names] if names else []
    if not names:
        raise UserError("Tick at least one sampler.")
    return list(dict.fromkeys(one_of(name, "sampler", SAMPLER_NAMES) for name in names))


def _negative(text: Any) -> str:
    text = ("" if text is None else str(text)).strip()
    if len(text) > 400:
        raise UserError(f"The negative prompt is {len(text)} characters long; keep it under 400.")
    return text


def _at_most(step: Any, steps: Any) -> Any:
    """The page's step slider reaches 50 whatever the steps: a step past the last opens up the last one."""
    try:
        return min(float(step), float(steps))
    except (TypeError, ValueError):
        return step  # the run says what is wrong with it


def _report_steps(progress: ProgressFn | None, label: str, total: int) -> Callable[[int], None]:
    def report(index: int) -> None:
        if progress is not None:
            progress((index + 1) / total, desc=f"{label}: step {index + 1}/{total}")
    return report


# ---- 1. samplers --------------------------------------------------------------------------------------

@dataclass
class SamplerRun:
    sampler: str
    steps: int
    image: Image.Image
    unet_calls: int
    seconds: float
    scheduler_class: str  # the diffusers class that stepped
    seed: int

    @property
    def caption(self) -> str:
        return f"{self.sampler}, {self.steps} steps: {self.unet_calls} UNet calls, {self.seconds:.2f} s"


def _sample(pipe: Any, prompt: str, negative: str, sampler: str, steps: int, scale: float, seed: int, side: int,
            progress: ProgressFn | None) -> SamplerRun:
    """The base pipeline's own `__call__`, with `sampler`'s scheduler in it for this run only."""
    scheduler = make_sampler(pipe.scheduler.config, sampler)

    def on_step_end(_pipe: Any, index: int, _timestep: Any, tensors: dict) -> dict:
        _report_steps(progress, f"{sampler}-{steps}", max(len(scheduler.timesteps), index + 1))(index)
        return tensors

    started = time.perf_counter()
    with swapped_scheduler(pipe, scheduler), counting_calls(pipe.unet) as count:
        output = pipe(prompt, negative_prompt=negative or None, num_inference_steps=steps, guidance_scale=scale,
                      generator=generator_for(seed), height=side, width=side, callback_on_step_end=on_step_end)
    return SamplerRun(sampler, steps, output.images[0], count.calls, time.perf_counter() - started,
                      type(scheduler).__name__, seed)


def run_sampler(prompt: str, sampler: str = "DDIM", steps: Any = 25, guidance_scale: Any = 7.5, seed: Any = 0,
                resolution: Any = None, negative_prompt: str = "", progress: ProgressFn | None = None) -> SamplerRun:
    """One image on the shared SD-1.5 with one sampler (the Compare tab's cell)."""
    prompt = prompt_text(prompt, "the image to generate")
    sampler = one_of(sampler, "sampler", SAMPLER_NAMES)
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    scale, seed, side, negative = _scale(guidance_scale), resolve_seed(seed), _side(resolution), _negative(negative_prompt)
    return _sample(models.get(SD15, progress), prompt, negative, sampler, steps, scale, seed, side, progress)


@dataclass
class SamplerSweep:
    runs: list[SamplerRun]  # sampler by sampler, each over the step counts
    samplers: list[str]
    steps: list[int]
    seed: int
    guidance_scale: float

    @property
    def captioned(self) -> list[tuple[Image.Image, str]]:
        return [(run.image, run.caption) for run in self.runs]


def run_sampler_sweep(prompt: str, samplers: Any = tuple(SAMPLER_NAMES), steps: Any = SWEEP_STEPS,
                      guidance_scale: Any = 7.5, seed: Any = 0, resolution: Any = None, negative_prompt: str = "",
                      progress: ProgressFn | None = None) -> SamplerSweep:
    """Every ticked sampler at every step count, from the same x_T (one seed): a grid of images."""
    prompt = prompt_text(prompt, "the image to generate")
    samplers, step_counts = _sampler_names(samplers), _step_values(steps)
    scale, seed, side, negative = _scale(guidance_scale), resolve_seed(seed), _side(resolution), _negative(negative_prompt)
    if len(samplers) * len(step_counts) > LIMITS.max_compare_cells:
        raise UserError(f"{len(samplers) * len(step_counts)} images is more than the limit of "
                        f"{LIMITS.max_compare_cells}; tick fewer samplers or step counts.")
    pipe = models.get(SD15, progress)
    runs = [_sample(pipe, prompt, negative, sampler, count, scale, seed, side, progress)
            for sampler in samplers for count in step_counts]
    return SamplerSweep(runs, samplers, step_counts, seed, scale)


# ---- 2. classifier-free guidance ------------------------------------------------------------------

@dataclass
class GuidanceSetup:
    """What every CFG run of one request shares: the base, DDIM at `steps`, [∅ ; c] and one x_T."""

    pipe: Any
    scheduler: Any
    texts: torch.Tensor
    x_T: torch.Tensor


def _guidance_setup(prompt: str, negative: str, steps: int, seed: int, side: int,
                    progress: ProgressFn | None) -> GuidanceSetup:
    pipe = models.get(SD15, progress)
    unet = pipe.unet
    scheduler = make_sampler(pipe.scheduler.config, "DDIM")
    scheduler.set_timesteps(steps, device=unet.device)
    with torch.inference_mode():
        positive, unconditional = pipe.encode_prompt(prompt, unet.device, 1, True, negative_prompt=negative or None)
    shape = (1, unet.config.in_channels, side // pipe.vae_scale_factor, side // pipe.vae_scale_factor)
    x_T = torch.randn(shape, generator=generator_for(seed)).to(unet.device, unet.dtype) * scheduler.init_noise_sigma
    return GuidanceSetup(pipe, scheduler, torch.cat([unconditional, positive]), x_T)


def _decoded(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    with torch.inference_mode():
        return screened_images(pipe, decode_latent(pipe.vae, latents.to(pipe.vae.dtype)))


@dataclass
class BranchesResult:
    image: Image.Image  # the run's final image
    noisy: Image.Image  # z_t decoded as it is
    predicted_x0: dict[str, Image.Image]  # BRANCHES → x̂0 of that branch's ε, decoded
    branches: Branches  # the tensors themselves
    step: int  # 1-based
    steps: int
    t: int  # paper t (diffusers index + 1)
    guidance_scale: float
    negative_prompt: str
    seed: int
    difference: float  # RMS of ε_c − ε_∅ relative to RMS of ε_∅: how much the prompt changes the prediction

    @property
    def captioned(self) -> list[tuple[Image.Image, str]]:
        x0 = self.predicted_x0
        return [(self.noisy, f"z_t at step {self.step}"), (x0["unconditional"], "x̂0 of ε_∅ (the negative prompt)"),
                (x0["conditional"], "x̂0 of ε_c (the prompt)"),
                (x0["guided"], f"x̂0 of ε̂ = ε_∅ + {self.guidance_scale:g}·(ε_c − ε_∅)")]


def run_cfg_branches(prompt: str, negative_prompt: str = "", guidance_scale: Any = 7.5, steps: Any = 25,
                     at_step: Any = 10, seed: Any = 0, resolution: Any = None,
                     progress: ProgressFn | None = None) -> BranchesResult:
    """A DDIM run with CFG; at step `at_step` the three noise predictions and what each says x0 is."""
    prompt = prompt_text(prompt, "the image to generate")
    negative, scale = _negative(negative_prompt), _scale(guidance_scale)
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    at_step = number_in_range(at_step, "The step to open up", 1, steps, whole=True)
    seed, side = resolve_seed(seed), _side(resolution)
    setup = _guidance_setup(prompt, negative, steps, seed, side, progress)
    with torch.inference_mode():
        latent, kept = sample_with_branches(setup.pipe.unet, setup.scheduler, setup.x_T, setup.texts, scale,
                                            record_at=at_step - 1, on_step=_report_steps(progress, f"CFG w = {scale:g}", steps))
        x0 = kept.predicted_x0()
        images = _decoded(setup.pipe, torch.cat([latent, kept.latent] + [x0[name] for name in BRANCHES]))
    unconditional, conditional = kept.epsilon["unconditional"], kept.epsilon["conditional"]
    difference = float((conditional - unconditional).float().pow(2).mean().sqrt()
                       / unconditional.float().pow(2).mean().sqrt().clamp(min=1e-12))
    return BranchesResult(images[0], images[1], dict(zip(BRANCHES, images[2:])), kept, at_step, steps,
                          kept.timestep + 1, scale, negative, seed, difference)


@dataclass
class GuidanceSweep:
    images: list[Image.Image]
    scales: list[float]
    seed: int
    steps: int
    unet_calls: int

    @property
    def captioned(self) -> list[tuple[Image.Image, str]]:
        return [(image, f"w = {scale:g}") for image, scale in zip(self.images, self.scales)]


def run_guidance_sweep(prompt: str, negative_prompt: str = "", scales: Any = GUIDANCE_SWEEP, steps: Any = 25,
                       seed: Any = 0, resolution: Any = None, progress: ProgressFn | None = None) -> GuidanceSweep:
    """The same x_T (one seed) sampled with DDIM at each guidance scale w, both branches always computed."""
    prompt = prompt_text(prompt, "the image to generate")
    negative, scales = _negative(negative_prompt), _values(scales, "The guidance scale w", 0, MAX_GUIDANCE, whole=False)
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    seed, side = resolve_seed(seed), _side(resolution)
    setup = _guidance_setup(prompt, negative, steps, seed, side, progress)
    latents = []
    with torch.inference_mode(), counting_calls(setup.pipe.unet) as count:
        for scale in scales:
            setup.scheduler.set_timesteps(steps, device=setup.x_T.device)  # multistep state starts afresh
            latent, _ = sample_with_branches(setup.pipe.unet, setup.scheduler, setup.x_T, setup.texts, scale,
                                             on_step=_report_steps(progress, f"w = {scale:g}", steps))
            latents.append(latent)
    return GuidanceSweep(_decoded(setup.pipe, torch.cat(latents)), scales, seed, steps, count.calls)


# ---- 3. DDIM inversion ----------------------------------------------------------------------------

@dataclass
class RoundTrip:
    steps: int
    guidance_scale: float
    latent_mse: float  # ‖z0' − z0‖² / n: sampled back against the photo's own latent
    psnr: float  # dB, the decoded reconstruction against the photo
    image: Image.Image


@dataclass
class InversionResult:
    photo: Image.Image  # square, the model's side
    vae_psnr: float  # decode(encode(photo)): the best any inversion can do
    trips: list[RoundTrip]  # steps-major, each guidance scale
    plot: Image.Image
    unet_calls: int
    seconds: float

    def errors(self, scale: float) -> list[float]:
        return [trip.latent_mse for trip in self.trips if trip.guidance_scale == scale]

    @property
    def captioned(self) -> list[tuple[Image.Image, str]]:
        return [(self.photo, "photo")] + [(trip.image, f"{trip.steps} steps, w = {trip.guidance_scale:g}: "
                                                       f"{trip.psnr:.1f} dB") for trip in self.trips]


def round_trip(pipe: Any, z0: torch.Tensor, conditional: torch.Tensor, prompt: str, steps: int,
               scales: Sequence[float]) -> list[tuple[float, p2p.SampleOutput]]:
    """z0 → x_T by DDIM inversion (prompt only, w = 1: prompt-to-prompt's code), then x_T → z0' by DDIM
    with CFG at each scale."""
    schedule = p2p.DDIMSchedule.for_scheduler(pipe.scheduler.config, steps)
    x_T = nti.ddim_inversion(pipe.unet, z0, conditional, schedule)[-1]
    return [(scale, p2p.sample(pipe, [prompt], x_T, schedule, scale)) for scale in scales]


def run_inversion_error(photo: Any, prompt: str, steps: Any = INVERSION_STEPS, guidance_scales: Any = INVERSION_SCALES,
                        resolution: Any = None, progress: ProgressFn | None = None) -> InversionResult:
    """Invert the photo at each step count and sample it back at each guidance scale; the error of each."""
    picture = rgb_image(photo, "a photo to invert")
    prompt = prompt_text(prompt, "the photo")
    step_counts = _step_values(steps, "The number of inversion steps")
    scales = _values(guidance_scales, "The guidance scale w", 0, MAX_GUIDANCE, whole=False)
    side = _side(resolution)
    pipe = models.get(SD15, progress)
    image = nti.square_photo(picture, side)
    started = time.perf_counter()
    z0 = nti.encode_image(pipe, image)
    conditional = p2p.encode_text(pipe, [prompt]).to(pipe.unet.dtype)
    trips = []
    with counting_calls(pipe.unet) as count:
        for index, step_count in enumerate(step_counts):
            if progress is not None:
                progress(index / len(step_counts), desc=f"inverting with {step_count} steps, then back")
            for scale, back in round_trip(pipe, z0, conditional, prompt, step_count, scales):
                error = float((back.latents.float() - z0.float()).pow(2).mean())
                trips.append(RoundTrip(step_count, scale, error, nti.psnr(back.images[0], image), back.images[0]))
    vae_psnr = nti.psnr(p2p.decode(pipe, z0)[0], image)
    return InversionResult(image, vae_psnr, trips, inversion_plot(trips, scales, vae_psnr), count.calls,
                           time.perf_counter() - started)


def inversion_plot(trips: list[RoundTrip], scales: Sequence[float], vae_psnr: float) -> Image.Image:
    """Latent MSE (left) and PSNR (right) against the number of steps, one line per guidance scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(8, 3), dpi=80)
    for scale in scales:
        mine = [trip for trip in trips if trip.guidance_scale == scale]
        steps = [trip.steps for trip in mine]
        left.plot(steps, [trip.latent_mse for trip in mine], marker="o", label=f"w = {scale:g}")
        right.plot(steps, [trip.psnr for trip in mine], marker="o", label=f"w = {scale:g}")
    right.axhline(vae_psnr, color="grey", linestyle="--", linewidth=1, label="VAE alone")
    for axis, title in ((left, "latent MSE to z0 (lower is better)"), (right, "PSNR to the photo, dB")):
        axis.set_xscale("log")
        axis.set_xlabel("DDIM steps")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return Image.open(buffer).convert("RGB")


# ---- presentation -----------------------------------------------------------------------------------

def tab_link(module: str) -> str:
    """A Markdown link that opens the tab of `module` (the page reads `?tab=<title>`)."""
    title = next(demo.title for demo in DEMOS if demo.module == module)
    return f"[{title}](?tab={quote(title)})"


FORMULAS = (  # rendered as mathematics (MATH delimiters)
    r"**Classifier-free guidance:** $$\hat\varepsilon = \varepsilon_\theta(z_t, \varnothing) + w\,\big("
    r"\varepsilon_\theta(z_t, c) - \varepsilon_\theta(z_t, \varnothing)\big)$$ "
    r"and each branch's clean image $$\hat x_0 = \frac{z_t - \sqrt{1-\bar\alpha_t}\,\varepsilon}{\sqrt{\bar\alpha_t}}$$"
)
CLASSIFIER_GUIDANCE = (
    r"**Classifier guidance** (Dhariwal & Nichol 2021) steers with a separate network's gradient instead of a "
    r"second text: $$\hat\varepsilon = \varepsilon_\theta(x_t) - \sqrt{1-\bar\alpha_t}\,\nabla_{x_t} \log p(y \mid x_t)$$"
    " Here it is used by the {face_swap} tab (identity, gaze and parsing losses on x̂0) and the {universal} tab "
    "(any differentiable guide: a face recogniser, CLIP, a segmenter)."
)


def classifier_guidance_text() -> str:
    return CLASSIFIER_GUIDANCE.replace("{face_swap}", tab_link("demos.tabs.face_swap")).replace(
        "{universal}", tab_link("demos.tabs.universal_guidance"))


def sweep_summary(result: SamplerSweep) -> str:
    """One paragraph per sampler (each a whole message for the reader's language)."""
    lines = [f"Seed {result.seed} · w = {result.guidance_scale:g} · the same x_T for every image · step counts "
             f"{', '.join(map(str, result.steps))}"]
    for sampler in result.samplers:
        runs = [run for run in result.runs if run.sampler == sampler]
        lines.append(f"**{sampler}** (`{runs[0].scheduler_class}`): UNet calls {', '.join(str(r.unet_calls) for r in runs)}; "
                     f"seconds per image {', '.join(f'{r.seconds:.2f}' for r in runs)}")
    return "\n\n".join(lines)


def branches_summary(result: BranchesResult) -> str:
    branches = result.branches
    return (f"Step {result.step} of {result.steps}: t = {result.t}, ᾱ_t = {branches.alpha_bar:.4f}, so "
            f"x̂0 = (z_t − {(1 - branches.alpha_bar) ** 0.5:.3f}·ε) / {branches.alpha_bar ** 0.5:.3f}. "
            f"w = {result.guidance_scale:g}, seed {result.seed}. The prompt moves ε by "
            f"{100 * result.difference:.1f}% of its size (RMS of ε_c − ε_∅ over RMS of ε_∅); guidance multiplies "
            f"that difference by w.")


def guidance_sweep_summary(result: GuidanceSweep) -> str:
    return (f"seed {result.seed} · {result.steps} DDIM steps for each w · {result.unet_calls} UNet calls in all "
            f"(∅ and prompt in one batch, for every w, even w ≤ 1)")


def inversion_summary(result: InversionResult) -> str:
    """One paragraph per guidance scale, then the bound and the cost."""
    lines = []
    for scale in sorted({trip.guidance_scale for trip in result.trips}):
        trips = [trip for trip in result.trips if trip.guidance_scale == scale]
        lines.append(f"w = {scale:g} on the way back: latent MSE {', '.join(f'{t.latent_mse:.4f}' for t in trips)} "
                     f"at {', '.join(str(t.steps) for t in trips)} steps")
    lines.append(f"The VAE alone reaches {result.vae_psnr:.1f} dB: no inversion can do better. "
                 f"{result.unet_calls} UNet calls, {result.seconds:.1f} s.")
    return "\n\n".join(lines)


INVERSION_TEXT = (
    "DDIM inversion runs the deterministic sampler backwards: at each step it predicts ε at the current latent "
    "and moves *up* the noise schedule, assuming ε barely changes within a step. More steps make that assumption "
    "truer, so sampling back lands closer to the photo. But the inversion can only use the prompt (w = 1); an "
    "edit wants guidance (w = 7.5), and with guidance every step pushes ε_c − ε_∅ further, so the path back "
    "drifts away and the error grows with w. Null-text inversion (the {p2p} tab) optimises the ∅ embedding "
    "of every step until the guided path returns to the inverted one."
)


def inversion_text() -> str:
    return INVERSION_TEXT.replace("{p2p}", tab_link("demos.tabs.prompt_to_prompt"))


# ---- UI ---------------------------------------------------------------------------------------------

def _prompt_inputs() -> tuple[gr.Textbox, gr.Textbox]:
    import gradio as gr

    prompt = gr.Textbox(PROMPT_EXAMPLES[0][0], label="Prompt")
    negative = gr.Textbox("", label="Negative prompt (the ∅ branch; empty = the empty text)")
    return prompt, negative


def _resolution_slider() -> gr.Slider:
    import gradio as gr

    return gr.Slider(64, 1024, value=default_resolution(), step=8, label="Resolution")


def samplers_tab() -> None:
    """Samplers × step counts from one seed: the grid, UNet calls and seconds per image."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import seed_controls

    with gr.Tab("Samplers"):
        gr.Markdown("Six schedulers of diffusers on the same SD-1.5 UNet, each built from the base's scheduler config "
                    "and put into the shared pipeline for its run only. Same prompt, same seed (same x_T): the "
                    "deterministic ones converge to the same picture as the steps rise; Euler ancestral adds fresh "
                    "noise each step. Heun evaluates the UNet twice per step, PNDM once more at the start.")
        with gr.Row():
            with gr.Column():
                prompt, negative = _prompt_inputs()
                samplers = gr.CheckboxGroup(SAMPLER_NAMES, value=SAMPLER_NAMES, label="Samplers")
                steps = gr.CheckboxGroup(STEP_CHOICES, value=list(SWEEP_STEPS), label="Step counts")
                guidance = gr.Slider(0, 15, value=7.5, step=0.5, label="Guidance scale w")
                resolution = _resolution_slider()
                seed, randomize = seed_controls()
                run = gr.Button("Sample with every sampler", variant="primary")
            with gr.Column():
                gallery = gr.Gallery(label="Samplers × steps", columns=3, height=420, format="png")
                info = gr.Markdown()
        gr.Examples([list(example) for example in PROMPT_EXAMPLES], inputs=[prompt, negative, seed], label="Examples")

    @user_errors
    def samplers_for_ui(prompt, negative, samplers, steps, guidance, resolution, seed, randomize, progress=gr.Progress()):
        result = run_sampler_sweep(prompt, samplers, steps, guidance, resolve_seed(seed, randomize), resolution, negative,
                                   progress)
        return result.captioned, sweep_summary(result), result.seed

    run.click(samplers_for_ui, inputs=[prompt, negative, samplers, steps, guidance, resolution, seed, randomize],
              outputs=[gallery, info, seed], api_name="sampler_sweep")


def guidance_tab() -> None:
    """CFG's three predictions at one step, a sweep of w, and where classifier guidance is used instead."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import MATH, RESULT, seed_controls

    with gr.Tab("Classifier-free guidance"):
        gr.Markdown(FORMULAS, latex_delimiters=MATH)
        with gr.Row():
            with gr.Column():
                prompt, negative = _prompt_inputs()
                guidance = gr.Slider(0, 15, value=7.5, step=0.5, label="Guidance scale w")
                steps = gr.Slider(2, 50, value=25, step=1, label="DDIM steps")
                at_step = gr.Slider(1, 50, value=10, step=1, label="Step to open up")
                scales = gr.Textbox(", ".join(f"{w:g}" for w in GUIDANCE_SWEEP), label="w sweep (comma separated)")
                resolution = _resolution_slider()
                seed, randomize = seed_controls()
                branches = gr.Button("Open up one step", variant="primary")
                sweep = gr.Button("Sweep w from one seed")
            with gr.Column():
                image = gr.Image(label="Result at w", format="png", height=200, elem_classes=RESULT)
                x0 = gr.Gallery(label="z_t and each branch's x̂0", columns=4, height=200, format="png")
                info = gr.Markdown()
                sweep_gallery = gr.Gallery(label="One seed, several w", columns=4, height=200, format="png")
                sweep_info = gr.Markdown()
        gr.Examples([list(example) for example in PROMPT_EXAMPLES], inputs=[prompt, negative, seed], label="Examples")
        gr.Markdown(classifier_guidance_text(), latex_delimiters=MATH)

    @user_errors
    def branches_for_ui(prompt, negative, guidance, steps, at_step, resolution, seed, randomize, progress=gr.Progress()):
        result = run_cfg_branches(prompt, negative, guidance, steps, _at_most(at_step, steps),
                                  resolve_seed(seed, randomize), resolution, progress)
        return result.image, result.captioned, branches_summary(result), result.seed

    @user_errors
    def sweep_for_ui(prompt, negative, scales, steps, resolution, seed, randomize, progress=gr.Progress()):
        result = run_guidance_sweep(prompt, negative, scales, steps, resolve_seed(seed, randomize), resolution, progress)
        return result.captioned, guidance_sweep_summary(result), result.seed

    branches.click(branches_for_ui, inputs=[prompt, negative, guidance, steps, at_step, resolution, seed, randomize],
                   outputs=[image, x0, info, seed], api_name="cfg_branches")
    sweep.click(sweep_for_ui, inputs=[prompt, negative, scales, steps, resolution, seed, randomize],
                outputs=[sweep_gallery, sweep_info, seed], api_name="guidance_sweep")


def inversion_tab() -> None:
    """Photo → x_T → photo at several step counts, without and with guidance on the way back."""
    import gradio as gr

    from demos.shared.handlers import user_errors

    with gr.Tab("DDIM inversion"):
        gr.Markdown(inversion_text())
        with gr.Row():
            with gr.Column():
                photo = gr.Image(EXAMPLE_PHOTO, label="Photo", type="pil", image_mode=None, height=220)
                prompt = gr.Textbox("a photo of a cat", label="Prompt that describes the photo")
                steps = gr.CheckboxGroup(STEP_CHOICES, value=list(INVERSION_STEPS), label="Inversion steps")
                scales = gr.Textbox(", ".join(f"{w:g}" for w in INVERSION_SCALES),
                                    label="Guidance scales on the way back (comma separated)")
                resolution = _resolution_slider()
                run = gr.Button("Invert and reconstruct", variant="primary")
            with gr.Column():
                plot = gr.Image(label="Reconstruction error against steps", format="png")
                info = gr.Markdown()
                gallery = gr.Gallery(label="Reconstructions", columns=4, height=200, format="png")
        gr.Examples([[EXAMPLE_PHOTO, "a photo of a cat"], [str(ASSETS / "astronaut.jpg"), "a photo of an astronaut"]],
                    inputs=[photo, prompt], label="Examples")

    @user_errors
    def inversion_for_ui(photo, prompt, steps, scales, resolution, progress=gr.Progress()):
        result = run_inversion_error(photo, prompt, steps, scales, resolution, progress)
        return result.plot, inversion_summary(result), result.captioned

    run.click(inversion_for_ui, inputs=[photo, prompt, steps, scales, resolution], outputs=[plot, info, gallery],
              api_name="ddim_inversion_error")


def build_ui() -> None:
    """One sub-tab per question: which sampler, how guidance works, why inversion needs help."""
    import gradio as gr

    gr.Markdown("The same trained network, sampled in different ways: **samplers** trade UNet calls for accuracy, "
                "**classifier-free guidance** mixes two predictions of one network, and **DDIM inversion** runs the "
                "sampler backwards to find the noise of a real photo.")
    with gr.Tabs():
        samplers_tab()
        guidance_tab()
        inversion_tab()


# ---- Compare ----------------------------------------------------------------------------------------

def _compare_sampler(sampler: str) -> Callable[..., Output]:
    """A Compare cell through `run_sampler` itself, on the shared SD-1.5."""
    def run(prompt: str, seed: int = 0, steps: int = 25, guidance_scale: float = 7.5, **_unused: Any) -> Output:
        return Output(image=run_sampler(prompt, sampler, steps, guidance_scale, seed).image)
    return run


COMPARE_METHODS = [Method(IMAGE, f"SD-1.5 {name} sampler (diffusers)", _compare_sampler(name),
                          {"seed": 0, "steps": 25, "guidance_scale": 7.5}) for name in SAMPLER_NAMES]
