"""Masked image modelling, token target vs pixel target, on the same masked patches.

BEiT (Bao et al. 2022) replaces the embeddings of masked patches by a learned [MASK] token
(`bool_masked_pos`) and predicts, for each masked patch, which of the 8192 DALL·E dVAE visual tokens
it was; its masks are blockwise (blocks of ≥ 16 patches with random aspect ratios, about 40 % of the
image). MAE (He et al. 2022) drops the masked patches from the encoder altogether, and a light
decoder reconstructs their pixels (75 % random masking in the paper). The DALL·E dVAE decoder that
would turn BEiT's tokens back into pixels is published only as a pickled module (OpenAI's `dall_e`
package, not on the Hub), so the tab shows the token ids and BEiT's confidence instead of pixels.

A second sub-tab shows what the pre-training is for: the same BEiT-base, fine-tuned on ADE20K with a UperNet
head (`microsoft/beit-base-finetuned-ade-640-640`), labels every pixel with one of 150 scene classes; the
class map is the argmax of its logits upsampled to the picture.
"""
from __future__ import annotations

import math
import random
import re
import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import models
from demos import ASSETS
from demos.shared.generation import resolve_seed
from demos.shared.inputs import number_in_range, rgb_image
from models import ProgressFn, UserError
from models.beit import BEIT_ADE, BEIT_BASE, MAE_BASE

MASK_MODES = ["blockwise", "random", "patches"]  # BEiT's masking, MAE's masking, or the patches you click
MIN_BLOCK = 16  # BEiT's smallest block, in patches
BLOCK_ASPECT = (0.3, 1 / 0.3)
DISPLAY_SIDE = 448  # the views are drawn at this size, whatever the model's input side
EXAMPLES = ("chelsea.jpg", "coffee.jpg", "rocket.jpg")
EXAMPLES_ID = "mim-examples"
SEGMENTATION_TITLE = "What pre-training buys: BEiT fine-tuned for segmentation (ADE20K)"
SEGMENTATION_SIDE = 512  # the picture is segmented and shown at most this many px on its longer side
LEGEND_CLASSES = 8  # the legend lists the largest classes, then the rest as one row
SEGMENTATION_EXAMPLES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")


def blockwise_mask(side: int, count: int, rng: random.Random) -> np.ndarray:
    """BEiT's blockwise masking (microsoft/unilm beit/masking_generator.py) on a side×side patch grid:
    add rectangular blocks of at least MIN_BLOCK patches with aspect ratio in [0.3, 1/0.3] at random
    places until `count` patches are masked; stops early if 10 tries in a row add nothing."""
    mask = np.zeros((side, side), dtype=bool)
    while mask.sum() < count:
        remaining = count - int(mask.sum())
        added = 0
        for _ in range(10):
            area = rng.uniform(MIN_BLOCK, remaining)
            aspect = math.exp(rng.uniform(math.log(BLOCK_ASPECT[0]), math.log(BLOCK_ASPECT[1])))
            height, width = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if width < side and height < side:
                top, left = rng.randint(0, side - height), rng.randint(0, side - width)
                new = height * width - int(mask[top:top + height, left:left + width].sum())
                if 0 < new <= remaining:
                    mask[top:top + height, left:left + width] = True
                    added = new
            if added:
                break
        if not added:
            break
    return mask.reshape(-1)


def random_mask(side: int, count: int, rng: random.Random) -> np.ndarray:
    """MAE's masking: `count` patches chosen uniformly at random."""
    mask = np.zeros(side * side, dtype=bool)
    mask[rng.sample(range(side * side), count)] = True
    return mask


