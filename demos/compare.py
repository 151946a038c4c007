"""Compare tab: one shared input, several methods, optionally one swept parameter → a grid.

Tabs plug in by calling `register(Method(...))` at import time with a thin adapter over their
own `run_*` function, so the Compare tab runs exactly the code of each tab and needs no edit
when a tab lands. Rows are methods, columns are sweep values. A comparison is data (`Plan`):
it is exported as JSON next to the grid PNG and re-run from that JSON.
"""
from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from PIL import Image, ImageDraw

import models
from models import UserError

log = logging.getLogger(__name__)

SCORES = "image + labels → scores"
IMAGE = "text + layout → image"
ANSWER = "image + question → answer"
TASK_INPUTS: dict[str, tuple[str, ...]] = {
    SCORES: ("image", "labels"),
    IMAGE: ("prompt", "seed", "boxes", "control_image"),
    ANSWER: ("image", "question"),
}
IMAGE_INPUTS = {"image", "control_image"}
ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRESETS = ASSETS / "compare_presets"
TILE = 256


@dataclass
class Output:
    """What a method adapter returns: an image, a text answer, or label scores."""

    image: Image.Image | None = None
    text: str = ""
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class Method:
    task: str
    name: str
    run: Callable[..., Output]  # called with the task's inputs and the parameters as keywords
    # Sweepable parameters with their defaults; a shared input named here (e.g. "question") can be
    # swept too: the swept value overrides the input, the input overrides the default.
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Cell:
    method: str
    parameters: dict[str, Any]
    output: Output | None = None
    seconds: float = 0.0
    error: str = ""

    @property
    def caption(self) -> str:
        swept = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        status = f"error: {self.error}" if self.error else f"{self.seconds:.2f}s"
        return f"{self.method} · {swept} · {status}"


@dataclass
class Plan:
    """A comparison as data: what the JSON export holds and what a re-run reads."""

    task: str
    methods: list[str]
    inputs: dict[str, Any]
    sweep: str | None = None
    values: list[Any] = field(default_factory=list)


_METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    if method.task not in TASK_INPUTS:
        raise ValueError(f"unknown task {method.task!r}")
    _METHODS[method.name] = method


def methods_for(task: str) -> list[Method]:
    load_tab_methods()
    return [method for method in _METHODS.values() if method.task == task]


def load_tab_methods() -> None:
    """Import every tab module so each registers its methods; a broken tab is skipped."""
    from demos import DEMOS

    for demo in DEMOS:
        if demo.module != __name__:
            try:
                importlib.import_module(demo.module)
            except Exception:  # the tab itself shows the error panel
                log.exception("tab %s not available for comparison", demo.module)


def parse_values(text: str | list | None, default: Any) -> list[Any]:
    """Sweep values, one per line (or comma separated), converted to the default's type."""
    if isinstance(text, list):
        raw = text
    else:
        text = (text or "").strip()
        raw = text.splitlines() if "\n" in text else text.split(",")
    items = [str(item).strip() for item in raw if str(item).strip()]
    kind = type(default)
    try:
        return [kind(float(item)) if kind in (int, float) else kind(item) for item in items]
    except ValueError:
        raise UserError(f"Sweep values must be numbers like {default!r}; got {', '.join(items)}.") from None


def validate(plan: Plan) -> list[Method]:
    if plan.task not in TASK_INPUTS:
        raise UserError(f"Unknown task {plan.task!r}; choose one of: {', '.join(TASK_INPUTS)}.")
    available = {method.name: method for method in methods_for(plan.task)}
    if not plan.methods:
        raise UserError("Tick at least one method to compare.")
    unknown = [name for name in plan.methods if name not in available]
    if unknown:
        raise UserError(f"Not a method for {plan.task}: {', '.join(unknown)}. Available: {', '.join(available)}.")
    chosen = [available[name] for name in plan.methods]
    if plan.sweep:
        lacking = [m.name for m in chosen if plan.sweep not in m.parameters]
        if lacking:
            raise UserError(f"{', '.join(lacking)} has no parameter {plan.sweep!r} to sweep.")
        if not plan.values:
            raise UserError(f"Give at least one value for {plan.sweep}.")
    cells = len(chosen) * max(1, len(plan.values) if plan.sweep else 1)
    limit = models.settings.max_compare_cells
    if cells > limit:
        raise UserError(f"{cells} cells is more than the limit of {limit}; tick fewer methods or values.")
    return chosen


