"""Masked diffusion edit: noise the photo part-way (SDEdit strength k), denoise it toward a prompt, and
at every step put the noised original back outside the mask (models/pipelines/masked_edit.py) — on
the shared SD-1.5 base, so no new weights. Mask by brush, upload, or a Segment Anything click; the
result is pasted back so every pixel outside the mask is the photo's own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

import models
from demos import ASSETS
from demos.shared.click_to_mask import MASK_CHOICES, PROMPT_HELP, SAM_MODELS, run_click_to_mask
from demos.shared.comparison import EDIT, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text
from demos.shared.limits import LIMITS
from demos.shared.masks import binary_mask, editor_mask, feathered, grown, paste_back, scene_image, square_around, tinted
from models import ProgressFn, UserError
from models.pipelines.masked_edit import masked_sdedit
from models.stable_diffusion import SD15

STRENGTH = 0.75
STEPS = 50
GUIDANCE_SCALE = 7.5
MAX_GROW = 64
EXAMPLES = [("astronaut.jpg", "mask_astronaut_helmet.png", "a bunch of red roses")]


@dataclass
class MaskedEditResult:
    image: Image.Image  # the full-size photo with the edit pasted in
    start: Image.Image  # the noised square the edit started from (x_k)
    square: Image.Image  # the model's edited square, before paste-back
    overlay: Image.Image  # the photo with the paste-back mask tinted
    latent_mask: Image.Image  # the mask at the latent's resolution, as the sampler used it
    seed: int
    parameters: dict[str, Any]
    seconds: float


def run_masked_edit(
    scene: Any,
    mask: Any,
    prompt: str,
    strength: float = STRENGTH,
    steps: int = STEPS,
    guidance_scale: float = GUIDANCE_SCALE,
    seed: Any = 0,
    randomize: bool = False,
    grow: int = 4,
    feather: int = 4,
    progress: ProgressFn | None = None,
) -> MaskedEditResult:
    """Edit the masked region of `scene` toward `prompt`; outside the mask the scene is untouched."""
    picture = scene_image(scene, "a photo to edit")
    region = binary_mask(mask, picture.size)
    prompt = prompt_text(prompt, "what the masked region should become")
    strength = number_in_range(strength, "The strength k", 0.01, 1)
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The CFG scale", 1, 30)
    grow = number_in_range(grow, "Mask growth", -MAX_GROW, MAX_GROW, whole=True)
    feather = number_in_range(feather, "Feather radius", 0, MAX_GROW, whole=True)
    seed = resolve_seed(seed, randomize)
    if not grown(region, grow).any():
        raise UserError(f"Shrinking the mask by {-grow} px leaves nothing of it; shrink it less or mark a larger region.")
    weight = feathered(region, grow, feather)  # the paste-back weight
    model_region = grown(region, grow + feather)  # the sampler edits everything the paste-back touches
    box = square_around(weight > 0)
    base = models.get(SD15, progress)
    side = base.unet.config.sample_size * base.vae_scale_factor

    def on_step(index: int, total: int) -> None:
        if progress is not None:
            progress((index + 1) / total, desc=f"masked edit: step {index + 1}/{total}")

    started = time.perf_counter()
    region_square = Image.fromarray(model_region.astype(np.uint8) * 255).crop(box).resize(
        (side, side), Image.Resampling.NEAREST)
    output = masked_sdedit(base, picture.crop(box).resize((side, side), Image.Resampling.LANCZOS),
                           np.asarray(region_square) > 0, prompt, strength, steps, guidance_scale,
                           generator_for(seed), on_step=on_step)
    parameters = dict(method="masked diffusion edit (SDEdit + re-imposed original)", model=SD15, prompt=prompt,
                      strength=strength, steps=steps, steps_run=output.steps_run, guidance_scale=guidance_scale,
                      grow=grow, feather=feather, crop_box=box, model_side=side, scheduler="DDIM (η = 0)", seed=seed)
    latent = Image.fromarray((output.latent_mask * 255).astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    return MaskedEditResult(paste_back(picture, output.image, box, weight), output.start, output.image,
                            tinted(picture, weight), latent, seed, parameters, time.perf_counter() - started)


def _compare(image: Any, mask: Any, edited_prompt: str, seed: int = 0, strength: float = STRENGTH, steps: int = STEPS,
             guidance_scale: float = GUIDANCE_SCALE, **_unused: Any) -> Output:
    """A Compare cell: the edited prompt inside the shared mask."""
    return Output(image=run_masked_edit(image, mask, edited_prompt, strength, steps, guidance_scale, seed).image)


COMPARE_METHODS = [Method(EDIT, "Masked edit (SDEdit in a mask)", _compare,
                          {"strength": STRENGTH, "steps": STEPS, "guidance_scale": GUIDANCE_SCALE})]


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import RESULT, seed_controls

    gr.Markdown(
        "Mark a region (click the object for Segment Anything, upload a mask, or brush) and say what it should "
        "become. The photo's latent is noised to step k = strength·N (**SDEdit**) and denoised toward the prompt; "
        "after every step the region **outside** the mask is replaced by the original noised to the same level, "
        "so only the inside is generated and it blends with the rest. The result is pasted back through the "
        "mask: outside it, every pixel is the photo's own. Low strength keeps the region's colours and shapes."
    )
    with gr.Row():
        with gr.Column():
            scene = gr.Image(label="Photo: click the object to mask it", type="pil", height=320, elem_id="me-scene")
            with gr.Row():
                click_mode = gr.Radio([("object (+)", "object"), ("background (−)", "background"),
                                       ("box corner", "box")], value="object", label="A click adds")
                sam_model = gr.Dropdown(SAM_MODELS, value=SAM_MODELS[0], label="Segment Anything")
                choice = gr.Radio(MASK_CHOICES, value="best", label="SAM mask")
            clicks = gr.Textbox(label=f"Clicks in photo pixels ({PROMPT_HELP})", lines=2)
            segment = gr.Button("Segment", size="sm")
            mask = gr.Image(label="Mask (white = edit): from the clicks, or upload one; clear it to use the brush",
                            type="pil", image_mode="L", height=180, elem_id="me-mask")
            with gr.Accordion("…or brush over the region", open=False):
                editor = gr.ImageEditor(label="Brush over the region to edit", type="pil", sources=[],
                                        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                                        height=320)
            prompt = gr.Textbox(label="What the region should become", value="a bunch of red roses")
            with gr.Row():
                strength = gr.Slider(0.05, 1, value=STRENGTH, step=0.05, label="Strength k (share of steps run)")
                steps = gr.Slider(1, LIMITS.max_steps, value=STEPS, step=1, label="Steps")
                guidance = gr.Slider(1, 20, value=GUIDANCE_SCALE, step=0.5, label="CFG scale")
            with gr.Row():
                grow = gr.Slider(-MAX_GROW, MAX_GROW, value=4, step=1, label="Grow (+) or shrink (−) the mask (px)")
                feather = gr.Slider(0, MAX_GROW, value=4, step=1, label="Feather radius (px)")
            seed, randomize = seed_controls()
            run = gr.Button("Edit inside the mask", variant="primary")
        with gr.Column(elem_id="me-results"):
            slider = gr.ImageSlider(label="Before / after (full size)", type="pil", format="png", elem_classes=RESULT)
            download = gr.File(label="Edited photo (PNG with parameters)")
            info = gr.Markdown()
            steps_view = gr.Gallery(label="Mechanism: x_k (start), the mask in latent cells, the edited square, "
                                          "the paste-back mask", columns=4, height=200, object_fit="contain",
                                    format="png")
    gr.Examples([[str(ASSETS / photo), str(ASSETS / photo), str(ASSETS / region), text]
                 for photo, region, text in EXAMPLES], inputs=[scene, editor, mask, prompt],
                label="Examples (public-domain photos from scikit-image)")
    return SimpleNamespace(
        scene=scene, click_mode=click_mode, sam_model=sam_model, choice=choice, clicks=clicks, segment=segment,
        mask=mask, editor=editor, prompt=prompt, strength=strength, steps=steps, guidance=guidance, grow=grow,
        feather=feather, seed=seed, randomize=randomize, run=run, slider=slider, download=download, info=info,
        steps_view=steps_view)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.click_to_mask import segment_on_click
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def segment_for_ui(scene, clicks_text, model, choice, progress=gr.Progress(track_tqdm=True)):
        return run_click_to_mask(scene, clicks_text, model, choice, progress).mask

    @user_errors
    def edit_for_ui(scene, prompt, strength, steps, guidance, seed, randomize, grow, feather, mask=None,
                    brushed=None, progress=gr.Progress(track_tqdm=True)):
        region = mask if mask is not None else editor_mask(brushed)
        result = run_masked_edit(scene, region, prompt, strength, steps, guidance, seed, randomize, grow, feather,
                                 progress)
        summary = (f"**seed {result.seed}** · {result.seconds:.1f} s · {result.parameters['steps_run']} of "
                   f"{result.parameters['steps']} steps run (strength {result.parameters['strength']:g}) on the "
                   f"square {result.parameters['crop_box']} at {result.parameters['model_side']}² px")
        views = [(result.start, "x_k: the start"), (result.latent_mask, "mask in latent cells"),
                 (result.square, "edited square"), (result.overlay, "paste-back mask")]
        return ((scene_image(scene), result.image), png_with_parameters(result.image, result.parameters, "masked-edit"),
                summary, views, result.seed)

    gr.on([w.scene.upload, w.scene.clear], lambda picture: ("", None, picture), inputs=w.scene,
          outputs=[w.clicks, w.mask, w.editor], api_visibility="private")
    segment_on_click(w.scene, w.clicks, w.click_mode, w.sam_model, w.choice, [w.mask], segment_for_ui)
    w.segment.click(segment_for_ui, inputs=[w.scene, w.clicks, w.sam_model, w.choice], outputs=w.mask,
                    api_name="masked_edit_click_to_mask")
    w.run.click(edit_for_ui, inputs=[w.scene, w.prompt, w.strength, w.steps, w.guidance, w.seed, w.randomize, w.grow,
                                     w.feather, w.mask, w.editor],
                outputs=[w.slider, w.download, w.info, w.steps_view, w.seed], api_name="masked_edit")
    scroll_into_view_on(w.run, "me-results")
