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
    Demo("Layout guidance", "Chen, Laina, Vedaldi, Training-Free Layout Control with Cross-Attention Guidance, "
         "WACV 2024", "demos.layout_guidance"),
    Demo("GLIGEN", "Li et al., GLIGEN: Open-Set Grounded Text-to-Image Generation, CVPR 2023", "demos.gligen"),
    Demo("Boxes side by side", "Plain Stable Diffusion vs. layout guidance (Chen et al. 2024) vs. GLIGEN "
         "(Li et al. 2023), same prompt, boxes and seed", "demos.boxes_side_by_side"),
]
