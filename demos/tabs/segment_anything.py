"""Segment Anything (Kirillov et al. 2023) as a promptable segmenter in its own right: clicks and a box
give three candidate masks with their predicted IoU; "segment everything" prompts SAM with a grid of
points (`SamAutomaticMaskGenerator`) and keeps the confident, stable, non-overlapping masks; and
Grounded-SAM (Ren et al. 2024) makes it text-promptable: Grounding DINO (Liu et al. 2023) turns
phrases into boxes, and each box becomes a SAM box prompt.

Every mask can be downloaded as a PNG (white = the region, the scene's size), which the
Paint-by-Example tab's mask upload takes as it is.
"""
from __future__ import annotations

import colorsys
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import models
from demos import ASSETS
from demos.shared.click_to_mask import (MASK_CHOICES, PROMPT_HELP, SAM_MODELS, full_size, run_click_to_mask, sam_frame,
                                 segment_boxes)
from demos.shared.comparison import PICTURE, Field, Method, Output, Task
from demos.shared.generation import png_with_parameters
from demos.shared.inputs import number_in_range, one_of, prompt_text
from demos.shared.masks import scene_image
from models import ProgressFn, UserError
from models.grounding_dino import GROUNDING_DINO_TINY
from models.sam import SAM_VIT_B

MAX_POINTS_PER_SIDE = 64  # the grid costs points_per_side² prompts; the paper's default is 32
DEFAULT_POINTS_PER_SIDE = 16  # a quarter of the paper's 1024 prompts: a few seconds on a CPU
MAX_BOXES = 20  # Grounding DINO boxes kept (highest scores first) after NMS
BOX_NMS = 0.8  # Grounded-SAM's demo removes boxes overlapping a better one by more than this IoU
MAX_OBJECT_PROMPT = 400  # characters of the Grounded-SAM text prompt
# Grounding DINO caps the long side at 1333 px: a thinner strip leaves its coarsest feature map empty.
MAX_ASPECT = 4
EXAMPLES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg")
EXAMPLES_ID = "sam-examples"


def palette(count: int) -> list[tuple[int, int, int]]:
    """`count` distinct, saturated colours (hues spread by the golden ratio)."""
    return [tuple(round(255 * channel) for channel in colorsys.hsv_to_rgb((index * 0.618034) % 1, 0.85, 0.95))
            for index in range(count)]


def colour_overlay(picture: Image.Image, masks: np.ndarray, colours: list[tuple[int, int, int]],
                   opacity: float = 0.55) -> Image.Image:
    """The picture with each mask (N×H×W bool) blended in its colour, in the given order (later masks
    over earlier ones); pixels under no mask are the picture's own."""
    canvas = np.asarray(picture, dtype=np.float32).copy()
    for mask, colour in zip(masks, colours):
        canvas[mask] = (1 - opacity) * canvas[mask] + opacity * np.array(colour, dtype=np.float32)
    return Image.fromarray(np.rint(canvas).astype(np.uint8))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "es" if noun.endswith("x") else "s")


