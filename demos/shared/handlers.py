"""What every tab's event handlers share: bad input and failures as one clear `gr.Error`, out-of-memory
handled, and the safety checker's blanked images reported in words (never a black square alone)."""
from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Any, Callable

import gradio as gr

from demos.shared.messages import in_reader_language, reader_language, translate
from models import JobDropped, UserError
from models.cache import release_memory
from models.safety import collect_flags, report as safety_report

log = logging.getLogger(__name__)

OUT_OF_MEMORY = ("The machine ran out of memory for this request. Try fewer steps or images, a lower "
                 "resolution or a smaller model, or free models in the Models panel, then run it again.")


def _is_out_of_memory(error: Exception) -> bool:
    torch = sys.modules.get("torch")  # no model has run (nor could have run out of memory) before torch is imported
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


def user_errors(function: Callable) -> Callable:
    """Wrap an event handler so bad input shows a `gr.Error` and unexpected failures are logged
    and reported in one line, instead of a stack trace; the app keeps serving either way. Running out
    of memory frees what it can (the CUDA cache) and tells that user what to lower. Errors and the texts
    the handler returns reach the reader in the page's language (`demos.shared.messages`)."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, (UserError, JobDropped)):
            if isinstance(error, JobDropped):
                log.info("stopped %s: %s", function.__name__, error)
            message = str(error)
        elif _is_out_of_memory(error):
            log.warning("out of memory in %s: %s", function.__name__, error)
            release_memory()
            message = OUT_OF_MEMORY
        else:
            log.exception("unexpected error in %s", function.__name__)
            message = f"Something went wrong ({type(error).__name__}: {error}). Details are in the server log."
        return gr.Error(translate(message, reader_language()))

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
                    yield in_reader_language(value)
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
                return in_reader_language(function(*args, **kwargs))
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
        gr.Warning(translate(text, reader_language()), duration=None)
