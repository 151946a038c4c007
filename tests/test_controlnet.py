"""ControlNet tab (tiny profile): control maps, the scale-0 identity with plain SD, seeds, the shared
SD-1.5 base, and input validation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import models
from demos import ASSETS
from demos.controlnet import run_control_map, run_controlnet, saved_images
from demos.generation import read_parameters
from models import REGISTRY, UserError
from models.cache import ModelCache
from models.settings import Settings

FAST = dict(steps=2, resolution=64, detect_resolution=128)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def edge_fraction(edge_map: Image.Image) -> float:
    return float((np.asarray(edge_map.convert("L")) > 127).mean())


def test_canny_map_of_a_real_photo_has_more_edges_at_lower_thresholds():
    photo = ASSETS / "astronaut.jpg"
    strict = run_control_map(photo, "canny", resolution=256, low_threshold=150, high_threshold=250)
    loose = run_control_map(photo, "canny", resolution=256, low_threshold=30, high_threshold=80)
    assert strict.size == loose.size == (256, 256)
    assert 0.01 < edge_fraction(strict) < edge_fraction(loose) < 0.5


def test_conditioning_scale_zero_reproduces_plain_sd_and_scale_one_does_not():
    photo = ASSETS / "astronaut.jpg"
    off = run_controlnet(photo, "canny", "an astronaut", conditioning_scale=0.0, compare_plain=True, seed=3, **FAST)
    on = run_controlnet(photo, "canny", "an astronaut", conditioning_scale=1.0, seed=3, **FAST)
    assert np.abs(pixels(off.images[0]) - pixels(off.plain_images[0])).max() <= 1
    assert np.abs(pixels(on.images[0]) - pixels(off.plain_images[0])).mean() > 2


def test_same_seed_same_image_different_seed_different_image():
    photo = ASSETS / "chelsea.jpg"
    first = run_controlnet(photo, "canny", "a cat", seed=11, **FAST)
    again = run_controlnet(photo, "canny", "a cat", seed=11, **FAST)
    other = run_controlnet(photo, "canny", "a cat", seed=12, **FAST)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert np.abs(pixels(first.images[0]) - pixels(other.images[0])).mean() > 2
    path, caption = saved_images(first)[0]
    saved = read_parameters(path)  # the PNG handed out carries what reproduces it
    assert caption == "ControlNet #1" and pixels(Image.open(path)).tolist() == pixels(first.images[0]).tolist()
    assert saved["seed"] == 11 and saved["prompt"] == "a cat" and saved["conditions"] == ["canny"]
    randomised = run_controlnet(photo, "canny", "a cat", seed=11, randomize_seed=True, **FAST)
    assert read_parameters(saved_images(randomised)[0][0])["seed"] == randomised.seed  # the seed actually used


def test_controlnet_then_adapter_then_plain_sd_load_the_base_once():
    cache = ModelCache(REGISTRY, Settings(profile="tiny", tiny_dir=models.model_settings.tiny_dir, max_loaded_models=0))
    controlnet = cache.get("controlnet-canny")
    adapter = cache.get("controlnet-t2iadapter-sketch")
    base = cache.get("sd15")
    assert cache.load_counts["sd15"] == 1
    for part in ("unet", "vae", "text_encoder"):
        assert getattr(controlnet, part) is getattr(adapter, part) is getattr(base, part)


def test_bad_input_is_refused_with_what_to_do():
    photo = ASSETS / "astronaut.jpg"
    with pytest.raises(UserError, match="Please provide a control image"):
        run_controlnet(None, "canny", "a cat", **FAST)
    with pytest.raises(UserError, match="same size"):
        run_controlnet(photo, "canny", "a cat", second_condition="depth", second_image=ASSETS / "rocket.jpg", **FAST)
    with pytest.raises(UserError, match="multiple of 8"):
        run_controlnet(photo, "canny", "a cat", steps=2, resolution=100)
    with pytest.raises(UserError, match="number of steps"):
        run_controlnet(photo, "canny", "a cat", steps=0, resolution=64)
    with pytest.raises(UserError, match="Unknown condition"):
        run_controlnet(photo, "edges", "a cat", **FAST)
    with pytest.raises(UserError, match="start"):
        run_controlnet(photo, "canny", "a cat", guidance_start=0.8, guidance_end=0.2, **FAST)
    long_prompt = "a watercolor painting of an astronaut " * 4
    result = run_controlnet(photo, "canny", long_prompt, **FAST)
    assert result.images and any("text encoder reads only 77" in w for w in result.warnings)
