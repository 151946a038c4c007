"""GLIGEN: Open-Set Grounded Text-to-Image Generation (Li et al., CVPR 2023).

Trained grounding: each box becomes a grounding token (the phrase's CLIP text embedding + a Fourier
embedding of the box) that new gated self-attention layers in the UNet attend to. The gates are on
for the first β·N steps (scheduled sampling) and off after, so the layout is set early and the
base model refines the picture.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

import models
from demos.shared.boxes import Box, draw_boxes, parse_layout, validate_boxes
from demos.shared.comparison import IMAGE, Method, Output
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, prompt_text, rgb_image
from demos.shared.limits import LIMITS
from models import ProgressFn
from models.gligen import GLIGEN, GLIGEN_INPAINTING, MAX_OBJECTS

BETA = 0.3  # diffusers' default scheduled-sampling β (the docs examples use 1.0)
STEPS = 50
CFG_SCALE = 7.5


@dataclass
class GligenResult:
    image: Image.Image
    boxed: Image.Image
    phrases: list[str]  # sent to the pipeline, one per box, in the order typed
    boxes: list[list[float]]  # normalised xyxy, same order
    parameters: dict[str, Any]
    seconds: float


def gligen_grounding(boxes: list[Box]) -> tuple[list[str], list[list[float]]]:
    """The pipeline's `gligen_phrases` and `gligen_boxes` (xyxy in [0,1]), one entry per box, in order."""
    return [box.phrase for box in boxes], [box.xyxy for box in boxes]


def run_gligen(
    prompt: str,
    layout: str,
    beta: float = BETA,
    steps: int = STEPS,
    guidance_scale: float = CFG_SCALE,
    seed: int = 0,
    randomize: bool = False,
    image: Any = None,
    progress: ProgressFn | None = None,
) -> GligenResult:
    """Generate with GLIGEN's gated grounding layers fed the typed boxes; given an `image`, insert the
    objects into it (the inpainting checkpoint regenerates the boxes of its centre square)."""
    prompt = prompt_text(prompt, "the scene; the boxes say where its objects go")
    boxes = validate_boxes(parse_layout(layout), MAX_OBJECTS)
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    beta = number_in_range(beta, "β (the share of steps with grounding)", 0, 1)
    guidance_scale = number_in_range(guidance_scale, "The CFG scale", 1, 30)
    picture = None if image is None else rgb_image(image, "an image to insert into")
    seed = resolve_seed(seed, randomize)
    model = GLIGEN if picture is None else GLIGEN_INPAINTING
    pipe = models.get(model, progress)
    phrases, normalised = gligen_grounding(boxes)
    started = time.perf_counter()
    # diffusers' GLIGEN pipeline noises the inpainting latent with torch's global generator
    # (`torch.randn_like`): seed that too, inside a forked RNG, so the seed decides the whole image.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        image = pipe(prompt, gligen_phrases=phrases, gligen_boxes=normalised,
                     gligen_scheduled_sampling_beta=beta, num_inference_steps=steps,
                     guidance_scale=guidance_scale, gligen_inpaint_image=picture,
                     generator=generator_for(seed, pipe.device)).images[0]
    parameters = dict(method="GLIGEN", model=model, prompt=prompt, boxes=[[p, *b] for p, b in zip(phrases, normalised)],
                      beta=beta, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return GligenResult(image, draw_boxes(image, boxes), phrases, normalised, parameters,
                        time.perf_counter() - started)


def _compare_gligen(prompt: str, boxes: str, seed: int = 0, steps: int = STEPS, guidance_scale: float = CFG_SCALE,
                    **_unused: Any) -> Output:
    """A Compare cell: this tab's own text-to-image run."""
    result = run_gligen(prompt, boxes, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return Output(image=result.image)


COMPARE_METHODS = [Method(IMAGE, "GLIGEN", _compare_gligen, {"seed": 0, "steps": STEPS, "guidance_scale": CFG_SCALE})]


def build_ui() -> None:
    import gradio as gr

    from demos.shared.boxes import box_editor
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT, scroll_into_view_on, seed_controls

    gr.Markdown(
        "Draw boxes and label each with a phrase (any words; they need not be in the prompt). GLIGEN encodes "
        "each phrase with CLIP and each box with Fourier features into *grounding tokens*; trained gated "
        "self-attention layers in the UNet read them during the first β·steps steps (β = scheduled sampling), "
        f"then the plain SD-1.4 weights finish the image. At most {MAX_OBJECTS} boxes."
    )
    with gr.Row():
        with gr.Column():
            prompt, layout = box_editor()
            with gr.Row():
                beta = gr.Slider(0, 1, value=BETA, step=0.05, label="β: share of steps with grounding")
                steps = gr.Slider(1, LIMITS.max_steps, value=STEPS, step=1, label="Steps")
                cfg = gr.Slider(1, 20, value=CFG_SCALE, step=0.5, label="CFG scale")
            with gr.Accordion("Insert into my image (GLIGEN inpainting checkpoint)", open=False):
                picture = gr.Image(label="Image (its centre square is used; the boxes are regenerated)",
                                   type="pil", sources=["upload", "clipboard"], height=240)
                clear = gr.Button("No image: generate from scratch", size="sm")
            seed, randomize = seed_controls()
            generate = gr.Button("Generate with GLIGEN", variant="primary")
        with gr.Column():
            boxed = gr.Image(label="GLIGEN (boxes drawn)", format="png", elem_id="gligen-boxed", elem_classes=RESULT)
            image = gr.Image(label="GLIGEN (PNG with parameters)", type="filepath", format="png")
            grounding = gr.JSON(label="Grounding sent to the pipeline (phrase, normalised x0 y0 x1 y1)")

    @user_errors
    def generate_for_ui(prompt, layout, beta, steps, guidance_scale, seed, randomize, image=None,
                        progress=gr.Progress(track_tqdm=True)):
        result = run_gligen(prompt, layout, beta, steps, guidance_scale, seed, randomize, image, progress)
        png = png_with_parameters(result.image, result.parameters, "gligen")
        return result.boxed, png, result.parameters["boxes"], result.parameters["seed"]

    clear.click(lambda: None, outputs=picture, api_visibility="private")
    generate.click(generate_for_ui, inputs=[prompt, layout, beta, steps, cfg, seed, randomize, picture],
                   outputs=[boxed, image, grounding, seed], api_name="gligen")
    scroll_into_view_on(generate, "gligen-boxed")
