"""Compare tab: one shared input, several methods, optionally one swept parameter → a grid.

Tabs declare `COMPARE_METHODS` (see `demos.shared.comparison`) with a thin adapter over their own `run_*`,
and this tab collects them through the tab list, so it runs exactly each tab's code and needs no
edit when a tab lands. Rows are methods, columns are sweep values. A comparison is data (`Plan`):
it is exported as JSON next to the grid PNG and re-run from that JSON.
"""
from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

from PIL import Image, ImageDraw

from demos import ASSETS, DEMOS
from demos.shared.comparison import Field, Method, Output, Task
from demos.shared.limits import LIMITS
from models import JobDropped, UserError

log = logging.getLogger(__name__)

PRESETS = ASSETS / "compare_presets"
TILE = 256


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


def all_methods() -> list[Method]:
    """Every tab's `COMPARE_METHODS`, in tab order; a tab that fails to import is skipped."""
    found: list[Method] = []
    for demo in DEMOS:
        if demo.module == __name__:
            continue
        try:
            module = importlib.import_module(demo.module)
        except Exception:  # the tab itself shows the error panel
            log.exception("tab %s not available for comparison", demo.module)
            continue
        found += getattr(module, "COMPARE_METHODS", [])
    return found


def tasks() -> dict[str, Task]:
    """The task families that have at least one method, by name, in tab order."""
    return {method.task.name: method.task for method in all_methods()}


def methods_for(task: str) -> list[Method]:
    return [method for method in all_methods() if method.task.name == task]


def image_inputs() -> set[str]:
    """Inputs that hold images: embedded as PNG in the exported JSON."""
    return {f.name for task in tasks().values() for f in task.fields if f.kind == "image"}


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
    known = tasks()
    if plan.task not in known:
        raise UserError(f"Unknown task {plan.task!r}; choose one of: {', '.join(known)}.")
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
    limit = LIMITS.max_compare_cells
    if cells > limit:
        raise UserError(f"{cells} cells is more than the limit of {limit}; tick fewer methods or values.")
    return chosen


def run_compare(plan: Plan) -> Iterator[tuple[int, int, Cell]]:
    """Run every (method, sweep value) cell, yielding (row, column, cell) as each finishes.

    A failing method fills its own cell with a named error; the other cells still run."""
    chosen = validate(plan)
    inputs = {name: plan.inputs.get(name) for name in chosen[0].task.inputs}
    columns = plan.values if plan.sweep else [None]
    for row, method in enumerate(chosen):
        for column, value in enumerate(columns):
            cell = Cell(method.name, {plan.sweep: value} if plan.sweep else {})
            started = time.perf_counter()
            try:  # defaults < shared inputs < the swept value
                cell.output = method.run(**{**method.parameters, **inputs, **cell.parameters})
            except UserError as error:
                cell.error = str(error)
            except JobDropped:
                raise
            except Exception as error:  # a broken method must not stop the comparison
                log.exception("compare cell %s failed", method.name)
                cell.error = f"{type(error).__name__}: {error}"
            cell.seconds = time.perf_counter() - started
            yield row, column, cell


def filling_grid(plan: Plan) -> Iterator[list[list[Cell | None]]]:
    """The grid, rows (methods) × columns (sweep values), after each cell that finishes."""
    columns = len(plan.values) if plan.sweep else 1
    grid: list[list[Cell | None]] = [[None] * columns for _ in plan.methods]
    for row, column, cell in run_compare(plan):
        grid[row][column] = cell
        yield grid


def compare_grid(plan: Plan) -> list[list[Cell]]:
    """All cells as rows (methods) × columns (sweep values)."""
    *_, grid = filling_grid(plan)
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
    images = image_inputs()
    inputs = {key: _encode_image(value) if key in images and value is not None else value
              for key, value in plan.inputs.items()}
    data: dict[str, Any] = {**asdict(plan), "inputs": inputs}
    if grid is not None:
        data["cells"] = [[{"method": c.method, "parameters": c.parameters, "seconds": round(c.seconds, 3),
                           "error": c.error} for c in row] for row in grid]
    return data


