"""The tabs of the playground in course order, and the topics they sit under: the one list that the page
(`app.py`) and the Compare tab (`demos/tabs/compare.py`) read.

Each entry names a module with a `build_ui()`; `app.py` imports it when the page is built, so a
tab whose import fails shows an error panel while the others keep working. To add a tab, write
`demos/tabs/<paper>.py` with a pure `run_*` function and a `build_ui()`, and add a row here with its topic.
"""
from __future__ import annotations

import json
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
    # Registry names of the models the tab's default request loads (`python app.py --check --tab ...`), and
    # of those its other choices can load.
    checkpoints: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    topic: str = ""  # the key of its `Topic`: the top-level tab it sits under


@dataclass(frozen=True)
class Topic:
    """A top-level tab of the page: a part of the course, holding its papers' tabs in course order."""

    key: str
    title: str
    summary: str  # one line on the start page


TOPICS: list[Topic] = [
    Topic("diffusion", "Diffusion", "How a diffusion model turns noise into a picture: the forward process, DDPM and "
          "DDIM, latent diffusion, few-step samplers."),
    Topic("seeing", "Seeing & asking", "Models that read images: CLIP's zero-shot labels, visual question answering, "
          "a prompt recovered from a picture, segmenting anything, masked image modelling."),
    Topic("control", "Controlling", "Steering Stable Diffusion with maps, boxes, regions and image embeddings: "
          "ControlNet and T2I-Adapter, layout guidance, GLIGEN, MultiDiffusion, unCLIP."),
    Topic("editing", "Editing", "Changing a given picture: by an instruction, by swapping words of its prompt, "
          "inside a mask, or with an example object."),
    Topic("faces", "Faces & guidance", "Guiding a diffusion model with networks it never saw: face swapping and "
          "universal guidance."),
    Topic("personalisation", "Personalisation", "Teaching Stable Diffusion a new word, style or subject, and "
          "training one in class."),
    Topic("papers", "More papers", "The course's papers with no runnable demo here: the idea, its key equation, a "
          "diagram, the nearest tab to try and why there is no demo."),
    Topic("compare", "Compare", "Several methods on one input, side by side, exported as a grid and its parameters."),
]


CONTROLNET_OPTIONAL = tuple(
    [f"controlnet-{name}" for name in ("depth", "openpose", "softedge", "scribble", "lineart", "seg", "normal")]
    + [f"controlnet-t2iadapter-{name}" for name in ("sketch", "depth", "openpose", "seg")]
    + [f"controlnet-annotator-{name}" for name in ("depth", "openpose", "hed", "lineart", "seg", "normalbae")])

