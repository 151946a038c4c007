"""Lessons: a teacher's ordered walk through the tabs, as data, with a link to each step for students.

A lesson is a JSON file in `assets/lessons/`: a title and a list of steps. A step names a tab, one of that
tab's API endpoints and the inputs to load into it, by the endpoint's parameter names (what
`gradio_client` passes; images are files in `assets/`, as in the Compare presets), plus what to look
at and an optional question for the class. Loading a step switches to its tab (and sub-tab) and sets
the inputs; nothing runs until the teacher presses the tab's own button. Texts are either one string or
`{"en": ..., "zh": ...}`; the shipped lessons have both, and `demos.page.i18n` turns them into gr.I18n keys.

Step links are `?lesson=<name>&step=<k>` (1-based, optional `&lang=zh`): read on page load.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from demos import ASSETS, DEMOS
from demos.page.i18n import LANGUAGES, lesson_key, shipped_lesson_files, step_text, text_in, translated
from demos.shared.handlers import user_errors
from demos.shared.messages import request_language
from models import UserError

log = logging.getLogger(__name__)
TEXT_FIELDS = ("look_at", "question")
STEP_FIELDS = {"tab", "endpoint", "inputs", "run", *TEXT_FIELDS}
MAX_IMPORTED = 64  # imported lessons kept in memory (for their step links) before the oldest is dropped


@dataclass(frozen=True)
class Parameter:
    """One input of an endpoint: its API name and its widget."""

    name: str
    component: Any


@dataclass(frozen=True)
class Endpoint:
    """A named API endpoint of the page, the tab it lives in and its inputs (what a step may set)."""

    api_name: str
    button: Any  # the widget whose click runs it (a step with "run": true presses it)
    tab: str  # top-level tab title (the page gives each tab its English title as id)
    tabs: tuple[tuple[Any, Any], ...]  # (gr.Tabs, gr.Tab) from the page's tab bar down to the endpoint's sub-tab
    parameters: dict[str, Parameter]


@dataclass(frozen=True)
class Step:
    tab: str
    endpoint: str
    inputs: dict[str, Any]
    look_at: str | dict[str, str]
    question: str | dict[str, str] = ""
    run: bool = False  # press the tab's button as soon as the step is loaded


@dataclass(frozen=True)
class Lesson:
    name: str  # file stem, or "imported-<hash>"
    title: str | dict[str, str]
    steps: tuple[Step, ...]


# ---- validation ------------------------------------------------------------------------------

def _where(lesson: str, index: int | None, field: str) -> str:
    step = f", step {index + 1}" if index is not None else ""
    return f"Lesson {lesson!r}{step}, field '{field}'"


def _check_text(value: Any, where: str, required: bool) -> None:
    if value is None or value == "":
        if required:
            raise UserError(f"{where}: missing; write what the class should look at.")
        return
    if isinstance(value, str):
        return
    if isinstance(value, dict) and value and all(isinstance(v, str) and v.strip() for v in value.values()):
        unknown = set(value) - set(LANGUAGES)
        if unknown:
            raise UserError(f"{where}: unknown language {', '.join(sorted(unknown))}; use {' and '.join(LANGUAGES)}.")
        return
    raise UserError(f"{where}: must be a text, or {{\"en\": text, \"zh\": text}}.")


def _asset(value: Any, where: str) -> Path:
    if not isinstance(value, str) or Path(value).name != value or not (ASSETS / value).is_file():
        available = ", ".join(sorted(p.name for p in ASSETS.glob("*.jpg")))
        raise UserError(f"{where}: {value!r} is not an image file in assets/ (e.g. {available}).")
    return ASSETS / value


def check_value(component: Any, value: Any, where: str) -> None:
    """Refuse a value the widget cannot hold: the check a lesson file gets before any step loads."""
    if isinstance(component, (gr.Image, gr.ImageEditor)):
        _asset(value, where)
    elif isinstance(component, gr.File):
        if not isinstance(value, list) or not value:
            raise UserError(f"{where}: must be a list of image files in assets/.")
        for item in value:
            _asset(item, where)
    elif isinstance(component, gr.Checkbox):
        if not isinstance(value, bool):
            raise UserError(f"{where}: must be true or false, not {value!r}.")
    elif isinstance(component, (gr.Number, gr.Slider)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{where}: must be a number, not {value!r}.")
        low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if (low is not None and value < low) or (high is not None and value > high):
            raise UserError(f"{where}: {value} is outside {low}–{high}.")
    elif isinstance(component, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)):
        allowed = [choice[1] for choice in component.choices or []]
        chosen = value if isinstance(component, gr.CheckboxGroup) else [value]
        if not isinstance(chosen, list) or any(item not in allowed for item in chosen):
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}.")
    elif isinstance(component, gr.Textbox):
        if not isinstance(value, str):
            raise UserError(f"{where}: must be a text, not {value!r}.")
    else:
        raise UserError(f"{where}: a lesson cannot set this input ({type(component).__name__}).")


def parse_lesson(data: Any, name: str, endpoints: dict[str, Endpoint]) -> Lesson:
    """A lesson from its JSON data, every step checked against the page: a clear UserError names the
    step and the field that is wrong."""
    if not isinstance(data, dict):
        raise UserError(f"Lesson {name!r}: the file must hold a JSON object with 'title' and 'steps'.")
    _check_text(data.get("title"), _where(name, None, "title"), required=True)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise UserError(f"{_where(name, None, 'steps')}: must be a non-empty list of steps.")
    tabs = sorted({endpoint.tab for endpoint in endpoints.values()})
    steps = []
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise UserError(f"Lesson {name!r}, step {index + 1}: must be an object with tab, endpoint, inputs.")
        unknown = set(raw) - STEP_FIELDS
        if unknown:
            raise UserError(f"{_where(name, index, sorted(unknown)[0])}: unknown field; a step has "
                            f"{', '.join(sorted(STEP_FIELDS))}.")
        tab = raw.get("tab")
        if tab not in tabs:
            raise UserError(f"{_where(name, index, 'tab')}: no tab called {tab!r}; tabs: {', '.join(tabs)}.")
        in_tab = sorted(api for api, endpoint in endpoints.items() if endpoint.tab == tab)
        endpoint = endpoints.get(raw.get("endpoint"))
        if endpoint is None or endpoint.tab != tab:
            raise UserError(f"{_where(name, index, 'endpoint')}: {raw.get('endpoint')!r} is not an endpoint of "
                            f"{tab!r}; it has: {', '.join(in_tab)}.")
        inputs = raw.get("inputs", {})
        if not isinstance(inputs, dict):
            raise UserError(f"{_where(name, index, 'inputs')}: must be an object of parameter: value.")
        for key, value in inputs.items():
            where = _where(name, index, f"inputs.{key}")
            parameter = endpoint.parameters.get(key)
            if parameter is None:
                raise UserError(f"{where}: /{endpoint.api_name} has no parameter {key!r}; "
                                f"it has: {', '.join(endpoint.parameters)}.")
            check_value(parameter.component, value, where)
        for field in TEXT_FIELDS:
            _check_text(raw.get(field), _where(name, index, field), required=field == "look_at")
        if not isinstance(raw.get("run", False), bool):
            raise UserError(f"{_where(name, index, 'run')}: must be true (run the step at once) or false.")
        steps.append(Step(tab=tab, endpoint=endpoint.api_name, inputs=dict(inputs), look_at=raw["look_at"],
                          question=raw.get("question") or "", run=raw.get("run", False)))
    return Lesson(name=name, title=data["title"], steps=tuple(steps))


def read_lesson(text: str, name: str, endpoints: dict[str, Endpoint]) -> Lesson:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"Lesson {name!r}: not valid JSON (line {error.lineno}, column {error.colno}: "
                        f"{error.msg}).") from None
    return parse_lesson(data, name, endpoints)


def load_shipped(endpoints: dict[str, Endpoint]) -> dict[str, Lesson]:
    """The lessons in assets/lessons/; one that does not fit the page is left out and logged."""
    lessons = {}
    for path in shipped_lesson_files():
        try:
            lessons[path.stem] = read_lesson(path.read_text(), path.stem, endpoints)
        except UserError as error:  # e.g. its tab failed to build: the other lessons still work
            log.error("%s", error)
    return lessons


def lesson_to_json(lesson: Lesson) -> str:
    """The file a teacher downloads, edits and imports back."""
    steps = [{"tab": s.tab, "endpoint": s.endpoint, "inputs": s.inputs, "look_at": s.look_at,
              **({"question": s.question} if s.question else {}), **({"run": True} if s.run else {})}
             for s in lesson.steps]
    return json.dumps({"title": lesson.title, "steps": steps}, ensure_ascii=False, indent=1)


def imported_name(text: str) -> str:
    return "imported-" + hashlib.sha256(text.encode()).hexdigest()[:12]


# ---- loading a step into the page --------------------------------------------------------------

def widget_value(component: Any, value: Any) -> Any:
    """The value a widget is set to for a step's input (images are read from assets/)."""
    if isinstance(component, gr.ImageEditor):
        image = Image.open(ASSETS / value).convert("RGB")
        return {"background": image, "layers": [], "composite": image}
    if isinstance(component, gr.Image):
        return Image.open(ASSETS / value).convert("RGB")
    if isinstance(component, gr.File):
        return [str(ASSETS / item) for item in value]
    return value


