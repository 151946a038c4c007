"""Paint-by-Example on the tiny model: exact paste-back, sizes, seeds, bad input, and what
each control of the tab changes in the model's inputs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos.shared.generation import read_parameters
from demos import ASSETS
from demos.shared.click_to_mask import SAM_MODELS, run_click_to_mask
from demos.shared.masks import binary_mask, feathered, grown, paste_back, square_around
from demos.tabs.paint_by_example import run_paint_by_example
from models import UserError
from models.paint_by_example import PAINT_BY_EXAMPLE
from tests.spies import assert_classifier_free_guidance, call_arguments, step_inputs, unet_forward_calls

SCENE = Image.open(ASSETS / "astronaut.jpg").convert("RGB")
MASK = Image.open(ASSETS / "mask_astronaut_helmet.png")
REFERENCE = Image.open(ASSETS / "reference_cup.jpg")
FAST = dict(steps=2, seed=3)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_outside_the_feathered_mask_the_scene_is_kept_exactly_and_inside_it_changes():
    result = run_paint_by_example(SCENE, MASK, REFERENCE, **FAST)
    out, scene = pixels(result.images[0]), np.asarray(SCENE, dtype=np.int16)
    weight = np.asarray(result.mask) > 0
    assert out.shape == scene.shape
    assert np.array_equal(out[~weight], scene[~weight])
    inside = np.asarray(MASK) >= 128
    assert np.abs(out[inside] - scene[inside]).mean() > 5
    assert result.parameters["seed"] == 3


def test_a_non_square_scene_comes_back_at_its_own_size():
    scene = SCENE.crop((0, 40, 500, 340))  # 500x300
    mask = np.zeros((300, 500), np.uint8)
    mask[100:220, 300:460] = 255
    result = run_paint_by_example(scene, mask, REFERENCE, **FAST)
    assert result.images[0].size == (500, 300)
    x0, y0, x1, y1 = result.crop_box
    assert x1 - x0 == y1 - y0 and 0 <= x0 and x1 <= 500 and 0 <= y0 and y1 <= 300


def test_same_seed_same_result_other_seed_differs():
    first = run_paint_by_example(SCENE, MASK, REFERENCE, **FAST)
    again = run_paint_by_example(SCENE, MASK, REFERENCE, **FAST)
    other = run_paint_by_example(SCENE, MASK, REFERENCE, steps=2, seed=4)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))


def test_rgba_reference_is_flattened_and_grayscale_scene_works():
    rgba = REFERENCE.convert("RGBA")
    with_alpha = run_paint_by_example(SCENE, MASK, rgba, **FAST)
    flat = run_paint_by_example(SCENE, MASK, REFERENCE, **FAST)
    assert np.array_equal(pixels(with_alpha.images[0]), pixels(flat.images[0]))
    gray = run_paint_by_example(SCENE.convert("L"), MASK, REFERENCE, **FAST)
    assert gray.images[0].size == SCENE.size


@pytest.mark.parametrize("scene, mask, reference, message", [
    (SCENE, Image.new("L", SCENE.size, 0), REFERENCE, "mask is empty"),
    (SCENE, Image.new("L", SCENE.size, 255), REFERENCE, "covers the whole scene"),
    (SCENE, None, REFERENCE, "mark the region to repaint"),
    (SCENE, MASK, None, "reference image"),
    (None, MASK, REFERENCE, "scene to edit"),
    (Image.new("RGB", (1, 1)), Image.new("L", (1, 1), 255), REFERENCE, "1x1 pixels"),
    (SCENE, MASK.resize((100, 100)), REFERENCE, "same size"),
    (Image.new("RGB", (9000, 500)), Image.new("L", (9000, 500), 0), REFERENCE, "Please scale it down"),
])
def test_bad_input_gets_a_clear_error(scene, mask, reference, message):
    with pytest.raises(UserError, match=message):
        run_paint_by_example(scene, mask, reference, **FAST)


def test_a_clicked_sam_mask_paints_in_and_keeps_the_rest():
    clicked = run_click_to_mask(SCENE, "+ 250 110\n- 250 400", choice="best")
    result = run_paint_by_example(SCENE, clicked.mask, REFERENCE, **FAST)
    out, scene = pixels(result.images[0]), np.asarray(SCENE, dtype=np.int16)
    outside = np.asarray(result.mask) == 0
    assert np.array_equal(out[outside], scene[outside]) and not np.array_equal(out, scene)


def test_shrinking_the_mask_shrinks_the_repainted_region_and_too_much_is_refused():
    small = run_paint_by_example(SCENE, MASK, REFERENCE, grow=-10, feather=0, **FAST)
    large = run_paint_by_example(SCENE, MASK, REFERENCE, grow=10, feather=0, **FAST)
    inside = (np.asarray(MASK) >= 128).sum()
    assert (np.asarray(small.mask) > 0).sum() < inside < (np.asarray(large.mask) > 0).sum()
    with pytest.raises(UserError, match="leaves nothing"):
        run_paint_by_example(SCENE, MASK, REFERENCE, grow=-64, **FAST)


def test_click_to_mask_then_paint_through_the_api(app_server):
    from gradio_client import Client, handle_file

    client = Client(app_server.url, verbose=False)
    scene = handle_file(str(ASSETS / "astronaut.jpg"))
    candidates, mask = client.predict(scene, "+ 256 127\n- 256 460", "sam-vit-b", "best", api_name="/click_to_mask")
    assert len(candidates) == 3 and Image.open(mask).size == SCENE.size
    images, _, _, summary, seed = client.predict(  # the brushed layers are optional: a mask is given
        scene, handle_file(str(ASSETS / "reference_cup.jpg")), 2, 5.0, 1, 8, 8, 3, False, mask=handle_file(mask),
        api_name="/paint_by_example")
    out, scene_pixels = pixels(Image.open(images[0]["image"])), np.asarray(SCENE, dtype=np.int16)
    assert read_parameters(images[0]["image"])["seed"] == 3  # the file handed out carries its parameters
    outside = feathered(binary_mask(Image.open(mask), SCENE.size), 8, 8) == 0
    assert out.shape == scene_pixels.shape and seed == 3 and "the model saw" in summary
    assert np.array_equal(out[outside], scene_pixels[outside]) and not np.array_equal(out, scene_pixels)


@pytest.mark.parametrize("corner", [(2, 2), (125, 125)], ids=["near the edge", "centre"])
def test_a_small_mask_is_repainted_wherever_its_grown_feathered_weight_reaches(corner):
    """The square the model sees is built from the paste weight (mask grown 8 px, feathered 8 px), not from
    the 6-px mask: a square around the mask alone ends inside the weight, leaving a hard seam."""
    y, x = corner
    mask = np.zeros((256, 256), np.uint8)
    mask[y:y + 6, x:x + 6] = 255
    scene = SCENE.resize((256, 256))
    result = run_paint_by_example(scene, mask, REFERENCE, grow=8, feather=8, **FAST)
    weight = np.asarray(result.mask, dtype=np.float32) / 255
    x0, y0, x1, y1 = result.crop_box
    rows, columns = np.nonzero(weight)
    assert y0 <= rows.min() and rows.max() < y1 and x0 <= columns.min() and columns.max() < x1
    assert (weight > 0).sum() > 4 * 36  # the weight reaches far beyond the 6×6 mask
    out, original = pixels(result.images[0]), np.asarray(scene, dtype=np.int16)
    strong = weight > 0.5
    assert (np.abs(out - original).max(axis=-1)[strong] > 0).mean() > 0.9  # repainted, no kept band
    assert np.array_equal(out[weight == 0], original[weight == 0])


def test_a_region_wider_than_the_scene_is_tall_gets_an_overhanging_square():
    region = np.zeros((40, 200), bool)
    region[10:30, 5:195] = True
    x0, y0, x1, y1 = square_around(region)
    assert x1 - x0 == y1 - y0 >= 190 and x0 <= 5 and x1 >= 195 and y0 < 0 < 40 < y1
    painted = Image.new("RGB", (64, 64), (0, 255, 0))
    scene = Image.new("RGB", (200, 40), (255, 0, 0))
    out = np.asarray(paste_back(scene, painted, (x0, y0, x1, y1), region.astype(np.float32)))
    assert (out[region] == [0, 255, 0]).all() and (out[~region] == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="outside the painted square"):
        paste_back(scene, painted, (0, 0, 40, 40), region.astype(np.float32))


# ---- every control of the tab reaches the model ------------------------------------------------------

@pytest.fixture
def unet_calls(monkeypatch) -> list[SimpleNamespace]:
    """Each call of the Paint-by-Example UNet: its 9-channel input (latent, mask, masked-image latent), the
    reference's embedding it attends to (`text`), and its output."""
    unet = models.get(PAINT_BY_EXAMPLE).unet
    return unet_forward_calls(monkeypatch, unet)


