"""Click to mask: Segment Anything (Kirillov et al. 2023) turns clicks and/or a box on a scene into
three candidate masks with their predicted IoU, for the editing tabs (Paint-by-Example).

Clicks are given in the scene's own pixels (what `gr.Image.select` reports). SAM itself works at
1024 px on the long side, so a larger scene is shrunk first (`SAM_MAX_SIDE`): the clicks follow it
into that frame (`to_frame`) and the masks come back at the scene's size. Further clicks on the
same scene reuse SAM's image embedding.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr  # at the top: `gr.SelectData` in a handler's annotation is resolved in this module's globals
import numpy as np
from PIL import Image, ImageDraw

import models
from demos.shared.handlers import user_errors
from demos.shared.inputs import one_of
from demos.shared.masks import scene_image, tinted
from models import ProgressFn, UserError
from models.sam import SAM_VIT_B, SAM_VIT_H

SAM_MODELS = [SAM_VIT_B, SAM_VIT_H]
SAM_MAX_SIDE = 1024
MASK_CHOICES = ["best", "1", "2", "3"]  # SAM's three multimask outputs, or the one it scores highest
PROMPT_HELP = "one per line: `+ x y` (object), `- x y` (background), `box x0 y0 x1 y1`"


@dataclass(frozen=True)
class Prompts:
    """SAM's prompts in scene pixels: points with labels (1 = object, 0 = background), and a box."""

    points: np.ndarray  # N×2 (x, y)
    labels: np.ndarray  # N, int
    box: np.ndarray | None  # x0, y0, x1, y1

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and self.box is None


def parse_prompts(text: str | None) -> Prompts:
    """Prompts from text, PROMPT_HELP's format. A `box x y` line is a first corner waiting for the
    second click and is ignored; a later box replaces an earlier one."""
    points, labels, box = [], [], None
    for line in (text or "").splitlines():
        kind, *rest = re.split(r"[\s,]+", line.strip()) or [""]
        try:
            numbers = [float(number) for number in rest]
        except ValueError:
            numbers = []
        if kind in ("+", "-") and len(numbers) == 2:
            points.append(numbers)
            labels.append(1 if kind == "+" else 0)
        elif kind == "box" and len(numbers) == 4:
            x0, y0, x1, y1 = numbers
            box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], dtype=np.float64)
        elif kind and not (kind == "box" and len(numbers) == 2):
            raise UserError(f"Cannot read the prompt line {line.strip()!r}: {PROMPT_HELP}.")
    return Prompts(np.array(points, dtype=np.float64).reshape(-1, 2), np.array(labels, dtype=np.int64), box)


def add_click(text: str | None, x: int, y: int, mode: str) -> str:
    """The prompt text with one more click: an object or background point, or a box corner (the
    second corner completes the pending box, which replaces any earlier one)."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if mode == "box":
        pending = [line for line in lines if line.split()[0] == "box" and len(line.split()) == 3]
        lines = [line for line in lines if line.split()[0] != "box"]
        lines.append(f"{pending[-1]} {x} {y}" if pending else f"box {x} {y}")
    else:
        lines.append(f"{'+' if mode == 'object' else '-'} {x} {y}")
    return "\n".join(lines)


def to_frame(points: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates (x, y columns; boxes as x0, y0, x1, y1) from an image of `from_size` (w, h)
    into the same picture resized to `to_size`."""
    scale = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * scale


_predictors: dict[tuple[int, str], Any] = {}
_predictors_lock = threading.Lock()


def _predictor_for(sam: Any, picture: Image.Image) -> Any:
    """A SamPredictor with `picture` set; the last image's is kept per model, so further clicks on
    the same scene skip SAM's image encoder (the expensive part)."""
    from segment_anything import SamPredictor

    digest = hashlib.blake2b(picture.tobytes(), digest_size=16).hexdigest() + f"{picture.size}"
    with _predictors_lock:
        cached = _predictors.get((id(sam), digest))
    if cached is not None:
        return cached
    predictor = SamPredictor(sam)
    predictor.set_image(np.asarray(picture))
    with _predictors_lock:
        for key in [key for key in _predictors if key[0] == id(sam)]:
            del _predictors[key]
        _predictors[(id(sam), digest)] = predictor
    return predictor


def sam_frame(scene: Image.Image) -> Image.Image:
    """The scene as SAM sees it: shrunk to `SAM_MAX_SIDE` on the long side when larger (SAM itself
    works at 1024 px), otherwise the scene itself."""
    scale = min(1.0, SAM_MAX_SIDE / max(scene.size))
    if scale == 1:
        return scene
    return scene.resize((max(1, round(scene.width * scale)), max(1, round(scene.height * scale))),
                        Image.Resampling.BILINEAR)