def mask_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as the L picture the mask uploads take (white = the region)."""
    return Image.fromarray(mask.astype(np.uint8) * 255)


# ---- segment everything -------------------------------------------------------------------------

@dataclass
class EverythingResult:
    overlay: Image.Image  # every kept mask in its own colour
    masks: np.ndarray  # N×H×W bool at the image's size, largest first
    rows: list[list[Any]]  # per mask: number, area px, predicted IoU, stability score, box XYWH
    prompts: int  # points SAM was prompted with (points_per_side²)
    seconds: float  # the generator's call alone
    parameters: dict[str, Any]


def run_segment_everything(image: Any, model: str = SAM_VIT_B, points_per_side: int = DEFAULT_POINTS_PER_SIDE,
                           pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                           box_nms_thresh: float = 0.7, progress: ProgressFn | None = None) -> EverythingResult:
    """SAM's automatic mask generator: a points_per_side² grid of point prompts, three masks per point,
    kept if SAM's predicted IoU and the mask's stability (IoU of the mask thresholded at logit ±1) pass
    their thresholds, then non-maximum suppression by box IoU."""
    from segment_anything import SamAutomaticMaskGenerator

    picture = scene_image(image, "an image to segment")
    one_of(model, "Segment Anything model", SAM_MODELS)
    points_per_side = number_in_range(points_per_side, "Points per side", 1, MAX_POINTS_PER_SIDE, whole=True)
    pred_iou_thresh = number_in_range(pred_iou_thresh, "The predicted-IoU threshold", 0, 1)
    stability_score_thresh = number_in_range(stability_score_thresh, "The stability threshold", 0, 1)
    box_nms_thresh = number_in_range(box_nms_thresh, "The box NMS threshold", 0, 1)
    generator = SamAutomaticMaskGenerator(models.get(model, progress), points_per_side=points_per_side,
                                          pred_iou_thresh=pred_iou_thresh,
                                          stability_score_thresh=stability_score_thresh,
                                          box_nms_thresh=box_nms_thresh)
    work = sam_frame(picture)
    started = time.perf_counter()
    found = generator.generate(np.asarray(work))
    seconds = time.perf_counter() - started
    found.sort(key=lambda record: -record["area"])  # large first, so small masks stay visible on top
    scale = picture.width / work.width
    masks = full_size(np.array([record["segmentation"] for record in found], dtype=bool).reshape(-1, *work.size[::-1]),
                      picture.size)
    rows = [[index + 1, int(mask.sum()), round(float(record["predicted_iou"]), 3),
             round(float(record["stability_score"]), 3), [round(value * scale) for value in record["bbox"]]]
            for index, (mask, record) in enumerate(zip(masks, found))]
    parameters = dict(method="SAM automatic mask generator", model=model, points_per_side=points_per_side,
                      pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
                      box_nms_thresh=box_nms_thresh)
    return EverythingResult(overlay=colour_overlay(picture, masks, palette(len(masks))), masks=masks, rows=rows,
                            prompts=points_per_side**2, seconds=seconds, parameters=parameters)


# ---- Grounded-SAM -------------------------------------------------------------------------------

@dataclass
class GroundedResult:
    overlay: Image.Image  # masks in colour, boxes and labels drawn
    masks: np.ndarray  # one per box, N×H×W bool, in the order of `labels`
    boxes: np.ndarray  # N×4, x0 y0 x1 y1 in the image's pixels
    labels: list[str]  # the phrase Grounding DINO matched for each box
    box_scores: list[float]  # Grounding DINO's score per box
    mask_scores: list[float]  # SAM's predicted IoU per mask
    text: str  # the prompt as the detector read it
    seconds: float
    parameters: dict[str, Any]


def detector_text(text: str | None) -> str:
    """Grounding DINO's prompt format: lowercase phrases, each ending with a period ("a cat. a cup.").
    Phrases may also be separated by commas or new lines."""
    text = prompt_text(text, "the objects to find, e.g. `cat. remote control.`", MAX_OBJECT_PROMPT)
    phrases = [phrase.strip() for phrase in text.lower().replace(",", ".").replace("\n", ".").split(".")]
    return " ".join(f"{phrase}." for phrase in phrases if phrase)


_detector_lock = threading.Lock()


def detect(handle: Any, picture: Image.Image, text: str, box_threshold: float,
           text_threshold: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Grounding DINO's boxes for the phrases (x0 y0 x1 y1 in the picture's pixels, inside it), their
    scores and matched phrases, best first, after NMS."""
    import torch
    from torchvision.ops import nms

    inputs = handle.processor(images=picture, text=text, return_tensors="pt")
    limit = handle.model.config.max_text_len
    if inputs["input_ids"].shape[1] > limit:
        raise UserError(f"The prompt is {inputs['input_ids'].shape[1]} tokens long; Grounding DINO reads at most "
                        f"{limit}. Name fewer or shorter objects.")
    with torch.no_grad(), _detector_lock:
        outputs = handle.model(**inputs.to(handle.device, handle.model.dtype))
    found = handle.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
        target_sizes=[(picture.height, picture.width)])[0]
    boxes, scores = found["boxes"].float().cpu(), found["scores"].float().cpu()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, picture.width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, picture.height)
    keep = [int(index) for index in nms(boxes, scores, BOX_NMS)[:MAX_BOXES]]  # sorted by score
    keep = [index for index in keep if (boxes[index, 2:] > boxes[index, :2]).all()]  # not flat after clamping
    labels = [phrase(found["text_labels"][index], handle.processor.tokenizer.all_special_tokens) for index in keep]
    return boxes[keep].numpy().astype(np.float64).reshape(-1, 4), scores[keep].numpy(), labels


