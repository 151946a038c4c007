"""MultiDiffusion (Bar-Tal et al., ICML 2023): panoramas and region prompts from a model trained on squares.

The shared SD-1.5 base denoises many overlapping windows of one latent, and every step the windows are
fused by a per-pixel average (the closed-form least-squares step, models/pipelines/multidiffusion.py).
The tab shows the window grid over the result, the fused x0 prediction along the way, and the two naive
baselines: the whole width in one pass, and independent tiles stitched without fusion.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageDraw

import models
from demos.shared.boxes import COLORS, Box, draw_boxes, parse_layout, validate_boxes
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text
from demos.shared.limits import LIMITS
from models import ProgressFn, UserError
from models.pipelines import multidiffusion as md
from models.stable_diffusion import SD15, TINY_IMAGE_SIDE

MAX_REGIONS = 6
PREVIEWS = 4
EXAMPLE_PROMPTS = ["a photo of the dolomites", "a photo of a city skyline at night",
                   "a watercolor painting of a forest in autumn", "a photo of a mountain range at twilight"]
GRID_COLOURS = [(230, 25, 75), (0, 130, 200), (60, 180, 75), (245, 130, 48)]


def native_side() -> int:
    """The base model's training size in pixels: its window. 512 for SD-1.5, 128 for the tiny stand-in."""
    return TINY_IMAGE_SIDE if models.model_settings.profile == "tiny" else 512


def default_width() -> int:
    """2048 at 512 high (the diffusers panorama pipeline's default); 3 windows wide for the tiny stand-in."""
    return 3 * native_side() if models.model_settings.profile == "tiny" else 4 * native_side()


def default_steps() -> int:
    """The paper's 50; a few for the tiny stand-in, whose pictures are noise anyway (a panorama with its
    baselines costs (windows + 1 + tiles) x steps UNet passes)."""
    return 8 if models.model_settings.profile == "tiny" else md.STEPS


@dataclass
class PanoramaResult:
    image: Image.Image
    grid: Image.Image  # the result with every window outlined
    previews: list[tuple[int, Image.Image]]  # (step, fused x0 prediction)
    one_pass: Image.Image | None  # the same noise, the whole size in a single window
    tiles: Image.Image | None  # independent windows side by side, no fusion
    parameters: dict[str, Any]
    views: int
    seconds: float


@dataclass
class RegionResult:
    image: Image.Image
    boxed: Image.Image
    masks: Image.Image  # which prompt owns each latent pixel
    previews: list[tuple[int, Image.Image]]
    parameters: dict[str, Any]
    seconds: float


# ---- validation ---------------------------------------------------------------------------------

def check_side(value: Any, what: str, window: int, stride: int, circular: bool = False) -> int:
    """A panorama side in pixels: a multiple of 8, at least one window, and covered by whole strides."""
    side = number_in_range(value, what, 8, LIMITS.max_panorama_side, whole=True)
    if side % 8:
        raise UserError(f"{what} must be a multiple of 8 pixels (the VAE's factor); got {side}.")
    if side < window * 8:
        raise UserError(f"{what} must be at least one window, {window * 8} pixels (got {side}).")
    step = stride * 8
    if not circular and (side - window * 8) % step:
        below = side - (side - window * 8) % step
        raise UserError(f"{what} {side} px leaves its far edge outside every window: with a {window * 8}-px window "
                        f"and a {step}-px stride use {below} or {below + step} px.")
    if circular and side % step:
        raise UserError(f"With circular padding the width must be a multiple of the stride, {step} px (got {side}).")
    return side


def check_settings(steps: Any, guidance_scale: Any) -> tuple[int, float]:
    return (number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True),
            number_in_range(guidance_scale, "The CFG scale", 1, 30))


def region_masks(boxes: list[Box], height: int, width: int) -> torch.Tensor:
    """[1 + boxes, 1, h, w] latent masks, background first (1 − Σ foreground, as region_based.py);
    refuses boxes that overlap or that cover no latent pixel."""
    masks = torch.zeros(len(boxes) + 1, 1, height, width)
    for index, box in enumerate(boxes, start=1):
        x0, y0, x1, y1 = box.to_pixels(width, height)
        masks[index, :, y0:y1, x0:x1] = 1
        if not masks[index].any():
            raise UserError(f"Box {index} ({box.phrase!r}) is too small: it covers no 8x8 pixel cell. Make it larger.")
    overlap = masks[1:].sum(dim=0) > 1
    if overlap.any():
        owners = [index for index in range(1, len(boxes) + 1) if (masks[index].bool() & overlap).any()]
        raise UserError(f"Boxes {' and '.join(str(o) for o in owners)} overlap; each pixel gets one prompt here. "
                        "Move them apart.")
    masks[0] = (1 - masks[1:].sum(dim=0)).clamp(min=0)
    return masks


