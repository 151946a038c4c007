"""ControlNet (Zhang, Rao, Agrawala 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models") next to T2I-Adapter (Mou et al. 2024).

A condition's annotator turns the photo into a control map (edges, depth, pose, ...). ControlNet,
a trainable copy of SD's UNet encoder joined by zero-initialised convolutions, reads the map and
adds residuals to the frozen UNet at every step; T2I-Adapter, a small separate network, encodes the
map once and adds its features to the UNet encoder. Both share the one SD-1.5 base.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from PIL import Image

import models
from demos import ASSETS
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import MAX_PROMPT_CHARS, number_in_range, one_of, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.controlnet import CONDITIONS, parameter_count
from models.pipelines.control_maps import MapParameters, control_map
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
MAX_CONDITIONING_SCALE = 2.0


def default_resolution() -> int:
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


@dataclass
class ControlNetResult:
    conditions: list[str]
    control_maps: list[Image.Image]  # exactly what each ControlNet saw, at the generation size
    images: list[Image.Image]  # ControlNet results
    adapter_images: list[Image.Image]  # T2I-Adapter on the same map and seed (empty unless asked for)
    plain_images: list[Image.Image]  # SD-1.5 without control, same seed (empty unless asked for)
    seed: int
    size: tuple[int, int]  # width, height
    extra_parameters: dict[str, int]  # what each control network adds to the base, in parameters
    base_parameters: int  # SD-1.5 UNet, for scale
    parameters: dict[str, Any]
    saved_parameters: dict[str, dict[str, Any]]  # per image field above: what its PNGs record
    seconds: float
    warnings: list[str] = field(default_factory=list)


# ---- validation -----------------------------------------------------------------------------

def _condition(name: str | None) -> str:
    return one_of(name, "condition", CONDITIONS)


def _resolution(value: Any) -> int:
    resolution = number_in_range(value, "The resolution", MIN_RESOLUTION, MAX_RESOLUTION, whole=True)
    if resolution % 8:
        raise UserError(f"The resolution must be a multiple of 8 (the VAE works on 8x8 pixel blocks); "
                        f"got {resolution}, try {resolution // 8 * 8}.")
    return resolution


def output_size(image_size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """The input's aspect ratio with its long side at `resolution`, both sides multiples of 8."""
    width, height = image_size
    scale = resolution / max(width, height)
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def _prompt(text: str | None, what: str) -> str:
    text = (text or "").strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise UserError(f"The {what} is {len(text)} characters long; keep it under {MAX_PROMPT_CHARS}.")
    return text


def truncation_warning(tokenizer: Any, text: str, what: str) -> str | None:
    """SD's CLIP text encoder reads at most 77 tokens; say so (and where it stops) instead of silently cutting."""
    ids = tokenizer(text).input_ids
    limit = tokenizer.model_max_length
    if len(ids) <= limit:
        return None
    kept = tokenizer.decode(ids[1:limit - 1]).strip()
    return (f"The {what} is {len(ids)} tokens but the text encoder reads only {limit}: everything after "
            f"“…{kept[-40:]}” was cut.")


# ---- control maps -----------------------------------------------------------------------------

def run_control_map(image: Any, condition: str = "canny", own_map: bool = False, resolution: int | None = None,
                    low_threshold: int = 100, high_threshold: int = 200, detect_resolution: int = 512,
                    progress: ProgressFn | None = None) -> Image.Image:
    """Only the preprocessing step: the control map a condition extracts from `image`."""
    condition = _condition(condition)
    picture = rgb_image(image, "a control image (a photo, or your own control map)")
    size = output_size(picture.size, _resolution(resolution or default_resolution()))
    return _map(condition, picture, size, own_map, _map_parameters(low_threshold, high_threshold, detect_resolution),
                progress)


def _map_parameters(low: Any, high: Any, detect_resolution: Any) -> MapParameters:
    low = number_in_range(low, "The low canny threshold", 0, 255, whole=True)
    high = number_in_range(high, "The high canny threshold", 0, 255, whole=True)
    if low > high:
        raise UserError(f"The low canny threshold ({low}) must not exceed the high one ({high}).")
    detect = number_in_range(detect_resolution, "The detect resolution", 64, 2048, whole=True)
    return MapParameters(low, high, detect)


