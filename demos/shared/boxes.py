"""The box editor shared by the box-to-image tabs (GLIGEN, layout guidance): a canvas to draw labelled
boxes, a text form that is the single source of truth (`phrase: x0,y0,x1,y1` per line, 0-1 or pixel
coordinates on a 512x512 canvas), example layouts from assets/layouts/*.json, and the validation
every `run_*` applies at its boundary."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from demos import ASSETS
from models import UserError

CANVAS_SIDE = 512  # pixel coordinates refer to this square (SD-1.x's output size)
LAYOUTS = ASSETS / "layouts"
COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
          (240, 50, 230), (210, 245, 60)]
_LINE = re.compile(r"^(?P<phrase>.*?)\s*:\s*(?P<numbers>[^:]+)$")


@dataclass(frozen=True)
class Box:
    """One labelled box, coordinates normalised to [0, 1], origin top-left, x0 < x1, y0 < y1."""

    phrase: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def xyxy(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))


def normalise(phrase: str, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
    """A box from pixel coordinates on a `width` x `height` image."""
    return Box(phrase, x0 / width, y0 / height, x1 / width, y1 / height)


def _box_from_numbers(phrase: str, numbers: list[float], where: str) -> Box:
    if len(numbers) != 4:
        raise UserError(f"{where}: give four numbers x0,y0,x1,y1 after the phrase (got {len(numbers)}).")
    if all(0 <= n <= 1 for n in numbers):
        return Box(phrase, *numbers)
    if not all(n == int(n) for n in numbers):
        raise UserError(f"{where}: {', '.join(f'{n:g}' for n in numbers)} reaches outside the image in 0-1 "
                        f"coordinates; pixel coordinates (0-{CANVAS_SIDE}) are whole numbers.")
    return normalise(phrase, *numbers, CANVAS_SIDE, CANVAS_SIDE)


def parse_layout(text: str | None) -> list[Box]:
    """Boxes from the text form: one `phrase: x0,y0,x1,y1` per line (all four in 0-1: normalised,
    otherwise whole pixels of the 512x512 canvas), or a JSON layout as in assets/layouts. Not validated."""
    text = (text or "").strip()
    if text.startswith(("{", "[")):
        return _parse_json(text)
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise UserError(f"Line {number} ({line.strip()!r}): write it as `phrase: x0, y0, x1, y1`.")
        try:
            numbers = [float(n) for n in re.split(r"[,\s]+", match["numbers"].strip()) if n]
        except ValueError:
            raise UserError(f"Line {number} ({line.strip()!r}): the coordinates must be numbers.") from None
        boxes.append(_box_from_numbers(match["phrase"].strip(), numbers, f"Line {number}"))
    return boxes


def _parse_json(text: str) -> list[Box]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"The layout looks like JSON but does not parse: {error}.") from None
    items = data.get("boxes", []) if isinstance(data, dict) else data
    boxes = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "box" not in item:
            raise UserError(f"JSON box {number}: expected {{\"phrase\": ..., \"box\": [x0, y0, x1, y1]}}.")
        boxes.append(_box_from_numbers(str(item.get("phrase", "")).strip(), list(map(float, item["box"])),
                                       f"JSON box {number}"))
    return boxes


def validate_boxes(boxes: list[Box], max_boxes: int) -> list[Box]:
    """Every box labelled, inside the image, with an area; at least one, at most `max_boxes`."""
    if not boxes:
        raise UserError("Please draw or type at least one box (`phrase: x0, y0, x1, y1`).")
    if len(boxes) > max_boxes:
        raise UserError(f"At most {max_boxes} boxes at once (got {len(boxes)}).")
    for number, box in enumerate(boxes, start=1):
        name = f"Box {number} ({box.phrase!r})" if box.phrase else f"Box {number}"
        if not box.phrase:
            raise UserError(f"{name} has no phrase: label it with the words it should contain.")
        if min(box.xyxy) < 0 or max(box.xyxy) > 1:
            raise UserError(f"{name} reaches outside the image: coordinates must lie in 0-1 "
                            f"(or 0-{CANVAS_SIDE} pixels).")
        if box.x1 <= box.x0 or box.y1 <= box.y0:
            raise UserError(f"{name} has no area: x1 must be greater than x0 and y1 greater than y0.")
    return boxes


def layout_to_text(boxes: list[Box]) -> str:
    return "\n".join(f"{b.phrase}: {b.x0:.3f}, {b.y0:.3f}, {b.x1:.3f}, {b.y1:.3f}" for b in boxes)


def boxes_from_annotation(value: dict | None) -> list[Box]:
    """Boxes drawn on the gradio_image_annotation canvas (pixels of its background image)."""
    if not value:
        return []
    image = value.get("image")
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            width, height = opened.size
    elif isinstance(image, np.ndarray):
        height, width = image.shape[:2]
    else:
        width = height = CANVAS_SIDE
    return [normalise(str(b.get("label") or "").strip(), float(b["xmin"]), float(b["ymin"]),
                      float(b["xmax"]), float(b["ymax"]), width, height) for b in value.get("boxes", [])]


def annotation_from_boxes(boxes: list[Box], background: Any) -> dict:
    """The canvas value that shows `boxes` over `background`."""
    return {"image": background, "boxes": [
        dict(zip(("xmin", "ymin", "xmax", "ymax"), box.to_pixels(CANVAS_SIDE, CANVAS_SIDE)), label=box.phrase,
             color=COLORS[index % len(COLORS)]) for index, box in enumerate(boxes)]}


def draw_boxes(image: Image.Image, boxes: list[Box], width: int = 3) -> Image.Image:
    """A copy of `image` with each box outlined and labelled."""
    drawn = image.convert("RGB").copy()
    draw = ImageDraw.Draw(drawn)
    for index, box in enumerate(boxes):
        color = COLORS[index % len(COLORS)]
        x0, y0, x1, y1 = box.to_pixels(*drawn.size)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=width)
        draw.text((x0 + 4, y0 + 2), box.phrase, fill=color)
    return drawn


@dataclass(frozen=True)
class ExampleLayout:
    name: str
    prompt: str
    text: str  # the layout in the text form


def example_layouts() -> list[ExampleLayout]:
    """Every assets/layouts/*.json: {"prompt": ..., "boxes": [{"phrase": ..., "box": [x0,y0,x1,y1]}]}."""
    layouts = []
    for path in sorted(LAYOUTS.glob("*.json")):
        data = json.loads(path.read_text())
        layouts.append(ExampleLayout(path.stem, data["prompt"], layout_to_text(_parse_json(json.dumps(data)))))
    return layouts


def blank_canvas() -> np.ndarray:
    """A light grid to draw on (the canvas needs a background image)."""
    canvas = np.full((CANVAS_SIDE, CANVAS_SIDE, 3), 245, dtype=np.uint8)
    canvas[::64, :] = canvas[:, ::64] = 210
    return canvas


def box_editor(default: ExampleLayout | None = None):
    """The canvas + text form. The text is what the run reads; two buttons copy the drawn boxes into
    it and redraw the typed ones (explicit, because the canvas also fires `change` when it mounts).
    Examples fill prompt and text. Returns the (prompt, layout_text) components."""
    import gradio as gr
    from gradio_image_annotation import image_annotator

    from demos.shared.handlers import user_errors

    layouts = example_layouts()
    default = default or (layouts[0] if layouts else None)
    prompt = gr.Textbox(label="Prompt", value=default.prompt if default else "", lines=2)
    with gr.Row():
        canvas = image_annotator(
            value=annotation_from_boxes(parse_layout(default.text) if default else [], blank_canvas()),
            label="Draw boxes, label each with a phrase of the prompt", label_list=[],
            image_type="numpy", sources=["upload"], height=360, width=360, elem_classes=["box-canvas"])
        with gr.Column():
            text = gr.Textbox(
                label="Boxes (`phrase: x0, y0, x1, y1` per line; 0-1, or pixels of the 512x512 canvas)",
                value=default.text if default else "", lines=5, elem_classes=["box-text"])
            with gr.Row():
                use = gr.Button("Use the drawn boxes", size="sm")
                show = gr.Button("Show typed boxes on the canvas", size="sm")
    if layouts:
        # Labelled by their prompt: a two-column table squeezed one word per line and showed the text
        # box's label, backticks and all, as its header.
        gr.Examples([[layout.prompt, layout.text] for layout in layouts], inputs=[prompt, text],
                    example_labels=[layout.prompt for layout in layouts], label="Example layouts (assets/layouts)")

    @user_errors
    def canvas_to_text(value):
        return layout_to_text(boxes_from_annotation(value))

    @user_errors
    def text_to_canvas(layout_text):
        return annotation_from_boxes(parse_layout(layout_text), blank_canvas())

    use.click(canvas_to_text, inputs=canvas, outputs=text, api_visibility="private")
    show.click(text_to_canvas, inputs=text, outputs=canvas, api_visibility="private")
    return prompt, text
