"""Small diagrams drawn for this project (no copied figures): a spec of labelled boxes, read left to right,
with arrows between them and side inputs feeding a box from below, rendered to an inline SVG string in
one language.

A spec is `{"stages": [label, ...], "inputs": [[stage index, label], ...]}`, a label being
`{"en": ..., "zh": ...}` or one string for both; `"loop": true` draws an arrow from the last stage back to
the first (an iterated step, e.g. a sampler).
"""
from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

FONT = 13  # px
PAD, GAP, HEIGHT, ROW = 10, 34, 36, 62  # box padding, space between boxes (the arrow), box height, row pitch
STAGE_FILL, INPUT_FILL, INK, LINE = "#dbeafe", "#fef3c7", "#1f2937", "#6b7280"


def label_in(label: str | dict[str, str], language: str) -> str:
    if isinstance(label, str):
        return label
    return label.get(language) or label["en"]


def text_width(text: str) -> float:
    """About how wide `text` is at FONT px: a CJK character is about a full em, a Latin one about 0.6."""
    wide = len(re.findall(r"[\u2e80-\u9fff\uff00-\uffef]", text))
    return FONT * (wide + 0.6 * (len(text) - wide))


def check_spec(spec: Any) -> list[str]:
    """What is wrong with a diagram spec (empty if nothing)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), list) or not spec["stages"]:
        return ["a diagram needs a non-empty list of stages"]
    problems = [f"unknown field {name!r}" for name in set(spec) - {"stages", "inputs", "loop"}]
    inputs = [pair for pair in spec.get("inputs", []) if isinstance(pair, list) and len(pair) == 2]
    labels = list(spec["stages"]) + [label for _, label in inputs]
    for label in labels:
        if not (isinstance(label, str) and label.strip()) and not (
                isinstance(label, dict) and set(label) == {"en", "zh"} and all(str(v).strip() for v in label.values())):
            problems.append(f"label {label!r} must be a text or {{'en': ..., 'zh': ...}}")
    for pair in spec.get("inputs", []):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int)
                and 0 <= pair[0] < len(spec["stages"])):
            problems.append(f"input {pair!r} must be [stage index, label]")
    return problems


def _box(x: float, y: float, width: float, text: str, fill: str) -> str:
    return (f'<rect x="{x:.0f}" y="{y}" width="{width:.0f}" height="{HEIGHT}" rx="6" fill="{fill}" stroke="{LINE}"/>'
            f'<text x="{x + width / 2:.0f}" y="{y + HEIGHT / 2 + FONT * 0.35:.0f}" text-anchor="middle" '
            f'font-size="{FONT}" fill="{INK}">{escape(text)}</text>')


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    """A line with its head drawn as a triangle (no <marker>: ids would clash between diagrams of a page)."""
    length = max(((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5, 1e-6)
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    bx, by = x2 - 8 * ux, y2 - 8 * uy
    head = f"{x2:.0f},{y2:.0f} {bx - 4 * uy:.0f},{by + 4 * ux:.0f} {bx + 4 * uy:.0f},{by - 4 * ux:.0f}"
    return (f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{bx:.0f}" y2="{by:.0f}" stroke="{LINE}" stroke-width="1.5"/>'
            f'<polygon points="{head}" fill="{LINE}"/>')


def render_svg(spec: dict[str, Any], language: str = "en") -> str:
    """The diagram as one line of SVG (no blank lines, so Markdown keeps it as one HTML block)."""
    problems = check_spec(spec)
    if problems:
        raise ValueError("; ".join(problems))
    stages = [label_in(label, language) for label in spec["stages"]]
    inputs: dict[int, list[str]] = {}
    for index, label in spec.get("inputs", []):
        inputs.setdefault(index, []).append(label_in(label, language))
    widths = [max(text_width(text) + 2 * PAD, 64) for text in stages]
    # a stage is as wide as its own label or the labels feeding it, whichever is wider
    for index, texts in inputs.items():
        widths[index] = max(widths[index], sum(text_width(t) + 2 * PAD for t in texts) + GAP / 2 * (len(texts) - 1))
    top = 24 if spec.get("loop") else 4
    xs, x = [], 4.0
    for width in widths:
        xs.append(x)
        x += width + GAP
    total_width = x - GAP + 4
    parts = []
    for index, (text, left, width) in enumerate(zip(stages, xs, widths)):
        parts.append(_box(left, top, width, text, STAGE_FILL))
        if index:
            parts.append(_arrow(xs[index - 1] + widths[index - 1], top + HEIGHT / 2, left - 2, top + HEIGHT / 2))
        feeding = inputs.get(index, [])
        input_widths = [text_width(t) + 2 * PAD for t in feeding]
        start = left + (width - (sum(input_widths) + GAP / 2 * (len(feeding) - 1))) / 2
        for feed, feed_width in zip(feeding, input_widths):
            parts.append(_box(start, top + ROW, feed_width, feed, INPUT_FILL))
            parts.append(_arrow(start + feed_width / 2, top + ROW, start + feed_width / 2, top + HEIGHT + 2))
            start += feed_width + GAP / 2
    if spec.get("loop") and len(stages) > 1:
        right, left = xs[-1] + widths[-1] / 2, xs[0] + widths[0] / 2
        parts.append(f'<path d="M{right:.0f},{top} V{top - 14} H{left:.0f} V{top - 8}" fill="none" stroke="{LINE}" '
                     f'stroke-width="1.5" stroke-dasharray="4 3"/>')
        parts.append(_arrow(left, top - 9, left, top - 1))
    height = top + (ROW if inputs else 0) + HEIGHT + 4
    caption = escape(" → ".join(stages), {'"': "&quot;"})
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="pp-diagram" role="img" aria-label="{caption}" '
            f'width="{total_width:.0f}" height="{height:.0f}" viewBox="0 0 {total_width:.0f} {height:.0f}" '
            f'style="max-width:100%;height:auto;font-family:sans-serif">' + "".join(parts) + "</svg>")
