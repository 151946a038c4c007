"""Composer-style composition (Huang et al., Composer: Creative and Controllable Image Synthesis with Composable
Conditions, ICML 2023) on the shared SD-1.5 base.

Composer decomposes an image into conditions — local ones laid out in space (sketch, depth) and global ones
(colour palette, CLIP image embedding) — and recomposes an image from any subset. Its own weights were never
published, so this tab composes the same conditions with public add-ons of SD-1.5: sketch, depth and colour
T2I-Adapters in one `MultiAdapter` (one weight each) and IP-Adapter for the image embedding (its scale), and
shows local only, global only and all combined on one prompt and seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from PIL import Image

import models
from demos import ASSETS
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import MAX_PROMPT_CHARS, number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.composition import COLOR_ADAPTER, IP_ADAPTER
from models.pipelines.composition import adapter_pipeline, image_prompt_attached, palette
from models.pipelines.control_maps import MapParameters, control_map
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

SKETCH_ADAPTER, DEPTH_ADAPTER = "controlnet-t2iadapter-sketch", "controlnet-t2iadapter-depth"
DEPTH_ANNOTATOR = "controlnet-annotator-depth"
ADAPTERS = (SKETCH_ADAPTER, DEPTH_ADAPTER, COLOR_ADAPTER)  # the MultiAdapter's order: sketch, depth, palette
MAX_ADAPTER_WEIGHT, MAX_IMAGE_WEIGHT = 2.0, 1.5
MIN_RESOLUTION, MAX_RESOLUTION, SIDE_STEP = 64, 1024, 64  # the adapters shrink the map 64x: sides of 64s

IDEA = (
    r"**Composer** (Huang et al. 2023) *decomposes* an image into conditions and *recomposes* one from any subset:"
    "\n"
    r"**local** conditions say *where* (a sketch, a depth map), **global** ones say *what it is like* (a colour "
    r"palette, a CLIP image embedding, the text). Trained with conditions dropped at random, it accepts any "
    r"combination, and its guidance mixes two sets of conditions $c_1, c_2$ with a weight $\omega$:"
    "\n"
    r"$$\hat\epsilon = \omega\,\epsilon_\theta(z_t, t, c_2) + (1-\omega)\,\epsilon_\theta(z_t, t, c_1)$$"
    "\n"
    r"Composer's weights were never published, so here the conditions reach SD-1.5 through public adapters, each "
    r"with its own weight: the sketch, depth and palette T2I-Adapters add $\sum_i w_i\,F_i(c_i)$ to the UNet "
    r"encoder's features, and IP-Adapter adds the image embedding's own cross-attention,"
    "\n"
    r"$\mathrm{Attn}(Q, K_{\text{text}}, V_{\text{text}}) + \lambda\,\mathrm{Attn}(Q, K_{\text{image}}, "
    r"V_{\text{image}})$.")


def default_resolution() -> int:
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


@dataclass(frozen=True)
class Weights:
    sketch: float
    depth: float
    palette: float
    image: float  # IP-Adapter's scale λ

    def adapters(self, local: bool, global_: bool) -> list[float]:
        """The MultiAdapter's weights (sketch, depth, palette) with the local or the global ones switched off."""
        return [self.sketch if local else 0.0, self.depth if local else 0.0, self.palette if global_ else 0.0]


@dataclass
class CompositionRequest:
    picture: Image.Image  # where the local conditions come from
    global_picture: Image.Image  # where the global ones come from (the same photo unless another is given)
    size: tuple[int, int]
    prompt: str
    negative_prompt: str
    weights: Weights
    steps: int
    guidance_scale: float
    seed: int


@dataclass
class CompositionResult:
    local_image: Image.Image  # sketch + depth only
    global_image: Image.Image  # palette + image embedding only
    combined_image: Image.Image  # all four
    conditions: dict[str, Image.Image]  # what each condition looked like, as the networks read it
    weights: Weights
    seed: int
    size: tuple[int, int]
    parameters: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)


