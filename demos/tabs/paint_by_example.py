"""Paint-by-Example (Yang et al. 2023, "Paint by Example: Exemplar-based Image Editing with Diffusion
Models"): the masked region of a scene is repainted to hold the object of a reference image, whose
CLIP image embedding replaces the text prompt.

The model works on a square around the mask (512² for the published checkpoint); the result is
pasted back into the full-resolution scene through a feathered mask, so every pixel outside it is
the scene's own.
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
from demos.shared.generation import generator_for, png_with_parameters, resolve_seed
from demos.shared.inputs import number_in_range, rgb_image
from demos.shared.limits import LIMITS
from demos.shared.masks import binary_mask, editor_mask, feathered, grown, paste_back, scene_image, square_around, tinted
from models import ProgressFn, UserError
from models.paint_by_example import PAINT_BY_EXAMPLE

REFERENCES = ("reference_cup.jpg", "reference_cat.jpg", "reference_rocket.jpg")  # crops of skimage.data images
MAX_GROW = 64  # px the mask may be grown (or, negative, shrunk) and feathered


@dataclass
class PaintResult:
    images: list[Image.Image]  # full-resolution scenes with the object painted in
    overlay: Image.Image  # the scene with the repainted region tinted
    mask: Image.Image  # the feathered paste-back mask (L)
    crop_box: tuple[int, int, int, int]  # the square of the scene the model saw
    seed: int
    parameters: dict[str, Any]
    seconds: float


def run_paint_by_example(
    scene: Any,
    mask: Any,
    reference: Any,
    steps: int = 50,
    guidance_scale: float = 5.0,
    seed: Any = 0,
    randomize: bool = False,
    num_images: int = 1,
    grow: int = 8,
    feather: int = 8,
    progress: ProgressFn | None = None,
) -> PaintResult:
    """Repaint the masked region of `scene` with the object of `reference`, at the scene's full size."""
    picture = scene_image(scene)
    region = binary_mask(mask, picture.size)
    example = rgb_image(reference, "a reference image of the object to paint in")
    steps = number_in_range(steps, "Steps", 1, LIMITS.max_steps, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The guidance scale", 0, 30)
    num_images = number_in_range(num_images, "The number of images", 1, LIMITS.max_images_per_run, whole=True)
    grow = number_in_range(grow, "Mask growth", -MAX_GROW, MAX_GROW, whole=True)
    feather = number_in_range(feather, "Feather radius", 0, MAX_GROW, whole=True)
    seed = resolve_seed(seed, randomize)
    model_region = grown(region, grow)  # hard edge for the model; the feather only softens the paste-back
    if not model_region.any():
        raise UserError(f"Shrinking the mask by {-grow} px leaves nothing of it; shrink it less or mark a larger region.")

    pipe = models.get(PAINT_BY_EXAMPLE, progress)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor  # 512 for the published checkpoint
    weight = feathered(region, grow, feather)  # the paste-back weight: the model must repaint all it touches
    box = square_around(weight > 0)
    model_mask = Image.fromarray(model_region.astype(np.uint8) * 255)
    started = time.perf_counter()
    painted = pipe(image=picture.crop(box).resize((side, side), Image.Resampling.LANCZOS),
                   mask_image=model_mask.crop(box).resize((side, side), Image.Resampling.NEAREST),
                   example_image=example, num_inference_steps=steps, guidance_scale=guidance_scale,
                   height=side, width=side, num_images_per_prompt=num_images,
                   generator=generator_for(seed)).images
    parameters = dict(method="Paint-by-Example", checkpoint=models.REGISTRY[PAINT_BY_EXAMPLE].checkpoint, seed=seed,
                      steps=steps, guidance_scale=guidance_scale, grow=grow, feather=feather, crop_box=box,
                      model_side=side)
    return PaintResult(images=[paste_back(picture, image, box, weight) for image in painted], overlay=tinted(picture, weight),
                       mask=Image.fromarray((weight * 255).astype(np.uint8)), crop_box=box, seed=seed,
                       parameters=parameters, seconds=time.perf_counter() - started)


def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import seed_controls

    gr.Markdown(
        "Upload a scene and **click the object** to mask it with Segment Anything (green = object, red = "
        "background, or two clicks in box mode), or brush over the region, or upload a mask (white = repaint). "
        "Then give a reference photo of an object. Paint-by-Example replaces the text prompt with the "
        "reference's **CLIP image embedding** and inpaints a square around your mask; the result is pasted back "
        "into the full-size scene through a feathered mask, so everything outside it is untouched. Crop the "
        "reference tightly around the object; small masks need a higher guidance scale."
    )
    with gr.Row():
        with gr.Column():
            scene = gr.Image(label="Scene: click the object to mask it", type="pil", height=380,
                             elem_id="pbe-scene")
            with gr.Row():
                click_mode = gr.Radio([("object (+)", "object"), ("background (−)", "background"),
                                       ("box corner", "box")], value="object", label="A click adds")
                sam_model = gr.Dropdown(SAM_MODELS, value=SAM_MODELS[0], label="Segment Anything")
                choice = gr.Radio(MASK_CHOICES, value="best", label="SAM mask")
            prompts = gr.Textbox(label=f"Clicks in scene pixels ({PROMPT_HELP})", lines=2, elem_id="pbe-prompts")
            with gr.Row():
                segment_button = gr.Button("Segment", size="sm")
                clear = gr.Button("Clear clicks and mask", size="sm")
            # contain: a tall scene's thumbnail shows all of the mask; captions carry each predicted IoU
            candidates = gr.Gallery(label="SAM's three masks (predicted IoU)", columns=3, height=260,
                                    object_fit="contain", format="png", elem_id="pbe-sam")
            mask = gr.Image(label="Mask used (white = repaint): from the clicks, or upload one; clear it to use the "
                                  "brush", type="pil", image_mode="L", height=180, elem_id="pbe-mask")
            with gr.Accordion("…or brush over the region", open=False):
                editor = gr.ImageEditor(label="The scene: brush over the region to repaint", type="pil", sources=[],
                                        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                                        height=380)
            reference = gr.Image(label="Reference object", type="pil", image_mode=None, height=200)
            gr.Examples([[str(ASSETS / name)] for name in REFERENCES], inputs=reference, label="Reference objects")
            with gr.Accordion("Settings (the paper's demo defaults)", open=False):
                steps = gr.Slider(1, LIMITS.max_steps, value=50, step=1, label="Steps")
                guidance_scale = gr.Slider(0, 20, value=5.0, step=0.5, label="Guidance scale")
                num_images = gr.Slider(1, LIMITS.max_images_per_run, value=1, step=1, label="Images")
                grow = gr.Slider(-MAX_GROW, MAX_GROW, value=8, step=1, label="Grow (+) or shrink (−) the mask (px)")
                feather = gr.Slider(0, MAX_GROW, value=8, step=1, label="Feather radius (px)")
            seed, randomize = seed_controls()
            paint = gr.Button("Paint the object in", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Results at the scene's full size (PNG with parameters)", format="png",
                                 height=360, elem_id="pbe-results")
            slider = gr.ImageSlider(label="Before / after", type="pil", format="png")
            overlay = gr.Image(label="Repainted region (feathered mask)", type="pil", format="png", height=240)
            info = gr.Markdown()
    gr.Examples(
        examples=[[str(ASSETS / "astronaut.jpg"), str(ASSETS / "astronaut.jpg"), str(ASSETS / "mask_astronaut_helmet.png"),
                   str(ASSETS / name)] for name in REFERENCES[:2]],
        inputs=[scene, editor, mask, reference],
        label="Examples (public-domain images from scikit-image)",
    )
    return SimpleNamespace(
        scene=scene, click_mode=click_mode, sam_model=sam_model, choice=choice, prompts=prompts,
        segment=segment_button, clear=clear, candidates=candidates, mask=mask, editor=editor, reference=reference,
        steps=steps, guidance_scale=guidance_scale, num_images=num_images, grow=grow, feather=feather, seed=seed,
        randomize=randomize, paint=paint, gallery=gallery, slider=slider, overlay=overlay, info=info)


# Marks the clicks of the prompt text on the scene as it is shown (green = object, red = background,
# a box outline), over the picture rather than in it, so the scene's pixels stay the user's own.
MARK_CLICKS_JS = """
(text) => {
  const img = document.querySelector('#pbe-scene img');
  document.querySelectorAll('#pbe-scene .pp-click').forEach(mark => mark.remove());
  if (!img || !img.naturalWidth) return [];
  const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
  const left = img.offsetLeft + (img.clientWidth - img.naturalWidth * scale) / 2;
  const top = img.offsetTop + (img.clientHeight - img.naturalHeight * scale) / 2;
  img.parentElement.style.position = 'relative';
  for (const line of (text || '').split('\\n')) {
    const [kind, ...numbers] = line.trim().split(/\\s+/);
    const [x0, y0, x1, y1] = numbers.map(Number);
    if (Number.isNaN(x0) || Number.isNaN(y0)) continue;
    const mark = document.createElement('div');
    mark.className = 'pp-click';
    const box = kind === 'box' && !Number.isNaN(x1);
    Object.assign(mark.style, {position: 'absolute', pointerEvents: 'none', boxSizing: 'border-box',
      left: `${left + x0 * scale - (box ? 0 : 6)}px`, top: `${top + y0 * scale - (box ? 0 : 6)}px`,
      width: box ? `${(x1 - x0) * scale}px` : '12px', height: box ? `${(y1 - y0) * scale}px` : '12px',
      borderRadius: box ? '0' : '50%', border: '2px solid white',
      background: box ? 'none' : (kind === '+' ? '#1a9850' : '#d73027'),
      outline: box ? '2px solid #1a9850' : 'none'});
    img.parentElement.appendChild(mark);
  }
  return [];
}
"""


def build_ui() -> None:
    import gradio as gr

    from demos.shared.click_to_mask import segment_on_click
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    def new_scene(picture):
        """A new scene: forget the clicks and the mask, and put it under the brush."""
        return "", [], None, picture

    @user_errors
    def segment_for_ui(scene, prompts, model, choice, progress=gr.Progress(track_tqdm=True)):
        result = run_click_to_mask(scene, prompts, model, choice, progress)
        return result.candidates, result.mask

    @user_errors
    def paint_for_ui(scene, reference, steps, guidance_scale, num_images, grow, feather, seed, randomize,
                     mask=None, brushed=None, progress=gr.Progress(track_tqdm=True)):
        region = mask if mask is not None else editor_mask(brushed)
        result = run_paint_by_example(scene, region, reference, steps, guidance_scale, seed, randomize,
                                      num_images, grow, feather, progress)
        summary = (f"**seed {result.seed}** · {result.seconds:.1f} s · the model saw the square "
                   f"{result.crop_box} at {result.parameters['model_side']}² px")
        pngs = [png_with_parameters(image, {**result.parameters, "index": index}, stem="paint-by-example")
                for index, image in enumerate(result.images)]
        return pngs, (scene_image(scene), result.images[0]), result.overlay, summary, result.seed

    sam_io = dict(inputs=[w.scene, w.prompts, w.sam_model, w.choice], outputs=[w.candidates, w.mask])
    gr.on([w.scene.upload, w.scene.clear, w.clear.click], new_scene, inputs=w.scene,
          outputs=[w.prompts, w.candidates, w.mask, w.editor], api_visibility="private")
    segment_on_click(w.scene, w.prompts, w.click_mode, w.sam_model, w.choice, sam_io["outputs"], segment_for_ui)
    gr.on([w.segment.click, w.prompts.submit, w.choice.input, w.sam_model.input], segment_for_ui, **sam_io,
          api_name="click_to_mask")
    w.paint.click(paint_for_ui, inputs=[w.scene, w.reference, w.steps, w.guidance_scale, w.num_images, w.grow,
                                        w.feather, w.seed, w.randomize, w.mask, w.editor],
                  outputs=[w.gallery, w.slider, w.overlay, w.info, w.seed], api_name="paint_by_example")
    scroll_into_view_on(w.paint, "pbe-results")
    w.prompts.change(None, inputs=w.prompts, js=MARK_CLICKS_JS, api_visibility="private")
