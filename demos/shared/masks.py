"""Masks for editing tabs: brushed in an image editor, uploaded, or made by Segment Anything
(`demos/shared/click_to_mask.py`); grown or shrunk, feathered, and pasted back so that every pixel outside
the mask stays the scene's own."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from demos.shared.inputs import rgb_image
from demos.shared.limits import LIMITS
from models import UserError


# ---- scene and mask inputs -------------------------------------------------------------------

def scene_image(scene: Any, what: str = "a scene to edit") -> Image.Image:
    """The scene as RGB at its full size. Larger than `max_image_side` is refused rather than scaled:
    masks, clicks and the pasted-back result are all in the scene's own pixels."""
    limit = LIMITS.max_image_side
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