@pytest.fixture
def pipeline_inputs(monkeypatch) -> list[tuple]:
    """(pipeline, keyword arguments) of each Paint-by-Example pipeline call."""
    return call_arguments(monkeypatch, type(models.get(PAINT_BY_EXAMPLE)))


def test_the_reference_is_what_the_unet_attends_to_in_place_of_a_prompt(unet_calls):
    pipe = models.get(PAINT_BY_EXAMPLE)
    embeddings = []
    for reference in (REFERENCE, Image.open(ASSETS / "reference_cat.jpg")):
        unet_calls.clear()
        run_paint_by_example(SCENE, MASK, reference, **FAST)
        pixel_values = pipe.feature_extractor(images=reference.convert("RGB"), return_tensors="pt").pixel_values
        with torch.no_grad():
            expected = pipe.image_encoder(pixel_values)
        for call in unet_calls:
            _, conditional = call.text.chunk(2)
            torch.testing.assert_close(conditional, expected)
        embeddings.append(expected)
    assert not torch.allclose(*embeddings)


@pytest.mark.parametrize("steps", [1, 3])
def test_steps_is_the_number_of_denoising_calls(steps, unet_calls):
    pipe = models.get(PAINT_BY_EXAMPLE)
    run_paint_by_example(SCENE, MASK, REFERENCE, steps=steps, seed=3)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)  # PNDM adds a warm-up call to the steps asked for
    assert len(unet_calls) == len(scheduler.timesteps)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0, 9.0])