def parse_patches(text: str | None, side: int) -> np.ndarray:
    """Patches typed as `row col` pairs (0-based; separated by new lines, `;` or commas)."""
    mask = np.zeros((side, side), dtype=bool)
    for item in re.split(r"[;\n,]+", text or ""):
        if not item.strip():
            continue
        numbers = item.split()
        if len(numbers) != 2 or not all(number.isdigit() for number in numbers):
            raise UserError(f"Cannot read the patch {item.strip()!r}: give each as `row col`, e.g. `3 5`.")
        row, column = map(int, numbers)
        if row >= side or column >= side:
            raise UserError(f"The patch {row} {column} is outside the {side}×{side} grid "
                            f"(rows and columns 0–{side - 1}).")
        mask[row, column] = True
    return mask.reshape(-1)


def toggle_patch(text: str | None, x: float, y: float, shown: int, side: int) -> str:
    """The patch list with the patch under a click on the `shown`-px view added, or removed if there."""
    row, column = min(side - 1, int(y * side / shown)), min(side - 1, int(x * side / shown))
    items = [item.strip() for item in re.split(r"[;\n,]+", text or "") if item.strip()]
    item = f"{row} {column}"
    return "\n".join([other for other in items if other != item] if item in items else [*items, item])


def square(picture: Image.Image, side: int) -> Image.Image:
    """The centre square of the picture at `side` px, what both models see."""
    short = min(picture.size)
    left, top = (picture.width - short) // 2, (picture.height - short) // 2
    return picture.crop((left, top, left + short, top + short)).resize((side, side), Image.Resampling.BICUBIC)


