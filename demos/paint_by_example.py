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
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

import models
from demos.generation import generator_for, png_with_parameters, resolve_seed
from demos.inputs import number_in_range, rgb_image
from models import UserError
from models.cache import ProgressFn
from models.paint_by_example import PAINT_BY_EXAMPLE

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MAX_STEPS = 100
MAX_IMAGES_PER_RUN = 4


@dataclass
class PaintResult:
    images: list[str]  # full-resolution scenes with the object painted in: PNG paths with parameters
    overlay: Image.Image  # the scene with the repainted region tinted
    mask: Image.Image  # the feathered paste-back mask (L)
    crop_box: tuple[int, int, int, int]  # the square of the scene the model saw
    seed: int
    parameters: dict[str, Any]
    seconds: float


def binary_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A boolean H×W mask (True = repaint) from a PIL image, array or path; white/opaque means repaint."""
    if mask is None:
        raise UserError("Please mark the region to repaint: brush over it or upload a mask (white = repaint).")
    if isinstance(mask, (str, Path)):
        mask = Image.open(mask)
    if isinstance(mask, np.ndarray):
        mask = Image.fromarray(mask)
    if mask.mode in ("RGBA", "LA"):
        mask = mask.getchannel("A")
    mask = mask.convert("L")
    if mask.size != size:
        raise UserError(f"The mask is {mask.size[0]}x{mask.size[1]} but the scene is {size[0]}x{size[1]}; "
                        "draw the mask on the scene itself or upload one of the same size.")
    region = np.asarray(mask) >= 128
    if not region.any():
        raise UserError("The mask is empty: brush over the region the object should go in.")
    if region.all():
        raise UserError("The mask covers the whole scene: leave some of the scene for the object to fit into.")
    return region


def editor_mask(value: dict | None) -> Image.Image | None:
    """The union of the brushed layers of a `gr.ImageEditor` value, as an L mask (None when nothing drawn)."""
    layers = [layer for layer in (value or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    alpha = np.zeros(layers[0].size[::-1], dtype=bool)
    for layer in layers:
        alpha |= np.asarray(layer.convert("RGBA").getchannel("A")) > 0
    return Image.fromarray(alpha.astype(np.uint8) * 255)


def feathered(region: np.ndarray, grow: int, feather: int) -> np.ndarray:
    """The paste-back weight in [0,1]: the mask grown by `grow` px, its edge blurred by `feather` px.
    Exactly 0 wherever the blur does not reach, so those pixels stay the scene's own."""
    mask = Image.fromarray(region.astype(np.uint8) * 255)
    if grow > 0:
        mask = mask.filter(ImageFilter.MaxFilter(2 * grow + 1))
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    return np.asarray(mask, dtype=np.float32) / 255.0


