"""Control maps for ControlNet and T2I-Adapter: a photo in, the map a condition was trained on out.

Canny needs no weights; the other conditions run a shared annotator handle (controlnet_aux or
transformers). Every map comes back as RGB at exactly the generation size, so what is shown is
what the ControlNet sees.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class MapParameters:
    low_threshold: int = 100  # canny hysteresis thresholds (0-255)
    high_threshold: int = 200
    detect_resolution: int = 512  # short side the annotator works at


def control_map(condition: str, image: Image.Image, size: tuple[int, int], annotator: Any,
                parameters: MapParameters) -> Image.Image:
    """The RGB control map of `image` for `condition`, resized to `size` (width, height)."""
    detect, short_side = parameters.detect_resolution, min(size)
    if condition == "canny":
        from controlnet_aux import CannyDetector

        result = CannyDetector()(image, low_threshold=parameters.low_threshold,
                                 high_threshold=parameters.high_threshold, detect_resolution=detect,
                                 image_resolution=short_side, output_type="pil")
    elif condition == "depth":
        result = depth_map(annotator, image)
    elif condition == "seg":
        result = segmentation_map(annotator, image)
    elif condition == "openpose":
        result = annotator(image, detect_resolution=detect, image_resolution=short_side, include_body=True,
                           include_hand=True, include_face=True, output_type="pil")
    else:  # softedge / scribble (HED), lineart, normal: the same call shape
        extra = {"scribble": True} if condition == "scribble" else {}
        result = annotator(image, detect_resolution=detect, image_resolution=short_side, output_type="pil", **extra)
    return result.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def _inference(handle: Any, image: Image.Image) -> Any:
    import torch

    inputs = handle.processor(images=image, return_tensors="pt")
    with torch.inference_mode():
        return handle.model(pixel_values=inputs["pixel_values"].to(handle.device, handle.model.dtype))


def depth_map(handle: Any, image: Image.Image) -> Image.Image:
    """Relative inverse depth, min-max scaled to 0-255 grey: near is white, as in ControlNet's training maps."""
    import torch

    depth = _inference(handle, image).predicted_depth[:, None].float()
    depth = torch.nn.functional.interpolate(depth, size=image.size[::-1], mode="bicubic")[0, 0].cpu().numpy()
    span = depth.max() - depth.min()
    grey = ((depth - depth.min()) / span * 255 if span > 0 else np.zeros_like(depth)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def segmentation_map(handle: Any, image: Image.Image) -> Image.Image:
    """Per-pixel ADE20K class, painted with the ADE palette the seg ControlNet was trained on."""
    import torch
    from controlnet_aux.util import ade_palette

    logits = _inference(handle, image).logits.float()
    labels = torch.nn.functional.interpolate(logits, size=image.size[::-1], mode="bilinear").argmax(dim=1)[0]
    palette = np.asarray(ade_palette(), dtype=np.uint8)
    return Image.fromarray(palette[labels.cpu().numpy() % len(palette)])
