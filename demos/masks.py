"""Masks for editing tabs: brushed in an image editor or made by Segment Anything from clicks and a
box; grown or shrunk, feathered, and pasted back so that every pixel outside the mask stays the scene's own.

Clicks are given in the scene's own pixels (what `gr.Image.select` reports). SAM itself works at
1024 px on the long side, so a larger scene is shrunk first (`SAM_MAX_SIDE`): the clicks follow it
into that frame (`to_frame`) and the masks come back at the scene's size.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import models
from demos.inputs import rgb_image
from models import UserError
from models.cache import ProgressFn
from models.sam import SAM_VIT_B, SAM_VIT_H

SAM_MODELS = [SAM_VIT_B, SAM_VIT_H]
SAM_MAX_SIDE = 1024
MASK_CHOICES = ["best", "1", "2", "3"]  # SAM's three multimask outputs, or the one it scores highest
PROMPT_HELP = "one per line: `+ x y` (object), `- x y` (background), `box x0 y0 x1 y1`"


# ---- scene and mask inputs -------------------------------------------------------------------

def scene_image(scene: Any, what: str = "a scene to edit") -> Image.Image:
    """The scene as RGB at its full size. Larger than `max_image_side` is refused rather than scaled:
    masks, clicks and the pasted-back result are all in the scene's own pixels."""
    limit = models.settings.max_image_side
    if isinstance(scene, Image.Image) and max(scene.size) > limit:
        raise UserError(f"The scene is {scene.size[0]}x{scene.size[1]}; scenes up to {limit} pixels a side are "
                        "edited at full size. Please scale it down first.")
    return rgb_image(scene, what)


def binary_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A boolean H×W mask (True = repaint) from a PIL image, array or path; white/opaque means repaint."""
    if mask is None:
        raise UserError("Please mark the region to repaint: click the object, brush over it or upload a mask "
                        "(white = repaint).")
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
        raise UserError("The mask is empty: click the object or brush over the region the object should go in.")
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


# ---- post-processing and paste-back ----------------------------------------------------------

def grown(region: np.ndarray, grow: int) -> np.ndarray:
    """The mask dilated by `grow` px, or eroded by `-grow` px when negative (square structuring element)."""
    if grow == 0:
        return region
    mask = Image.fromarray(region.astype(np.uint8) * 255)
    size = 2 * abs(grow) + 1
    mask = mask.filter(ImageFilter.MaxFilter(size) if grow > 0 else ImageFilter.MinFilter(size))
    return np.asarray(mask) > 0


def feathered(region: np.ndarray, grow: int, feather: int) -> np.ndarray:
    """The paste-back weight in [0,1]: the mask grown (or shrunk) by `grow` px, its edge blurred by
    `feather` px. Exactly 0 wherever the blur does not reach, so those pixels stay the scene's own."""
    mask = Image.fromarray(grown(region, grow).astype(np.uint8) * 255)
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    return np.asarray(mask, dtype=np.float32) / 255.0


def square_around(region: np.ndarray, margin: float = 0.25) -> tuple[int, int, int, int]:
    """The smallest square holding the region's bounding box plus a margin (at least 16 px). It lies
    inside the scene when the scene is large enough; otherwise it overhangs the scene's edges (a crop
    pads there) rather than cut the region, so every pixel of `region` is inside the square."""
    height, width = region.shape
    rows, columns = np.nonzero(region)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    extent = int(max(bottom - top, right - left))
    side = max(16, extent, min(int(extent * (1 + 2 * margin)), width, height))
    x0 = _window_start(int(left), int(right), side, width)
    y0 = _window_start(int(top), int(bottom), side, height)
    return x0, y0, x0 + side, y0 + side