def _map(condition: str, picture: Image.Image, size: tuple[int, int], own_map: bool, parameters: MapParameters,
         progress: ProgressFn | None) -> Image.Image:
    if own_map:  # "upload my own control map": used as it is, only resized
        return picture.resize(size, Image.Resampling.BILINEAR)
    annotator_name = CONDITIONS[condition].annotator
    annotator = models.get(annotator_name, progress) if annotator_name else None
    if progress is not None:
        progress(0.0, desc=f"Extracting the {condition} map")
    return control_map(condition, picture, size, annotator, parameters)


# ---- generation ------------------------------------------------------------------------------

def _step_progress(progress: ProgressFn | None, label: str, pipe: Any) -> Callable[[int], None]:
    """Report each denoising step; the total is read from the scheduler, which may add steps (PNDM)."""
    def report(step: int) -> None:
        if progress is not None:
            total = max(len(pipe.scheduler.timesteps), step + 1)
            progress((step + 1) / total, desc=f"{label}: step {step + 1}/{total}")
    return report


def _on_step_end(progress: ProgressFn | None, label: str, pipe: Any) -> Callable[..., dict]:
    """A diffusers `callback_on_step_end` that reports progress and changes nothing."""
    report = _step_progress(progress, label, pipe)

    def callback(_pipe: Any, step: int, _timestep: Any, tensors: dict) -> dict:
        report(step)
        return tensors
    return callback