def test_the_guidance_scale_weights_the_references_prediction_against_the_unconditional_one(
        guidance_scale, unet_calls, monkeypatch):
    used = step_inputs(monkeypatch, type(models.get(PAINT_BY_EXAMPLE).scheduler))
    run_paint_by_example(SCENE, MASK, REFERENCE, guidance_scale=guidance_scale, **FAST)
    assert_classifier_free_guidance([call.output for call in unet_calls], used, guidance_scale)


@pytest.mark.parametrize("num_images", [1, 2])
def test_num_images_is_how_many_latents_are_denoised_together(num_images, unet_calls):
    result = run_paint_by_example(SCENE, MASK, REFERENCE, num_images=num_images, **FAST)
    assert len(result.images) == num_images
    assert {call.sample.shape[0] for call in unet_calls} == {2 * num_images}  # CFG doubles
    if num_images == 2:
        assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def model_mask_expected(grow: int, crop_box: tuple[int, int, int, int], side: int) -> np.ndarray:
    """The user's mask grown by `grow` px, through the square the model saw: what it must repaint."""
    region = grown(binary_mask(MASK, SCENE.size), grow)
    square = Image.fromarray(region.astype(np.uint8) * 255).crop(crop_box)
    return np.asarray(square.resize((side, side), Image.Resampling.NEAREST))


@pytest.mark.parametrize("grow", [-10, 10])
def test_grow_sets_the_region_the_model_repaints(grow, pipeline_inputs):
    """(The paste-back side of `grow` is tested above, in the shrinking test.)"""
    result = run_paint_by_example(SCENE, MASK, REFERENCE, grow=grow, feather=0, **FAST)
    ((_, kwargs),) = pipeline_inputs
    received = np.asarray(kwargs["mask_image"])
    assert np.array_equal(received, model_mask_expected(grow, result.crop_box, received.shape[0]))
    assert not np.array_equal(received, model_mask_expected(-grow, result.crop_box, received.shape[0]))


def test_feather_softens_only_the_paste_back(pipeline_inputs):
    """A feather blurs the weight the result is pasted back with (wider, with soft values); the model is
    still asked to repaint exactly the grown mask."""
    supports = []
    for feather in (0, 12):
        pipeline_inputs.clear()
        result = run_paint_by_example(SCENE, MASK, REFERENCE, grow=4, feather=feather, **FAST)
        weight = np.asarray(result.mask)
        assert ((weight > 0) & (weight < 255)).any() == (feather > 0)
        supports.append((weight > 0).sum())
        ((_, kwargs),) = pipeline_inputs
        received = np.asarray(kwargs["mask_image"])
        assert np.array_equal(received, model_mask_expected(4, result.crop_box, received.shape[0]))
    assert supports[0] < supports[1]


def test_the_seed_draws_the_starting_latent_and_randomize_draws_a_fresh_seed(unet_calls):
    for seed, randomize in ((3, False), (4, False), (3, True)):
        unet_calls.clear()
        result = run_paint_by_example(SCENE, MASK, REFERENCE, steps=1, seed=seed, randomize=randomize)
        assert result.seed != seed if randomize else result.seed == seed
        start = unet_calls[0].sample[:1, :4]
        noise = torch.randn(start.shape, generator=torch.Generator().manual_seed(result.seed))
        torch.testing.assert_close((start / start.norm()).flatten(), (noise / noise.norm()).flatten())


@pytest.mark.parametrize("model", SAM_MODELS)
def test_the_segment_anything_choice_is_the_model_that_segments(model, monkeypatch):
    """(The clicks, the click mode and the mask choice are tested in test_click_to_mask.py.)"""
    from demos.shared import click_to_mask

    used = []
    segment = click_to_mask.segment

    def spy(sam, *args, **kwargs):
        used.append(sam)
        return segment(sam, *args, **kwargs)

    monkeypatch.setattr(click_to_mask, "segment", spy)
    run_click_to_mask(SCENE, "+ 250 110", model)
    assert used == [models.get(model)]