def _window_start(low: int, high: int, side: int, limit: int) -> int:
    """Start of a `side`-long window centred on [low, high) that covers it, kept inside [0, limit) if it fits."""
    earliest, latest = high - side, low  # any start in between covers [low, high)
    if side <= limit:
        earliest, latest = max(earliest, 0), min(latest, limit - side)
    return int(np.clip((low + high) // 2 - side // 2, earliest, latest))


def paste_back(scene: Image.Image, painted: Image.Image, box: tuple[int, int, int, int],
               weight: np.ndarray) -> Image.Image:
    """Blend the painted square into the scene by `weight`; where the weight is 0 the scene is untouched.
    The square must hold every pixel the weight touches (build it with `square_around(weight > 0)`),
    or the paste would stop in a hard seam at the square's edge."""
    height, width = weight.shape
    x0, y0, x1, y1 = box
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    outside = weight.copy()
    outside[top:bottom, left:right] = 0
    if outside.any():
        raise ValueError(f"the paste weight reaches outside the painted square {box}")
    canvas = np.asarray(scene, dtype=np.float32).copy()
    square = np.asarray(painted.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), dtype=np.float32)
    square = square[top - y0:bottom - y0, left - x0:right - x0]  # the part of an overhanging square on the scene
    alpha = weight[top:bottom, left:right, None]
    canvas[top:bottom, left:right] = alpha * square + (1 - alpha) * canvas[top:bottom, left:right]
    result = np.where(weight[..., None] > 0, np.clip(np.rint(canvas), 0, 255), np.asarray(scene, dtype=np.float32))
    return Image.fromarray(result.astype(np.uint8))


def tinted(picture: Image.Image, weight: np.ndarray, color: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    """The picture with the (soft) mask shown as a half-transparent colour."""
    alpha = 0.5 * weight[..., None].astype(np.float32)
    mixed = np.asarray(picture, dtype=np.float32) * (1 - alpha) + np.array(color, dtype=np.float32) * alpha
    return Image.fromarray(np.rint(mixed).astype(np.uint8))


# ---- Segment Anything prompts ----------------------------------------------------------------

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


def segment(sam: Any, scene: Image.Image, prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
    """SAM's three candidate masks (3×H×W bool, at the scene's size) and its predicted IoU for each."""
    scale = min(1.0, SAM_MAX_SIDE / max(scene.size))
    work = scene if scale == 1 else scene.resize((max(1, round(scene.width * scale)),
                                                  max(1, round(scene.height * scale))), Image.Resampling.BILINEAR)
    predictor = _predictor_for(sam, work)
    has_points = len(prompts.points) > 0
    masks, scores, _ = predictor.predict(
        point_coords=to_frame(prompts.points, scene.size, work.size) if has_points else None,
        point_labels=prompts.labels if has_points else None,
        box=to_frame(prompts.box, scene.size, work.size).reshape(4) if prompts.box is not None else None,
        multimask_output=True)
    if work is not scene:
        masks = np.stack([np.asarray(Image.fromarray(mask).resize(scene.size, Image.Resampling.NEAREST))
                          for mask in masks])
    return masks.astype(bool), scores


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
                      progress: ProgressFn | None = None) -> ClickMask:
    """Segment Anything from clicks and/or a box on the scene: its three candidate masks, and the
    chosen one (`best` = the highest predicted IoU) at the scene's full size."""
    picture = scene_image(scene)
    parsed = parse_prompts(prompts)
    if parsed.empty:
        raise UserError("Click on the object to mask (or drag a box: two clicks in box mode), or type prompts: "
                        f"{PROMPT_HELP}.")
    corners = parsed.points if parsed.box is None else np.vstack([parsed.points, parsed.box.reshape(2, 2)])
    if (corners < 0).any() or (corners[:, 0] > picture.width).any() or (corners[:, 1] > picture.height).any():
        raise UserError(f"A click lies outside the {picture.width}x{picture.height} scene; clear the clicks and "
                        "click on the scene again.")
    if model not in SAM_MODELS:
        raise UserError(f"Unknown Segment Anything model {model!r}; choose one of {', '.join(SAM_MODELS)}.")
    if choice not in MASK_CHOICES:
        raise UserError(f"Choose the mask as one of {', '.join(MASK_CHOICES)}.")
    masks, scores = segment(models.get(model, progress), picture, parsed)
    chosen = int(np.argmax(scores)) if choice == "best" else int(choice) - 1
    marked = draw_prompts(picture, parsed)
    candidates = [(tinted(marked, mask.astype(np.float32), (0, 120, 255)),
                   f"mask {index + 1} · predicted IoU {score:.2f}" + (" · chosen" if index == chosen else ""))
                  for index, (mask, score) in enumerate(zip(masks, scores))]
    return ClickMask(mask=Image.fromarray(masks[chosen].astype(np.uint8) * 255), candidates=candidates,
                     chosen=chosen, scores=[float(score) for score in scores])