def grid_view(picture: Image.Image, cells: np.ndarray, side: int) -> Image.Image:
    """The picture at DISPLAY_SIDE with the patch grid drawn and `cells` (side²×3 colours, NaN = leave
    the picture) painted over their patches."""
    view = picture.resize((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.NEAREST).convert("RGB")
    draw = ImageDraw.Draw(view)
    step = DISPLAY_SIDE / side
    for index, colour in enumerate(cells):
        if not np.isnan(colour).any():
            row, column = divmod(index, side)
            draw.rectangle((column * step, row * step, (column + 1) * step - 1, (row + 1) * step - 1),
                           fill=tuple(int(channel) for channel in colour))
    for line in range(1, side):
        draw.line((line * step, 0, line * step, DISPLAY_SIDE), fill=(255, 255, 255), width=1)
        draw.line((0, line * step, DISPLAY_SIDE, line * step), fill=(255, 255, 255), width=1)
    return view


def token_colours(ids: np.ndarray) -> np.ndarray:
    """A fixed colour per token id (the same id is always the same colour)."""
    table = np.random.default_rng(0).integers(40, 255, size=(8192, 3))
    return table[ids % 8192].astype(np.float64)


@dataclass
class MimResult:
    picture: Image.Image  # the square both models see, at their input side
    mask: np.ndarray  # side² bool, True = masked, row-major
    masked_view: Image.Image  # the picture with the masked patches grey
    token_view: Image.Image  # BEiT: each masked patch coloured by its predicted token id
    confidence_view: Image.Image  # BEiT: each masked patch's softmax probability of that token
    predictions: list[list[Any]]  # per masked patch: row, column, token id, probability
    reconstruction: Image.Image  # MAE: visible patches kept, masked ones predicted
    reconstruction_only: Image.Image  # MAE's prediction for every patch
    reconstruction_error: float  # MAE: mean squared error on the masked patches (0–1 pixels)
    side: int  # patches per side
    seed: int
    parameters: dict[str, Any]


_mae_lock = threading.Lock()


def beit_predictions(handle: Any, picture: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BEiT's predicted token id and its probability for each masked patch (in patch order), with
    exactly the masked patches replaced by the [MASK] token."""
    import torch

    inputs = handle.processor(images=picture, return_tensors="pt").to(handle.device, handle.model.dtype)
    masked = torch.from_numpy(mask)[None].to(handle.device)
    with torch.no_grad():
        logits = handle.model(**inputs, bool_masked_pos=masked).logits[0, torch.from_numpy(mask).to(handle.device)]
    probabilities = logits.float().softmax(-1)
    confidence, ids = probabilities.max(-1)
    return ids.cpu().numpy(), confidence.cpu().numpy()


def mae_reconstruction(handle: Any, picture: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MAE's reconstruction of every patch (H×W×3 in 0–1) and the mask it used, with the encoder seeing
    exactly the unmasked patches: the noise that orders the patches puts the masked ones last, and the
    mask ratio is set to keep the rest (the model reads it per call; a lock keeps calls apart)."""
    import torch

    model = handle.model
    inputs = handle.processor(images=picture, return_tensors="pt").to(handle.device)
    noise = torch.from_numpy(mask.astype(np.float32) + np.linspace(0, 0.5, mask.size, dtype=np.float32))[None]
    with torch.no_grad(), _mae_lock:
        ratio = model.config.mask_ratio
        model.config.mask_ratio = (mask.sum() - 0.5) / mask.size  # keeps exactly size - masked patches
        try:
            output = model(**inputs, noise=noise.to(handle.device))
        finally:
            model.config.mask_ratio = ratio
    patches = output.logits.float()
    if model.config.norm_pix_loss:  # predicted per-patch normalised pixels: undo with the input's own statistics
        target = model.patchify(inputs["pixel_values"].float())
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        patches = patches * (var + 1e-6).sqrt() + mean
    pixels = model.unpatchify(patches)[0].permute(1, 2, 0).cpu().numpy()
    mean = np.array(handle.processor.image_mean, dtype=np.float32)
    std = np.array(handle.processor.image_std, dtype=np.float32)
    return np.clip(pixels * std + mean, 0, 1), output.mask[0].cpu().numpy().astype(bool)


def run_masked_image_modeling(image: Any, mask_mode: str = "blockwise", mask_ratio: float = 0.4,
                              patches: str | None = "", seed: Any = 0, randomize: bool = False,
                              progress: ProgressFn | None = None) -> MimResult:
    """Mask patches of one picture, let BEiT predict their visual tokens and MAE their pixels."""
    picture = rgb_image(image, "an image")
    if mask_mode not in MASK_MODES:
        raise UserError(f"Choose the masking as one of {', '.join(MASK_MODES)}.")
    mask_ratio = number_in_range(mask_ratio, "The mask ratio", 0.01, 0.95)
    seed = resolve_seed(seed, randomize)
    beit, mae = models.get(BEIT_BASE, progress), models.get(MAE_BASE, progress)
    config = beit.model.config
    if (config.image_size, config.patch_size) != (mae.model.config.image_size, mae.model.config.patch_size):
        raise UserError("BEiT and MAE must cut the image into the same patches; these checkpoints do not.")
    side = config.image_size // config.patch_size
    count = max(1, round(mask_ratio * side * side))
    rng = random.Random(seed)
    if mask_mode == "patches":
        mask = parse_patches(patches, side)
        if not mask.any():
            raise UserError("Click patches on the image (or type `row col` pairs) to mask them.")
        if mask.all():
            raise UserError("Every patch is masked: leave some visible for the models to work from.")
    else:
        mask = (blockwise_mask if mask_mode == "blockwise" else random_mask)(side, count, rng)
    shown = square(picture, config.image_size)
    ids, confidence = beit_predictions(beit, shown, mask)
    reconstruction, mae_mask = mae_reconstruction(mae, shown, mask)
    if not np.array_equal(mae_mask, mask):
        raise RuntimeError("MAE masked other patches than the ones chosen")
    original = np.asarray(shown, dtype=np.float32) / 255
    pixel_mask = np.kron(mask.reshape(side, side), np.ones((config.patch_size, config.patch_size)))[..., None] > 0
    pasted = np.where(pixel_mask, reconstruction, original)
    nan = np.full((side * side, 3), np.nan)
    grey, token_cells, confidence_cells = nan.copy(), nan.copy(), nan.copy()
    grey[mask] = 128
    token_cells[mask] = token_colours(ids)
    confidence_cells[mask] = (confidence[:, None] / max(float(confidence.max()), 1e-8)) * np.array([255, 200, 0])
    masked_view = grid_view(shown, grey, side)
    rows, columns = np.divmod(np.flatnonzero(mask), side)
    predictions = [[int(row), int(column), int(token), round(float(p), 4)]
                   for row, column, token, p in zip(rows, columns, ids, confidence)]
    parameters = dict(beit=models.REGISTRY[BEIT_BASE].checkpoint, mae=models.REGISTRY[MAE_BASE].checkpoint,
                      mask_mode=mask_mode, masked=int(mask.sum()), patches=side * side, seed=seed,
                      mae_norm_pix_loss=bool(mae.model.config.norm_pix_loss))
    return MimResult(
        picture=shown, mask=mask, masked_view=masked_view, token_view=grid_view(masked_view, token_cells, side),
        confidence_view=grid_view(Image.new("RGB", shown.size, (20, 20, 20)), confidence_cells, side),
        predictions=predictions,
        reconstruction=Image.fromarray(np.rint(pasted * 255).astype(np.uint8)).resize((DISPLAY_SIDE, DISPLAY_SIDE)),
        reconstruction_only=Image.fromarray(np.rint(reconstruction * 255).astype(np.uint8)).resize(
            (DISPLAY_SIDE, DISPLAY_SIDE)),
        reconstruction_error=float(((reconstruction - original) ** 2)[pixel_mask[..., 0]].mean()),
        side=side, seed=seed, parameters=parameters)


@dataclass
class SegmentationResult:
    picture: Image.Image  # the input at the size it was segmented and shown
    class_map: np.ndarray  # H×W class ids: argmax of the logits upsampled to the picture
    overlay: Image.Image  # the picture with each pixel tinted by its class colour
    legend: list[list[Any]]  # largest classes first: class id, label, colour, share of pixels (%), pixels
    parameters: dict[str, Any]


def class_colours(count: int) -> np.ndarray:
    """A fixed, bright colour per class id (the same class is always the same colour)."""
    return np.random.default_rng(150).integers(30, 256, size=(count, 3)).astype(np.uint8)


def scaled_to(picture: Image.Image, side: int) -> Image.Image:
    """The picture with its longer side at most `side` px (aspect kept)."""
    scale = min(1.0, side / max(picture.size))
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BICUBIC) if size != picture.size else picture


def segmentation_map(handle: Any, picture: Image.Image) -> np.ndarray:
    """Per pixel of `picture`, the class whose logit is highest after bilinear upsampling to its size."""
    import torch

    inputs = handle.processor(images=picture, return_tensors="pt").to(handle.device, handle.model.dtype)
    with torch.no_grad():
        logits = handle.model(**inputs).logits.float()
    upsampled = torch.nn.functional.interpolate(logits, size=(picture.height, picture.width), mode="bilinear",
                                                align_corners=False)
    return upsampled[0].argmax(0).cpu().numpy()


def segmentation_legend(class_map: np.ndarray, labels: dict[int, str], colours: np.ndarray) -> list[list[Any]]:
    """The LEGEND_CLASSES largest classes by area, then one row for all the others: the rows' pixels sum to the
    image's."""
    ids, counts = np.unique(class_map, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    total = class_map.size
    rows = [[int(ids[i]), labels[int(ids[i])].strip(), "#%02x%02x%02x" % tuple(colours[ids[i]]),
             round(100 * counts[i] / total, 2), int(counts[i])] for i in order[:LEGEND_CLASSES]]
    rest = int(counts[order[LEGEND_CLASSES:]].sum())
    if rest:
        rows.append([-1, f"{len(order) - LEGEND_CLASSES} other classes", "", round(100 * rest / total, 2), rest])
    return rows


def run_beit_segmentation(image: Any, opacity: float = 0.55, progress: ProgressFn | None = None) -> SegmentationResult:
    """Label every pixel with one of ADE20K's 150 classes using BEiT fine-tuned for segmentation."""
    picture = scaled_to(rgb_image(image, "an image"), SEGMENTATION_SIDE)
    opacity = number_in_range(opacity, "The overlay opacity", 0.0, 1.0)
    handle = models.get(BEIT_ADE, progress)
    class_map = segmentation_map(handle, picture)
    labels = {int(key): value for key, value in handle.model.config.id2label.items()}
    colours = class_colours(len(labels))
    tinted = (1 - opacity) * np.asarray(picture, dtype=np.float32) + opacity * colours[class_map]
    overlay = Image.fromarray(np.clip(np.rint(tinted), 0, 255).astype(np.uint8))
    parameters = dict(model=models.REGISTRY[BEIT_ADE].checkpoint, classes=len(labels), opacity=opacity,
                      size=list(picture.size), logits_side=handle.model.config.image_size)
    return SegmentationResult(picture=picture, class_map=class_map, overlay=overlay,
                              legend=segmentation_legend(class_map, labels, colours), parameters=parameters)


def segmentation_tab() -> None:
    """The fine-tuned BEiT's segmentation: the overlay and the legend of its largest classes."""
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import RESULT

    gr.Markdown(
        "Masked image modelling is pre-training: it is worth what it buys after fine-tuning. This is the same "
        "BEiT-base, fine-tuned on **ADE20K** (20k scenes, 150 classes) with a UperNet head that reads layers 4, 6, "
        "8 and 12 of the transformer (in the paper, this beats both supervised ImageNet pre-training and training "
        "from scratch). Each pixel gets the class with the highest score after the logits (a quarter of "
        "the 640² input) are upsampled to the picture.")
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="pil", height=300, elem_id="beit-seg-image")
            opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Overlay opacity")
            run = gr.Button("Segment", variant="primary", elem_id="beit-seg-run")
        with gr.Column():
            overlay = gr.Image(label="Classes (colour per class)", type="pil", format="png", height=320,
                               elem_id="beit-seg-overlay", elem_classes=RESULT)
    legend = gr.Dataframe(headers=["class id", "class", "colour", "% of pixels", "pixels"],
                          label="Largest classes by area", interactive=False, elem_id="beit-seg-legend")
    gr.Examples([[str(ASSETS / name)] for name in SEGMENTATION_EXAMPLES], inputs=image,
                label="Examples (public-domain images from scikit-image)", elem_id="beit-seg-examples")

    @user_errors
    def segment_for_ui(image, opacity, progress=gr.Progress(track_tqdm=True)):
        result = run_beit_segmentation(image, opacity, progress)
        return result.overlay, result.legend

    run.click(segment_for_ui, inputs=[image, opacity], outputs=[overlay, legend], api_name="beit_segmentation")


def layout() -> SimpleNamespace:
    import gradio as gr

    from demos.shared.widgets import RESULT, seed_controls

    gr.Markdown(
        "Two ways to pre-train a vision transformer by hiding patches. **BEiT** swaps each masked patch's "
        "embedding for a learned [MASK] token and predicts which of 8192 **visual tokens** (DALL·E's dVAE "
        "codebook) was there; its masks are *blockwise* (about 40 %, 75 of 196 patches). **MAE** drops the "
        "masked patches from the encoder and a small decoder predicts their **pixels** (75 % random masking). "
        "Both see the same patches masked here. BEiT's tokens cannot be drawn as pixels: the dVAE decoder is "
        "published only as a pickled module outside the Hub, so the tab shows each predicted token id (one "
        "colour per id) and BEiT's confidence."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image (its centre square is used)", type="pil", height=300, elem_id="mim-image")
            mask_mode = gr.Radio([("blockwise (BEiT)", "blockwise"), ("random (MAE)", "random"),
                                  ("patches I click", "patches")], value="blockwise", label="Masking")
            mask_ratio = gr.Slider(0.05, 0.95, value=0.4, step=0.01, label="Share of patches masked")
            patches = gr.Textbox(label="Clicked patches (`row col`, one per line): click the masked view",
                                 lines=2, elem_id="mim-patches")
            seed, randomize = seed_controls()
            run = gr.Button("Mask and predict", variant="primary", elem_id="mim-run")
        with gr.Column():
            masked_view = gr.Image(label="Masked patches (grey): click to mask a patch", type="pil", format="png",
                                   height=260, elem_id="mim-masked", elem_classes=RESULT)
            info = gr.Markdown(elem_id="mim-info")
            with gr.Row():  # token target vs pixel target, side by side
                token_view = gr.Image(label="BEiT: predicted token per patch", type="pil", format="png", height=210,
                                      elem_classes=RESULT)
                reconstruction = gr.Image(label="MAE: visible + reconstructed", type="pil", format="png", height=210,
                                          elem_classes=RESULT)
            with gr.Row():
                confidence_view = gr.Image(label="BEiT: probability of that token", type="pil", format="png",
                                           height=210, elem_classes=RESULT)
                reconstruction_only = gr.Image(label="MAE: prediction for every patch", type="pil", format="png",
                                               height=210, elem_classes=RESULT)
    table = gr.Dataframe(headers=["row", "column", "BEiT token", "probability"], label="BEiT per masked patch",
                         interactive=False, max_height=240)
    gr.Examples([[str(ASSETS / name)] for name in EXAMPLES], inputs=image,
                label="Examples (public-domain images from scikit-image)", elem_id=EXAMPLES_ID)
    return SimpleNamespace(image=image, mask_mode=mask_mode, mask_ratio=mask_ratio, patches=patches, seed=seed,
                           randomize=randomize, run=run, masked_view=masked_view, info=info, token_view=token_view,
                           confidence_view=confidence_view, reconstruction=reconstruction,
                           reconstruction_only=reconstruction_only, table=table)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    with gr.Tab("Masked image modelling"):
        w = layout()
    with gr.Tab(SEGMENTATION_TITLE):
        segmentation_tab()

    @user_errors
    def run_for_ui(image, mask_mode, mask_ratio, patches, seed, randomize, progress=gr.Progress(track_tqdm=True)):
        result = run_masked_image_modeling(image, mask_mode, mask_ratio, patches, seed, randomize, progress)
        summary = (f"**{int(result.mask.sum())} of {result.side ** 2} patches masked** "
                   f"({result.parameters['mask_mode']}, "
                   f"seed {result.seed}) · MAE's error on them: {result.reconstruction_error:.4f} (MSE, pixels 0–1)")
        if result.parameters["mae_norm_pix_loss"]:
            summary += (" · this MAE predicts per-patch normalised pixels: shown de-normalised with each input "
                        "patch's own mean and variance, which the model did not see")
        return (result.masked_view, summary, result.token_view, result.confidence_view, result.reconstruction,
                result.reconstruction_only, result.predictions, result.seed)

    def click(text, evt):
        side = models.get(BEIT_BASE).model.config.image_size // models.get(BEIT_BASE).model.config.patch_size
        return toggle_patch(text, *evt.index, DISPLAY_SIDE, side), "patches"
    click.__annotations__["evt"] = gr.SelectData  # see demos/tabs/paint_by_example.py: a lazy gradio import

    io = dict(inputs=[w.image, w.mask_mode, w.mask_ratio, w.patches, w.seed, w.randomize],
              outputs=[w.masked_view, w.info, w.token_view, w.confidence_view, w.reconstruction,
                       w.reconstruction_only, w.table, w.seed])
    w.run.click(run_for_ui, **io, api_name="masked_image_modeling")
    scroll_into_view_on(w.run, "mim-masked")
    w.masked_view.select(user_errors(click), inputs=w.patches, outputs=[w.patches, w.mask_mode],
                         api_visibility="private").success(run_for_ui, **io, api_visibility="private")
