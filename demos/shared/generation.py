"""What every generative tab shares: seeds that are resolved before the run and returned, torch
generators, and PNG files that carry their parameters in text metadata."""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from demos.shared.inputs import number_in_range

MAX_SEED = 2**31 - 1
OUTPUT_DIR = Path(tempfile.gettempdir()) / "paper-playground-outputs"


def resolve_seed(seed: Any, randomize: bool = False) -> int:
    """The seed the run will use: a fresh random one, or the user's, checked."""
    if randomize:
        return random.randint(0, MAX_SEED)
    return number_in_range(seed, "The seed", 0, MAX_SEED, whole=True)


def generator_for(seed: int, device: Any = "cpu"):
    """A torch generator on `device`; the same seed gives the same noise on the same device."""
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def png_with_parameters(image: Image.Image, parameters: Mapping[str, Any], stem: str = "result") -> str:
    """Write `image` as PNG with `parameters` (JSON) in its text chunk and return the file path.

    Returning a path (not the PIL image) keeps the metadata: gradio would re-encode the image."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text("parameters", json.dumps(dict(parameters), default=str, sort_keys=True))
    info.add_text("Software", "Paper Playground")
    handle = tempfile.NamedTemporaryFile(dir=OUTPUT_DIR, prefix=f"{stem}-", suffix=".png", delete=False)
    with handle:
        image.save(handle, format="PNG", pnginfo=info)
    return handle.name


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters stored by `png_with_parameters`."""
    with Image.open(path) as image:
        return json.loads(image.text["parameters"])
