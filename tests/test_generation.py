"""Seeds and PNG parameter metadata shared by the generative tabs."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from demos.shared.generation import MAX_SEED, generator_for, png_with_parameters, read_parameters, resolve_seed
from models import UserError


def test_seed_is_kept_or_randomised_within_range():
    assert resolve_seed(42) == 42 and resolve_seed("7") == 7
    seeds = {resolve_seed(42, randomize=True) for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s <= MAX_SEED for s in seeds)
    for bad in (-1, MAX_SEED + 1, "abc", None):
        with pytest.raises(UserError, match="seed"):
            resolve_seed(bad)


def test_same_seed_same_noise():
    first = torch.randn(4, generator=generator_for(3))
    assert torch.equal(first, torch.randn(4, generator=generator_for(3)))
    assert not torch.equal(first, torch.randn(4, generator=generator_for(4)))


def test_png_carries_its_parameters_and_pixels():
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    path = png_with_parameters(image, {"prompt": "a cat", "seed": 5, "steps": 20})
    assert read_parameters(path) == {"prompt": "a cat", "seed": 5, "steps": 20}
    assert Image.open(path).getpixel((3, 3)) == (10, 20, 30)