def full_size(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean masks (N×h×w) from SAM's frame back at the scene's size (w, h)."""
    if masks.shape[1:] == (size[1], size[0]):
        return masks.astype(bool)
    return np.stack([np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)) > 0
                     for mask in masks])


def inside_box(masks: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The masks with every pixel outside the box (x0, y0, x1, y1, scene pixels) cleared: SAM's mask
    for a box prompt may spill past the box it was given."""
    x0, y0 = np.floor(box[:2]).astype(int).clip(0)
    x1, y1 = np.ceil(box[2:]).astype(int)
    clipped = np.zeros_like(masks)
    clipped[:, y0:y1, x0:x1] = masks[:, y0:y1, x0:x1]
    return clipped


def segment(sam: Any, scene: Image.Image, prompts: Prompts, clip_to_box: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SAM's three candidate masks (3×H×W bool, at the scene's size) and its predicted IoU for each;
    `clip_to_box` keeps the masks inside the prompt's box."""
    work = sam_frame(scene)
    predictor = _predictor_for(sam, work)
    has_points = len(prompts.points) > 0
    masks, scores, _ = predictor.predict(
        point_coords=to_frame(prompts.points, scene.size, work.size) if has_points else None,
        point_labels=prompts.labels if has_points else None,
        box=to_frame(prompts.box, scene.size, work.size).reshape(4) if prompts.box is not None else None,
        multimask_output=True)
    masks = full_size(masks, scene.size)
    if clip_to_box and prompts.box is not None:
        masks = inside_box(masks, prompts.box)
    return masks, scores


def segment_boxes(sam: Any, scene: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mask per box (N×4, x0 y0 x1 y1 in scene pixels): SAM's single-mask output for that box
    prompt, kept inside the box, with its predicted IoU (N×H×W bool, N). The image embedding is computed
    once for all boxes."""
    work = sam_frame(scene)
    predictor = _predictor_for(sam, work)
    masks, scores = [], []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        mask, score, _ = predictor.predict(box=to_frame(box, scene.size, work.size).reshape(4), multimask_output=False)
        masks.append(inside_box(full_size(mask, scene.size), box)[0])
        scores.append(float(score[0]))
    return np.array(masks, dtype=bool).reshape(-1, scene.height, scene.width), np.array(scores)


def draw_prompts(picture: Image.Image, prompts: Prompts) -> Image.Image:
    """The picture with positive clicks green, negative clicks red and the box yellow."""
    marked = picture.copy()
    draw = ImageDraw.Draw(marked)
    radius = max(4, max(picture.size) // 60)
    for (x, y), label in zip(prompts.points, prompts.labels):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(0, 220, 0) if label else (230, 0, 0),
                     outline=(255, 255, 255), width=max(1, radius // 3))
    if prompts.box is not None:
        draw.rectangle(tuple(prompts.box), outline=(255, 220, 0), width=max(2, radius // 2))
    return marked


@dataclass
class ClickMask:
    mask: Image.Image  # the chosen candidate, L at the scene's size (white = region)
    candidates: list[tuple[Image.Image, str]]  # each of SAM's three masks over the scene, with its score
    chosen: int  # 0-based index of the chosen candidate
    scores: list[float]


def run_click_to_mask(scene: Any, prompts: str | None, model: str = SAM_VIT_B, choice: str = "best",
                      progress: ProgressFn | None = None, clip_to_box: bool = False) -> ClickMask:
    """Segment Anything from clicks and/or a box on the scene: its three candidate masks, and the
    chosen one (`best` = the highest predicted IoU) at the scene's full size; `clip_to_box` keeps
    the masks inside the box prompt."""
    picture = scene_image(scene)
    parsed = parse_prompts(prompts)
    if parsed.empty:
        raise UserError("Click on the object to mask (or drag a box: two clicks in box mode), or type prompts: "
                        f"{PROMPT_HELP}.")
    corners = parsed.points if parsed.box is None else np.vstack([parsed.points, parsed.box.reshape(2, 2)])
    if (corners < 0).any() or (corners[:, 0] > picture.width).any() or (corners[:, 1] > picture.height).any():
        raise UserError(f"A click lies outside the {picture.width}x{picture.height} scene; clear the clicks and "
                        "click on the scene again.")
    one_of(model, "Segment Anything model", SAM_MODELS)
    if choice not in MASK_CHOICES:
        raise UserError(f"Choose the mask as one of {', '.join(MASK_CHOICES)}.")
    masks, scores = segment(models.get(model, progress), picture, parsed, clip_to_box)
    chosen = int(np.argmax(scores)) if choice == "best" else int(choice) - 1
    marked = draw_prompts(picture, parsed)
    candidates = [(tinted(marked, mask.astype(np.float32), (0, 120, 255)),
                   f"{index + 1} · IoU {score:.2f}" + (" · chosen" if index == chosen else ""))  # fits a thumbnail
                  for index, (mask, score) in enumerate(zip(masks, scores))]
    return ClickMask(mask=Image.fromarray(masks[chosen].astype(np.uint8) * 255), candidates=candidates,
                     chosen=chosen, scores=[float(score) for score in scores])


def segment_on_click(scene: gr.Image, prompts: gr.Textbox, click_mode: gr.Radio, model: gr.Dropdown,
                     choice: gr.Radio, outputs: list, segment: Callable) -> None:
    """Click-to-mask wiring: a click on `scene` adds a point (or a box corner, per `click_mode`) to the
    prompts text, then `segment(scene, prompts, model, choice, progress)` — the tab's own public
    step — fills `outputs`, unless the click was the first corner of a box, which waits for the second."""
    def click(prompts_text: str, mode: str, evt: gr.SelectData) -> str:
        return add_click(prompts_text, *evt.index, mode)

    @user_errors
    def segment_after_click(picture, prompts_text, model_name, mask_choice, progress=gr.Progress(track_tqdm=True)):
        if parse_prompts(prompts_text).empty:
            return gr.skip() if len(outputs) == 1 else tuple(gr.skip() for _ in outputs)
        return segment(picture, prompts_text, model_name, mask_choice, progress)

    # A click while the previous one is being segmented still adds its point; then the latest clicks are
    # segmented when that run ends (gradio's default, "once", would drop that second segmentation).
    scene.select(user_errors(click), inputs=[prompts, click_mode], outputs=prompts, api_visibility="private",
                 trigger_mode="multiple").success(segment_after_click, inputs=[scene, prompts, model, choice],
                                                  outputs=outputs, api_visibility="private", trigger_mode="always_last")