def run_compare(plan: Plan) -> Iterator[tuple[int, int, Cell]]:
    """Run every (method, sweep value) cell, yielding (row, column, cell) as each finishes.

    A failing method fills its own cell with a named error; the other cells still run."""
    chosen = validate(plan)
    inputs = {name: plan.inputs.get(name) for name in TASK_INPUTS[plan.task]}
    columns = plan.values if plan.sweep else [None]
    for row, method in enumerate(chosen):
        for column, value in enumerate(columns):
            cell = Cell(method.name, {plan.sweep: value} if plan.sweep else {})
            started = time.perf_counter()
            try:  # defaults < shared inputs < the swept value
                cell.output = method.run(**{**method.parameters, **inputs, **cell.parameters})
            except UserError as error:
                cell.error = str(error)
            except Exception as error:  # a broken method must not stop the comparison
                log.exception("compare cell %s failed", method.name)
                cell.error = f"{type(error).__name__}: {error}"
            cell.seconds = time.perf_counter() - started
            yield row, column, cell


def compare_grid(plan: Plan) -> list[list[Cell]]:
    """All cells as rows (methods) × columns (sweep values)."""
    rows = len(plan.methods)
    columns = len(plan.values) if plan.sweep else 1
    grid: list[list[Cell | None]] = [[None] * columns for _ in range(rows)]
    for row, column, cell in run_compare(plan):
        grid[row][column] = cell
    return grid  # type: ignore[return-value]


# ---- rendering and export ----------------------------------------------------------------

def render_cell(cell: Cell, side: int = TILE) -> Image.Image:
    """A square tile: the image, or the answer / score bars / error drawn as text."""
    output = cell.output
    if output is not None and output.image is not None:
        tile = output.image.convert("RGB").copy()
        tile.thumbnail((side, side))
        canvas = Image.new("RGB", (side, side), "white")
        canvas.paste(tile, ((side - tile.width) // 2, (side - tile.height) // 2))
        return canvas
    canvas = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(canvas)
    if cell.error:
        draw.multiline_text((8, 8), _wrap(f"Error: {cell.error}", 34), fill=(180, 0, 0))
    elif output is not None and output.scores:
        ranked = sorted(output.scores.items(), key=lambda item: -item[1])[:8]
        for index, (label, score) in enumerate(ranked):
            top = 10 + index * 30
            draw.rectangle((8, top + 14, 8 + int((side - 16) * score), top + 24), fill=(240, 120, 30))
            draw.text((8, top), f"{label[:28]}  {score:.2f}", fill="black")
    elif output is not None:
        draw.multiline_text((8, 8), _wrap(output.text, 34), fill="black")
    return canvas


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:14])


def grid_image(plan: Plan, grid: list[list[Cell]]) -> Image.Image:
    """The labelled grid: a header row of sweep values and a label column of methods."""
    label_width, header = 180, 28
    columns = len(grid[0]) if grid else 0
    canvas = Image.new("RGB", (label_width + columns * TILE, header + len(grid) * TILE), "white")
    draw = ImageDraw.Draw(canvas)
    for column in range(columns):
        title = f"{plan.sweep} = {plan.values[column]}" if plan.sweep else "result"
        draw.text((label_width + column * TILE + 8, 8), title[:40], fill="black")
    for row, cells in enumerate(grid):
        draw.multiline_text((8, header + row * TILE + 8), _wrap(plan.methods[row], 24), fill="black")
        for column, cell in enumerate(cells):
            canvas.paste(render_cell(cell), (label_width + column * TILE, header + row * TILE))
            draw.text((label_width + column * TILE + 4, header + (row + 1) * TILE - 14),
                      f"{cell.seconds:.2f}s", fill=(90, 90, 90))
    return canvas


def plan_to_json(plan: Plan, grid: list[list[Cell]] | None = None) -> dict[str, Any]:
    """The plan, with images embedded as base64 PNG, plus each cell's parameters and time."""
    inputs = {key: _encode_image(value) if key in IMAGE_INPUTS and value is not None else value
              for key, value in plan.inputs.items()}
    data: dict[str, Any] = {**asdict(plan), "inputs": inputs}
    if grid is not None:
        data["cells"] = [[{"method": c.method, "parameters": c.parameters, "seconds": round(c.seconds, 3),
                           "error": c.error} for c in row] for row in grid]
    return data


