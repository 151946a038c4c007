"""Masked diffusion edit on the tiny SD-1.5 stand-in: outside the mask the photo is exact (the
paste-back) and the latent is the original's (re-imposed every step); inside it changes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.masked_edit import COMPARE_METHODS, run_masked_edit
from demos.shared.masks import feathered
from models import UserError
from models.pipelines.masked_edit import latent_mask, masked_sdedit
from models.pipelines.null_text_inversion import encode_image
from models.stable_diffusion import SD15

PHOTO = Image.open(ASSETS / "astronaut.jpg").convert("RGB")
HELMET = Image.open(ASSETS / "mask_astronaut_helmet.png")


def region(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask.convert("L")) >= 128


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_outside_the_mask_is_the_photo_bit_for_bit_and_inside_changes(seed):
    result = run_masked_edit(PHOTO, HELMET, "a bunch of red roses", steps=4, seed=seed, grow=0, feather=0)
    before, after = np.asarray(PHOTO, dtype=np.int16), np.asarray(result.image, dtype=np.int16)
    inside = region(HELMET)
    assert np.array_equal(before[~inside], after[~inside])
    assert np.abs(before[inside] - after[inside]).mean() > 5


def test_a_grown_feathered_mask_keeps_everything_it_does_not_touch():
    result = run_masked_edit(PHOTO, HELMET, "roses", steps=2, grow=6, feather=6)
    touched = feathered(region(HELMET), 6, 6) > 0
    assert touched.sum() > region(HELMET).sum()  # it grew
    assert np.array_equal(np.asarray(result.image)[~touched], np.asarray(PHOTO)[~touched])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_original_latent_is_reimposed_outside_the_mask(seed):
    pipe = models.get(SD15)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    square = PHOTO.resize((side, side))
    inside = np.zeros((side, side), dtype=bool)
    inside[side // 4: side // 2, side // 4: 3 * side // 4] = True
    output = masked_sdedit(pipe, square, inside, "roses", 0.75, 4, 7.5, torch.Generator().manual_seed(seed))
    z0 = encode_image(pipe, square)
    keep = torch.from_numpy(output.latent_mask == 0)
    assert keep.any() and (~keep).any()
    assert torch.allclose(output.latent[..., keep], z0[..., keep], atol=1e-6)
    assert (output.latent[..., ~keep] - z0[..., ~keep]).abs().mean() > 0.05
    assert output.steps_run == 3  # strength 0.75 of 4 steps


@pytest.mark.parametrize("seed", [0, 1])
def test_outside_the_mask_every_step_starts_from_the_original_noised_to_that_steps_level(seed):
    """RePaint's blend: after step t → t−1 the outside is √ᾱ_{t−1}·z0 + √(1−ᾱ_{t−1})·ε, so each UNet call
    at timestep t_k sees the original noised to t_k there (not to the level just left, and at every step,
    not only the last) — a trace of what the UNet received, against diffusers' own add_noise."""
    from diffusers import DDIMScheduler

    pipe = models.get(SD15)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    square = PHOTO.resize((side, side))
    inside = np.zeros((side, side), dtype=bool)
    inside[: side // 2, : side // 2] = True
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda module, args: seen.append((args[0][0].detach().clone(), int(args[1]))))
    try:
        output = masked_sdedit(pipe, square, inside, "roses", 1.0, 4, 7.5, torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    z0 = encode_image(pipe, square)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    keep = torch.from_numpy(output.latent_mask == 0)
    assert len(seen) == 4 and len({timestep for _, timestep in seen}) == 4
    for call, (latent, timestep) in enumerate(seen):
        expected = scheduler.add_noise(z0, noise, torch.tensor([timestep]))[0]
        assert torch.allclose(latent[..., keep], expected[..., keep], atol=1e-5), f"t = {timestep}"
        if call:  # inside, from the second step on, the model's own latent
            assert not torch.allclose(latent[..., ~keep], expected[..., ~keep], atol=1e-3)


def test_the_latent_mask_covers_every_masked_pixel():
    pixels = np.zeros((64, 64), dtype=bool)
    pixels[9, 30] = True  # one pixel in latent cell (1, 3)
    mask = latent_mask(pixels, (8, 8))[0, 0]
    assert mask[1, 3] == 1 and mask.sum() == 1


def test_same_seed_same_edit():
    first = run_masked_edit(PHOTO, HELMET, "roses", steps=2, seed=5).image
    again = run_masked_edit(PHOTO, HELMET, "roses", steps=2, seed=5).image
    assert np.array_equal(np.asarray(first), np.asarray(again))


@pytest.mark.parametrize("arguments, message", [
    ((None, HELMET, "roses"), "photo"),
    ((PHOTO, None, "roses"), "mark the region"),
    ((PHOTO, Image.new("L", PHOTO.size, 0), "roses"), "empty"),
    ((PHOTO, Image.new("L", PHOTO.size, 255), "roses"), "whole scene"),
    ((PHOTO, Image.new("L", (10, 10), 255), "roses"), "same size"),
    ((PHOTO, HELMET, "  "), "prompt"),
    ((PHOTO, HELMET, "roses", 0.0), "strength"),
])
def test_bad_input_is_refused_with_what_to_do(arguments, message):
    with pytest.raises(UserError, match=message):
        run_masked_edit(*arguments, steps=2)


def test_compare_cell_edits_inside_the_shared_mask():
    method = COMPARE_METHODS[0]
    output = method.run(**{**method.parameters, "image": PHOTO, "mask": HELMET, "edited_prompt": "roses", "seed": 0,
                           "steps": 2})
    assert output.image.size == PHOTO.size
