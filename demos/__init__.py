"""The tabs of the playground, in display order.

Each entry names a module with a `build_ui()`; `app.py` imports it when the page is built, so a
tab whose import fails shows an error panel while the others keep working. To add a tab, write
`demos/<paper>.py` with a pure `run_*` function and a `build_ui()`, and add a row here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Demo:
    title: str
    paper: str  # citation shown above the tab
    module: str  # importable module with build_ui()


DEMOS: list[Demo] = [
    Demo("CLIP zero-shot", "Radford et al., Learning Transferable Visual Models From Natural Language "
         "Supervision, ICML 2021", "demos.clip_zero_shot"),
    Demo("Face swap (DiffFace)", "Kim et al., DiffFace: Diffusion-based Face Swapping with Facial Guidance, "
         "arXiv 2212.13344, 2022", "demos.face_swap"),
]