def square_around(region: np.ndarray, margin: float = 0.25) -> tuple[int, int, int, int]:
    """The smallest square holding the mask's bounding box plus a margin, kept inside the scene."""
    height, width = region.shape
    rows, columns = np.nonzero(region)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    side = int(max(bottom - top, right - left) * (1 + 2 * margin))
    side = max(16, min(side, width, height))
    x0 = int(np.clip((left + right) // 2 - side // 2, 0, width - side))
    y0 = int(np.clip((top + bottom) // 2 - side // 2, 0, height - side))
    return x0, y0, x0 + side, y0 + side


def paste_back(scene: Image.Image, painted: Image.Image, box: tuple[int, int, int, int],
               weight: np.ndarray) -> Image.Image:
    """Blend the painted square into the scene by `weight`; where the weight is 0 the scene is untouched."""
    canvas = np.asarray(scene, dtype=np.float32).copy()
    x0, y0, x1, y1 = box
    square = np.asarray(painted.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), dtype=np.float32)
    alpha = weight[y0:y1, x0:x1, None]
    canvas[y0:y1, x0:x1] = alpha * square + (1 - alpha) * canvas[y0:y1, x0:x1]
    result = np.where(weight[..., None] > 0, np.clip(np.rint(canvas), 0, 255), np.asarray(scene, dtype=np.float32))
    return Image.fromarray(result.astype(np.uint8))


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
    if isinstance(scene, Image.Image) and max(scene.size) > models.settings.max_image_side:
        raise UserError(f"The scene is {scene.size[0]}x{scene.size[1]}; scenes up to {models.settings.max_image_side} "
                        "pixels a side are pasted back at full size. Please scale it down first.")
    picture = rgb_image(scene, "a scene to edit")
    region = binary_mask(mask, picture.size)
    example = rgb_image(reference, "a reference image of the object to paint in")
    steps = number_in_range(steps, "Steps", 1, MAX_STEPS, whole=True)
    guidance_scale = number_in_range(guidance_scale, "The guidance scale", 0, 30)
    num_images = number_in_range(num_images, "The number of images", 1, MAX_IMAGES_PER_RUN, whole=True)
    grow = number_in_range(grow, "Mask growth", 0, 64, whole=True)
    feather = number_in_range(feather, "Feather radius", 0, 64, whole=True)
    seed = resolve_seed(seed, randomize)

    pipe = models.get(PAINT_BY_EXAMPLE, progress)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor  # 512 for the published checkpoint
    box = square_around(region)
    model_mask = Image.fromarray((feathered(region, grow, 0) > 0).astype(np.uint8) * 255)  # grown, hard
    started = time.perf_counter()
    painted = pipe(image=picture.crop(box).resize((side, side), Image.Resampling.LANCZOS),
                   mask_image=model_mask.crop(box).resize((side, side), Image.Resampling.NEAREST),
                   example_image=example, num_inference_steps=steps, guidance_scale=guidance_scale,
                   height=side, width=side, num_images_per_prompt=num_images,
                   generator=generator_for(seed)).images
    weight = feathered(region, grow, feather)
    parameters = dict(method="Paint-by-Example", checkpoint=models.REGISTRY[PAINT_BY_EXAMPLE].checkpoint, seed=seed,
                      steps=steps, guidance_scale=guidance_scale, grow=grow, feather=feather, crop_box=box,
                      model_side=side)
    images = [png_with_parameters(paste_back(picture, image, box, weight), {**parameters, "index": index},
                                  stem="paint-by-example") for index, image in enumerate(painted)]
    tint = np.asarray(picture, dtype=np.float32) * (1 - 0.5 * weight[..., None]) + np.array([255, 0, 0]) * 0.5 * weight[..., None]
    return PaintResult(images=images, overlay=Image.fromarray(tint.astype(np.uint8)),
                       mask=Image.fromarray((weight * 255).astype(np.uint8)), crop_box=box, seed=seed,
                       parameters=parameters, seconds=time.perf_counter() - started)


def build_ui() -> None:
    import gradio as gr

    from demos.ui import seed_controls, user_errors

    gr.Markdown(
        "Brush over the region to repaint (or upload a mask, white = repaint) and give a reference photo of "
        "an object. Paint-by-Example replaces the text prompt with the reference's **CLIP image embedding** "
        "and inpaints the masked square around your mask; the result is pasted back into the full-size scene "
        "through a feathered mask, so everything outside it is untouched. Crop the reference tightly around the "
        "object; small masks need a higher guidance scale."
    )
    with gr.Row():
        with gr.Column():
            scene = gr.ImageEditor(label="Scene: brush over the region to repaint", type="pil",
                                   brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                                   height=420)
            mask_upload = gr.Image(label="…or upload a mask (white = repaint); used when given", type="pil",
                                   image_mode="L", height=160)
            reference = gr.Image(label="Reference object", type="pil", image_mode=None, height=200)
            with gr.Accordion("Settings (the paper's demo defaults)", open=False):
                steps = gr.Slider(1, MAX_STEPS, value=50, step=1, label="Steps")
                guidance_scale = gr.Slider(0, 20, value=5.0, step=0.5, label="Guidance scale")
                num_images = gr.Slider(1, MAX_IMAGES_PER_RUN, value=1, step=1, label="Images")
                grow = gr.Slider(0, 64, value=8, step=1, label="Grow mask (px)")
                feather = gr.Slider(0, 64, value=8, step=1, label="Feather radius (px)")
            seed, randomize = seed_controls()
            paint = gr.Button("Paint the object in", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Results at the scene's full size (PNG with parameters)", format="png",
                                 height=360, elem_id="pbe-results")
            slider = gr.ImageSlider(label="Before / after", type="pil", format="png")
            overlay = gr.Image(label="Repainted region (feathered mask)", type="pil", format="png", height=240)
            info = gr.Markdown()
    gr.Examples(
        examples=[[str(ASSETS / "astronaut.jpg"), str(ASSETS / "mask_astronaut_helmet.png"),
                   str(ASSETS / "reference_cup.jpg")],
                  [str(ASSETS / "astronaut.jpg"), str(ASSETS / "mask_astronaut_helmet.png"),
                   str(ASSETS / "reference_cat.jpg")]],
        inputs=[scene, mask_upload, reference],
        label="Examples (public-domain images from scikit-image)",
    )

    @user_errors
    def paint_for_ui(editor, uploaded_mask, reference, steps, guidance_scale, num_images, grow, feather, seed,
                     randomize, progress=gr.Progress(track_tqdm=True)):
        editor = editor or {}
        background = editor.get("background")
        mask = uploaded_mask if uploaded_mask is not None else editor_mask(editor)
        result = run_paint_by_example(background, mask, reference, steps, guidance_scale, seed, randomize,
                                      num_images, grow, feather, progress)
        summary = (f"**seed {result.seed}** · {result.seconds:.1f} s · the model saw the square "
                   f"{result.crop_box} at {result.parameters['model_side']}² px")
        return (result.images, (rgb_image(background), Image.open(result.images[0])), result.overlay, summary,
                result.seed)

    paint.click(paint_for_ui, inputs=[scene, mask_upload, reference, steps, guidance_scale, num_images, grow,
                                      feather, seed, randomize],
                outputs=[gallery, slider, overlay, info, seed], api_name="paint_by_example")
