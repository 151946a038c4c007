"""Print one hash per output of every tab's `run_*` on fixed inputs (tiny profile, fixed seeds).

Run it before and after a refactor on the same machine with the same `PP_TINY_DIR`: identical lines
mean identical pixels (and scores and answers). The hashes depend on the CPU and library builds, so
they are compared between two runs, never stored as test expectations.

    PP_TINY_DIR=/tmp/pp-tiny python scripts/output_fingerprints.py
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PP_MODELS"] = "tiny"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ASSETS = ROOT / "assets"
LAYOUT = "cat: 0.1,0.2,0.5,0.8\nball: 0.6,0.5,0.9,0.9"
PROMPT = "a cat and a ball"


def fingerprint(value: Any) -> str:
    """A short hash of an image (PIL, array or PNG path), or of a value's exact repr."""
    if isinstance(value, (str, Path)) and str(value).endswith(".png"):
        value = Image.open(value)
    if isinstance(value, Image.Image):
        value = np.asarray(value.convert("RGB") if value.mode not in ("RGB", "L") else value)
    data = value.tobytes() + str(value.shape).encode() if isinstance(value, np.ndarray) else repr(value).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def show(name: str, value: Any) -> None:
    print(f"{name:48s} {fingerprint(value)}", flush=True)


def show_grid(name: str, grid: list) -> None:
    """Each Compare cell as drawn (the grid image itself also prints each cell's time)."""
    from demos.tabs.compare import render_cell

    for row, cells in enumerate(grid):
        for column, cell in enumerate(cells):
            show(f"{name}[{row}][{column}]", render_cell(cell))


def show_result(name: str, result: Any) -> None:
    """Every image, array, text and number field of a tab's result dataclass (lists and dicts of them too)."""
    import dataclasses

    for field in dataclasses.fields(result):
        if field.name in ("seconds", "prior_seconds", "decoder_seconds", "elapsed", "parameters", "timings", "cost"):
            continue  # wall-clock times and echoed inputs
        for key, value in _leaves(getattr(result, field.name)):
            show(f"{name}.{field.name}{key}", value)


def _leaves(value: Any, key: str = ""):
    if isinstance(value, (Image.Image, np.ndarray, str, int, float)):
        yield key, value
    elif isinstance(value, torch.Tensor):
        yield key, value.detach().float().cpu().numpy()
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{key}[{index}]")
    elif isinstance(value, dict):
        for item_key, item in value.items():
            yield from _leaves(item, f"{key}[{item_key!r}]")


def newer_tabs(chelsea: Image.Image, astronaut: Image.Image) -> None:
    """The tabs added after the first fingerprint list, each with a short run."""
    from demos.tabs.clip_interrogator import run_clip_interrogator
    from demos.tabs.diffusion_basics import run_latent_sampler, run_pixel_sampler
    from demos.tabs.instruct_pix2pix import run_instruct_pix2pix
    from demos.tabs.masked_edit import run_masked_edit
    from demos.tabs.masked_image_modeling import run_masked_image_modeling
    from demos.tabs.multidiffusion import run_panorama
    from demos.tabs.personalisation import run_personalisation
    from demos.tabs.prompt_to_prompt import run_prompt_to_prompt
    from demos.tabs.segment_anything import run_segment_everything
    from demos.tabs.unclip import run_unclip
    from demos.tabs.universal_guidance import IDENTITY, run_universal_guidance

    helmet = Image.open(ASSETS / "mask_astronaut_helmet.png")
    show_result("clip_interrogator", run_clip_interrogator(chelsea, mode="classic"))
    show_result("pixel_sampler", run_pixel_sampler("DDIM", 4, seed=3))
    show_result("latent_sampler", run_latent_sampler("a red cube", "DDIM", 3, seed=1, resolution=64))
    show_result("instruct_pix2pix", run_instruct_pix2pix(astronaut, "make it snowy", steps=2, seed=3))
    show_result("prompt_to_prompt", run_prompt_to_prompt("a cat on a sofa", "a dog on a sofa", steps=3, seed=3))
    show_result("masked_edit", run_masked_edit(astronaut, helmet, "roses", steps=2, seed=5))
    show_result("multidiffusion", run_panorama("a mountain lake", width=192, steps=2, seed=3))
    show_result("unclip", run_unclip("a lighthouse", prior_steps=2, decoder_steps=2, seed=1))
    show_result("segment_anything", run_segment_everything(astronaut, points_per_side=4))
    show_result("masked_image_modeling", run_masked_image_modeling(chelsea, "blockwise", 0.4, seed=2))
    show_result("personalisation", run_personalisation("a photo of {}", "LoRA", steps=2, seed=3))
    show_result("universal_guidance", run_universal_guidance("a portrait", IDENTITY, astronaut, steps=3,
                                                             strength=10.0, seed=2))


