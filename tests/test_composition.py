"""Composer-style composition tab (tiny profile): the palette condition, each weight reaching the UNet, the
image embedding reaching it, IP-Adapter attached for the run only, and the Compare methods."""
from __future__ import annotations

import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.composition import ADAPTERS, COMPARE_METHODS, adapters, run_composition
from demos.shared.comparison import IMAGE
from models import UserError
from models.composition import COLOR_ADAPTER, IP_ADAPTER
from models.pipelines.composition import PALETTE_FACTOR, ip_adapter_state, palette
from models.stable_diffusion import SD15

PHOTO = ASSETS / "coffee.jpg"
OTHER = ASSETS / "chelsea.jpg"
FAST = dict(steps=1, resolution=64)


@pytest.fixture(scope="module", autouse=True)
def _all_six_models_held():
    """The tab's default request holds six handles (base, two adapter pipelines, the depth annotator, the colour
    adapter, IP-Adapter): no count limit, so that the spied objects are the ones each run uses."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.model_settings, "max_loaded_models", 0)
        yield


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_palette_is_the_image_shrunk_64_times_and_blown_up_nearest():
    rng = np.random.default_rng(0)
    made_up = Image.fromarray(rng.integers(0, 256, (100, 300, 3), dtype=np.uint8))
    size = (192, 128)
    result = pixels(palette(made_up, size))
    assert result.shape == (128, 192, 3)
    cells = pixels(made_up.resize(size, Image.Resampling.BICUBIC).resize(
        (192 // PALETTE_FACTOR, 128 // PALETTE_FACTOR), Image.Resampling.BICUBIC))
    assert cells.shape == (2, 3, 3)
    expected = np.repeat(np.repeat(cells, PALETTE_FACTOR, axis=0), PALETTE_FACTOR, axis=1)
    assert np.array_equal(result, expected)  # one flat colour per 64x64 cell, the cell's mean-ish colour
    flat = Image.new("RGB", (300, 100), (200, 40, 90))
    assert (pixels(palette(flat, size)) == (200, 40, 90)).all()


@pytest.fixture(scope="module")
def composed():
    """One run (local photo, another photo for the global conditions, four different weights) with what each
    T2I-Adapter computed and what each UNet call received (copies: diffusers empties the residual list), and
    the shared base's state before and after."""
    base = models.get(SD15)
    seen = SimpleNamespace(features={name: [] for name in ADAPTERS}, unet=[], before=ip_adapter_state(base),
                           processors=dict(base.unet.attn_processors))
    with pytest.MonkeyPatch.context() as patch:
        for name, adapter in zip(ADAPTERS, adapters()):
            def spy(x, forward=adapter.forward, name=name):
                features = forward(x)
                seen.features[name].append([f.detach().clone() for f in features])
                return features
            patch.setitem(vars(adapter), "forward", spy)
        forward = base.unet.forward

        def unet_spy(sample, timestep, *args, **kwargs):
            residuals = kwargs.get("down_intrablock_additional_residuals")
            added = kwargs.get("added_cond_kwargs") or {}
            seen.unet.append(SimpleNamespace(
                residuals=[r.detach().clone() for r in residuals] if residuals is not None else None,
                embeds=[e.detach().clone() for e in added["image_embeds"]] if "image_embeds" in added else None))
            return forward(sample, timestep, *args, **kwargs)
        patch.setitem(vars(base.unet), "forward", unet_spy)
        seen.result = run_composition(PHOTO, "a cup", global_image=OTHER, sketch_weight=0.3, depth_weight=1.7,
                                      palette_weight=0.9, image_weight=0.5, seed=1, **FAST)
    seen.after, seen.processors_after = ip_adapter_state(base), dict(base.unet.attn_processors)
    return seen


