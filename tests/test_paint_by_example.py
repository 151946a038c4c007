"""Paint-by-Example on the tiny model: exact paste-back, sizes, seeds, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demos.shared.generation import read_parameters
from demos import ASSETS
from demos.shared.click_to_mask import run_click_to_mask
from demos.shared.masks import binary_mask, feathered, paste_back, square_around
from demos.tabs.paint_by_example import run_paint_by_example
from models import UserError

SCENE = Image.open(ASSETS / "astronaut.jpg").convert("RGB")
MASK = Image.open(ASSETS / "mask_astronaut_helmet.png")
REFERENCE = Image.open(ASSETS / "reference_cup.jpg")
FAST = dict(steps=2, seed=3)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.mechanism
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


@pytest.mark.mechanism
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