def plan_from_json(data: Mapping[str, Any] | str) -> Plan:
    if isinstance(data, str):
        data = json.loads(data)
    try:
        inputs = {key: _decode_image(value) if key in IMAGE_INPUTS and value else value
                  for key, value in dict(data["inputs"]).items()}
        return Plan(task=data["task"], methods=list(data["methods"]), inputs=inputs,
                    sweep=data.get("sweep"), values=list(data.get("values") or []))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"This is not a comparison exported by Paper Playground ({error}).") from None


def _encode_image(image: Any) -> str:
    from demos.inputs import rgb_image

    buffer = io.BytesIO()
    rgb_image(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _decode_image(value: str) -> Image.Image:
    if value.startswith("data:image"):
        return Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1]))).convert("RGB")
    if Path(value).name != value or not (ASSETS / value).is_file():  # presets name a file in assets/
        raise ValueError(f"image {value[:40]!r} is neither embedded nor a file in assets/")
    return Image.open(ASSETS / value).convert("RGB")


def export(plan: Plan, grid: list[list[Cell]]) -> tuple[str, str]:
    """The grid PNG (all parameters in its metadata) and the JSON that re-runs it: two paths."""
    from demos.generation import OUTPUT_DIR, png_with_parameters

    data = plan_to_json(plan, grid)
    metadata = {**data, "inputs": {k: ("<image>" if k in IMAGE_INPUTS and v else v) for k, v in data["inputs"].items()}}
    png = png_with_parameters(grid_image(plan, grid), metadata, stem="comparison")
    json_path = Path(png).with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1))
    return png, str(json_path)


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.json"))


def load_preset(name: str) -> Plan:
    path = PRESETS / f"{name}.json"
    if not path.is_file():
        raise UserError(f"No preset called {name!r}; choose one of: {', '.join(preset_names())}.")
    return plan_from_json(path.read_text())


# ---- UI ----------------------------------------------------------------------------------

