"""The tabs of the playground, in display order: the one list that the page (`app.py`) and the
Compare tab (`demos/compare.py`) read.

Each entry names a module with a `build_ui()`; `app.py` imports it when the page is built, so a
tab whose import fails shows an error panel while the others keep working. To add a tab, write
`demos/<paper>.py` with a pure `run_*` function and a `build_ui()`, and add a row here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"  # example images, layouts, Compare presets


@dataclass(frozen=True)
class Demo:
    title: str
    paper: str  # citation shown above the tab
    module: str  # importable module with build_ui()
    heavy: bool = False  # runs a diffusion model or an LLM: its events share the one GPU queue
    # Tabs whose run_* this tab runs side by side (the only tab-to-tab import allowed).
    combines: tuple[str, ...] = ()


DEMOS: list[Demo] = [
    Demo("CLIP zero-shot", "Radford et al., Learning Transferable Visual Models From Natural Language "
         "Supervision, ICML 2021", "demos.clip_zero_shot"),
    Demo("Visual QA: BLIP-2 vs LLaVA", "Li et al., BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image "
         "Encoders and Large Language Models, ICML 2023 · Liu et al., Visual Instruction Tuning, NeurIPS 2023",
         "demos.vqa", heavy=True),
    Demo("ControlNet", "Zhang, Rao, Agrawala, Adding Conditional Control to Text-to-Image Diffusion Models, ICCV 2023; "
         "Mou et al., T2I-Adapter: Learning Adapters to Dig out More Controllable Ability for Text-to-Image "
         "Diffusion Models, AAAI 2024", "demos.controlnet", heavy=True),
    Demo("Face swap (DiffFace)", "Kim et al., DiffFace: Diffusion-based Face Swapping with Facial Guidance, "
         "arXiv 2212.13344, 2022", "demos.face_swap", heavy=True),
    Demo("Layout guidance", "Chen, Laina, Vedaldi, Training-Free Layout Control with Cross-Attention Guidance, "
         "WACV 2024", "demos.layout_guidance", heavy=True),
    Demo("GLIGEN", "Li et al., GLIGEN: Open-Set Grounded Text-to-Image Generation, CVPR 2023", "demos.gligen", heavy=True),
    Demo("Boxes side by side", "Plain Stable Diffusion vs. layout guidance (Chen et al. 2024) vs. GLIGEN "
         "(Li et al. 2023), same prompt, boxes and seed", "demos.boxes_side_by_side", heavy=True,
         combines=("demos.layout_guidance", "demos.gligen")),
    Demo("Paint-by-Example", "Yang et al., Paint by Example: Exemplar-based Image Editing with Diffusion Models, "
         "CVPR 2023", "demos.paint_by_example", heavy=True),
    Demo("How diffusion samples", "Ho et al., DDPM, NeurIPS 2020 · Song et al., DDIM, ICLR 2021 · Nichol & Dhariwal, "
         "iDDPM, ICML 2021 · Rombach et al., LDM, CVPR 2022 · Song et al., Consistency Models, ICML 2023 · Luo et al., "
         "LCM-LoRA, arXiv 2311.05556", "demos.diffusion_basics", heavy=True),
    Demo("Universal guidance", "Bansal et al., Universal Guidance for Diffusion Models, CVPR Workshops 2023 · "
         "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019",
         "demos.universal_guidance", heavy=True),
    Demo("Compare", "Several methods on one input, side by side", "demos.compare", heavy=True),
]
