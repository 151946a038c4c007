"""What a tab declares to join the Compare tab: data only, so tabs never import `demos.tabs.compare`.

A tab lists `COMPARE_METHODS = [Method(task, name, run, parameters), ...]` in its own module, where
`run` is a thin adapter over the tab's own `run_*`. The Compare tab reads those lists through the
tab list (`demos.DEMOS`). A task family (`Task`) names the shared inputs its methods take and the
widget that asks for each; a tab that brings a new kind of input defines its `Task` next to its
methods. Families used by several tabs live here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from PIL import Image


@dataclass(frozen=True)
class Field:
    """One shared input of a task family and the widget the Compare tab shows for it."""

    name: str  # the keyword the methods' `run` receives
    label: str
    kind: str = "text"  # text | lines | number | image
    value: Any = None  # the widget's initial value


@dataclass(frozen=True)
class Task:
    """A kind of comparison: what every method of it takes (its fields) and what it returns."""

    name: str
    fields: tuple[Field, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass
class Output:
    """What a method's `run` returns; the Compare tab draws whichever is set (image, scores, text)."""

    image: Image.Image | None = None
    text: str = ""
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class Method:
    task: Task
    name: str
    run: Callable[..., Output]  # called with the task's inputs and the parameters as keywords
    # Sweepable parameters with their defaults; a shared input named here (e.g. "question") can be
    # swept too: the swept value overrides the input, the input overrides the default.
    parameters: Mapping[str, Any] = field(default_factory=dict)


PICTURE = Field("image", "Image", "image")  # the photo that scoring and question-answering tabs share

IMAGE = Task("text + layout → image", (
    Field("prompt", "Prompt"),
    Field("seed", "Seed", "number", 0),
    Field("boxes", "Boxes (phrase: x0,y0,x1,y1 per line)", "lines"),
    Field("control_image", "Control image", "image"),
))

# One photo, one edit, said three ways: an instruction (InstructPix2Pix), a source and an edited prompt
# (prompt-to-prompt after null-text inversion), an edited prompt inside a mask (masked edit).
EDIT = Task("image + edit → image", (
    PICTURE,
    Field("source_prompt", "What the photo shows (prompt-to-prompt's source prompt)", value="a photo of a cat"),
    Field("edited_prompt", "The photo after the edit (prompt-to-prompt, masked edit)", value="a photo of a dog"),
    Field("instruction", "The edit as an instruction (InstructPix2Pix)", value="turn the cat into a dog"),
    Field("mask", "Region to edit, white = edit (masked edit)", "image"),
    Field("seed", "Seed", "number", 0),
))