def build_ui() -> None:
    import gradio as gr
    from demos.ui import user_errors

    load_tab_methods()
    tasks = [task for task in TASK_INPUTS if methods_for(task)]
    gr.Markdown(
        "Give one input, tick the methods, optionally sweep one parameter: every cell runs the same "
        "code as the method's own tab. Cells appear as they finish; a failing method shows its error "
        "in its cell. Export the grid (PNG with all parameters inside) and the JSON that re-runs it."
    )
    with gr.Row():
        with gr.Column():
            preset = gr.Dropdown(preset_names(), label="Ready-made comparisons for class", value=None)
            load = gr.Button("Load preset", size="sm")
            task = gr.Radio(tasks, value=tasks[0] if tasks else None, label="Task")
            first = [method.name for method in methods_for(tasks[0])] if tasks else []
            methods = gr.CheckboxGroup(first, value=first[:3], label="Methods")
            image = gr.Image(label="Image", type="pil", image_mode=None, height=240)
            labels = gr.Textbox(label="Labels (comma separated)", value="cat, dog, astronaut, rocket")
            question = gr.Textbox(label="Question", visible=False)
            prompt = gr.Textbox(label="Prompt", visible=False)
            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, visible=False)
            boxes = gr.Textbox(label="Boxes (phrase: x0,y0,x1,y1 per line)", lines=3, visible=False)
            control_image = gr.Image(label="Control image", type="pil", visible=False, height=200)
            with gr.Row():
                sweep = gr.Dropdown(label="Sweep parameter (optional)", choices=[], value=None)
                values = gr.Textbox(label="Values (comma separated, or one per line)", lines=2)
            run = gr.Button("Compare", variant="primary")
            rerun_file = gr.File(label="Re-run an exported comparison (.json)", file_types=[".json"], type="filepath")
        with gr.Column():
            status = gr.Markdown()
            gallery = gr.Gallery(label="Grid (rows = methods, columns = sweep values)", columns=3, height=520,
                                 format="png", object_fit="contain")
            with gr.Row():
                grid_png = gr.File(label="Grid PNG (parameters in metadata)", elem_id="compare-png")
                grid_json = gr.File(label="Comparison JSON (re-runs it)", elem_id="compare-json")
            with gr.Row():
                left = gr.Dropdown(label="Slider: left cell", choices=[])
                right = gr.Dropdown(label="Slider: right cell", choices=[])
            slider = gr.ImageSlider(label="Before / after", type="pil", format="png")
    cells_state = gr.State([])
    widgets = {"image": image, "labels": labels, "question": question, "prompt": prompt, "seed": seed,
               "boxes": boxes, "control_image": control_image}

    def on_task(task):
        names = [method.name for method in methods_for(task)] if task else []
        visible = set(TASK_INPUTS.get(task, ()))
        return [gr.CheckboxGroup(choices=names, value=names[:3])] + [gr.update(visible=key in visible) for key in widgets]

    def on_methods(task, chosen):
        common = None
        for method in methods_for(task):
            if method.name in (chosen or []):
                common = set(method.parameters) if common is None else common & set(method.parameters)
        return gr.Dropdown(choices=sorted(common or []), value=None)

    def stream(plan: Plan):
        grid_rows = len(plan.methods)
        columns = len(plan.values) if plan.sweep else 1
        grid: list[list[Cell | None]] = [[None] * columns for _ in range(grid_rows)]
        done = 0
        for row, column, cell in run_compare(plan):
            grid[row][column] = cell
            done += 1
            tiles = [(render_cell(c), c.caption) for r in grid for c in r if c is not None]
            yield gr.Gallery(value=tiles, columns=columns), f"{done} / {grid_rows * columns} cells done", None, None, [], gr.skip(), gr.skip()
        png, json_path = export(plan, grid)  # type: ignore[arg-type]
        flat = [c for r in grid for c in r]
        captions = [f"{index}: {c.caption}" for index, c in enumerate(flat)]
        yield (gr.skip(), f"Done: {len(flat)} cells. Download the grid and the JSON below.", png, json_path,
               [render_cell(c) for c in flat], gr.Dropdown(choices=captions, value=captions[0]),
               gr.Dropdown(choices=captions, value=captions[-1]))

    outputs = [gallery, status, grid_png, grid_json, cells_state, left, right]

    @user_errors
    def compare_for_ui(task, chosen, image, labels, question, prompt, seed, boxes, control_image, sweep, values):
        defaults = [m.parameters.get(sweep) for m in methods_for(task) if m.name in (chosen or [])] if sweep else []
        plan = Plan(task=task, methods=list(chosen or []),
                    inputs={"image": image, "labels": labels, "question": question, "prompt": prompt,
                            "seed": seed, "boxes": boxes, "control_image": control_image},
                    sweep=sweep or None,
                    values=parse_values(values, defaults[0]) if sweep and defaults else [])
        yield from stream(plan)

    @user_errors
    def rerun_for_ui(path):
        if not path:
            raise UserError("Choose a comparison .json exported by this tab.")
        yield from stream(plan_from_json(Path(path).read_text()))

    @user_errors
    def preset_for_ui(name):
        if not name:
            raise UserError("Choose a preset first.")
        plan = load_preset(name)
        visible = set(TASK_INPUTS[plan.task])
        fields = [gr.update(value=plan.inputs.get(key), visible=key in visible) for key in widgets]
        sweep_value = plan.sweep if plan.sweep else None
        values_text = "\n".join(str(v) for v in plan.values)
        return [plan.task, gr.CheckboxGroup(choices=[m.name for m in methods_for(plan.task)], value=plan.methods),
                *fields, gr.Dropdown(choices=[plan.sweep] if plan.sweep else [], value=sweep_value), values_text]

    def show_pair(cells, left, right):
        if not cells or not left or not right:
            return None
        return cells[int(left.split(":")[0])], cells[int(right.split(":")[0])]

    inputs = [task, methods, *widgets.values(), sweep, values]
    task.change(on_task, task, [methods, *widgets.values()], api_visibility="private")
    methods.change(on_methods, [task, methods], sweep, api_visibility="private")
    run.click(compare_for_ui, inputs, outputs, api_name="compare")
    rerun_file.upload(rerun_for_ui, rerun_file, outputs, api_name="compare_rerun")
    load.click(preset_for_ui, preset, [task, methods, *widgets.values(), sweep, values], api_name="compare_preset")
    gr.on([left.change, right.change], show_pair, [cells_state, left, right], slider, api_visibility="private")
