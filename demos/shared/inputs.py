"""Validation at the boundary of every `run_*`: turn what a user may send into clean values or a
`UserError` that says what to do."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from demos.shared.limits import LIMITS
from models import UserError

MIN_IMAGE_SIDE = 16
MAX_PROMPT_CHARS = 2000
UNREADABLE_IMAGE = "This file is not an image we can read (PNG, JPEG, WebP, GIF, BMP or TIFF)."


def rgb_image(image: Any, what: str = "an image") -> Image.Image:
    """An RGB PIL image from a PIL image, numpy array or file path.

    Transparency is flattened onto white, grayscale is expanded, and images larger than
    `LIMITS.max_image_side` are scaled down (keeping the aspect ratio).
    """
    if image is None:
        raise UserError(f"Please provide {what}: upload one, paste it, or click an example.")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif isinstance(image, (str, Path, Image.Image)):
        image = decoded_image(image, what)
    else:
        raise UserError(f"Expected {what}, got {type(image).__name__}.")
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UserError(
            f"{what[0].upper() + what[1:]} is {width}x{height} pixels; it must be at least "
            f"{MIN_IMAGE_SIDE} pixels on each side."
        )
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flattened = Image.new("RGB", rgba.size, (255, 255, 255))
        flattened.paste(rgba, mask=rgba.getchannel("A"))
        image = flattened
    image = image.convert("RGB")
    limit = LIMITS.max_image_side
    if max(image.size) > limit:
        image = image.copy()
        image.thumbnail((limit, limit), Image.Resampling.LANCZOS)
    return image


def decoded_image(image: str | Path | Image.Image, what: str = "an image") -> Image.Image:
    """Decode the pixels now: PIL opens files lazily, so a truncated or non-image upload would
    otherwise fail deep inside a pipeline with a library error that names the server's file path."""
    try:
        if not isinstance(image, Image.Image):
            image = Image.open(image)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise UserError(f"Could not read {what}. {UNREADABLE_IMAGE}") from None
    return image


def text_items(text: str | Sequence[str] | None, what: str, limit: int) -> list[str]:
    """Items from comma- or newline-separated text (or a list): stripped, non-empty, unique."""
    if text is None:
        text = ""
    raw = re.split(r"[,\n]", text) if isinstance(text, str) else list(text)
    items = [str(item).strip() for item in raw if str(item).strip()]
    if not items:
        raise UserError(f"Please enter at least one {what}, separated by commas or new lines.")
    if len(items) > limit:
        raise UserError(f"At most {limit} {what}s at once (got {len(items)}).")
    seen: dict[str, str] = {}
    duplicates = []
    for item in items:
        key = item.casefold()
        if key in seen:
            duplicates.append(item)
        seen[key] = item
    if duplicates:
        raise UserError(
            f"Duplicate {what}: {', '.join(sorted(set(duplicates)))}. Each {what} must appear once, "
            "otherwise the scores split between the copies."
        )
    too_long = [item for item in items if len(item) > MAX_PROMPT_CHARS]
    if too_long:
        raise UserError(f"A {what} is {len(too_long[0])} characters long; keep each under {MAX_PROMPT_CHARS}.")
    return items


def prompt_text(prompt: str | None, what: str, limit: int = 400) -> str:
    """A stripped, non-empty text prompt of at most `limit` characters; `what` says what it should describe."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise UserError(f"Please enter a prompt that describes {what}.")
    if len(prompt) > limit:
        raise UserError(f"The prompt is {len(prompt)} characters long; keep it under {limit}.")
    return prompt


def one_of(value: Any, what: str, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices` (a dropdown's options), else a `UserError` listing them:
    an API client can send any string where the page offers a list."""
    if value not in choices:
        raise UserError(f"Unknown {what} {value!r}; choose one of {', '.join(choices)}.")
    return value


def number_in_range(value: Any, what: str, low: float, high: float, whole: bool = False) -> Any:
    """A numeric setting (steps, scales ...) within [low, high]; `whole` for counts."""
    try:
        number = int(value) if whole else float(value)
    except (TypeError, ValueError, OverflowError):  # None, text, NaN, ±inf
        raise UserError(f"{what} must be a number, not {value!r}.") from None
    if whole and number != float(value):
        raise UserError(f"{what} must be a whole number (got {value}).")
    if not low <= number <= high:
        raise UserError(f"{what} must be between {low:g} and {high:g} (got {value}).")
    return number