def phrase(label: str, special_tokens: list[str]) -> str:
    """A detected phrase without the tokenizer's markers ([SEP] where a phrase ran to the prompt's end)."""
    return " ".join(word for word in label.split() if word not in special_tokens) or "?"


def draw_boxes(picture: Image.Image, boxes: np.ndarray, labels: list[str],
               colours: list[tuple[int, int, int]]) -> Image.Image:
    """Boxes in their colours with a numbered label on each."""
    marked = picture.copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, max(picture.size) // 250)
    for index, (box, label, colour) in enumerate(zip(boxes, labels, colours)):
        draw.rectangle(tuple(float(value) for value in box), outline=colour, width=width)
        caption = f"{index + 1} {label}"
        left, top, right, bottom = draw.textbbox((float(box[0]) + width, float(box[1]) + width), caption)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
        draw.text((float(box[0]) + width, float(box[1]) + width), caption, fill=(0, 0, 0))
    return marked


def run_grounded_sam(image: Any, text: str | None, box_threshold: float = 0.3, text_threshold: float = 0.25,
                     model: str = SAM_VIT_B, progress: ProgressFn | None = None) -> GroundedResult:
    """Grounded-SAM: Grounding DINO's boxes for the text (in the image's own pixels) become SAM box
    prompts, one mask per box, labelled with the phrase the detector matched."""
    picture = scene_image(image, "an image to segment")
    if max(picture.size) > MAX_ASPECT * min(picture.size):
        raise UserError(f"The image is {picture.width}x{picture.height}; Grounding DINO needs one side at most "
                        f"{MAX_ASPECT}× the other. Crop it first.")
    text = detector_text(text)
    box_threshold = number_in_range(box_threshold, "The box threshold", 0, 1)
    text_threshold = number_in_range(text_threshold, "The text threshold", 0, 1)
    one_of(model, "Segment Anything model", SAM_MODELS)
    detector = models.get(GROUNDING_DINO_TINY, progress)
    sam = models.get(model, progress)
    started = time.perf_counter()
    boxes, box_scores, labels = detect(detector, picture, text, box_threshold, text_threshold)
    if len(boxes) == 0:
        raise UserError(f"Grounding DINO found nothing for {text!r} above the box threshold {box_threshold:g}; "
                        "lower it, or name the object differently.")
    masks, mask_scores = segment_boxes(sam, picture, boxes)
    colours = palette(len(boxes))
    overlay = draw_boxes(colour_overlay(picture, masks, colours), boxes, labels, colours)
    parameters = dict(method="Grounded-SAM", detector=models.REGISTRY[GROUNDING_DINO_TINY].checkpoint, sam=model,
                      text=text, box_threshold=box_threshold, text_threshold=text_threshold, box_nms=BOX_NMS)
    return GroundedResult(overlay=overlay, masks=masks, boxes=boxes, labels=labels,
                          box_scores=[float(score) for score in box_scores],
                          mask_scores=[float(score) for score in mask_scores], text=text,
                          seconds=time.perf_counter() - started, parameters=parameters)


# ---- Compare ------------------------------------------------------------------------------------

SEGMENT = Task("image + object → mask", (
    PICTURE,
    Field("object", "Object to segment (Grounded-SAM reads the words, SAM the click)", "text", "cat"),
    Field("click", "A click on the object, `x y` in image pixels (SAM)", "text", ""),
))


def _compare_sam_click(image: Any, object: str = "", click: str = "") -> Output:
    """SAM from one click (the image's centre when none is given), best of its three masks."""
    picture = scene_image(image, "an image to segment")
    point = click.strip() or f"{picture.width // 2} {picture.height // 2}"
    result = run_click_to_mask(picture, f"+ {point}")
    mask = np.asarray(result.mask) > 0
    return Output(image=colour_overlay(picture, mask[None], palette(1)),
                  text=f"click {point} · predicted IoU {result.scores[result.chosen]:.2f} · {int(mask.sum())} px")