# ---- runs ---------------------------------------------------------------------------------------

def _progress(progress: ProgressFn | None, total: int, what: str):
    done = [0]

    def on_step(index: int) -> None:
        done[0] += 1
        if progress is not None:
            progress(min(done[0] / total, 1.0), desc=f"{what}: step {index + 1}")
    return on_step


def preview_steps(steps: int) -> list[int]:
    """`PREVIEWS` evenly spaced 0-based steps, the last one included."""
    return sorted({round((k + 1) * steps / PREVIEWS) - 1 for k in range(PREVIEWS)})


def stitched_tiles(base: Any, prompt: str, noise: torch.Tensor, window: int, steps: int, guidance_scale: float,
                   seed: int, on_step) -> Image.Image:
    """The naive baseline: each window generated on its own from the same noise and pasted, no fusion
    (a last tile that would pass the edge is aligned to it and drawn over its neighbour)."""
    height, width = noise.shape[-2:]
    starts = list(range(0, width - window + 1, window))
    if starts[-1] + window < width:
        starts.append(width - window)
    canvas = Image.new("RGB", (width * 8, height * 8))
    for start in starts:
        part = noise[..., :, start:start + window]
        tile = md.generate(base, [prompt], torch.ones(1, 1, height, window), [(0, height, 0, window)], part,
                           generator_for(seed, base.device), steps, guidance_scale, on_step=on_step)
        canvas.paste(tile.image, (start * 8, 0))
    return canvas