def plan_from_json(data: Mapping[str, Any] | str) -> Plan:
    if isinstance(data, str):
        data = json.loads(data)
    images = image_inputs()
    try:
        inputs = {key: _decode_image(value) if key in images and value else value
                  for key, value in dict(data["inputs"]).items()}
        return Plan(task=data["task"], methods=list(data["methods"]), inputs=inputs,
                    sweep=data.get("sweep"), values=list(data.get("values") or []))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"This is not a comparison exported by Paper Playground ({error}).") from None


def _encode_image(image: Any) -> str:
    from demos.shared.inputs import rgb_image

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
    from demos.shared.generation import png_with_parameters

    data = plan_to_json(plan, grid)
    images = image_inputs()
    metadata = {**data, "inputs": {k: ("<image>" if k in images and v else v) for k, v in data["inputs"].items()}}
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

def input_widget(spec: Field, visible: bool):
    """The widget that asks for one shared input; shown while a task that takes it is chosen."""
    import gradio as gr

    if spec.kind == "image":
        return gr.Image(label=spec.label, type="pil", image_mode=None, height=220, visible=visible)
    if spec.kind == "number":
        return gr.Number(label=spec.label, value=spec.value, minimum=0, visible=visible)  # no silent rounding
    return gr.Textbox(label=spec.label, value=spec.value, lines=3 if spec.kind == "lines" else 1, visible=visible)


def named_parameters(function: Callable, names: list[str], optional: list[str]) -> Callable:
    """`function(*values)` under a signature naming each value, so its API endpoint does too (gradio
    names endpoint parameters after the handler's); `optional` ones default to None in the API."""
    import inspect

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    function.__signature__ = inspect.Signature(
        [inspect.Parameter(name, kind) for name in names]
        + [inspect.Parameter(name, kind, default=None) for name in optional])
    return function


def layout(families: dict[str, Task]) -> SimpleNamespace:
    """The tab's widgets, placed (one input widget per field of any family); `build_ui` wires them."""
    import gradio as gr

    gr.Markdown(
        "Give one input, tick the methods, optionally sweep one parameter: every cell runs the same "
        "code as the method's own tab. Cells appear as they finish; a failing method shows its error "
        "in its cell. Export the grid (PNG with all parameters inside) and the JSON that re-runs it."
    )
    first = next(iter(families.values()), None)
    first_methods = [method.name for method in methods_for(first.name)] if first else []
    with gr.Row():
        with gr.Column():
            preset = gr.Dropdown(preset_names(), label="Ready-made comparisons for class", value=None)
            load = gr.Button("Load preset", size="sm")
            task = gr.Radio(list(families), value=first.name if first else None, label="Task")
            methods = gr.CheckboxGroup(first_methods, value=first_methods[:3], label="Methods",
                                      elem_id="compare-methods")
            fields = {f.name: f for family in families.values() for f in family.fields}
            shown = set(first.inputs) if first else set()
            inputs = {name: input_widget(spec, name in shown) for name, spec in fields.items()}
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
    return SimpleNamespace(task=task, methods=methods, inputs=inputs, sweep=sweep, values=values, preset=preset,
                           load=load, run=run, rerun_file=rerun_file, status=status, gallery=gallery,
                           grid_png=grid_png, grid_json=grid_json, left=left, right=right, slider=slider,
                           cells=gr.State([]))


def _stream_grid(plan: Plan):
    """Run a plan and yield the tab's outputs as cells finish, so the grid fills in while it runs; the last
    yield adds the exports and the slider's cell choices."""
    import gradio as gr

    total = len(plan.methods) * (len(plan.values) if plan.sweep else 1)
    columns = len(plan.values) if plan.sweep else 1
    grid: list[list[Cell | None]] = []
    yield gr.skip(), f"0 / {total} cells done", None, None, [], gr.skip(), gr.skip()  # what will run, at once
    for grid in filling_grid(plan):
        tiles = [(render_cell(c), c.caption) for r in grid for c in r if c is not None]
        yield (gr.Gallery(value=tiles, columns=columns), f"{len(tiles)} / {total} cells done", None, None, [],
               gr.skip(), gr.skip())
    png, json_path = export(plan, grid)  # type: ignore[arg-type]
    flat = [c for r in grid for c in r]
    captions = [f"{index}: {c.caption}" for index, c in enumerate(flat)]
    yield (gr.skip(), f"Done: {len(flat)} cells. Download the grid and the JSON below.", png, json_path,
           [render_cell(c) for c in flat], gr.Dropdown(choices=captions, value=captions[0]),
           gr.Dropdown(choices=captions, value=captions[-1]))