def _compare_grounded_sam(image: Any, object: str = "", click: str = "", box_threshold: float = 0.3) -> Output:
    result = run_grounded_sam(image, object, box_threshold)
    return Output(image=result.overlay, text=" · ".join(f"{label} {score:.2f}"
                                                        for label, score in zip(result.labels, result.box_scores)))


COMPARE_METHODS = [
    Method(SEGMENT, "SAM (click)", _compare_sam_click),
    Method(SEGMENT, "Grounded-SAM (text)", _compare_grounded_sam, {"box_threshold": 0.3}),
]


# ---- the tab ------------------------------------------------------------------------------------

def layout() -> SimpleNamespace:
    """The tab's widgets, placed; `build_ui` wires them."""
    import gradio as gr

    from demos.shared.widgets import RESULT

    gr.Markdown(
        "One image, three ways to prompt SAM. **Click** the object (or two box corners): SAM answers with three "
        "candidate masks and its predicted IoU for each. **Segment everything** prompts it with a grid of "
        "points (points per side², three masks each) and keeps masks whose predicted IoU and stability pass "
        "the thresholds, then removes overlapping ones (box NMS). **Grounded-SAM** types instead of clicking: "
        "Grounding DINO finds a box for each phrase, and each box becomes a SAM box prompt. Download a mask "
        "as PNG to upload it as the mask in Paint-by-Example."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image: click the object", type="pil", height=360, elem_id="sam-image")
            model = gr.Dropdown(SAM_MODELS, value=SAM_MODELS[0], label="Segment Anything")
            with gr.Accordion("Click or box", open=True):
                with gr.Row():
                    click_mode = gr.Radio([("object (+)", "object"), ("background (−)", "background"),
                                           ("box corner", "box")], value="object", label="A click adds")
                    choice = gr.Radio(MASK_CHOICES, value="best", label="Mask")
                prompts = gr.Textbox(label=f"Clicks in image pixels ({PROMPT_HELP})", lines=2, elem_id="sam-prompts")
                with gr.Row():
                    segment_button = gr.Button("Segment the clicks", size="sm")
                    clear = gr.Button("Clear clicks", size="sm")
            with gr.Accordion("Segment everything", open=True):
                points_per_side = gr.Slider(1, MAX_POINTS_PER_SIDE, value=DEFAULT_POINTS_PER_SIDE, step=1,
                                            label="Points per side (the paper: 32)", elem_id="sam-points")
                with gr.Row():
                    pred_iou = gr.Slider(0, 1, value=0.88, step=0.01, label="Predicted-IoU threshold",
                                         elem_id="sam-iou")
                    stability = gr.Slider(0, 1, value=0.95, step=0.01, label="Stability threshold",
                                          elem_id="sam-stability")
                    nms = gr.Slider(0, 1, value=0.7, step=0.01, label="Box NMS IoU", elem_id="sam-nms")
                everything_button = gr.Button("Segment everything", variant="primary", elem_id="sam-everything")
            with gr.Accordion("Grounded-SAM: text → boxes → masks", open=True):
                text = gr.Textbox(label="Objects, each ending with a period", value="cat.", elem_id="sam-text")
                with gr.Row():
                    box_threshold = gr.Slider(0, 1, value=0.3, step=0.01, label="Box threshold",
                                              elem_id="sam-box-threshold")
                    text_threshold = gr.Slider(0, 1, value=0.25, step=0.01, label="Text threshold")
                grounded_button = gr.Button("Find and segment", variant="primary", elem_id="sam-grounded")
        with gr.Column():
            result = gr.Image(label="Masks", type="pil", format="png", height=360, elem_id="sam-result",
                              elem_classes=RESULT)
            info = gr.Markdown(elem_id="sam-info")
            candidates = gr.Gallery(label="Click: SAM's three masks (predicted IoU)", columns=3, height=200,
                                    object_fit="contain", format="png")
            table = gr.Dataframe(headers=["#", "label / area px", "score", "stability / SAM IoU", "box"],
                                 label="Masks", interactive=False, max_height=240)
            mask_file = gr.File(label="Mask PNG (white = region): upload it as Paint-by-Example's mask")
    gr.Examples([[str(ASSETS / name)] for name in EXAMPLES], inputs=image,
                label="Examples (public-domain images from scikit-image)", elem_id=EXAMPLES_ID)
    return SimpleNamespace(
        image=image, model=model, click_mode=click_mode, choice=choice, prompts=prompts, segment=segment_button,
        clear=clear, points_per_side=points_per_side, pred_iou=pred_iou, stability=stability, nms=nms,
        everything=everything_button, text=text, box_threshold=box_threshold, text_threshold=text_threshold,
        grounded=grounded_button, result=result, info=info, candidates=candidates, table=table, mask_file=mask_file)


def build_ui() -> None:
    import gradio as gr

    from demos.shared.click_to_mask import segment_on_click
    from demos.shared.handlers import user_errors
    from demos.shared.widgets import scroll_into_view_on

    w = layout()

    @user_errors
    def segment_for_ui(image, prompts, model, choice, progress=gr.Progress(track_tqdm=True)):
        result = run_click_to_mask(image, prompts, model, choice, progress, clip_to_box=True)
        chosen = result.candidates[result.chosen][0]
        rows = [[index + 1, "chosen" if index == result.chosen else "candidate", round(score, 3), "", ""]
                for index, score in enumerate(result.scores)]
        summary = f"**mask {result.chosen + 1} of 3** · predicted IoU {result.scores[result.chosen]:.2f}"
        mask_path = png_with_parameters(result.mask, {"method": "SAM click", "prompts": prompts, "model": model},
                                        stem="sam-mask")
        return chosen, summary, result.candidates, rows, mask_path

    @user_errors
    def everything_for_ui(image, model, points_per_side, pred_iou, stability, nms,
                          progress=gr.Progress(track_tqdm=True)):
        result = run_segment_everything(image, model, points_per_side, pred_iou, stability, nms, progress)
        summary = (f"**{plural(len(result.masks), 'mask')}** from {result.prompts} point prompts "
                   f"({result.prompts * 3} candidates) in {result.seconds:.2f} s")
        mask_path = (png_with_parameters(mask_image(result.masks.any(axis=0)), result.parameters, stem="sam-everything")
                     if len(result.masks) else None)
        return result.overlay, summary, [], result.rows, mask_path

    @user_errors
    def grounded_for_ui(image, text, box_threshold, text_threshold, model, progress=gr.Progress(track_tqdm=True)):
        result = run_grounded_sam(image, text, box_threshold, text_threshold, model, progress)
        rows = [[index + 1, label, round(box_score, 3), round(mask_score, 3), [round(v) for v in box]]
                for index, (label, box_score, mask_score, box) in
                enumerate(zip(result.labels, result.box_scores, result.mask_scores, result.boxes))]
        count = len(result.labels)
        summary = (f"**{plural(count, 'box')}** for `{result.text}` → {plural(count, 'SAM mask')} in "
                   f"{result.seconds:.2f} s (box score = Grounding DINO's, SAM IoU = SAM's prediction)")
        mask_path = png_with_parameters(mask_image(result.masks.any(axis=0)), result.parameters, stem="grounded-sam")
        return result.overlay, summary, [], rows, mask_path

    outputs = [w.result, w.info, w.candidates, w.table, w.mask_file]
    click_io = dict(inputs=[w.image, w.prompts, w.model, w.choice], outputs=outputs)
    gr.on([w.image.upload, w.image.clear, w.clear.click], lambda: "", outputs=w.prompts, api_visibility="private")
    segment_on_click(w.image, w.prompts, w.click_mode, w.model, w.choice, outputs, segment_for_ui)
    gr.on([w.segment.click, w.prompts.submit], segment_for_ui, **click_io, api_name="sam_click")
    w.everything.click(everything_for_ui, inputs=[w.image, w.model, w.points_per_side, w.pred_iou, w.stability, w.nms],
                       outputs=outputs, api_name="segment_everything")
    gr.on([w.grounded.click, w.text.submit], grounded_for_ui,
          inputs=[w.image, w.text, w.box_threshold, w.text_threshold, w.model], outputs=outputs,
          api_name="grounded_sam")
    for button in (w.everything, w.grounded):  # started from the bottom of the settings: show the result
        scroll_into_view_on(button, "sam-result")
