"""Stable Diffusion's published safety checker, when it is on: it blanks what it flags, and the tab says so.

Off by default on a local run (no 1.2 GB download, no silent black images); `app.py` turns it on for a
public link without a password or a Hugging Face Space (`--safety-checker on|off` decides by hand). When on,
every SD-family pipeline carries the checker of its repository, `screened_images` passes a tab's own decoded
pictures through it as the pipelines do with theirs, and each check is recorded for the request that ran it,
so the page can tell the reader which images were blanked and why (`report`), never a black square alone.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_FLAGS: contextvars.ContextVar[list[list[bool]] | None] = contextvars.ContextVar("safety_flags", default=None)


def watch(checker: Any) -> Any:
    """Record each verdict of `checker` (a `StableDiffusionSafetyChecker`) for the request that asked."""
    if getattr(checker, "_paper_playground_watched", False):
        return checker
    forward = checker.forward

    def checked(*args: Any, **kwargs: Any) -> Any:
        images, flagged = forward(*args, **kwargs)
        record = _FLAGS.get()
        if record is not None:
            record.append([bool(flag) for flag in flagged])
        return images, flagged

    checker.forward = checked
    checker._paper_playground_watched = True
    return checker


@contextlib.contextmanager
def collect_flags(flags: list[list[bool]] | None = None) -> Iterator[list[list[bool]]]:
    """The safety checker's verdicts during the block (added to `flags`), one list per checked batch. Set and
    reset in one thread: a generator handler enters it around each step, not across its yields."""
    flags = [] if flags is None else flags
    token = _FLAGS.set(flags)
    try:
        yield flags
    finally:
        _FLAGS.reset(token)


def screened_images(pipe: Any, pixels: Any) -> list[Any]:
    """Decoded pixels (in [-1, 1]) → PIL images, through the pipeline's safety checker if it has one (the
    same step the diffusers pipelines take before returning images)."""
    if getattr(pipe, "safety_checker", None) is None:
        return pipe.image_processor.postprocess(pixels, output_type="pil")
    pixels, flagged = pipe.run_safety_checker(pixels, pixels.device, pipe.safety_checker.dtype)
    # a blanked image is 0 in [-1, 1]: left un-denormalised it shows black, not grey
    return pipe.image_processor.postprocess(pixels, output_type="pil", do_denormalize=[not f for f in flagged])


def report(flags: list[list[bool]]) -> str | None:
    """What to tell the reader when the checker blanked something, else None."""
    blanked = [(batch, index, len(verdicts)) for batch, verdicts in enumerate(flags)
               for index, flagged in enumerate(verdicts) if flagged]
    if not blanked:
        return None
    total = sum(len(verdicts) for verdicts in flags)
    which = ", ".join(f"image {index + 1} of {size}" for _, index, size in blanked)
    return (f"The safety checker blanked {len(blanked)} of the {total} generated images ({which}): Stable "
            "Diffusion's published NSFW filter judged them possibly not safe for work, and shows black instead. "
            "It is on because this page is shared publicly without a password, runs as a Space, or was started "
            "with --safety-checker on; whoever runs the app can start it with --safety-checker off.")