def test_each_adapter_weight_scales_its_features_in_what_the_unet_receives_and_zero_is_absent(composed):
    feature = {name: composed.features[name] for name in ADAPTERS}
    assert [len(runs) for runs in feature.values()] == [3, 3, 3]  # local only, global only, combined
    sketch, depth, color = feature.values()  # each: the features of run 0, 1, 2
    calls_per_run = len(composed.unet) // 3
    expected = [  # local only: the palette absent; global only: sketch and depth absent
        [0.3 * s + 1.7 * d for s, d in zip(sketch[0], depth[0])],
        [0.9 * c for c in color[1]],
        [0.3 * s + 1.7 * d + 0.9 * c for s, d, c in zip(sketch[2], depth[2], color[2])],
    ]
    for run, wanted in enumerate(expected):
        for call in composed.unet[run * calls_per_run:(run + 1) * calls_per_run]:
            assert len(call.residuals) == len(wanted)
            for received, value in zip(call.residuals, wanted):
                assert received.shape[0] == 2  # the CFG batch: the same features for both halves
                torch.testing.assert_close(received, torch.cat([value] * 2))


def test_the_image_embedding_of_the_global_photo_reaches_the_unet_only_in_the_global_runs(composed):
    result = composed.result
    assert list(result.conditions) == ["sketch", "depth", "palette", "image"]  # as shown, as the networks read them
    assert result.conditions["sketch"].mode == "L" and result.conditions["sketch"].size == result.size == (64, 64)
    assert np.array_equal(pixels(result.conditions["palette"]), pixels(palette(Image.open(OTHER), result.size)))
    assert result.parameters["checkpoints"][-2:] == [models.REGISTRY[COLOR_ADAPTER].checkpoint, "h94/IP-Adapter"]
    calls_per_run = len(composed.unet) // 3
    local, global_only = composed.unet[:calls_per_run], composed.unet[calls_per_run:]
    assert all(call.embeds is None for call in local)
    ip = models.get(IP_ADAPTER)
    inputs = ip.feature_extractor(Image.open(OTHER).convert("RGB"), return_tensors="pt").pixel_values
    with torch.no_grad():
        embedding = ip.image_encoder(inputs).image_embeds
    for call in global_only:
        (embeds,) = call.embeds  # one IP-Adapter: [unconditional (zeros); the photo's CLIP embedding]
        assert torch.equal(embeds[0], torch.zeros_like(embeds[0]))
        torch.testing.assert_close(embeds[1, 0], embedding[0], atol=1e-5, rtol=1e-4)


def plain_sd(prompt: str, seed: int, size: int = 64, steps: int = 1) -> np.ndarray:
    from demos.shared.generation import generator_for

    base = models.get(SD15)
    return pixels(base(prompt, height=size, width=size, num_inference_steps=steps,
                       generator=generator_for(seed)).images[0])


@pytest.mark.mechanism
def test_with_every_weight_zero_all_three_images_are_plain_sd_and_the_image_weight_changes_the_global_one():
    zero = dict(sketch_weight=0, depth_weight=0, palette_weight=0, steps=2, resolution=64)
    off = run_composition(PHOTO, "a cup", image_weight=0.0, seed=3, **zero)
    plain = plain_sd("a cup", 3, steps=2)
    for image in (off.local_image, off.global_image, off.combined_image):  # IP-Adapter attached at scale 0
        assert np.abs(pixels(image) - plain).max() <= 1
    on = run_composition(PHOTO, "a cup", image_weight=1.0, seed=3, **zero)
    assert np.abs(pixels(on.local_image) - plain).max() <= 1
    assert np.abs(pixels(on.global_image) - plain).mean() > 5  # 21-27 on seeds 0, 3, 7, 11


def test_the_shared_base_is_plain_again_after_a_run_and_after_a_failing_one(composed, monkeypatch):
    from diffusers import StableDiffusionAdapterPipeline

    base = models.get(SD15)
    before = composed.before
    assert before == {"encoder_hid_proj": None, "encoder_hid_dim_type": None, "processors": ["AttnProcessor2_0"],
                      "forward_pre_hooks": 0}
    assert composed.after == before and composed.processors_after == composed.processors
    plain_before = plain_sd("a cup", 4)
    real_call, calls = StableDiffusionAdapterPipeline.__call__, []

    def failing(self, *args, **kwargs):
        calls.append(ip_adapter_state(self))
        if len(calls) == 2:  # the global run, IP-Adapter attached
            raise RuntimeError("out of luck")
        return real_call(self, *args, **kwargs)
    monkeypatch.setattr(StableDiffusionAdapterPipeline, "__call__", failing)
    with pytest.raises(RuntimeError, match="out of luck"):
        run_composition(PHOTO, "a cup", seed=4, **FAST)
    assert calls[1]["encoder_hid_proj"] == "MultiIPAdapterImageProjection" and calls[1]["forward_pre_hooks"] == 1
    assert ip_adapter_state(base) == before and dict(base.unet.attn_processors) == composed.processors
    assert np.array_equal(plain_sd("a cup", 4), plain_before)