def output_size(image_size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """The photo's aspect ratio with its long side at `resolution`, both sides multiples of 64."""
    width, height = image_size
    scale = resolution / max(width, height)
    return (max(SIDE_STEP, round(width * scale / SIDE_STEP) * SIDE_STEP),
            max(SIDE_STEP, round(height * scale / SIDE_STEP) * SIDE_STEP))


def _weights(sketch: Any, depth: Any, palette_weight: Any, image: Any) -> Weights:
    return Weights(number_in_range(sketch, "The sketch weight", 0, MAX_ADAPTER_WEIGHT),
                   number_in_range(depth, "The depth weight", 0, MAX_ADAPTER_WEIGHT),
                   number_in_range(palette_weight, "The palette weight", 0, MAX_ADAPTER_WEIGHT),
                   number_in_range(image, "The image-embedding weight", 0, MAX_IMAGE_WEIGHT))


def check_inputs(image: Any, prompt: str = "", negative_prompt: str = "", *, global_image: Any = None,
                 sketch_weight: Any = 1.0, depth_weight: Any = 1.0, palette_weight: Any = 1.0,
                 image_weight: Any = 0.6, steps: Any = 20, guidance_scale: Any = 7.5, seed: Any = 0,
                 randomize: bool = False, resolution: Any = None) -> CompositionRequest:
    """Every setting checked (a `UserError` saying what to change) before any model loads."""
    weights = _weights(sketch_weight, depth_weight, palette_weight, image_weight)
    prompt = prompt_text(prompt, "the picture to compose")
    negative_prompt = (negative_prompt or "").strip()
    if len(negative_prompt) > MAX_PROMPT_CHARS:
        raise UserError(f"The negative prompt is {len(negative_prompt)} characters long; keep it under "
                        f"{MAX_PROMPT_CHARS}.")
    steps = number_in_range(steps, "The number of steps", 1, LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The guidance scale (CFG)", 0, 30)
    resolution = number_in_range(resolution or default_resolution(), "The resolution", MIN_RESOLUTION,
                                 MAX_RESOLUTION, whole=True)
    picture = rgb_image(image, "a photo to take the conditions from")
    other = picture if global_image is None else rgb_image(global_image, "the photo for the global conditions")
    return CompositionRequest(picture, other, output_size(picture.size, resolution), prompt, negative_prompt,
                              weights, steps, guidance_scale, resolve_seed(seed, randomize))


def conditions_of(request: CompositionRequest, progress: ProgressFn | None = None) -> dict[str, Image.Image]:
    """The four conditions, decomposed from the photos at the output size: canny edges as the sketch (one grey
    channel, as the sketch adapter reads it), relative depth, the colour palette, and the image prompt."""
    if progress is not None:
        progress(0.0, desc="Decomposing the photo into conditions")
    depth = models.get(DEPTH_ANNOTATOR, progress)
    return {"sketch": control_map("canny", request.picture, request.size, None, MapParameters()).convert("L"),
            "depth": control_map("depth", request.picture, request.size, depth, MapParameters()),
            "palette": palette(request.global_picture, request.size),
            "image": request.global_picture}


def adapters(progress: ProgressFn | None = None) -> list[Any]:
    """The three T2I-Adapters in the MultiAdapter's order: sketch and depth from their shared pipelines, the
    colour adapter (a bare `T2IAdapter`)."""
    sketch, depth = (models.get(name, progress).adapter for name in (SKETCH_ADAPTER, DEPTH_ADAPTER))
    return [sketch, depth, models.get(COLOR_ADAPTER, progress)]


def _generate(pipe: Any, request: CompositionRequest, maps: list[Image.Image], weights: list[float]) -> Image.Image:
    width, height = request.size
    return pipe(prompt=request.prompt, negative_prompt=request.negative_prompt or None, image=maps,
                adapter_conditioning_scale=weights, num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale, width=width, height=height,
                generator=generator_for(request.seed)).images[0]


def run_composition(image: Any, prompt: str = "", negative_prompt: str = "", *, progress: ProgressFn | None = None,
                    **settings: Any) -> CompositionResult:
    """Decompose the photo(s) into four conditions and recompose three images on one prompt and seed: the local
    conditions only, the global ones only, and all of them. `settings` are `check_inputs`' keywords."""
    request = check_inputs(image, prompt, negative_prompt, **settings)
    started = time.perf_counter()
    conditions = conditions_of(request, progress)
    maps = [conditions["sketch"], conditions["depth"], conditions["palette"]]
    base = models.get(SD15, progress)
    pipe = adapter_pipeline(base, adapters(progress))
    weights = request.weights
    local = _generate(pipe, request, maps, weights.adapters(local=True, global_=False))
    ip = models.get(IP_ADAPTER, progress)
    with image_prompt_attached(base, ip, request.global_picture, weights.image, request.guidance_scale > 1):
        global_only = _generate(pipe, request, maps, weights.adapters(local=False, global_=True))
        combined = _generate(pipe, request, maps, weights.adapters(local=True, global_=True))
    parameters = dict(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed,
                      steps=request.steps, guidance_scale=request.guidance_scale, width=request.size[0],
                      height=request.size[1], weights=vars(weights),
                      checkpoints=[models.REGISTRY[name].checkpoint for name in (SD15, *ADAPTERS, IP_ADAPTER)])
    return CompositionResult(local, global_only, combined, conditions, weights, request.seed, request.size,
                             parameters, time.perf_counter() - started)


# ---- Compare ----------------------------------------------------------------------------------------

COMPARE_PARAMETERS = {"seed": 0, "steps": 20, "guidance_scale": 7.5}


def _compare(output: str):
    """One Compare cell through `run_composition`: the control image gives all four conditions."""
    def run(prompt: str, control_image: Any, seed: int = 0, steps: int = 20, guidance_scale: float = 7.5,
            **_unused: Any) -> Output:
        result = run_composition(control_image, prompt, seed=seed, steps=steps, guidance_scale=guidance_scale)
        return Output(image=getattr(result, output))
    return run


COMPARE_METHODS = [
    Method(IMAGE, "Composer-style: local (sketch + depth)", _compare("local_image"), COMPARE_PARAMETERS),
    Method(IMAGE, "Composer-style: global (palette + image embedding)", _compare("global_image"), COMPARE_PARAMETERS),
    Method(IMAGE, "Composer-style: all conditions", _compare("combined_image"), COMPARE_PARAMETERS),
]


# ---- presentation -------------------------------------------------------------------------------------

def summary(result: CompositionResult) -> str:
    width, height = result.size
    w = result.weights
    return (f"**Seed {result.seed}** · {width}x{height} · {result.seconds:.1f} s (including first-time loading)\n\n"
            f"Local: sketch {w.sketch:g}, depth {w.depth:g} · global: palette {w.palette:g}, "
            f"image embedding {w.image:g}")


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import MATH, seed_controls

    gr.Markdown(IDEA, latex_delimiters=MATH)
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Photo to decompose (sketch and depth)", type="pil", height=260)
            global_image = gr.Image(label="Photo for the global conditions (optional; default: the same photo)",
                                    type="pil", height=160)
            prompt = gr.Textbox(label="Prompt", value="a cosy living room, best quality", lines=2)
            negative_prompt = gr.Textbox(label="Negative prompt", value="lowres, worst quality")
            with gr.Row():
                sketch = gr.Slider(0, MAX_ADAPTER_WEIGHT, value=1.0, step=0.05, label="Local: sketch weight")
                depth = gr.Slider(0, MAX_ADAPTER_WEIGHT, value=1.0, step=0.05, label="Local: depth weight")
            with gr.Row():
                palette_weight = gr.Slider(0, MAX_ADAPTER_WEIGHT, value=1.0, step=0.05,
                                           label="Global: palette weight")
                image_weight = gr.Slider(0, MAX_IMAGE_WEIGHT, value=0.6, step=0.05,
                                         label="Global: image-embedding weight (IP-Adapter scale)")
            with gr.Accordion("Generation", open=False):
                steps = gr.Slider(1, LIMITS.max_steps, value=20, step=1, label="Steps")
                guidance_scale = gr.Slider(0, 20, value=7.5, step=0.5, label="Guidance scale (CFG)")
                resolution = gr.Slider(MIN_RESOLUTION, MAX_RESOLUTION, value=default_resolution(),
                                       step=SIDE_STEP, label="Resolution (long side)")
            seed, randomize = seed_controls()
            generate = gr.Button("Compose", variant="primary")
        with gr.Column():
            conditions = gr.Gallery(label="Conditions: sketch | depth | palette | image", columns=4, height=200,
                                    format="png", elem_id="composition-conditions")
            images = gr.Gallery(label="Local only | global only | all combined", columns=3, height=300,
                                format="png", elem_id="composition-images")
            info = gr.Markdown(elem_id="composition-info")
    gr.Examples(
        examples=[[str(ASSETS / "coffee.jpg"), None, "a cup of tea on a table, watercolor"],
                  [str(ASSETS / "astronaut.jpg"), str(ASSETS / "chelsea.jpg"), "a portrait of an astronaut"],
                  [str(ASSETS / "rocket.jpg"), str(ASSETS / "coffee.jpg"), "a rocket launch at dusk"]],
        inputs=[image, global_image, prompt], label="Examples (public-domain images from scikit-image)")
    return SimpleNamespace(image=image, global_image=global_image, prompt=prompt, negative_prompt=negative_prompt,
                           sketch=sketch, depth=depth, palette_weight=palette_weight, image_weight=image_weight,
                           steps=steps, guidance_scale=guidance_scale, resolution=resolution, seed=seed,
                           randomize=randomize, generate=generate, conditions=conditions, images=images, info=info)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def compose_for_ui(image, global_image, prompt, negative_prompt, sketch, depth, palette_weight, image_weight,
                       steps, guidance_scale, resolution, seed, progress=gr.Progress(track_tqdm=True)):
        result = run_composition(image, prompt, negative_prompt, global_image=global_image, sketch_weight=sketch,
                                 depth_weight=depth, palette_weight=palette_weight, image_weight=image_weight,
                                 steps=steps, guidance_scale=guidance_scale, seed=seed, resolution=resolution,
                                 progress=progress)
        conditions = [(picture, name) for name, picture in result.conditions.items()]
        images = [(png_with_parameters(image, {**result.parameters, "conditions": caption}, "composition"), caption)
                  for image, caption in ((result.local_image, "local only"), (result.global_image, "global only"),
                                         (result.combined_image, "all combined"))]
        return conditions, images, summary(result), result.seed

    w.generate.click(user_errors(resolve_seed), inputs=[w.seed, w.randomize], outputs=w.seed,
                     api_visibility="private").then(
        compose_for_ui,
        inputs=[w.image, w.global_image, w.prompt, w.negative_prompt, w.sketch, w.depth, w.palette_weight,
                w.image_weight, w.steps, w.guidance_scale, w.resolution, w.seed],
        outputs=[w.conditions, w.images, w.info, w.seed], api_name="composition")
    scroll_into_view_on(w.generate, "composition-images")