def _controlnet_pipeline(conditions: list[str], progress: ProgressFn | None) -> Any:
    """One condition: its shared pipeline. Two: a Multi-ControlNet pipeline over the same base."""
    pipes = [models.get(CONDITIONS[name].controlnet, progress) for name in conditions]
    if len(pipes) == 1:
        return pipes[0]
    from diffusers import StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline.from_pipe(
        pipes[0], controlnet=[p.controlnet for p in pipes], dtype=pipes[0].dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class ControlNetRequest:
    """`run_controlnet`'s settings after `check_inputs`: everything the model work reads."""

    conditions: list[str]
    pictures: list[Image.Image]  # one per condition
    size: tuple[int, int]  # width, height of the output
    prompt: str
    negative_prompt: str
    own_map: bool
    map_parameters: MapParameters
    steps: int
    guidance_scale: float
    num_images: int
    scales: list[float]  # one conditioning scale per condition
    start: float
    end: float
    guess_mode: bool
    seed: int


def check_inputs(
    image: Any,
    condition: str = "canny",
    prompt: str = "",
    negative_prompt: str = "",
    *,
    own_map: bool = False,
    low_threshold: int = 100,
    high_threshold: int = 200,
    detect_resolution: int = 512,
    steps: int = 20,
    guidance_scale: float = 7.5,
    seed: Any = 0,
    randomize: bool = False,
    resolution: int | None = None,
    num_images: int = 1,
    conditioning_scale: float = 1.0,
    guidance_start: float = 0.0,
    guidance_end: float = 1.0,
    guess_mode: bool = False,
    second_condition: str | None = None,
    second_image: Any = None,
    second_scale: float = 1.0,
) -> ControlNetRequest:
    """Every setting checked (a `UserError` saying what to change) before any model loads."""
    conditions = [_condition(condition)]
    if second_condition:
        if _condition(second_condition) == condition:
            raise UserError("Multi-ControlNet needs two different conditions; pick another second condition.")
        conditions.append(second_condition)
    prompt, negative_prompt = _prompt(prompt, "prompt"), _prompt(negative_prompt, "negative prompt")
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The guidance scale (CFG)", 0, 30)
    num_images = number_in_range(num_images, "The number of images", 1, LIMITS.max_images_per_run, whole=True)
    scales = [number_in_range(conditioning_scale, "The conditioning scale", 0, MAX_CONDITIONING_SCALE)]
    if second_condition:
        scales.append(number_in_range(second_scale, "The second conditioning scale", 0, MAX_CONDITIONING_SCALE))
    start = number_in_range(guidance_start, "Control guidance start", 0, 1)
    end = number_in_range(guidance_end, "Control guidance end", 0, 1)
    if start >= end:
        raise UserError(f"Control guidance start ({start:g}) must be before its end ({end:g}).")
    map_parameters = _map_parameters(low_threshold, high_threshold, detect_resolution)
    picture = rgb_image(image, "a control image (a photo, or your own control map)")
    size = output_size(picture.size, _resolution(resolution or default_resolution()))
    pictures = [picture]
    if second_condition:
        if second_image is None and own_map:
            raise UserError("With your own control maps, upload the second condition's map too.")
        second = picture if second_image is None else rgb_image(second_image, "the second control image")
        if second.size != picture.size:
            raise UserError(f"The two control images are {picture.size[0]}x{picture.size[1]} and "
                            f"{second.size[0]}x{second.size[1]}; use images of the same size so the maps line up.")
        pictures.append(second)
    return ControlNetRequest(conditions, pictures, size, prompt, negative_prompt, own_map, map_parameters, steps,
                             guidance_scale, num_images, scales, start, end, guess_mode,
                             resolve_seed(seed, randomize))


def run_controlnet(image: Any, condition: str = "canny", prompt: str = "", negative_prompt: str = "", *,
                   compare_adapter: bool = False, compare_plain: bool = False, progress: ProgressFn | None = None,
                   **settings: Any) -> ControlNetResult:
    """Extract the control map(s), generate with ControlNet, and optionally with T2I-Adapter and
    with plain SD-1.5 on the same seed. `settings` are `check_inputs`' keywords."""
    request = check_inputs(image, condition, prompt, negative_prompt, **settings)
    conditions, scales, seed = request.conditions, request.scales, request.seed
    started = time.perf_counter()
    maps = [_map(name, pic, request.size, request.own_map, request.map_parameters, progress)
            for name, pic in zip(conditions, request.pictures)]
    pipe = _controlnet_pipeline(conditions, progress)
    warnings = [w for text, what in ((request.prompt, "prompt"), (request.negative_prompt, "negative prompt"))
                if (w := truncation_warning(pipe.tokenizer, text, what))]
    width, height = request.size
    common = dict(prompt=request.prompt, negative_prompt=request.negative_prompt or None,
                  num_inference_steps=request.steps, guidance_scale=request.guidance_scale, width=width,
                  height=height, num_images_per_prompt=request.num_images)
    parameters = dict(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=seed, steps=request.steps,
                      guidance_scale=request.guidance_scale, width=width, height=height, conditions=conditions,
                      conditioning_scale=scales, guidance_start=request.start, guidance_end=request.end,
                      guess_mode=request.guess_mode, own_map=request.own_map,
                      base=models.REGISTRY[SD15].checkpoint)
    if not request.own_map:
        parameters.update(low_threshold=request.map_parameters.low_threshold,
                          high_threshold=request.map_parameters.high_threshold,
                          detect_resolution=request.map_parameters.detect_resolution)

    several = len(conditions) > 1
    images = pipe(**common, image=maps if several else maps[0],
                  controlnet_conditioning_scale=scales if several else scales[0],
                  control_guidance_start=[request.start] * len(conditions) if several else request.start,
                  control_guidance_end=[request.end] * len(conditions) if several else request.end,
                  guess_mode=request.guess_mode, generator=generator_for(seed),
                  callback_on_step_end=_on_step_end(progress, "ControlNet", pipe)).images
    controlnet_ids = [models.REGISTRY[CONDITIONS[name].controlnet].checkpoint for name in conditions]
    saved_parameters = {"images": {**parameters, "method": "ControlNet", "controlnet": controlnet_ids}}
    extra = {f"ControlNet {name}": parameter_count(net)
             for name, net in zip(conditions, pipe.controlnet.nets if several else [pipe.controlnet])}

    adapter_images: list[Image.Image] = []
    if compare_adapter:
        adapter_name = CONDITIONS[conditions[0]].adapter
        if adapter_name is None:
            warnings.append(f"There is no SD-1.5 T2I-Adapter for {conditions[0]} maps; compared nothing.")
        else:
            adapter_images, extra_count = _run_adapter(adapter_name, maps[0], scales[0], common, seed, progress)
            checkpoint = models.REGISTRY[adapter_name].checkpoint
            extra[f"T2I-Adapter ({checkpoint.split('/')[-1]})"] = extra_count
            saved_parameters["adapter_images"] = {**parameters, "conditions": conditions[:1], "method": "T2I-Adapter",
                                                  "adapter": checkpoint}
            if several:
                warnings.append(f"T2I-Adapter used only the first condition ({conditions[0]}).")

    plain_images: list[Image.Image] = []
    if compare_plain:
        base = models.get(SD15, progress)
        plain_images = base(**common, generator=generator_for(seed),
                            callback_on_step_end=_on_step_end(progress, "SD-1.5 without control", base)).images
        saved_parameters["plain_images"] = {**parameters, "method": "SD-1.5 (no control)"}

    return ControlNetResult(
        conditions=conditions, control_maps=maps, images=images, adapter_images=adapter_images,
        plain_images=plain_images, seed=seed, size=request.size, extra_parameters=extra,
        base_parameters=parameter_count(pipe.unet), parameters=parameters, saved_parameters=saved_parameters,
        seconds=time.perf_counter() - started, warnings=warnings,
    )


COMPARE_PARAMETERS = {"seed": 0, "steps": 20, "guidance_scale": 7.5}


def _compare_adapter(output: str, **options: Any):
    """One Compare cell through `run_controlnet` itself: ControlNet's image, or the T2I-Adapter's
    or plain SD's on the same canny map and seed (those two also run ControlNet; one code path)."""
    def run(prompt: str, control_image: Any, seed: int = 0, steps: int = 20, guidance_scale: float = 7.5,
            conditioning_scale: float = 1.0, **_unused: Any) -> Output:
        result = run_controlnet(control_image, "canny", prompt, seed=seed, steps=steps, guidance_scale=guidance_scale,
                                conditioning_scale=conditioning_scale, **options)
        return Output(image=getattr(result, output)[0])
    return run


COMPARE_METHODS = [
    Method(IMAGE, "SD-1.5 (no control)", _compare_adapter("plain_images", compare_plain=True), COMPARE_PARAMETERS),
    Method(IMAGE, "ControlNet (canny)", _compare_adapter("images"), {**COMPARE_PARAMETERS, "conditioning_scale": 1.0}),
    Method(IMAGE, "T2I-Adapter (sketch, canny map)", _compare_adapter("adapter_images", compare_adapter=True),
           {**COMPARE_PARAMETERS, "conditioning_scale": 1.0}),
]


def _run_adapter(name: str, control: Image.Image, scale: float, common: dict[str, Any], seed: int,
                 progress: ProgressFn | None) -> tuple[list[Image.Image], int]:
    """T2I-Adapter on the same map, prompt and seed: its images and its parameter count."""
    pipe = models.get(name, progress)
    if pipe.adapter.config.in_channels == 1:  # the sketch adapters read one grey channel
        control = control.convert("L")
    report = _step_progress(progress, "T2I-Adapter", pipe)
    images = pipe(**common, image=control, adapter_conditioning_scale=scale, generator=generator_for(seed),
                  callback=lambda step, _timestep, _latents: report(step), callback_steps=1).images
    return images, parameter_count(pipe.adapter)


SAVED = (("images", "ControlNet", "controlnet"), ("adapter_images", "T2I-Adapter", "t2iadapter"),
         ("plain_images", "plain SD", "sd15"))  # result field, caption, file stem


def saved_images(result: ControlNetResult) -> list[tuple[str, str]]:
    """Every image as a PNG carrying what reproduces it, with its caption: what the UI hands out."""
    return [(png_with_parameters(image, {**result.saved_parameters[field], "image_index": index}, stem),
             f"{caption} #{index + 1}")
            for field, caption, stem in SAVED for index, image in enumerate(getattr(result, field))]


# ---- presentation ------------------------------------------------------------------------------

def _count(parameters: int) -> str:
    return f"{parameters / 1e6:.1f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}K"


def summary(result: ControlNetResult) -> str:
    width, height = result.size
    lines = [f"**Seed {result.seed}** · {width}x{height} · {', '.join(result.conditions)} · "
             f"{result.seconds:.1f} s (including first-time loading)"]
    lines += [f"- {name}: **{_count(count)}** extra parameters "
              f"({100 * count / result.base_parameters:.0f}% of the SD UNet's {_count(result.base_parameters)})"
              for name, count in result.extra_parameters.items()]
    lines += [f"⚠️ {warning}" for warning in result.warnings]
    return "\n\n".join(lines)


def _generation_settings() -> dict[str, Any]:
    """The "Generation" accordion's sliders, by name; a helper of `layout`, which places it in the left column."""
    import gradio as gr

    with gr.Accordion("Generation", open=False):
        with gr.Row():
            steps = gr.Slider(1, LIMITS.max_steps, value=20, step=1, label="Steps")
            guidance_scale = gr.Slider(0, 20, value=7.5, step=0.5, label="Guidance scale (CFG)")
        with gr.Row():
            resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=default_resolution(), step=8,
                                   label="Resolution (long side)")
            num_images = gr.Slider(1, LIMITS.max_images_per_run, value=1, step=1, label="Images")
        conditioning_scale = gr.Slider(0, MAX_CONDITIONING_SCALE, value=1.0, step=0.05,
                                       label="Conditioning scale (0 = no control)")
        with gr.Row():
            guidance_start = gr.Slider(0, 1, value=0.0, step=0.05, label="Control from (fraction of steps)")
            guidance_end = gr.Slider(0, 1, value=1.0, step=0.05, label="Control until")
        guess_mode = gr.Checkbox(label="Guess mode (ControlNet only on the conditional branch; "
                                       "try an empty prompt and CFG 3-5)", value=False)
    return dict(steps=steps, guidance_scale=guidance_scale, resolution=resolution, num_images=num_images,
                conditioning_scale=conditioning_scale, guidance_start=guidance_start, guidance_end=guidance_end,
                guess_mode=guess_mode)


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import seed_controls

    choices = [(condition.label, condition.name) for condition in CONDITIONS.values()]
    gr.Markdown(
        "Pick a condition: its annotator turns your photo into a **control map** (shown on the right); "
        "**ControlNet** — a trainable copy of SD's encoder joined by zero-initialised convolutions — steers "
        "every denoising step with it. Tick *T2I-Adapter* to run the lighter adapter on the same map and seed, "
        "and *plain SD* to see what the prompt alone gives. All of them share one Stable Diffusion 1.5 base."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Input photo (or your own control map)", type="pil", image_mode=None,
                             sources=["upload", "clipboard", "webcam"], height=300)
            with gr.Row():
                condition = gr.Dropdown(choices, value="canny", label="Condition")
                own_map = gr.Checkbox(label="Upload my own control map (skip the preprocessor)", value=False)
            prompt = gr.Textbox(label="Prompt", value="a photo of an astronaut, best quality", lines=2)
            negative_prompt = gr.Textbox(label="Negative prompt", value="lowres, bad anatomy, worst quality")
            with gr.Accordion("Preprocessor", open=False):
                with gr.Row():
                    low_threshold = gr.Slider(0, 255, value=100, step=1, label="Canny low threshold")
                    high_threshold = gr.Slider(0, 255, value=200, step=1, label="Canny high threshold")
                detect_resolution = gr.Slider(64, 1024, value=512, step=64, label="Detect resolution (short side)")
            generation = _generation_settings()
            with gr.Accordion("Multi-ControlNet: a second condition", open=False):
                second_condition = gr.Dropdown([("None", "")] + choices, value="", label="Second condition")
                second_image = gr.Image(label="Second image (optional; default: the same photo)", type="pil",
                                        image_mode=None, height=200)
                second_scale = gr.Slider(0, MAX_CONDITIONING_SCALE, value=1.0, step=0.05,
                                         label="Second conditioning scale")
            with gr.Row():
                compare_adapter = gr.Checkbox(label="T2I-Adapter side by side", value=True)
                compare_plain = gr.Checkbox(label="Plain SD (no control), same seed", value=False)
            seed, randomize = seed_controls()
            with gr.Row():
                preview = gr.Button("Show control map")
                generate = gr.Button("Generate", variant="primary")
        with gr.Column():
            maps = gr.Gallery(label="Control map(s)", columns=2, height=260, format="png", elem_id="controlnet-maps")
            results = gr.Gallery(label="ControlNet | T2I-Adapter | plain SD", columns=3, height=300,
                                 format="png", elem_id="controlnet-images")
            info = gr.Markdown(elem_id="controlnet-info")
    gr.Examples(
        examples=[
            [str(ASSETS / "astronaut.jpg"), "canny", "an astronaut in a spacesuit, oil painting"],
            [str(ASSETS / "chelsea.jpg"), "softedge", "a tiger lying on a carpet, photo"],
            [str(ASSETS / "coffee.jpg"), "depth", "a cup of hot chocolate on a wooden table"],
            [str(ASSETS / "rocket.jpg"), "lineart", "a rocket launch, ink drawing"],
            [str(ASSETS / "camera.jpg"), "openpose", "a painter at work in a park, watercolor"],
            [str(ASSETS / "astronaut.jpg"), "seg", "a robot standing in front of a flag"],
            [str(ASSETS / "coffee.jpg"), "normal", "a ceramic bowl, studio light"],
            [str(ASSETS / "chelsea.jpg"), "scribble", "a cartoon cat"],
        ],
        inputs=[image, condition, prompt],
        label="Examples (public-domain images from scikit-image)",
    )
    return SimpleNamespace(
        image=image, condition=condition, own_map=own_map, prompt=prompt, negative_prompt=negative_prompt,
        low_threshold=low_threshold, high_threshold=high_threshold, detect_resolution=detect_resolution,
        **generation, second_condition=second_condition, second_image=second_image, second_scale=second_scale,
        compare_adapter=compare_adapter, compare_plain=compare_plain, seed=seed, randomize=randomize,
        preview=preview, generate=generate, maps=maps, results=results, info=info)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()
    map_inputs = [w.image, w.condition, w.own_map, w.resolution, w.low_threshold, w.high_threshold,
                  w.detect_resolution]

    @user_errors
    def preview_for_ui(image, condition, own_map, resolution, low_threshold, high_threshold, detect_resolution,
                       progress=gr.Progress(track_tqdm=True)):
        return [run_control_map(image, condition, own_map, resolution, low_threshold, high_threshold,
                                detect_resolution, progress)]

    @user_errors
    def generate_for_ui(image, condition, own_map, resolution, low_threshold, high_threshold, detect_resolution,
                        prompt, negative_prompt, steps,
                        guidance_scale, num_images, conditioning_scale, guidance_start, guidance_end, guess_mode,
                        second_condition, second_scale, compare_adapter, compare_plain, seed, second_image=None,
                        progress=gr.Progress(track_tqdm=True)):
        result = run_controlnet(
            image, condition, prompt, negative_prompt, own_map=own_map, low_threshold=low_threshold,
            high_threshold=high_threshold, detect_resolution=detect_resolution, steps=steps, guidance_scale=guidance_scale, seed=seed, resolution=resolution,
            num_images=num_images, conditioning_scale=conditioning_scale, guidance_start=guidance_start,
            guidance_end=guidance_end, guess_mode=guess_mode, second_condition=second_condition or None,
            second_image=second_image, second_scale=second_scale, compare_adapter=compare_adapter,
            compare_plain=compare_plain, progress=progress)
        gallery = saved_images(result)
        control = [(m, name) for m, name in zip(result.control_maps, result.conditions)]
        return control, gallery, summary(result), result.seed

    w.preview.click(preview_for_ui, inputs=map_inputs, outputs=w.maps, api_name="controlnet_map")
    # The seed is resolved and written back first, so the box shows it while the images are made.
    w.generate.click(user_errors(resolve_seed), inputs=[w.seed, w.randomize], outputs=w.seed,
                     api_visibility="private").then(
        generate_for_ui,
        inputs=[*map_inputs, w.prompt, w.negative_prompt, w.steps, w.guidance_scale, w.num_images,
                w.conditioning_scale, w.guidance_start, w.guidance_end, w.guess_mode, w.second_condition,
                w.second_scale, w.compare_adapter, w.compare_plain, w.seed, w.second_image],
        outputs=[w.maps, w.results, w.info, w.seed], api_name="controlnet")
    scroll_into_view_on(w.generate, "controlnet-maps")
