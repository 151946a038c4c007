"""Widgets and wiring shared by every tab: the tiny-profile banner, error handling, Models panel."""
from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from typing import Any, Callable

import gradio as gr
from PIL import Image

import models
from demos.inputs import UNREADABLE_IMAGE
from models import JobDropped, UserError
from models.cache import release_memory
from models.safety import collect_flags, report as safety_report

log = logging.getLogger(__name__)

TINY_BANNER = (
    "**Offline `tiny` profile:** every model here is a tiny network with random weights, built on "
    "this machine. The real pipeline code runs, but the pictures, labels and answers are noise. "
    "Start with `python app.py` (the `hub` profile) for the published checkpoints."
)


OUT_OF_MEMORY = ("The machine ran out of memory for this request. Try fewer steps or images, a lower "
                 "resolution or a smaller model, or free models in the Models panel, then run it again.")


def _is_out_of_memory(error: Exception) -> bool:
    torch = sys.modules.get("torch")  # no model has run (nor could have run out of memory) before torch is imported
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


def user_errors(function: Callable) -> Callable:
    """Wrap an event handler so bad input shows a `gr.Error` and unexpected failures are logged
    and reported in one line, instead of a stack trace; the app keeps serving either way. Running out
    of memory frees what it can (the CUDA cache) and tells that user what to lower."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, UserError):
            return gr.Error(str(error))
        if isinstance(error, JobDropped):
            log.info("stopped %s: %s", function.__name__, error)
            return gr.Error(str(error))
        if _is_out_of_memory(error):
            log.warning("out of memory in %s: %s", function.__name__, error)
            release_memory()
            return gr.Error(OUT_OF_MEMORY)
        log.exception("unexpected error in %s", function.__name__)
        return gr.Error(f"Something went wrong ({type(error).__name__}: {error}). Details are in the server log.")

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def wrapped_generator(*args: Any, **kwargs: Any):
            flags: list[list[bool]] = []
            steps = function(*args, **kwargs)
            try:
                while True:
                    with collect_flags(flags):  # each step may run on another of gradio's threads
                        try:
                            value = next(steps)
                        except StopIteration:
                            return
                    yield value
            except Exception as error:
                raise convert(error) from error
            finally:
                steps.close()  # a stopped run's own cleanup runs, as with `yield from`
                say_what_the_safety_checker_blanked(flags)
        return wrapped_generator

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any):
        with collect_flags() as flags:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                raise convert(error) from error
            finally:
                say_what_the_safety_checker_blanked(flags)
    return wrapped


def say_what_the_safety_checker_blanked(flags: list[list[bool]]) -> None:
    """A black image never comes alone: the reader is told which images the safety checker blanked."""
    text = safety_report(flags)
    if text:
        log.info("safety checker: %s", text)
        gr.Warning(text, duration=None)


WRONG_KIND_OF_INPUT = ("An input got the wrong kind of value (for example a file where text or a list is "
                       "expected). The API page of this app lists what each endpoint takes.")


def plain_input_errors(app: gr.Blocks) -> None:
    """Answer a request that gradio cannot turn into handler arguments (a file that is not an image,
    a file where a choice or a list is expected) with one plain line, instead of gradio's own
    message, which repeats the payload with its server paths or dumps a pydantic error."""
    for block in app.blocks.values():
        if isinstance(block, gr.components.Component):
            block.preprocess = _plain_preprocess(block)
    preprocess_data = app.preprocess_data

    @functools.wraps(preprocess_data)
    async def checked_preprocess_data(*args: Any, **kwargs: Any) -> Any:
        try:
            return await preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # a payload of the wrong shape, caught by gradio's data models
            log.info("refused a malformed request: %s: %s", type(error).__name__, error)
            raise gr.Error(WRONG_KIND_OF_INPUT) from None

    app.preprocess_data = checked_preprocess_data


def _plain_preprocess(component: gr.components.Component) -> Callable:
    preprocess = component.preprocess
    what = getattr(component, "label", None) or component.get_block_name()

    @functools.wraps(preprocess)
    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception as error:
            if isinstance(error, (OSError, Image.DecompressionBombError)):
                reason = UNREADABLE_IMAGE
            else:
                choices = [str(value) for _, value in getattr(component, "choices", None) or []]
                reason = "this value is not one it accepts." + (f" Choose one of: {', '.join(choices)}." if choices else "")
            raise gr.Error(f"{what}: {reason}") from None
    return checked


# The most time heavy runs give, in all, to one light request by pausing while it runs: a quick
# request gets the machine to itself; one that takes longer (or waits on a model a heavy run is
# loading) cannot hold the heavy runs up for more than this.
MAX_GIVE_WAY_SECONDS = 5.0


def watch_running_jobs(app: gr.Blocks, heavy_queue: str) -> None:
    """At each progress report of a run: stop it if its user has gone, and let light requests go first.

    Gradio marks a job as no longer alive when the page closes or the connection drops, and forgets
    it on Stop, but a handler running in a thread goes on to its last step. And a heavy run (an event
    in `heavy_queue`: diffusion, LLMs) shares the CPU, or the GPU, with light requests (CLIP, widget
    updates), which would take twice as long beside it on a 2-core machine. Every progress report of
    a handler (its `gr.Progress` calls and tracked tqdm bars, once a step) passes through the queue's
    `set_progress` in the handler's thread, so that is where the job is checked and where a heavy run
    pauses while light requests run (up to `MAX_GIVE_WAY_SECONDS` for each). Call it after
    `app.queue()`, which makes a new queue."""
    queue = app._queue
    report = queue.set_progress
    given: dict[str, float] = {}  # light job id -> seconds heavy runs have paused for it

    def running() -> list:
        return [event for job in list(queue.active_jobs) if job for event in job]

    def give_way_to_light_jobs() -> None:
        paused_at = time.monotonic()
        while True:
            light = [event._id for event in running() if event.concurrency_id != heavy_queue
                     and given.get(event._id, 0.0) < MAX_GIVE_WAY_SECONDS]
            if not light:
                break
            time.sleep(0.01)
            now = time.monotonic()
            for job_id in light:
                given[job_id] = given.get(job_id, 0.0) + now - paused_at
            paused_at = now
        for job_id in set(given) - {event._id for event in running()}:
            del given[job_id]

    def set_progress_checked(event_id: str, iterables: Any) -> None:
        event = next((event for event in running() if event._id == event_id), None)
        if event is None or not event.alive:
            raise JobDropped("The page that asked for this run was closed or stopped it, so it was stopped.")
        if event.concurrency_id == heavy_queue:
            give_way_to_light_jobs()
        report(event_id, iterables)

    queue.set_progress = set_progress_checked


# Page-wide CSS (gradio 6 takes it in `launch()`). A generated image fills its box, so a 64-px tiny
# output or a 512-px one reads at the same, projector-friendly size.
CSS = """
.pp-result img { width: 100%; height: 100%; object-fit: contain; }
"""
RESULT = "pp-result"  # elem_classes of an image that shows a generated result


# Page-wide JS, run once on load: every box canvas starts in the "Create box" tool (the annotator
# component opens in "Drag boxes", where dragging on the canvas does nothing); canvases of tabs
# that render later are caught by the observer. `ppSetLocale` is the language switch: gradio's own
# `changeLocale` (gradio 6.31 has no public call for it: the module is found among the page's scripts),
# remembered in localStorage and a cookie (read by the server for error messages); `?lang=zh` in a
# link sets it. Tab buttons take their title once, when they mount, so after a switch their text is
# replaced from the page's translation table (the browser's own language needs none of this).
JS = """
() => {
  const tables = window.gradio_config?.i18n_translations || {};
  const keyOf = new Map();
  for (const table of Object.values(tables)) for (const [key, text] of Object.entries(table)) keyOf.set(text, key);
  const relabelTabs = () => {
    const lang = localStorage.getItem('pp-lang'), table = tables[(lang || '').split('-')[0]];
    if (!table) return;
    document.querySelectorAll('[role=tab], .tab-container button, .overflow-dropdown button').forEach(button => {
      const text = table[keyOf.get(button.textContent.trim())];
      if (text && button.textContent.trim() !== text) button.textContent = text;
    });
  };
  // 'zh' is shown as gradio's 'zh-CN' (its own strings: upload boxes, footer); ours fall back from zh-CN to zh.
  window.ppSetLocale = async (lang) => {
    lang = lang === 'zh' ? 'zh-CN' : lang;
    const core = performance.getEntriesByType('resource').map(e => e.name).find(n => /\\/core-[^/]*\\.js$/.test(n));
    if (!core) return;
    await (await import(core)).changeLocale(lang);
    localStorage.setItem('pp-lang', lang);
    document.cookie = `pp_lang=${lang}; path=/; SameSite=Lax`;
    relabelTabs();
  };
  const asked = new URLSearchParams(window.location.search).get('lang') || localStorage.getItem('pp-lang');
  if (asked) window.ppSetLocale(asked);
  const createMode = () => document.querySelectorAll('.box-canvas button[aria-label="Create box"]').forEach(button => {
    if (!button.dataset.ppCreate) { button.dataset.ppCreate = "1"; button.click(); }
  });
  new MutationObserver(() => { createMode(); relabelTabs(); }).observe(document.body, {childList: true, subtree: true});
  createMode();
}
"""


def language_switch() -> None:
    """English / 中文 buttons: gradio's i18n follows the browser's language until one is pressed."""
    with gr.Row(elem_id="language-switch"):
        for language, name in (("en", "English"), ("zh", "中文")):
            gr.Button(name, size="sm", scale=0, min_width=70, elem_id=f"language-{language}").click(
                None, js=f"() => window.ppSetLocale('{language}')", api_visibility="private")


def scroll_into_view_on(button, elem_id: str) -> None:
    """When `button` is clicked, bring the element `elem_id` (the results) into view, so a run started
    from an example at the bottom of a long page shows its progress and result, not the examples."""
    button.click(None, js=f"() => document.getElementById('{elem_id}')?.scrollIntoView({{block: 'start'}})",
                 api_visibility="private")


def segment_on_click(scene: gr.Image, prompts: gr.Textbox, click_mode: gr.Radio, model: gr.Dropdown,
                     choice: gr.Radio, outputs: list, segment: Callable) -> None:
    """Click-to-mask wiring: a click on `scene` adds a point (or a box corner, per `click_mode`) to the
    prompts text, then `segment(scene, prompts, model, choice, progress)` — the tab's own public
    step — fills `outputs`, unless the click was the first corner of a box, which waits for the second."""
    from demos.click_to_mask import add_click, parse_prompts

    def click(prompts_text: str, mode: str, evt: gr.SelectData) -> str:
        return add_click(prompts_text, *evt.index, mode)

    @user_errors
    def segment_after_click(picture, prompts_text, model_name, mask_choice, progress=gr.Progress(track_tqdm=True)):
        if parse_prompts(prompts_text).empty:
            return gr.skip() if len(outputs) == 1 else tuple(gr.skip() for _ in outputs)
        return segment(picture, prompts_text, model_name, mask_choice, progress)

    scene.select(user_errors(click), inputs=[prompts, click_mode], outputs=prompts, api_visibility="private").success(
        segment_after_click, inputs=[scene, prompts, model, choice], outputs=outputs, api_visibility="private")


def seed_controls(default: int = 0):
    """A seed box and a randomise toggle; handlers return the seed they used into the box."""
    with gr.Row():
        # No `precision=0`: it would round a seed of 1.5 to 2 silently; the run refuses it instead.
        seed = gr.Number(label="Seed", value=default, minimum=0)
        randomize = gr.Checkbox(label="Random seed", value=False)
    return seed, randomize


def loaded_models_table() -> list[list[Any]]:
    return [
        [m.name, m.checkpoint, m.device, round(m.nbytes / 2**20, 1), round(m.load_seconds, 2),
         models.model_cache.load_counts[m.name]]
        for m in models.model_cache.loaded()
    ]


def free_models() -> list[list[Any]]:
    models.model_cache.clear()
    return loaded_models_table()


def available_models_table() -> list[list[Any]]:
    """Every registered model with its published checkpoint and what it costs on a CPU and on a GPU."""
    rows = []
    for spec in models.REGISTRY.values():
        cpu, gpu = (models.model_cache.published_figures(spec, device) for device in ("cpu", "cuda"))
        rows.append([spec.name, spec.checkpoint, round(cpu[0] / 1e9, 2), round(cpu[1] / 2**30, 1),
                     round(gpu[0] / 1e9, 2), round(gpu[1] / 2**30, 1), spec.description])
    return rows


def models_panel() -> None:
    """An accordion listing every model (download and memory on a CPU and a GPU) and the resident ones
    (device, memory, load time), with a button to free them."""
    settings = models.model_settings
    with gr.Accordion(f"Models (profile: {settings.profile})", open=False):
        gr.Markdown(
            "Models load on first use and stay shared between tabs; the least recently used are "
            f"unloaded above {settings.max_loaded_models or 'unlimited'} models or when a new one needs the "
            "room, and a model that cannot fit is refused with its size. Figures are for the published "
            "checkpoints: a CPU reads fp32 files (3-8B language models and unCLIP run in bfloat16 there), a "
            "GPU the `fp16` files where published; memory includes a run's margin. "
            "`python app.py --check` says what this machine still needs."
        )
        gr.Dataframe(
            value=available_models_table(),
            headers=["model", "checkpoint", "CPU download GB", "CPU memory GiB", "GPU download GB",
                     "GPU memory GiB", "about"],
            interactive=False, label="Available models",
        )
        table = gr.Dataframe(
            headers=["model", "checkpoint", "device", "memory MiB", "load s", "loads"],
            interactive=False, label="Loaded now",
        )
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm")
            free = gr.Button("Free all models", size="sm", variant="stop")
        refresh.click(loaded_models_table, outputs=table, api_name="loaded_models")
        free.click(free_models, outputs=table, api_name="free_models")