DEMOS: list[Demo] = [
    Demo("How diffusion samples", "Ho et al., DDPM, NeurIPS 2020 · Song et al., DDIM, ICLR 2021 · Nichol & Dhariwal, "
         "iDDPM, ICML 2021 · Rombach et al., LDM, CVPR 2022 · Song et al., Consistency Models, ICML 2023 · Luo et al., "
         "LCM-LoRA, arXiv 2311.05556", "demos.tabs.diffusion_basics", heavy=True,
         checkpoints=("ddpm-celebahq-256", "sd15", "lcm-lora-sd15", "cd-imagenet64"), topic='diffusion'),
    Demo("Diffusion theory", "Ho et al., DDPM, NeurIPS 2020 · Nichol & Dhariwal, iDDPM, ICML 2021 · Song et al., "
         "Score-Based Generative Modeling through Stochastic Differential Equations, ICLR 2021 · Ronneberger et al., "
         "U-Net, MICCAI 2015", "demos.tabs.diffusion_theory", heavy=True,
         checkpoints=("ddpm-celebahq-256", "ncsnpp-celebahq-256"), optional=("sd15",), topic='diffusion'),
    Demo("Samplers & guidance", "Song et al., DDIM, ICLR 2021 · Liu et al., PNDM, ICLR 2022 · Karras et al., "
         "Elucidating the Design Space of Diffusion-Based Generative Models, NeurIPS 2022 · Lu et al., DPM-Solver++, "
         "arXiv 2211.01095 · Ho & Salimans, Classifier-Free Diffusion Guidance, NeurIPS 2021 Workshop · Dhariwal & "
         "Nichol, Diffusion Models Beat GANs on Image Synthesis, NeurIPS 2021 · Mokady et al., Null-text Inversion, "
         "CVPR 2023", "demos.tabs.samplers_and_guidance", heavy=True, checkpoints=("sd15",), topic='diffusion'),
    Demo("Imagen-style cascade (DeepFloyd IF)", "Saharia et al., Photorealistic Text-to-Image Diffusion Models with "
         "Deep Language Understanding (Imagen), NeurIPS 2022 · Ho et al., Cascaded Diffusion Models, JMLR 2022 · "
         "DeepFloyd IF (StabilityAI, 2023)", "demos.tabs.if_cascade", heavy=True,
         checkpoints=("if-t5-xxl", "if-i-m", "if-ii-m"), optional=("sd15",), topic='diffusion'),
    Demo("CLIP zero-shot", "Radford et al., Learning Transferable Visual Models From Natural Language "
         "Supervision, ICML 2021", "demos.tabs.clip_zero_shot",
         checkpoints=("clip-vit-base-patch32",), optional=("clip-vit-base-patch16", "clip-vit-large-patch14"), topic='seeing'),
    Demo("Visual QA: BLIP-2 vs LLaVA", "Li et al., BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image "
         "Encoders and Large Language Models, ICML 2023 · Liu et al., Visual Instruction Tuning, NeurIPS 2023 · "
         "Dai et al., InstructBLIP, NeurIPS 2023 (standing in for Zhu et al., MiniGPT-4, ICLR 2024)",
         "demos.tabs.vqa", heavy=True,
         checkpoints=("blip2-opt-2.7b", "llava-interleave-qwen-0.5b"),
         optional=("blip2-flan-t5-xl", "instructblip-vicuna-7b", "llava-1.5-7b"), topic='seeing'),
    Demo("BLIP-2 matching", "Li et al., BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders "
         "and Large Language Models, ICML 2023 (stage 1: ITC, ITM, ITG)", "demos.tabs.blip2_matching", heavy=True,
         checkpoints=("blip2-itm-vit-g",), topic='seeing'),
    Demo("CLIP interrogator", "pharmapsychotic, CLIP Interrogator (github.com/pharmapsychotic/clip-interrogator, 2022): "
         "BLIP-2 caption (Li et al. 2023) + CLIP-ranked phrase banks (Radford et al. 2021)",
         "demos.tabs.clip_interrogator", heavy=True,
         checkpoints=("blip2-opt-2.7b", "clip-vit-large-patch14"),
         optional=("blip2-flan-t5-xl", "clip-vit-base-patch32", "clip-vit-base-patch16"), topic='seeing'),
    Demo("Segment Anything", "Kirillov et al., Segment Anything, ICCV 2023 · Liu et al., Grounding DINO: Marrying DINO "
         "with Grounded Pre-Training for Open-Set Object Detection, ECCV 2024 · Ren et al., Grounded SAM, arXiv "
         "2401.14159", "demos.tabs.segment_anything",
         checkpoints=("sam-vit-b", "grounding-dino-tiny"), optional=("sam-vit-h",), topic='seeing'),
    Demo("BEiT vs MAE", "Bao et al., BEiT: BERT Pre-Training of Image Transformers, ICLR 2022 · He et al., Masked "
         "Autoencoders Are Scalable Vision Learners, CVPR 2022 · Zhou et al., Scene Parsing through ADE20K Dataset, "
         "CVPR 2017", "demos.tabs.masked_image_modeling",
         checkpoints=("beit-base-pt22k", "vit-mae-base"), optional=("beit-base-ade-640",), topic='seeing'),
    Demo("ControlNet", "Zhang, Rao, Agrawala, Adding Conditional Control to Text-to-Image Diffusion Models, ICCV 2023; "
         "Mou et al., T2I-Adapter: Learning Adapters to Dig out More Controllable Ability for Text-to-Image "
         "Diffusion Models, AAAI 2024", "demos.tabs.controlnet", heavy=True,
         checkpoints=("sd15", "controlnet-canny"), optional=CONTROLNET_OPTIONAL, topic='control'),
    Demo("Composer-style composition", "Huang et al., Composer: Creative and Controllable Image Synthesis with "
         "Composable Conditions, ICML 2023 (no published weights; composed here with Mou et al., T2I-Adapter, AAAI "
         "2024 and Ye et al., IP-Adapter, arXiv 2308.06721)", "demos.tabs.composition", heavy=True,
         checkpoints=("sd15", "controlnet-t2iadapter-sketch", "controlnet-t2iadapter-depth", "controlnet-annotator-depth",
                      "t2iadapter-color-sd14", "ip-adapter-sd15"), topic='control'),
    Demo("Layout guidance", "Chen, Laina, Vedaldi, Training-Free Layout Control with Cross-Attention Guidance, "
         "WACV 2024", "demos.tabs.layout_guidance", heavy=True,
         checkpoints=("sd15",), topic='control'),
    Demo("GLIGEN", "Li et al., GLIGEN: Open-Set Grounded Text-to-Image Generation, CVPR 2023", "demos.tabs.gligen", heavy=True,
         checkpoints=("gligen-text-box",), optional=("gligen-inpainting-text-box",), topic='control'),
    Demo("Boxes side by side", "Plain Stable Diffusion vs. layout guidance (Chen et al. 2024) vs. GLIGEN "
         "(Li et al. 2023), same prompt, boxes and seed", "demos.tabs.boxes_side_by_side", heavy=True,
         combines=("demos.tabs.layout_guidance", "demos.tabs.gligen"), checkpoints=("sd15", "gligen-text-box"), topic='control'),
    Demo("MultiDiffusion", "Bar-Tal, Yariv, Lipman, Dekel, MultiDiffusion: Fusing Diffusion Paths for Controlled Image "
         "Generation, ICML 2023", "demos.tabs.multidiffusion", heavy=True,
         checkpoints=("sd15",), topic='control'),
    Demo("unCLIP", "Ramesh et al., Hierarchical Text-Conditional Image Generation with CLIP Latents (DALL·E 2), "
         "arXiv 2204.06125, 2022 · Razzhigaev et al., Kandinsky: an Improved Text-to-Image Synthesis with Image Prior "
         "and Latent Diffusion, EMNLP 2023 (demo track)", "demos.tabs.unclip", heavy=True,
         checkpoints=("kandinsky22-prior", "kandinsky22-decoder"), topic='control'),
    Demo("InstructPix2Pix", "Brooks, Holynski, Efros, InstructPix2Pix: Learning to Follow Image Editing Instructions, "
         "CVPR 2023", "demos.tabs.instruct_pix2pix", heavy=True,
         checkpoints=("instruct-pix2pix",), topic='editing'),
    Demo("Prompt-to-prompt", "Hertz et al., Prompt-to-Prompt Image Editing with Cross-Attention Control, ICLR 2023 · "
         "Mokady et al., Null-text Inversion for Editing Real Images using Guided Diffusion Models, CVPR 2023",
         "demos.tabs.prompt_to_prompt", heavy=True, checkpoints=("sd15",), topic='editing'),
    Demo("Masked edit", "Meng et al., SDEdit: Guided Image Synthesis and Editing with Stochastic Differential "
         "Equations, ICLR 2022, with the original re-imposed outside a mask at every step (as in RePaint and "
         "DiffFace's M_t)", "demos.tabs.masked_edit", heavy=True,
         checkpoints=("sd15",), optional=("sam-vit-b", "sam-vit-h"), topic='editing'),
    Demo("Paint-by-Example", "Yang et al., Paint by Example: Exemplar-based Image Editing with Diffusion Models, "
         "CVPR 2023", "demos.tabs.paint_by_example", heavy=True,
         checkpoints=("paint-by-example",), optional=("sam-vit-b", "sam-vit-h"), topic='editing'),
    Demo("Face swap (DiffFace)", "Kim et al., DiffFace: Diffusion-based Face Swapping with Facial Guidance, "
         "arXiv 2212.13344, 2022", "demos.tabs.face_swap", heavy=True,
         checkpoints=("face-detector-mtcnn", "ddpm-celebahq-256", "arcface-buffalo-l", "facenet-casia-webface",
                      "face-parser-segformer"), optional=("facenet-vggface2",), topic='faces'),
    Demo("Universal guidance", "Bansal et al., Universal Guidance for Diffusion Models, CVPR Workshops 2023 · "
         "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019",
         "demos.tabs.universal_guidance", heavy=True,
         checkpoints=("sd15", "face-detector-mtcnn", "arcface-buffalo-l", "facenet-casia-webface",
                      "face-parser-segformer", "clip-vit-base-patch16"), optional=("facenet-vggface2",), topic='faces'),
    Demo("Personalisation", "Gal et al., An Image is Worth One Word (textual inversion), ICLR 2023 · Hu et al., LoRA, "
         "ICLR 2022 · Ruiz et al., DreamBooth, CVPR 2023 · Kumari et al., Multi-Concept Customization of Text-to-Image "
         "Diffusion (Custom Diffusion), CVPR 2023", "demos.tabs.personalisation", heavy=True,
         checkpoints=("sd15", "ti-cat-toy", "lora-pokemon", "dreambooth-lora-dog", "custom-diffusion-cat-pot"), topic='personalisation'),
    Demo("More papers", "A card per paper of the course without a runnable demo", "demos.tabs.paper_cards",
         topic='papers'),
    Demo("Compare", "Several methods on one input, side by side", "demos.tabs.compare", heavy=True, topic='compare'),
]


