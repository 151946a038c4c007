"""What the page hooks into gradio's server: malformed requests answered in one plain line in the reader's
language, and the queue hook that stops runs whose user left and lets light requests pass heavy ones."""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

import gradio as gr
from PIL import Image

from demos.page.i18n import table
from demos.shared.inputs import UNREADABLE_IMAGE
from demos.shared.messages import reader_language, translate
from models import JobDropped

log = logging.getLogger(__name__)


WRONG_KIND_OF_INPUT = ("An input got the wrong kind of value (for example a file where text or a list is "
                       "expected). The API page of this app lists what each endpoint takes.")


def plain_input_errors(app: gr.Blocks) -> None:
    """Answer a request that gradio cannot turn into handler arguments (a file that is not an image,
    a file where a choice or a list is expected) with one plain line, instead of gradio's own
    message, which repeats the payload with its server paths or dumps a pydantic error."""
    for block in app.blocks.values():
        if isinstance(block, gr.components.Component):
            block.preprocess = _plain_preprocess(block)
    preprocess_data, process_api = app.preprocess_data, app.process_api

    @functools.wraps(process_api)
    async def process_api_knowing_its_reader(block_fn: Any, *args: Any, **kwargs: Any) -> Any:
        """gradio tells a handler its request, but not the input checks that run before it: these are
        told here, so that their messages too are in the reader's language. A refusal is logged as one
        line naming the endpoint (gradio would print its whole traceback: nothing the app did wrong)."""
        from gradio.context import LocalContext

        token = LocalContext.request.set(kwargs.get("request"))
        try:
            return await process_api(block_fn, *args, **kwargs)
        except gr.Error as error:  # every refusal passes here: input checks, handlers, each streamed step
            error.print_exception = False
            function = app.fns[block_fn] if isinstance(block_fn, int) else block_fn
            log.info("/%s refused a request: %s", function.api_name or function.name, error.message)
            raise
        finally:
            LocalContext.request.reset(token)

    @functools.wraps(preprocess_data)
    async def checked_preprocess_data(*args: Any, **kwargs: Any) -> Any:
        try:
            return await preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # a payload of the wrong shape, caught by gradio's data models
            log.info("refused a malformed request: %s: %s", type(error).__name__, error)
            raise gr.Error(translate(WRONG_KIND_OF_INPUT, reader_language())) from None

    app.preprocess_data, app.process_api = checked_preprocess_data, process_api_knowing_its_reader


def _shown_label(component: gr.components.Component, language: str) -> str:
    """What the reader sees a widget called: its label in their language (the widget's kind if it has none)."""
    label = getattr(component, "label", None)
    if label is None:
        return component.get_block_name()
    key = getattr(label, "key", None) or {text: key for key, text in table("en").items()}.get(label)
    return table(language).get(key, str(label))


def _plain_preprocess(component: gr.components.Component) -> Callable:
    preprocess = component.preprocess

    @functools.wraps(preprocess)
    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception as error:
            language = reader_language()
            choices = [str(value) for _, value in getattr(component, "choices", None) or []]
            file_types = getattr(component, "file_types", None)
            if isinstance(error, (OSError, Image.DecompressionBombError)):
                reason = translate(UNREADABLE_IMAGE, language)
            elif file_types:
                reason = translate(f"It takes files of these types: {', '.join(file_types)}.", language)
            elif choices:
                reason = translate(f"This value is not one it accepts. Choose one of: {', '.join(choices)}.", language)
            else:
                reason = translate("This value is not one it accepts.", language)
            raise gr.Error(f"{_shown_label(component, language)}: {reason}") from None
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
