"""Paint-by-Example tab latency (tiny profile by default): what a click costs once SAM has the
scene's embedding, and what painting costs per step.

    python bench/paint_by_example.py                           # tiny models, offline
    PP_MODELS=hub python bench/paint_by_example.py --steps 50  # the published checkpoints (GPU advised)

Prints seconds and ratios measured in this one run, not absolute targets.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PP_MODELS", "tiny")
os.environ.setdefault("PP_TINY_DIR", tempfile.mkdtemp(prefix="pp-bench-"))

from PIL import Image  # noqa: E402

import models  # noqa: E402
from demos import ASSETS, click_to_mask  # noqa: E402
from demos.tabs.paint_by_example import run_paint_by_example  # noqa: E402
from models.paint_by_example import PAINT_BY_EXAMPLE  # noqa: E402

REPEATS = 5
CLICKS = ["+ 256 127", "+ 256 127\n- 256 460", "+ 256 127\n- 256 460\n+ 200 100"]


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sam", default=click_to_mask.SAM_MODELS[0], choices=click_to_mask.SAM_MODELS)
    args = parser.parse_args()
    scene = Image.open(ASSETS / "astronaut.jpg").convert("RGB")
    reference = Image.open(ASSETS / "reference_cup.jpg")
    load_sam = seconds(lambda: models.get(args.sam))
    load_pbe = seconds(lambda: models.get(PAINT_BY_EXAMPLE))
    print(f"profile {models.model_settings.profile}; "
          f"load: {args.sam} {load_sam:.2f} s, {PAINT_BY_EXAMPLE} {load_pbe:.2f} s")

    def first_click() -> None:
        click_to_mask._predictors.clear()  # a new scene: SAM encodes it
        click_to_mask.run_click_to_mask(scene, CLICKS[0], args.sam)

    cold = statistics.median(seconds(first_click) for _ in range(REPEATS))
    warm = statistics.median(seconds(lambda text=text: click_to_mask.run_click_to_mask(scene, text, args.sam))
                             for text in CLICKS for _ in range(REPEATS))
    print(f"click-to-mask: first click on a scene {cold * 1000:.0f} ms, further clicks {warm * 1000:.0f} ms "
          f"({cold / warm:.1f}x faster: the image embedding is kept)")
    mask = click_to_mask.run_click_to_mask(scene, CLICKS[1], args.sam).mask
    paint = statistics.median(seconds(lambda: run_paint_by_example(scene, mask, reference, steps=args.steps, seed=0))
                              for _ in range(3))
    one_step = statistics.median(seconds(lambda: run_paint_by_example(scene, mask, reference, steps=1, seed=0))
                                 for _ in range(3))
    print(f"paint {scene.size[0]}x{scene.size[1]}, {args.steps} steps: {paint:.2f} s "
          f"(1 step {one_step:.2f} s; ≈{(paint - one_step) / max(args.steps - 1, 1):.3f} s per further step)")


if __name__ == "__main__":
    main()