# Unprefixed because gradio names an event's endpoint after its handler.
def on_methods(task, chosen):
    """Only a parameter every chosen method takes can be swept."""
    import gradio as gr

    common = None
    for method in methods_for(task):
        if method.name in (chosen or []):
            common = set(method.parameters) if common is None else common & set(method.parameters)
    return gr.Dropdown(choices=sorted(common or []), value=None)


def show_pair(cells, left, right):
    """The two cells picked for the before / after slider (their choices start with the cell's index)."""
    if not cells or not left or not right:
        return None
    return cells[int(left.split(":")[0])], cells[int(right.split(":")[0])]


def build_ui() -> None:
    import gradio as gr

    from demos.shared.handlers import user_errors

    families = tasks()
    w = layout(families)
    input_names = list(w.inputs)

    def on_task(task):
        names = [method.name for method in methods_for(task)] if task else []
        visible = set(families[task].inputs) if task in families else set()
        return [gr.CheckboxGroup(choices=names, value=names[:3])] + [gr.update(visible=key in visible)
                                                                       for key in input_names]

    def compare_for_ui(task, chosen, *inputs_sweep_values):
        *inputs, sweep, values = inputs_sweep_values
        defaults = [m.parameters.get(sweep) for m in methods_for(task) if m.name in (chosen or [])] if sweep else []
        plan = Plan(task=task, methods=list(chosen or []), inputs=dict(zip(input_names, inputs)),
                    sweep=sweep or None, values=parse_values(values, defaults[0]) if sweep and defaults else [])
        yield from _stream_grid(plan)

    compare_for_ui = user_errors(named_parameters(compare_for_ui, ["task", "methods"],
                                                      [*input_names, "sweep", "values"]))

    @user_errors
    def rerun_for_ui(path):
        if not path:
            raise UserError("Choose a comparison .json exported by this tab.")
        yield from _stream_grid(plan_from_json(Path(path).read_text()))

    @user_errors
    def preset_for_ui(name):
        if not name:
            raise UserError("Choose a preset first.")
        plan = load_preset(name)
        visible = set(families[plan.task].inputs)
        fields = [gr.update(value=plan.inputs.get(key), visible=key in visible) for key in input_names]
        values_text = "\n".join(str(v) for v in plan.values)
        return [plan.task, gr.CheckboxGroup(choices=[m.name for m in methods_for(plan.task)], value=plan.methods),
                *fields, gr.Dropdown(choices=[plan.sweep] if plan.sweep else [], value=plan.sweep or None),
                values_text]

    inputs = [w.task, w.methods, *w.inputs.values(), w.sweep, w.values]
    outputs = [w.gallery, w.status, w.grid_png, w.grid_json, w.cells, w.left, w.right]
    # `.input`, not `.change`: a loaded preset sets task, methods and sweep at once, and must not be
    # reset by the events a user's own pick of a task or a method fires.
    w.task.input(on_task, w.task, [w.methods, *w.inputs.values()], api_visibility="private")
    w.methods.input(on_methods, [w.task, w.methods], w.sweep, api_visibility="private")
    w.run.click(compare_for_ui, inputs, outputs, api_name="compare")
    w.rerun_file.upload(rerun_for_ui, w.rerun_file, outputs, api_name="compare_rerun")
    # Outside the queue: loading a preset does no model work and must not wait behind a running comparison.
    w.load.click(preset_for_ui, w.preset, [w.task, w.methods, *w.inputs.values(), w.sweep, w.values],
                 api_name="compare_preset", queue=False)
    gr.on([w.left.change, w.right.change], show_pair, [w.cells, w.left, w.right], w.slider, api_visibility="private")
