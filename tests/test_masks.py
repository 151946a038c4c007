"""Mask tools shared by editing tabs: grow/shrink, feathering, exact paste-back, brushed layers."""
from __future__ import annotations

import numpy as np
from PIL import Image

from demos.shared.masks import binary_mask, editor_mask, feathered, paste_back, square_around


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_grow_shrink_and_feather():
    region = np.zeros((40, 40), bool)
    region[10:30, 10:30] = True
    assert (feathered(region, 3, 0) > 0).sum() == 26 * 26
    assert (feathered(region, -3, 0) > 0).sum() == 14 * 14
    soft = feathered(region, 0, 6)
    assert 0 < soft[10, 20] < 1 and soft[20, 20] == 1 and soft[0, 0] == 0


def test_paste_back_keeps_zero_weight_pixels_bit_identical():
    picture = scene(80, 64)
    region = np.zeros((64, 80), bool)
    region[20:40, 30:50] = True
    weight = feathered(region, grow=2, feather=4)
    assert weight[region].min() > 0.4 and weight.max() == 1.0 and 0 < (weight > 0).sum() < weight.size
    out = np.asarray(paste_back(picture, Image.new("RGB", (8, 8), (0, 255, 0)), square_around(weight > 0), weight))
    assert np.array_equal(out[weight == 0], np.asarray(picture)[weight == 0])
    assert (out[30, 40] == [0, 255, 0]).all()


def test_editor_layers_become_one_mask():
    layer = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (5, 5, 15, 15))
    other = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    other.paste((255, 255, 255, 128), (20, 10, 30, 20))
    mask = binary_mask(editor_mask({"background": None, "layers": [layer, other]}), (40, 30))
    assert mask.sum() == 100 + 100 and mask[7, 7] and mask[15, 25] and not mask[0, 0]
    assert editor_mask({"layers": []}) is None