def page_endpoints(app: Any) -> dict[str, Endpoint]:
    """Every public named endpoint of the page whose inputs sit in a tab, by API name."""
    app.config = app.get_config_file()  # what the API description reads; gradio makes it on `with` exit
    info = app.get_api_info()["named_endpoints"]
    titles = {demo.title for demo in DEMOS}
    found: dict[str, Endpoint] = {}
    for fn in app.fns.values():
        if fn.api_visibility != "public" or not fn.api_name or not fn.inputs:
            continue
        chain: list[tuple[Any, Any]] = []
        block = fn.inputs[0]
        while block is not None:
            if isinstance(block, gr.Tab):
                chain.append((block.parent, block))
            block = block.parent
        if not any(tab.id in titles for _, tab in chain):
            continue
        names = [p["parameter_name"] for p in info[f"/{fn.api_name}"]["parameters"]]
        found[fn.api_name] = Endpoint(
            api_name=fn.api_name, button=app.blocks.get(fn.targets[0][0]) if fn.targets else None,
            tab=next(tab.id for _, tab in reversed(chain) if tab.id in titles),  # a paper tab's id is its title
            tabs=tuple(reversed(chain)),
            parameters={name: Parameter(name, component) for name, component in zip(names, fn.inputs)})
    return found


def step_link(lesson: Lesson, index: int) -> str:
    """The query string that opens this step (the page's JS makes it a full URL, with the language)."""
    return f"?lesson={lesson.name}&step={index + 1}"