@pytest.mark.parametrize("settings, message", [
    (dict(sketch_weight=3), "sketch weight"), (dict(image_weight=-1), "image-embedding weight"),
    (dict(steps=0), "number of steps"), (dict(resolution=10), "resolution"),
])
def test_bad_settings_are_refused_before_any_model_loads(settings, message):
    with pytest.raises(UserError, match=message):
        run_composition(PHOTO, "a cup", **settings)
    with pytest.raises(UserError, match="photo"):
        run_composition(None, "a cup")
    with pytest.raises(UserError, match="prompt"):
        run_composition(PHOTO, " ")


def test_the_compare_methods_run_through_the_compare_tab():
    from demos.tabs.compare import Plan, compare_grid

    assert {method.task for method in COMPARE_METHODS} == {IMAGE}
    plan = Plan(IMAGE.name, [COMPARE_METHODS[-1].name], {"prompt": "a cup", "seed": 0, "control_image": str(PHOTO)},
                sweep="steps", values=[1])
    (row,) = compare_grid(plan)
    assert row[0].error == "" and row[0].output.image is not None


def test_the_page_handler_shows_the_conditions_and_three_images_that_carry_their_parameters():
    from demos.shared.generation import read_parameters
    from demos.tabs import composition
    from tests.spies import built_tab, event

    handler = event(built_tab(composition), "composition").fn
    conditions, images, info, seed = handler(str(PHOTO), None, "a cup", "", 0.5, 1.0, 1.5, 0.6, 1, 7.5, 64, 8)
    assert [caption for _, caption in conditions] == ["sketch", "depth", "palette", "image"]
    assert [caption for _, caption in images] == ["local only", "global only", "all combined"]
    saved = read_parameters(images[2][0])
    assert saved["seed"] == seed == 8 and saved["weights"] == {"sketch": 0.5, "depth": 1.0, "palette": 1.5, "image": 0.6}
    assert "Seed 8" in info


# ---- on the published checkpoints (-m hub) ------------------------------------------------------------

def _hub_unreachable() -> str | None:
    try:
        urllib.request.urlopen("https://huggingface.co/api/models/h94/IP-Adapter", timeout=10)
        return None
    except OSError as error:
        return f"the Hugging Face Hub is unreachable ({type(error).__name__})"


@pytest.mark.hub
def test_the_palette_adapter_moves_the_mean_colour_toward_the_palette(tmp_path):
    reason = _hub_unreachable()
    if reason:
        pytest.skip(reason)
    from gradio_client import Client, handle_file

    from tests.conftest import AppServer

    red = tmp_path / "red.png"
    Image.new("RGB", (512, 512), (200, 30, 30)).save(red)
    server = AppServer("--models", "hub", env={"HF_HUB_OFFLINE": "0", "PP_MODELS": "hub"})
    try:
        client = Client(server.url, verbose=False)

        def mean_colour(palette_weight: float) -> np.ndarray:
            _, images, *_ = client.predict(handle_file(str(PHOTO)), handle_file(str(red)), "a cup on a table", "",
                                           0.0, 0.0, palette_weight, 0.0, 20, 7.5, 512, 0, api_name="/composition")
            global_only = images[1]["image"]
            return pixels(Image.open(global_only["path"] if isinstance(global_only, dict) else global_only)
                          ).reshape(-1, 3).mean(axis=0)

        target = np.array([200, 30, 30])
        assert np.linalg.norm(mean_colour(1.0) - target) < np.linalg.norm(mean_colour(0.0) - target) - 20
    finally:
        server.stop()