def run_panorama(
    prompt: str,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    guidance_scale: float = md.GUIDANCE_SCALE,
    stride: int = md.WINDOW_STRIDE,
    circular: bool = False,
    seed: int = 0,
    randomize: bool = False,
    baselines: bool = True,
    progress: ProgressFn | None = None,
) -> PanoramaResult:
    """A MultiDiffusion panorama over the shared SD-1.5 base (DDIM, η = 0), with the naive baselines."""
    prompt = prompt_text(prompt, "the scene of the panorama")
    window = native_side() // 8
    stride = number_in_range(stride, "The window stride", 1, window, whole=True)
    circular = bool(circular)
    width = check_side(default_width() if width is None else width, "The width", window, stride, circular)
    height = check_side(native_side() if height is None else height, "The height", window, stride)
    steps, guidance_scale = check_settings(default_steps() if steps is None else steps, guidance_scale)
    seed = resolve_seed(seed, randomize)
    base = models.get(SD15, progress)
    latent_h, latent_w = height // 8, width // 8
    views = md.windows(latent_h, latent_w, window, stride, circular)
    tiles = -(-latent_w // window)  # stitched_tiles: one per window width, the last aligned to the edge
    on_step = _progress(progress, steps * (1 + (1 + tiles if baselines else 0)), "MultiDiffusion")
    started = time.perf_counter()
    noise = md.initial_noise(base, height, width, generator_for(seed, base.device))
    fused = md.generate(base, [prompt], torch.ones(1, 1, latent_h, latent_w), views, noise,
                        generator_for(seed, base.device), steps, guidance_scale, circular=circular,
                        preview_steps=preview_steps(steps), on_step=on_step)
    one_pass = tiled = None
    if baselines:
        one_pass = md.generate(base, [prompt], torch.ones(1, 1, latent_h, latent_w), [(0, latent_h, 0, latent_w)],
                               noise, generator_for(seed, base.device), steps, guidance_scale, on_step=on_step).image
        tiled = stitched_tiles(base, prompt, noise, window, steps, guidance_scale, seed, on_step)
    parameters = dict(method="MultiDiffusion panorama (Bar-Tal et al.)", model=SD15, prompt=prompt, width=width,
                      height=height, window_px=window * 8, stride_px=stride * 8, circular=circular, views=len(views),
                      steps=steps, guidance_scale=guidance_scale, scheduler="DDIMScheduler (eta 0)", seed=seed)
    return PanoramaResult(image=fused.image, grid=window_grid(fused.image, views, latent_w), previews=fused.previews,
                          one_pass=one_pass, tiles=tiled, parameters=parameters, views=len(views),
                          seconds=time.perf_counter() - started)


def run_regions(
    prompt: str,
    layout: str,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    guidance_scale: float = md.GUIDANCE_SCALE,
    bootstrap_steps: int | None = None,
    seed: int = 0,
    randomize: bool = False,
    progress: ProgressFn | None = None,
) -> RegionResult:
    """Region-based MultiDiffusion: `prompt` for the background, each box's phrase as its own prompt."""
    prompt = prompt_text(prompt, "the background")
    boxes = validate_boxes(parse_layout(layout), MAX_REGIONS)
    for box in boxes:
        prompt_text(box.phrase, f"box {box.phrase!r}")
    window = native_side() // 8
    width = check_side(native_side() if width is None else width, "The width", window, md.WINDOW_STRIDE)
    height = check_side(native_side() if height is None else height, "The height", window, md.WINDOW_STRIDE)
    steps, guidance_scale = check_settings(default_steps() if steps is None else steps, guidance_scale)
    if bootstrap_steps is None:
        bootstrap_steps = round(md.BOOTSTRAP_FRACTION * steps)
    bootstrap_steps = number_in_range(bootstrap_steps, "Bootstrapping steps", 0, steps, whole=True)
    seed = resolve_seed(seed, randomize)
    masks = region_masks(boxes, height // 8, width // 8)
    base = models.get(SD15, progress)
    views = md.windows(height // 8, width // 8, window, md.WINDOW_STRIDE)
    started = time.perf_counter()
    noise = md.initial_noise(base, height, width, generator_for(seed, base.device))
    fused = md.generate(base, [prompt] + [box.phrase for box in boxes], masks, views, noise,
                        generator_for(seed, base.device), steps, guidance_scale, bootstrap_steps=bootstrap_steps,
                        preview_steps=preview_steps(steps), on_step=_progress(progress, steps, "Regions"))
    parameters = dict(method="MultiDiffusion regions (Bar-Tal et al.)", model=SD15, prompt=prompt,
                      boxes=[[box.phrase, *box.xyxy] for box in boxes], width=width, height=height, views=len(views),
                      steps=steps, guidance_scale=guidance_scale, bootstrap_steps=bootstrap_steps,
                      scheduler="DDIMScheduler (eta 0)", seed=seed)
    return RegionResult(image=fused.image, boxed=draw_boxes(fused.image, boxes), masks=mask_view(masks, boxes),
                        previews=fused.previews, parameters=parameters, seconds=time.perf_counter() - started)


# ---- mechanism views ----------------------------------------------------------------------------

def window_grid(image: Image.Image, views: list[md.Window], latent_width: int) -> Image.Image:
    """The result with every window outlined (colours cycle; each outline is inset a little more than its
    neighbour's so overlapping windows stay apart); wrapped circular windows are drawn in two parts."""
    drawn = image.convert("RGB").copy()
    draw = ImageDraw.Draw(drawn)
    for index, (h0, h1, w0, w1) in enumerate(views):
        colour, inset = GRID_COLOURS[index % len(GRID_COLOURS)], 2 * (index % 4)
        pieces = [(w0, min(w1, latent_width))] + ([(0, w1 - latent_width)] if w1 > latent_width else [])
        for left, right in pieces:
            draw.rectangle([left * 8 + inset, h0 * 8 + inset, right * 8 - 1 - inset, h1 * 8 - 1 - inset],
                           outline=colour, width=2)
    draw.text((6, 4), f"{len(views)} windows", fill=(255, 255, 255))
    return drawn


def mask_view(masks: torch.Tensor, boxes: list[Box]) -> Image.Image:
    """Each latent pixel coloured by the prompt that owns it (grey = background), 8x enlarged."""
    owner = masks[:, 0].argmax(dim=0)
    palette = torch.tensor([(200, 200, 200)] + [COLORS[i % len(COLORS)] for i in range(len(boxes))], dtype=torch.uint8)
    picture = Image.fromarray(palette[owner].numpy())
    return picture.resize((picture.width * 8, picture.height * 8), Image.Resampling.NEAREST)


def panorama_summary(result: PanoramaResult) -> str:
    p = result.parameters
    return (f"**seed {p['seed']}** · {result.seconds:.1f} s · {result.views} windows of {p['window_px']} px, stride "
            f"{p['stride_px']} px · {result.views} × {p['steps']} steps = {result.views * p['steps']} guided UNet "
            f"passes for the panorama (a {p['window_px']}-px image takes {p['steps']})"
            + (" · circular: the two ends meet" if p["circular"] else ""))


def regions_summary(result: RegionResult) -> str:
    """What a region run cost: prompts × windows × steps, and how many of the steps bootstrapped."""
    p = result.parameters
    return (f"**seed {p['seed']}** · {result.seconds:.1f} s · {1 + len(p['boxes'])} prompts × {p['views']} "
            f"windows × {p['steps']} steps · bootstrapping {p['bootstrap_steps']} steps")


# ---- Compare ------------------------------------------------------------------------------------

def _compare_panorama(prompt: str, seed: int = 0, steps: int | None = None, width: int | None = None,
                      **_unused: Any) -> Output:
    return Output(image=run_panorama(prompt, width, seed=seed, steps=steps, baselines=False).image)


def _compare_one_pass(prompt: str, seed: int = 0, steps: int | None = None, width: int | None = None,
                      **_unused: Any) -> Output:
    """Plain SD-1.5 at the same wide size in one pass: MultiDiffusion with one window the size of the latent."""
    window = native_side() // 8
    width = check_side(default_width() if width is None else width, "The width", window, md.WINDOW_STRIDE)
    seed = resolve_seed(seed)
    base = models.get(SD15)
    height = native_side()
    noise = md.initial_noise(base, height, width, generator_for(seed, base.device))
    return Output(image=md.generate(base, [prompt_text(prompt, "the scene")], torch.ones(1, 1, height // 8, width // 8),
                                    [(0, height // 8, 0, width // 8)], noise, generator_for(seed, base.device),
                                    check_settings(default_steps() if steps is None else steps, md.GUIDANCE_SCALE)[0]).image)


COMPARE_METHODS = [
    Method(IMAGE, "SD-1.5 wide, one pass", _compare_one_pass, {"seed": 0, "steps": default_steps(), "width": default_width()}),
    Method(IMAGE, "MultiDiffusion panorama", _compare_panorama, {"seed": 0, "steps": default_steps(), "width": default_width()}),
]


# ---- UI -----------------------------------------------------------------------------------------

def _captioned(previews: list[tuple[int, Image.Image]]) -> list[tuple[Image.Image, str]]:
    """The fused x0 previews as gallery items, each captioned with its step."""
    return [(img, f"step {step}") for step, img in previews]


def panorama_tab(side: int) -> None:
    """One prompt over a wide latent, with the windows, the fused x0 along the way and the naive baselines."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    with gr.Tab("Panorama"):
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], lines=2)
                gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
                with gr.Row():
                    width = gr.Slider(side, LIMITS.max_panorama_side, value=default_width(), step=8, label="Width (px)")
                    height = gr.Slider(side, LIMITS.max_panorama_side, value=side, step=8, label="Height (px)")
            with gr.Column():
                with gr.Row():
                    steps = gr.Slider(1, LIMITS.max_steps, value=default_steps(), step=1, label="Steps")
                    cfg = gr.Slider(1, 20, value=md.GUIDANCE_SCALE, step=0.5, label="CFG scale")
                    stride = gr.Slider(1, side // 8, value=md.WINDOW_STRIDE, step=1,
                                       label="Window stride (latent px; ×8 in pixels)")
                with gr.Row():
                    circular = gr.Checkbox(value=False, label="Circular padding (a 360° panorama)")
                    baselines = gr.Checkbox(value=True, label="Also run the naive baselines (one pass, tiles)")
                seed, randomize = seed_controls(0)
                generate = gr.Button("Generate panorama", variant="primary")
                info = gr.Markdown(elem_id="md-summary")
        with gr.Column(elem_id="md-results"):
            image = gr.Image(label="MultiDiffusion panorama (PNG)", type="filepath", format="png",
                             elem_id="md-panorama", elem_classes=RESULT)
            grid = gr.Image(label="The windows it fused", format="png", elem_id="md-grid")
            previews = gr.Gallery(label="Fused x0 prediction during sampling (step)", columns=PREVIEWS, height=220)
            one_pass = gr.Image(label="Baseline: the whole size in one pass (same noise)", format="png")
            tiles = gr.Image(label="Baseline: independent tiles stitched, no fusion (same noise)", format="png",
                             elem_id="md-tiles")

        @user_errors
        def panorama_for_ui(prompt, width, height, steps, cfg, stride, circular, seed, randomize, baselines,
                            progress=gr.Progress()):
            result = run_panorama(prompt, width, height, steps, cfg, stride, circular, seed, randomize, baselines,
                                  progress)
            return (png_with_parameters(result.image, result.parameters, "multidiffusion"), result.grid,
                    _captioned(result.previews), result.one_pass, result.tiles, panorama_summary(result),
                    result.parameters["seed"])

        generate.click(panorama_for_ui,
                       inputs=[prompt, width, height, steps, cfg, stride, circular, seed, randomize, baselines],
                       outputs=[image, grid, previews, one_pass, tiles, info, seed], api_name="multidiffusion_panorama")
        scroll_into_view_on(generate, "md-results")


def regions_tab(side: int) -> None:
    """A background prompt plus one prompt per drawn box, with the mask each prompt owns."""
    import gradio as gr

    from demos.shared.boxes import box_editor
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    with gr.Tab("Region prompts"):
        gr.Markdown("The **prompt** describes the background; each box's label is **its own prompt**. During "
                    "the first *bootstrapping* steps each box's view sees a random flat colour outside the box, "
                    "so its object forms inside it.")
        with gr.Row():
            with gr.Column():
                prompt, layout = box_editor()
            with gr.Column():
                with gr.Row():
                    width = gr.Slider(side, LIMITS.max_panorama_side, value=side, step=8, label="Width (px)")
                    height = gr.Slider(side, LIMITS.max_panorama_side, value=side, step=8, label="Height (px)")
                with gr.Row():
                    steps = gr.Slider(1, LIMITS.max_steps, value=default_steps(), step=1, label="Steps")
                    cfg = gr.Slider(1, 20, value=md.GUIDANCE_SCALE, step=0.5, label="CFG scale")
                    bootstrap = gr.Slider(0, LIMITS.max_steps, value=round(md.BOOTSTRAP_FRACTION * default_steps()),
                                          step=1, label="Bootstrapping steps")
                seed, randomize = seed_controls(0)
                generate = gr.Button("Generate with region prompts", variant="primary")
                info = gr.Markdown()
        with gr.Row(elem_id="md-region-results"):
            boxed = gr.Image(label="Result, boxes drawn", format="png", elem_id="md-region-boxed", elem_classes=RESULT)
            image = gr.Image(label="Result (PNG)", type="filepath", format="png", elem_classes=RESULT)
            masks = gr.Image(label="Which prompt owns each latent pixel", format="png", elem_classes=RESULT)
        previews = gr.Gallery(label="Fused x0 prediction during sampling (step)", columns=PREVIEWS, height=220)

        @user_errors
        def regions_for_ui(prompt, layout, width, height, steps, cfg, bootstrap, seed, randomize,
                           progress=gr.Progress()):
            result = run_regions(prompt, layout, width, height, steps, cfg, bootstrap, seed, randomize, progress)
            return (result.boxed, png_with_parameters(result.image, result.parameters, "multidiffusion-regions"),
                    result.masks, _captioned(result.previews), regions_summary(result), result.parameters["seed"])

        generate.click(regions_for_ui,
                       inputs=[prompt, layout, width, height, steps, cfg, bootstrap, seed, randomize],
                       outputs=[boxed, image, masks, previews, info, seed], api_name="multidiffusion_regions")
        scroll_into_view_on(generate, "md-region-results")


def build_ui() -> None:
    import gradio as gr

    side = native_side()
    gr.Markdown(
        "Stable Diffusion 1.5 was trained on one square size. MultiDiffusion denoises **overlapping windows** of "
        "a bigger latent with the unchanged model and, after every step, sets each latent pixel to the **average "
        "of the windows covering it** (the least-squares fusion of the paper). Panorama: one prompt over windows "
        f"of {side} px every *stride*. Regions: one prompt per box plus a background prompt, fused with the box "
        "masks as weights. Cost: windows × prompts × steps UNet passes."
    )
    with gr.Tabs():
        panorama_tab(side)
        regions_tab(side)