# ---- the Lessons panel ------------------------------------------------------------------------

# The link names the page's language when it is not English (`?lang=zh`: students see what the class sees).
# A step that says "run" has its tab's button pressed once its inputs are in the page; a page opened from
# a step link opens the (closed) panel.
LINK_JS = """(query, run) => {
  if (run) setTimeout(() => document.getElementById(run)?.click(), 500);
  if (query && !document.getElementById('lesson-text')) document.querySelector('#lessons button')?.click();
  return query ? window.location.origin + window.location.pathname + query
    + ((localStorage.getItem('pp-lang') || '').startsWith('zh') ? '&lang=zh' : '') : '';
}"""


def lessons_panel():
    """The panel's widgets, in a sidebar on the right that leaves the tab and its result in view (wired by
    `wire_lessons` once the tabs exist)."""
    with gr.Sidebar(label="Lessons", open=False, position="right", width=340, elem_id="lessons") as sidebar:
        gr.Markdown("### Walk a lesson")
        titles = [(text_in(json.loads(path.read_text()).get("title") or path.stem), path.stem)
                  for path in shipped_lesson_files()]
        lesson = gr.Dropdown(titles, label="Lesson", value=None, elem_id="lesson-pick")
        with gr.Row():
            previous = gr.Button("◀ Previous", size="sm", elem_id="lesson-previous")
            following = gr.Button("Next ▶", size="sm", variant="primary", elem_id="lesson-next")
        counter = gr.Markdown("", elem_id="lesson-counter")
        text = gr.Markdown("Pick a lesson: Next opens each step's tab with its inputs set; press the tab's own "
                           "button to run it.", elem_id="lesson-text")
        link = gr.Textbox(label="Link to this step (for students)", interactive=False, buttons=["copy"],
                          elem_id="lesson-link")
        query, run = gr.Textbox(visible=False), gr.Textbox(visible=False)
        with gr.Accordion("Download or import a lesson", open=False):
            with gr.Row():
                export = gr.File(label="Download this lesson (.json)", elem_id="lesson-export")
                upload = gr.File(label="Import a lesson (.json)", file_types=[".json"], type="filepath",
                                 elem_id="lesson-import")
    return dict(lesson=lesson, previous=previous, following=following, counter=counter, sidebar=sidebar,
                text=text, link=link, query=query, run=run, export=export, upload=upload, index=gr.State(0))


