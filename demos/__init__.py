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
         "Encoders and Large Language Models, ICML 2023 · Liu et al., Visual Instruction Tuning, NeurIPS 2023 · "
         "Dai et al., InstructBLIP, NeurIPS 2023 (standing in for Zhu et al., MiniGPT-4, ICLR 2024)",
         "demos.vqa", heavy=True),
    Demo("CLIP interrogator", "pharmapsychotic, CLIP Interrogator (github.com/pharmapsychotic/clip-interrogator, 2022): "
         "BLIP-2 caption (Li et al. 2023) + CLIP-ranked phrase banks (Radford et al. 2021)",
         "demos.clip_interrogator", heavy=True),
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
    Demo("InstructPix2Pix", "Brooks, Holynski, Efros, InstructPix2Pix: Learning to Follow Image Editing Instructions, "
         "CVPR 2023", "demos.instruct_pix2pix", heavy=True),
    Demo("Prompt-to-prompt", "Hertz et al., Prompt-to-Prompt Image Editing with Cross-Attention Control, ICLR 2023 · "
         "Mokady et al., Null-text Inversion for Editing Real Images using Guided Diffusion Models, CVPR 2023",
         "demos.prompt_to_prompt", heavy=True),
    Demo("Masked edit", "Meng et al., SDEdit: Guided Image Synthesis and Editing with Stochastic Differential "
         "Equations, ICLR 2022, with the original re-imposed outside a mask at every step (as in RePaint and "
         "DiffFace's M_t)", "demos.masked_edit", heavy=True),
    Demo("MultiDiffusion", "Bar-Tal, Yariv, Lipman, Dekel, MultiDiffusion: Fusing Diffusion Paths for Controlled Image "
         "Generation, ICML 2023", "demos.multidiffusion", heavy=True),
    Demo("unCLIP", "Ramesh et al., Hierarchical Text-Conditional Image Generation with CLIP Latents (DALL·E 2), "
         "arXiv 2204.06125, 2022 · Razzhigaev et al., Kandinsky: an Improved Text-to-Image Synthesis with Image Prior "
         "and Latent Diffusion, EMNLP 2023 (demo track)", "demos.unclip", heavy=True),
    Demo("Segment Anything", "Kirillov et al., Segment Anything, ICCV 2023 · Liu et al., Grounding DINO: Marrying DINO "
         "with Grounded Pre-Training for Open-Set Object Detection, ECCV 2024 · Ren et al., Grounded SAM, arXiv "
         "2401.14159", "demos.segment_anything"),
    Demo("BEiT vs MAE", "Bao et al., BEiT: BERT Pre-Training of Image Transformers, ICLR 2022 · He et al., Masked "
         "Autoencoders Are Scalable Vision Learners, CVPR 2022", "demos.masked_image_modeling"),
    Demo("Personalisation", "Gal et al., An Image is Worth One Word (textual inversion), ICLR 2023 · Hu et al., LoRA, "
         "ICLR 2022 · Ruiz et al., DreamBooth, CVPR 2023 · Kumari et al., Multi-Concept Customization of Text-to-Image "
         "Diffusion (Custom Diffusion), CVPR 2023", "demos.personalisation", heavy=True),
    Demo("Universal guidance", "Bansal et al., Universal Guidance for Diffusion Models, CVPR Workshops 2023 · "
         "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019",
         "demos.universal_guidance", heavy=True),
    Demo("Compare", "Several methods on one input, side by side", "demos.compare", heavy=True),
]