def checkpoints_of(titles: list[str], optional: bool = False) -> list[str]:
    """The registry names the tabs with these titles load by default (and with `optional`, by choice), in order."""
    by_title = {demo.title.lower(): demo for demo in DEMOS}
    unknown = [title for title in titles if title.lower() not in by_title]
    if unknown:
        raise KeyError(f"no tab named {', '.join(unknown)}; tabs: {', '.join(d.title for d in DEMOS)}")
    names = [name for title in titles for demo in [by_title[title.lower()]]
             for name in demo.checkpoints + (demo.optional if optional else ())]
    return list(dict.fromkeys(names))


def lesson_checkpoints(name: str, registry: set[str]) -> list[str]:
    """What a lesson (`assets/lessons/<name>.json`) loads: its tabs' defaults, any model its steps pick by
    name, and those its steps' other choices load (its "checkpoints" list, e.g. the T2I-Adapter a
    comparison step ticks)."""
    path = ASSETS / "lessons" / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.json")))
        raise KeyError(f"no lesson named {name!r}; lessons: {known}")
    lesson = json.loads(path.read_text())
    steps = lesson["steps"]
    picked = [value for step in steps for value in step.get("inputs", {}).values()
              if isinstance(value, str) and value in registry]
    tabs = checkpoints_of(list(dict.fromkeys(step["tab"] for step in steps)))
    return list(dict.fromkeys(tabs + picked + lesson.get("checkpoints", [])))
