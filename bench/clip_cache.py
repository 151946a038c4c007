"""How much the shared cache saves, and what prompt ensembling costs, for CLIP (tiny profile by default).

    python bench/clip_cache.py                  # tiny models, offline
    PP_MODELS=hub python bench/clip_cache.py    # the published checkpoint

Prints ratios measured in this one run, not absolute targets.
"""
from __future__ import annotations

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
from demos import ASSETS  # noqa: E402
from demos.tabs.clip_zero_shot import PAPER_ENSEMBLE, run_clip_zero_shot  # noqa: E402

LABELS = "cat, dog, tiger, lion, fox, astronaut, rocket, cup of coffee"
REPEATS = 10


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    image = Image.open(ASSETS / "chelsea.jpg")
    model = "clip-vit-base-patch32"
    first = seconds(lambda: run_clip_zero_shot(image, LABELS, None, model))
    single = statistics.median(seconds(lambda: run_clip_zero_shot(image, LABELS, None, model)) for _ in range(REPEATS))
    ensemble = statistics.median(
        seconds(lambda: run_clip_zero_shot(image, LABELS, PAPER_ENSEMBLE, model)) for _ in range(REPEATS))
    print(f"profile={models.model_settings.profile} model={model} labels=8 repeats={REPEATS}")
    print(f"first call (build/download + load + run): {first:.3f}s")
    print(f"cached call, 1 template:                  {single * 1000:.1f} ms")
    print(f"cached call, 7-template ensemble:         {ensemble * 1000:.1f} ms")
    print(f"ratio first / cached:        {first / single:8.1f}x  (what the shared cache saves per request)")
    print(f"ratio ensemble / 1 template: {ensemble / single:8.2f}x")
    print(f"loads counted: {dict(models.model_cache.load_counts)}")


if __name__ == "__main__":
    main()
