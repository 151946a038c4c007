"""ControlNet tab (tiny profile): control maps, the scale-0 identity with plain SD, seeds, the shared
SD-1.5 base, and input validation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.controlnet import run_control_map, run_controlnet, saved_images
from demos.shared.generation import read_parameters
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


@pytest.mark.mechanism
def test_conditioning_scale_zero_reproduces_plain_sd_and_scale_one_does_not():
    photo = ASSETS / "astronaut.jpg"
    off = run_controlnet(photo, "canny", "an astronaut", conditioning_scale=0.0, compare_plain=True, seed=3, **FAST)
    on = run_controlnet(photo, "canny", "an astronaut", conditioning_scale=1.0, seed=3, **FAST)
    assert np.abs(pixels(off.images[0]) - pixels(off.plain_images[0])).max() <= 1
    assert np.abs(pixels(on.images[0]) - pixels(off.plain_images[0])).mean() > 2


@pytest.fixture
def controlnet_calls(monkeypatch):
    """Each call of the canny ControlNet: (batch size of the latents it saw, conditioning scale, guess mode)."""
    net = models.get("controlnet-canny").controlnet
    calls = []
    forward = net.forward

    def spy(sample, *args, **kwargs):
        calls.append((sample.shape[0], float(kwargs["conditioning_scale"]), bool(kwargs.get("guess_mode"))))
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(net, "forward", spy)
    return calls


def window_scales(count: int, scale: float, start: float, end: float) -> list[float]:
    """The scale at each of `count` UNet calls: full where the call's fraction of the run is in [start, end]."""
    return [scale if start <= i / count and (i + 1) / count <= end else 0.0 for i in range(count)]


@pytest.mark.mechanism
def test_control_acts_only_inside_its_guidance_window(controlnet_calls):
    photo = ASSETS / "astronaut.jpg"
    run_controlnet(photo, "canny", "an astronaut", conditioning_scale=0.8, guidance_start=0.5, guidance_end=1.0,
                   seed=3, steps=4, resolution=64, detect_resolution=128)
    late = [scale for _, scale, _ in controlnet_calls]
    assert len(late) >= 4 and late == pytest.approx(window_scales(len(late), 0.8, 0.5, 1.0))
    assert late[0] == 0.0 and late[-1] == pytest.approx(0.8)
    controlnet_calls.clear()
    run_controlnet(photo, "canny", "an astronaut", guidance_start=0.0, guidance_end=0.5, seed=3, steps=4,
                   resolution=64, detect_resolution=128)
    early = [scale for _, scale, _ in controlnet_calls]
    assert early == pytest.approx(window_scales(len(early), 1.0, 0.0, 0.5))
    assert early[0] == 1.0 and early[-1] == 0.0
    # A window that holds no step is plain SD.
    none = run_controlnet(photo, "canny", "an astronaut", guidance_start=0.9, guidance_end=1.0, compare_plain=True,
                          seed=3, **FAST)
    assert np.abs(pixels(none.images[0]) - pixels(none.plain_images[0])).max() <= 1


@pytest.mark.mechanism
def test_guess_mode_feeds_the_controlnet_only_the_conditional_branch(controlnet_calls):
    photo = ASSETS / "astronaut.jpg"
    normal = run_controlnet(photo, "canny", "an astronaut", seed=3, **FAST)
    assert {(batch, guess) for batch, _, guess in controlnet_calls} == {(2, False)}  # CFG: uncond + cond
    controlnet_calls.clear()
    guess = run_controlnet(photo, "canny", "an astronaut", guess_mode=True, seed=3, **FAST)
    assert {(batch, guess) for batch, _, guess in controlnet_calls} == {(1, True)}
    assert np.abs(pixels(guess.images[0]) - pixels(normal.images[0])).mean() > 1


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
    randomised = run_controlnet(photo, "canny", "a cat", seed=11, randomize=True, **FAST)
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