def step_markdown(lesson: Lesson, index: int, language: str) -> str:
    """A shipped lesson's step text is a gr.I18n key (shown in the page's language; one key per Markdown,
    as gradio translates one reference per string); an imported lesson's is the request's language."""
    from gradio.i18n import I18nData

    if lesson.name.startswith("imported-"):
        step = lesson.steps[index]
        return step_text(step.look_at, step.question, language)
    return str(I18nData(lesson_key(lesson.name, "step", index)))


def counter_markdown(lesson: Lesson, index: int) -> str:
    """Step k of n and the step's tab (its title in the page's language)."""
    return f"**{index + 1} / {len(lesson.steps)}** · {translated(lesson.steps[index].tab)}"


class LessonPlayer:
    """Puts the page into a lesson's step: the page's endpoints, the shipped and imported lessons, the tab bars
    a step may switch and the inputs it may fill. Its methods are the lesson panel's event handlers."""

    def __init__(self, app: Any, widgets: dict[str, Any]):
        self.endpoints = page_endpoints(app)
        self.lessons = load_shipped(self.endpoints)
        self.imported: dict[str, Lesson] = {}
        self.tab_bars = self._switchable_tab_bars()
        self.inputs = list({p.component._id: p.component for e in self.endpoints.values()
                            for p in e.parameters.values() if not isinstance(p.component, (gr.State, gr.Chatbot))
                            }.values())
        for endpoint in self.endpoints.values():  # a button a step may press needs an id in the page
            if endpoint.button is not None and not endpoint.button.elem_id:
                endpoint.button.elem_id = f"run-{endpoint.api_name}"
        self.widgets = widgets
        self.shown = [widgets["index"], widgets["counter"], widgets["text"], widgets["query"], widgets["run"],
                      *self.tab_bars, *self.inputs]

    def _switchable_tab_bars(self) -> list[Any]:
        """Every gr.Tabs on the way to an endpoint, its tabs given ids so that a step can select them."""
        bars = {}
        for endpoint in self.endpoints.values():
            for tabs, tab in endpoint.tabs:
                if tab.id is None:
                    tab.id = f"tab-{tab._id}"
                bars[tabs._id] = tabs
        return list(bars.values())

    def find(self, name: str | None) -> Lesson:
        lesson = self.lessons.get(name or "") or self.imported.get(name or "")
        if lesson is None:
            raise UserError("Pick a lesson first (or import one).")
        return lesson

    def show(self, name: str | None, index: int, request: gr.Request | None) -> list[Any]:
        """The updates of `shown` for step `index`: its text and link, its tab selected, its inputs set."""
        lesson = self.find(name)
        index = max(0, min(int(index), len(lesson.steps) - 1))
        step = lesson.steps[index]
        endpoint = self.endpoints[step.endpoint]
        selected = {tabs._id: tab.id for tabs, tab in endpoint.tabs}
        values = {endpoint.parameters[key].component._id: widget_value(endpoint.parameters[key].component, value)
                  for key, value in step.inputs.items()}
        run = endpoint.button.elem_id if step.run and endpoint.button is not None else ""
        return [index, counter_markdown(lesson, index), step_markdown(lesson, index, request_language(request)),
                step_link(lesson, index), run,
                *[gr.Tabs(selected=selected[bar._id]) if bar._id in selected else gr.skip() for bar in self.tab_bars],
                *[values[c._id] if c._id in values else gr.skip() for c in self.inputs]]

    @user_errors
    def pick(self, name: str, request: gr.Request) -> list[Any]:
        return self.show(name, 0, request)

    @user_errors
    def following(self, name: str, index: int, request: gr.Request) -> list[Any]:
        return self.show(name, index + 1, request)

    @user_errors
    def previous(self, name: str, index: int, request: gr.Request) -> list[Any]:
        return self.show(name, index - 1, request)

    @user_errors
    def on_page_load(self, request: gr.Request) -> list[Any]:
        """A step link (`?lesson=..&step=..`) opens the sidebar onto its step."""
        params = request.query_params
        name = params.get("lesson")
        if not name or name not in self.lessons and name not in self.imported:
            return [gr.skip()] * (2 + len(self.shown))
        try:
            index = int(params.get("step", "1")) - 1
        except ValueError:
            index = 0
        return [name, gr.Sidebar(open=True), *self.show(name, index, request)]

    @user_errors
    def export(self, name: str) -> str:
        lesson = self.find(name)
        path = Path(tempfile.mkdtemp(prefix="pp-lesson-")) / f"{lesson.name}.json"
        path.write_text(lesson_to_json(lesson))
        return str(path)

    @user_errors
    def import_file(self, path: str | None, request: gr.Request) -> list[Any]:
        """Add a teacher's lesson file to the picker (the newest MAX_IMPORTED are kept) and show its first step."""
        if not path:
            raise UserError("Choose a lesson .json file.")
        text = Path(path).read_text(errors="replace")
        name = imported_name(text)
        lesson = read_lesson(text, Path(path).stem, self.endpoints)
        self.imported[name] = Lesson(name=name, title=lesson.title, steps=lesson.steps)
        while len(self.imported) > MAX_IMPORTED:
            self.imported.pop(next(iter(self.imported)))
        choices = [*self.widgets["lesson"].choices,
                   *[(text_in(lesson.title), key) for key, lesson in self.imported.items()]]
        return [gr.Dropdown(choices=choices, value=name), *self.show(name, 0, request)]


def wire_lessons(app: Any, widgets: dict[str, Any]) -> dict[str, Lesson]:
    """Load the shipped lessons (a bad one stops the page with its step and field named) and wire the panel."""
    player, w = LessonPlayer(app, widgets), widgets
    shown, steps = player.shown, [w["lesson"], w["index"]]
    link = dict(fn=None, inputs=[w["query"], w["run"]], outputs=w["link"], js=LINK_JS, api_visibility="private")
    private = dict(api_visibility="private", queue=False)
    w["lesson"].input(player.pick, w["lesson"], shown, **private).then(**link)
    w["following"].click(player.following, steps, shown, **private).then(**link)
    w["previous"].click(player.previous, steps, shown, **private).then(**link)
    app.load(player.on_page_load, None, [w["lesson"], w["sidebar"], *shown], **private).then(**link)
    w["upload"].upload(player.import_file, w["upload"], [w["lesson"], *shown], **private).then(**link)
    gr.on([w["lesson"].change], player.export, w["lesson"], w["export"], **private)
    return player.lessons
