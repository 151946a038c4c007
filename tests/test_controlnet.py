"""ControlNet tab (tiny profile): control maps, the scale-0 identity with plain SD, seeds, the shared
SD-1.5 base, input validation, and what each control of the tab changes in the networks' inputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import models
from demos import ASSETS
from demos.tabs.controlnet import run_control_map, run_controlnet, saved_images
from demos.shared.generation import read_parameters
from models import REGISTRY, UserError
from models.cache import ModelCache
from models.controlnet import CONDITIONS
from models.pipelines.control_maps import MapParameters, control_map
from models.settings import Settings
from tests.spies import assert_classifier_free_guidance, step_inputs

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


# ---- every control reaches the computation ------------------------------------------------------------

PHOTO = ASSETS / "astronaut.jpg"


@dataclass
class Call:
    """One forward call of a network: the module, its first input (the latents, or the adapter's map), its
    keyword inputs as they came in, and what it returned (tensors and lists copied: later edits do not show)."""

    module: Any
    sample: torch.Tensor
    inputs: dict[str, Any]
    output: Any


def _snapshot(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "to_tuple"):  # a diffusers output dataclass
        value = value.to_tuple()
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(item) for item in value)
    return value


@pytest.fixture
def watch(monkeypatch) -> Callable[..., list[Call]]:
    """`watch(*networks)` records every forward call of those networks during the test, in order, in the list
    it returns. The spy is an instance attribute, removed afterwards."""
    calls: list[Call] = []

    def watch(*networks: Any) -> list[Call]:
        for network in networks:
            def spy(sample, *args, _network=network, _forward=network.forward, **kwargs):
                inputs = {name: _snapshot(value) for name, value in kwargs.items()}  # the UNet pops residual lists
                output = _forward(sample, *args, **kwargs)
                calls.append(Call(_network, sample.detach().clone(), inputs, _snapshot(output)))
                return output

            monkeypatch.setitem(vars(network), "forward", spy)
        return calls
    return watch


def calls_of(calls: list[Call], module: Any) -> list[Call]:
    return [call for call in calls if call.module is module]


def unet_calls(calls: list[Call]) -> list[Call]:
    from diffusers import UNet2DConditionModel

    return [call for call in calls if isinstance(call.module, UNet2DConditionModel)]


def controlnet(condition: str) -> Any:
    return models.get(CONDITIONS[condition].controlnet).controlnet


def sd_unet() -> Any:
    """The shared SD-1.5 UNet every ControlNet, adapter and plain pipeline here runs."""
    return models.get("controlnet-canny").unet


def as_input(image: Image.Image) -> torch.Tensor:
    """A map as the pipelines hand it to a network: channels first, floats in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def edge_amount(edge_map: Image.Image) -> float:
    """Mean brightness of an edge map: the edge pixels, counted after the map was resized."""
    return float(np.asarray(edge_map.convert("L"), dtype=np.float64).mean())


def scheduled_calls(pipe: Any, steps: int) -> int:
    """Denoising calls that `steps` asks of the pipeline's scheduler (PNDM adds a warm-up one)."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def test_the_photo_becomes_the_map_shown_and_that_map_is_what_the_controlnet_receives(watch):
    """`control_maps` is what the ControlNet saw: checked on the ControlNet's own input, for two photos."""
    net = controlnet("canny")
    network_calls = watch(net)
    maps = []
    for name in ("astronaut.jpg", "camera.jpg"):
        network_calls.clear()
        result = run_controlnet(ASSETS / name, "canny", "a photo", seed=3, **FAST)
        received = [call.inputs["controlnet_cond"] for call in calls_of(network_calls, net)]
        assert received and all(torch.allclose(batch, as_input(result.control_maps[0]).expand_as(batch))
                                for batch in received)
        maps.append(pixels(result.control_maps[0]))
    assert not np.array_equal(maps[0], maps[1])


def test_the_condition_picks_its_annotator_for_the_preview_and_its_controlnet_for_generation(watch):
    nets = {name: controlnet(name) for name in ("canny", "depth")}
    network_calls = watch(*nets.values())
    maps = {}
    for condition, other in (("canny", "depth"), ("depth", "canny")):
        annotator = CONDITIONS[condition].annotator
        expected = control_map(condition, Image.open(PHOTO).convert("RGB"), (64, 64),
                               models.get(annotator) if annotator else None, MapParameters(detect_resolution=128))
        preview = run_control_map(PHOTO, condition, resolution=64, detect_resolution=128)
        network_calls.clear()
        result = run_controlnet(PHOTO, condition, "a photo", seed=3, **FAST)
        assert pixels(preview).tolist() == pixels(result.control_maps[0]).tolist() == pixels(expected).tolist()
        assert calls_of(network_calls, nets[condition]) and not calls_of(network_calls, nets[other])
        maps[condition] = pixels(preview)
    assert not np.array_equal(maps["canny"], maps["depth"])


def preview_map(photo: Any, **settings: Any) -> Image.Image:
    """The map the "Show control map" button shows."""
    return run_control_map(photo, resolution=64, **settings)


def generation_map(photo: Any, **settings: Any) -> Image.Image:
    """The map the "Generate" button hands the ControlNet (shown to be the same by the tests above)."""
    return run_controlnet(photo, prompt="a photo", steps=1, resolution=64, seed=3, **settings).control_maps[0]


BOTH_BUTTONS = pytest.mark.parametrize("make_map", [preview_map, generation_map], ids=["preview", "generate"])


@BOTH_BUTTONS
@pytest.mark.parametrize("threshold, loose, strict, fixed", [
    ("low_threshold", 20, 120, {"high_threshold": 220}),
    ("high_threshold", 100, 250, {"low_threshold": 50}),
])
def test_each_canny_threshold_alone_sets_how_many_edges_the_map_has(make_map, threshold, loose, strict, fixed):
    """Canny keeps the pixels above the high threshold and those above the low one joined to them:
    lowering either threshold, the other held, can only add edges."""
    more = make_map(PHOTO, **fixed, **{threshold: loose}, detect_resolution=256)
    fewer = make_map(PHOTO, **fixed, **{threshold: strict}, detect_resolution=256)
    assert edge_amount(more) > edge_amount(fewer)


@BOTH_BUTTONS
def test_the_detect_resolution_is_the_size_the_annotator_works_at(make_map, monkeypatch):
    from controlnet_aux import CannyDetector

    seen = []
    original = CannyDetector.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["detect_resolution"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CannyDetector, "__call__", spy)
    coarse, fine = (make_map(PHOTO, detect_resolution=side) for side in (64, 512))
    assert seen == [64, 512]
    assert not np.array_equal(pixels(coarse), pixels(fine))


@BOTH_BUTTONS
def test_own_map_uses_the_upload_itself_as_the_map(make_map):
    own = make_map(PHOTO, own_map=True)
    resized = Image.open(PHOTO).convert("RGB").resize(own.size, Image.Resampling.BILINEAR)
    assert pixels(own).tolist() == pixels(resized).tolist()
    extracted = make_map(PHOTO, own_map=False)
    assert not np.array_equal(pixels(extracted), pixels(resized))


@pytest.mark.parametrize("resolution", [64, 128])
def test_the_resolution_is_the_long_side_of_the_map_the_latents_and_the_image(resolution, watch):
    network_calls = watch(sd_unet())
    photo = ASSETS / "chelsea.jpg"  # 451x300: the aspect ratio is kept
    result = run_controlnet(photo, "canny", "a cat", seed=3, steps=1, resolution=resolution, detect_resolution=128)
    width, height = result.size
    assert width == resolution and height % 8 == 0 and abs(height / width - 300 / 451) < 8 / width
    assert result.images[0].size == result.control_maps[0].size == (width, height)
    assert {tuple(call.sample.shape[-2:]) for call in unet_calls(network_calls)} == {(height // 8, width // 8)}


def test_the_prompt_conditions_one_half_of_the_cfg_batch_and_the_negative_prompt_the_other(watch):
    pipe = models.get("controlnet-canny")
    network_calls = watch(pipe.unet)

    def encoded(text: str) -> torch.Tensor:
        return pipe.encode_prompt(text, pipe._execution_device, 1, False)[0][0]

    for prompt, negative in (("an astronaut", ""), ("a red tractor", ""), ("an astronaut", "blurry, lowres")):
        network_calls.clear()
        run_controlnet(PHOTO, "canny", prompt, negative, seed=3, **FAST)
        for call in unet_calls(network_calls):
            unconditional, conditional = call.inputs["encoder_hidden_states"]
            assert torch.allclose(conditional, encoded(prompt)) and torch.allclose(unconditional, encoded(negative))


@pytest.mark.parametrize("steps", [1, 3])
def test_steps_is_the_number_of_denoising_calls(steps, watch):
    network_calls = watch(sd_unet(), controlnet("canny"))
    run_controlnet(PHOTO, "canny", "an astronaut", seed=3, steps=steps, resolution=64, detect_resolution=128)
    expected = scheduled_calls(models.get("controlnet-canny"), steps)
    assert len(unet_calls(network_calls)) == len(calls_of(network_calls, controlnet("canny"))) == expected


@pytest.fixture
def scheduler_inputs(monkeypatch) -> list[torch.Tensor]:
    """The noise prediction each step of the shared SD-1.5 scheduler received (after guidance)."""
    return step_inputs(monkeypatch, type(models.get("controlnet-canny").scheduler))


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0, 9.0])
def test_the_guidance_scale_weights_the_prompts_prediction_against_the_unconditional_one(
        guidance_scale, watch, scheduler_inputs):
    """CFG: the step uses u + s·(c − u) of the UNet's two halves; at s = 1 there is no unconditional half."""
    network_calls = watch(sd_unet())
    run_controlnet(PHOTO, "canny", "an astronaut", guidance_scale=guidance_scale, seed=3, **FAST)
    predictions = [call.output[0] for call in unet_calls(network_calls)]
    assert_classifier_free_guidance(predictions, scheduler_inputs, guidance_scale)


@pytest.mark.parametrize("num_images", [1, 2])
def test_num_images_is_how_many_latents_are_denoised_together(num_images, watch):
    network_calls = watch(sd_unet(), controlnet("canny"))
    result = run_controlnet(PHOTO, "canny", "an astronaut", num_images=num_images, seed=3, **FAST)
    assert len(result.images) == num_images
    assert {call.sample.shape[0] for call in unet_calls(network_calls)} == {2 * num_images}  # CFG doubles
    assert {call.inputs["controlnet_cond"].shape[0] for call in calls_of(network_calls, controlnet("canny"))} == {
        2 * num_images}
    if num_images == 2:
        assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def test_a_second_condition_adds_its_controlnet_with_its_own_image_and_its_own_scale(watch):
    """Multi-ControlNet: each net reads its own map at its own scale. A second image (here the photo
    mirrored) is read by the second condition only; without one, both read the photo."""
    nets = {name: controlnet(name) for name in ("canny", "depth")}
    network_calls = watch(*nets.values())
    mirrored = ImageOps.mirror(Image.open(PHOTO).convert("RGB"))

    def run(**settings: Any):
        network_calls.clear()
        result = run_controlnet(PHOTO, "canny", "an astronaut", conditioning_scale=0.7, seed=3, **FAST, **settings)
        received = {name: [(float(call.inputs["conditioning_scale"]), call.inputs["controlnet_cond"])
                           for call in calls_of(network_calls, net)] for name, net in nets.items()}
        return result, received

    alone, received = run()
    assert received["canny"] and not received["depth"]
    second_maps = []
    for scale, second_image in ((0.3, mirrored), (1.6, None)):
        result, received = run(second_condition="depth", second_scale=scale, second_image=second_image)
        expected = run_control_map(PHOTO if second_image is None else second_image, "depth", resolution=64,
                                   detect_resolution=128)
        assert result.conditions == ["canny", "depth"]
        assert pixels(result.control_maps[0]).tolist() == pixels(alone.control_maps[0]).tolist()
        assert pixels(result.control_maps[1]).tolist() == pixels(expected).tolist()
        for name, index, expected_scale in (("canny", 0, 0.7), ("depth", 1, scale)):
            assert received[name]
            for got_scale, control in received[name]:
                assert got_scale == pytest.approx(expected_scale)
                assert torch.allclose(control, as_input(result.control_maps[index]).expand_as(control))
        second_maps.append(pixels(result.control_maps[1]))
    assert not np.array_equal(*second_maps)


def test_the_adapter_comparison_reads_the_same_map_and_scales_its_features_by_the_conditioning_scale(watch):
    """T2I-Adapter runs once on the ControlNet's map (one grey channel for the sketch adapter); the UNet
    adds its features times the conditioning scale at every step. Unticked, no adapter runs."""
    adapter = models.get(CONDITIONS["canny"].adapter).adapter
    network_calls = watch(adapter, sd_unet())
    for scale in (0.5, 1.0):
        network_calls.clear()
        result = run_controlnet(PHOTO, "canny", "an astronaut", conditioning_scale=scale, compare_adapter=True,
                                seed=3, **FAST)
        (adapter_call,) = calls_of(network_calls, adapter)
        control = result.control_maps[0]
        assert torch.allclose(adapter_call.sample[0], as_input(control.convert("L") if adapter.config.in_channels == 1
                                                              else control))
        adapted = [call for call in unet_calls(network_calls)
                   if call.inputs.get("down_intrablock_additional_residuals") is not None]
        assert len(result.adapter_images) == 1 and adapted
        for call in adapted:
            for residual, feature in zip(call.inputs["down_intrablock_additional_residuals"], adapter_call.output,
                                         strict=True):
                assert torch.allclose(residual, torch.cat([feature * scale] * 2))
    network_calls.clear()
    unticked = run_controlnet(PHOTO, "canny", "an astronaut", seed=3, **FAST)
    assert unticked.adapter_images == [] and not calls_of(network_calls, adapter)


def test_the_plain_sd_comparison_denoises_the_same_noise_without_control(watch):
    network_calls = watch(sd_unet())
    alone = run_controlnet(PHOTO, "canny", "an astronaut", seed=3, **FAST)
    controlled = unet_calls(network_calls)
    network_calls.clear()
    both = run_controlnet(PHOTO, "canny", "an astronaut", compare_plain=True, seed=3, **FAST)
    with_control = [call for call in unet_calls(network_calls)
                    if call.inputs.get("down_block_additional_residuals") is not None]
    plain = [call for call in unet_calls(network_calls) if call.inputs.get("down_block_additional_residuals") is None]
    assert alone.plain_images == [] and len(both.plain_images) == 1
    assert len(with_control) == len(plain) == len(controlled) > 0
    assert torch.equal(plain[0].sample, controlled[0].sample)  # same seed: same starting latents