def main() -> None:
    torch.set_num_threads(1)  # one thread: the same reduction order on every run
    from demos.tabs.boxes_side_by_side import run_side_by_side
    from demos.shared.click_to_mask import run_click_to_mask
    from demos.tabs.clip_zero_shot import run_clip_similarity, run_clip_zero_shot
    from demos.tabs.compare import Plan, compare_grid
    from demos.tabs.controlnet import run_control_map, run_controlnet
    from demos.tabs.face_swap import run_face_swap
    from demos.tabs.gligen import run_gligen
    from demos.tabs.layout_guidance import attention_views, run_layout_guidance
    from demos.tabs.paint_by_example import run_paint_by_example
    from demos.tabs.vqa import ask

    chelsea, astronaut, camera = (Image.open(ASSETS / name) for name in ("chelsea.jpg", "astronaut.jpg", "camera.jpg"))

    clip = run_clip_zero_shot(chelsea, "cat, dog, rocket", "a photo of a {}.\nart of the {}.")
    show("clip_zero_shot.probabilities", clip.probabilities)
    similarity = run_clip_similarity([chelsea, astronaut], "a cat\nan astronaut")
    show("clip_similarity.similarities", similarity.similarities)

    answer = ask(chelsea, "What animal is this?", llava_model="llava-interleave-qwen-0.5b", seed=3)
    show("vqa.blip2", answer.blip2.answer)
    show("vqa.llava", answer.llava.answer)

    show("controlnet_map.canny", run_control_map(astronaut, "canny"))
    control = run_controlnet(astronaut, "canny", "an astronaut", steps=2, seed=5, compare_adapter=True,
                             compare_plain=True)
    for field in ("control_maps", "images", "adapter_images", "plain_images"):
        for index, image in enumerate(getattr(control, field)):
            show(f"controlnet.{field}[{index}]", image)

    swap = run_face_swap(camera, astronaut, steps=10, start_noise=0.8, mask_threshold=3, candidates=2, seed=7)
    show("face_swap.image", swap.image)
    for key, image in swap.aligned.items():
        show(f"face_swap.aligned.{key}", image)
    for index, (image, _) in enumerate(swap.trajectory):
        show(f"face_swap.trajectory[{index}]", image)
    show("face_swap.mask", swap.mask)
    show("face_swap.paste_mask", swap.paste_mask)

    guided = run_layout_guidance(PROMPT, LAYOUT, steps=3, guided_steps=2, iterations=2, seed=3)
    show("layout_guidance.image", guided.image)
    show("layout_guidance.plain_image", guided.plain_image)
    show("layout_guidance.boxed", guided.boxed)
    for index, view in enumerate(attention_views(guided, 2)):
        show(f"layout_guidance.attention_views[{index}]", view)

    gligen = run_gligen(PROMPT, LAYOUT, steps=3, seed=3)
    show("gligen.image", gligen.image)
    show("gligen.boxed", gligen.boxed)
    torch.manual_seed(0)  # diffusers' GLIGEN inpainting also draws noise from the global generator
    show("gligen.inpainting.image", run_gligen(PROMPT, LAYOUT, steps=3, seed=3, image=chelsea).image)

    side = run_side_by_side(PROMPT, LAYOUT, steps=3, seed=3)
    for field in ("plain", "layout_guidance", "gligen"):
        show(f"boxes_side_by_side.{field}", getattr(side, field))

    clicked = run_click_to_mask(astronaut, "+ 250 100\n- 250 400")
    show("click_to_mask.mask", clicked.mask)
    for index, (image, _) in enumerate(clicked.candidates):
        show(f"click_to_mask.candidates[{index}]", image)
    painted = run_paint_by_example(astronaut, Image.open(ASSETS / "mask_astronaut_helmet.png"),
                                   Image.open(ASSETS / "reference_cup.jpg"), steps=3, seed=3, num_images=2)
    for index, image in enumerate(painted.images):
        show(f"paint_by_example.images[{index}]", image)
    show("paint_by_example.overlay", painted.overlay)
    show("paint_by_example.mask", painted.mask)

    plan = Plan(task="image + labels → scores", methods=["clip-vit-base-patch32", "clip-vit-base-patch16"],
                inputs={"image": chelsea, "labels": "cat, dog"}, sweep="template", values=["a {}.", "art of a {}."])
    show_grid("compare.scores_grid", compare_grid(plan))
    plan = Plan(task="text + layout → image", methods=["Layout guidance (Chen et al.)", "GLIGEN"],
                inputs={"prompt": PROMPT, "boxes": LAYOUT, "seed": 3}, sweep="steps", values=[2, 3])
    show_grid("compare.image_grid", compare_grid(plan))
    newer_tabs(chelsea, astronaut)


if __name__ == "__main__":
    main()
