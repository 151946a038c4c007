"""Segment Anything's "segment everything" cost against the point grid (tiny profile by default):
the generator prompts SAM with points_per_side² points, so the decoder's work grows with its square.

    python bench/segment_everything.py                          # tiny SAM, offline
    PP_MODELS=hub python bench/segment_everything.py --sides 8 16 32 64   # the published vit_b (GPU advised)

Times the generator's call alone (the image embedding included, as each call computes it), the
median of --repeats calls, with the paper's thresholds and with every mask kept (no filter, no NMS),
where each kept mask is also upsampled to the image's size and encoded.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PP_MODELS", "tiny")
os.environ.setdefault("PP_TINY_DIR", tempfile.mkdtemp(prefix="pp-bench-"))

from PIL import Image  # noqa: E402

import models  # noqa: E402
from demos import ASSETS  # noqa: E402
from demos.shared.click_to_mask import SAM_MODELS  # noqa: E402
from demos.tabs.segment_anything import run_segment_everything  # noqa: E402

SETTINGS = {"paper thresholds (0.88 / 0.95, NMS 0.7)": dict(pred_iou_thresh=0.88, stability_score_thresh=0.95,
                                                             box_nms_thresh=0.7),
            "keep every mask (0 / 0, no NMS)": dict(pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                                    box_nms_thresh=1.0)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sides", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sam", default=SAM_MODELS[0], choices=SAM_MODELS)
    parser.add_argument("--image", default="chelsea.jpg")
    args = parser.parse_args()
    picture = Image.open(ASSETS / args.image).convert("RGB")
    models.get(args.sam)
    print(f"profile {models.model_settings.profile}, {args.sam}, {args.image} {picture.width}x{picture.height}, "
          f"median of {args.repeats}")
    print("| points per side | prompts | " + " | ".join(f"{name}: s (masks)" for name in SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    for side in args.sides:
        cells = []
        for thresholds in SETTINGS.values():
            runs = [run_segment_everything(picture, args.sam, side, **thresholds) for _ in range(args.repeats)]
            cells.append(f"{statistics.median(run.seconds for run in runs):.2f} ({len(runs[0].masks)})")
        print(f"| {side} | {side * side} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
