"""MultiDiffusion (Bar-Tal et al.): the fusion step on constructed examples, equivalence with the plain and the
diffusers panorama pipelines, region prompts, and bad input — on the tiny SD-1.5 stand-in."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from demos.tabs.multidiffusion import (check_side, default_width, native_side, region_masks, run_panorama,
                                  run_regions)
from demos.shared.boxes import parse_layout
from models import UserError
from models.pipelines import multidiffusion as md
from models.stable_diffusion import SD15


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


# ---- the fusion step, by hand ---------------------------------------------------------------------

def test_each_pixel_becomes_the_average_of_the_windows_covering_it():
    views = [(0, 1, 0, 4), (0, 1, 2, 6), (0, 1, 3, 7)]
    values = [torch.full((1, 1, 1, 4), v) for v in (1.0, 3.0, 8.0)]
    ones = torch.ones(1, 1, 1, 4)
    fused = md.fuse((1, 1, 1, 7), [(view, value, ones) for view, value in zip(views, values)])
    # column:            0    1    2          3               4          5          6
    expected = torch.tensor([1.0, 1.0, (1 + 3) / 2, (1 + 3 + 8) / 3, (3 + 8) / 2, (3 + 8) / 2, 8.0])
    assert torch.allclose(fused[0, 0, 0], expected)


def test_fusion_is_the_per_pixel_least_squares_solution_for_random_views_and_weights():
    generator = torch.Generator().manual_seed(0)
    views = md.windows(6, 10, 4, 2)
    contributions = [(view, torch.randn(2, 3, 4, 4, generator=generator),
                      torch.rand(2, 1, 4, 4, generator=generator) + 0.1) for view in views]
    fused = md.fuse((1, 3, 6, 10), contributions)
    # argmin_J Σ_i ‖√W_i (F_i(J) − Φ_i)‖² per pixel, by brute force over the views covering it
    for y in range(6):
        for x in range(10):
            numerator = torch.zeros(3)
            denominator = 0.0
            for (h0, h1, w0, w1), values, weights in contributions:
                if h0 <= y < h1 and w0 <= x < w1:
                    numerator += (values[:, :, y - h0, x - w0] * weights[:, :, y - h0, x - w0]).sum(0)
                    denominator += float(weights[:, 0, y - h0, x - w0].sum())
            assert torch.allclose(fused[0, :, y, x], numerator / denominator, atol=1e-5)


def test_circular_windows_wrap_round_and_cover_every_column_window_over_stride_times():
    views = md.windows(4, 12, 4, 2, circular=True)
    assert len(views) == 6 and views[-1] == (0, 4, 10, 14)
    assert torch.equal(md.coverage((4, 12), views), torch.full((4, 12), 2.0))
    latent = torch.arange(12.0).reshape(1, 1, 1, 12).expand(1, 1, 4, 12)
    assert md.crop(latent, views[-1])[0, 0, 0].tolist() == [10, 11, 0, 1]
    # a wrapped window's values go back where they came from
    fused = md.fuse((1, 1, 4, 12), [(view, md.crop(latent, view), torch.ones(1, 1, 4, 4)) for view in views])
    assert torch.allclose(fused, latent)


@pytest.mark.parametrize("height, width", [(16, 16), (16, 64), (24, 40), (32, 80)])
def test_valid_sizes_leave_no_latent_pixel_uncovered(height, width):
    for side, what in ((height, "h"), (width, "w")):
        check_side(side * 8, what, 16, 8)
    assert md.coverage((height, width), md.windows(height, width, 16, 8)).min() >= 1


# ---- equivalences -----------------------------------------------------------------------------------

def _plain_pipeline(base):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pipe(base, scheduler=md.ddim_like(base), dtype=base.unet.dtype)


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 7])
def test_one_window_covering_the_whole_latent_is_the_plain_pipeline(seed):
    base = models.get(SD15)
    side = native_side()
    noise = md.initial_noise(base, side, side, torch.Generator().manual_seed(seed))
    ours = md.generate(base, ["a lighthouse"], torch.ones(1, 1, side // 8, side // 8),
                       md.windows(side // 8, side // 8, side // 8, 8), noise, torch.Generator().manual_seed(seed),
                       steps=3)
    plain = _plain_pipeline(base)("a lighthouse", height=side, width=side, num_inference_steps=3,
                                  generator=torch.Generator().manual_seed(seed)).images[0]
    assert np.array_equal(_pixels(ours.image), _pixels(plain))
    assert ours.unet_calls == 3


@pytest.mark.mechanism
def test_panorama_latent_equals_diffusers_panorama_pipeline():
    """diffusers' StableDiffusionPanoramaPipeline on the same base and noise. Its window is fixed at 64 latents
    (SD's 512 px); it is given the tiny model's native window instead, through its own `get_views`."""
    from diffusers import StableDiffusionPanoramaPipeline

    base = models.get(SD15)
    window = native_side() // 8
    reference = StableDiffusionPanoramaPipeline.from_pipe(base, scheduler=md.ddim_like(base), dtype=base.unet.dtype)
    reference.set_progress_bar_config(disable=True)
    get_views = reference.get_views
    reference.get_views = lambda height, width, **kwargs: get_views(height, width, window_size=window, **kwargs)
    height, width = 8 * window, 8 * (window + 16)
    expected = reference("a beach", height=height, width=width, num_inference_steps=2, output_type="latent",
                         generator=torch.Generator().manual_seed(1)).images
    noise = md.initial_noise(base, height, width, torch.Generator().manual_seed(1))
    views = md.windows(window, window + 16, window, 8)
    assert len(views) == 3
    ours = md.generate(base, ["a beach"], torch.ones(1, 1, window, window + 16), views, noise, torch.Generator(),
                       steps=2)
    assert torch.allclose(ours.latent, expected, atol=1e-5)


def test_panorama_has_the_requested_size_and_the_mechanism_views_match_it():
    side = native_side()
    result = run_panorama("a photo of the dolomites", width=3 * side, steps=2, seed=3)
    assert result.image.size == (3 * side, side)
    assert result.one_pass.size == result.tiles.size == result.grid.size == result.image.size
    assert result.views == (3 * side // 8 - side // 8) // 8 + 1
    assert [step for step, _ in result.previews] == [1, 2]
    # the grid is drawn on the result: most pixels are the result's own
    assert (np.abs(_pixels(result.grid) - _pixels(result.image)).sum(axis=2) == 0).mean() > 0.5
    circular = run_panorama("a photo of the dolomites", width=3 * side, steps=1, circular=True, baselines=False)
    assert circular.image.size == (3 * side, side) and circular.views == 3 * side // 64


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_the_stride_chosen_is_the_one_the_windows_move_by(monkeypatch, stride):
    """The windows the UNet actually visits start `stride` latent pixels apart and tile the width; their
    number follows (W − window)/stride + 1 — a trace of the crops the UNet saw, not the tab's own count."""
    side = native_side()
    window, width = side // 8, 2 * side
    starts = []
    crop = md.crop

    def spy(latent, view):
        if latent.shape[1] == 4:  # the latent, not the prompt masks
            starts.append(view[2])
        return crop(latent, view)

    monkeypatch.setattr(md, "crop", spy)
    result = run_panorama("a beach", width=width, steps=1, stride=stride, baselines=False)
    expected = list(range(0, width // 8 - window + 1, stride))
    assert starts == expected and result.views == len(expected)
    assert result.parameters["stride_px"] == 8 * stride


def test_the_naive_tiles_are_the_one_window_runs_pasted_side_by_side():
    base = models.get(SD15)
    side = native_side()
    result = run_panorama("a city skyline", width=2 * side, steps=1, seed=5)
    noise = md.initial_noise(base, side, 2 * side, torch.Generator().manual_seed(5))
    right = md.generate(base, ["a city skyline"], torch.ones(1, 1, side // 8, side // 8),
                        [(0, side // 8, 0, side // 8)], noise[..., side // 8:], torch.Generator(), steps=1)
    assert np.array_equal(_pixels(result.tiles)[:, side:], _pixels(right.image))


def test_a_panorama_leaves_the_shared_base_as_it_was():
    base = models.get(SD15)
    side = native_side()

    def plain():
        return _pixels(_plain_pipeline(base)("a cat", height=side, width=side, num_inference_steps=2,
                                             generator=torch.Generator().manual_seed(0)).images[0])

    before, scheduler = plain(), type(base.scheduler)
    run_panorama("a cat", width=4 * side, steps=1, baselines=False)  # wide: decoded with VAE tiling
    assert not base.vae.use_tiling and type(base.scheduler) is scheduler
    assert np.array_equal(plain(), before)


# ---- region prompts -----------------------------------------------------------------------------------

def _region_change(seed: int, **change) -> tuple[float, float]:
    """Mean |Δpixel| inside the box (left quarter) and far away (right quarter) when one setting changes."""
    side = native_side()
    settings = dict(prompt="a meadow", layout="a red car: 0, 0, 0.25, 1", width=2 * side, height=side, steps=4,
                    bootstrap_steps=2, seed=seed)
    first = _pixels(run_regions(**settings).image)
    second = _pixels(run_regions(**{**settings, **change}).image)
    difference = np.abs(first - second).mean(axis=2)
    quarter = difference.shape[1] // 4
    return difference[:, :quarter].mean(), difference[:, -quarter:].mean()


@pytest.mark.mechanism
@pytest.mark.parametrize("change", [{"layout": "a blue boat: 0, 0, 0.25, 1"}, {"bootstrap_steps": 0}],
                         ids=["the box's prompt", "bootstrapping"])
def test_changing_only_a_box_changes_its_pixels_more_than_far_away_ones(change):
    ratios = []
    for seed in (0, 1, 2):
        inside, far = _region_change(seed, **change)
        assert inside > 0
        ratios.append(inside / max(far, 1e-9))
    assert min(ratios) > 1.5, ratios


def test_region_masks_give_the_background_what_the_boxes_leave():
    masks = region_masks(parse_layout("a: 0,0,0.5,0.5\nb: 0.5,0.5,1,1"), 8, 8)
    assert masks.shape == (3, 1, 8, 8)
    assert torch.equal(masks.sum(dim=0), torch.ones(1, 8, 8))
    assert masks[1, 0, :4, :4].all() and masks[2, 0, 4:, 4:].all() and masks[0, 0, :4, 4:].all()


# ---- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"width": 3 * 128 + 4}, "multiple of 8"),
    ({"width": 10 ** 6}, "between"),
    ({"width": 3 * 128 + 8}, "outside every window"),
    ({"width": 64}, "at least one window"),
    ({"height": "tall"}, "must be a number"),
    ({"stride": 0}, "stride"),
    ({"steps": 0}, "Steps"),
    ({"prompt": ""}, "Please"),
    ({"prompt": "x" * 10_000}, "characters"),
    ({"width": 3 * 128 + 8, "circular": True}, "multiple of the stride"),
])
def test_bad_panorama_requests_are_refused_plainly(kwargs, message):
    assert native_side() == 128  # the sizes above are for the tiny profile's 128-px window
    with pytest.raises(UserError, match=message):
        run_panorama(**{"prompt": "a photo of the dolomites", "steps": 1, **kwargs})


@pytest.mark.parametrize("layout, message", [
    ("a cat: 0,0,0.6,0.6\na dog: 0.5,0.5,1,1", "overlap"),
    ("a cat: 0,0,0.01,0.01", "too small"),
    ("", "at least one box"),
    ("a cat: 0.5,0.5,0.2,0.9", "no area"),
    ("a cat: 0,0,1.5,1", "outside"),
    (": 0,0,0.5,0.5", "no phrase"),
])
def test_bad_regions_are_refused_plainly(layout, message):
    with pytest.raises(UserError, match=message):
        run_regions("a meadow", layout, steps=1)


def test_bootstrapping_beyond_the_steps_is_refused():
    with pytest.raises(UserError, match="Bootstrapping"):
        run_regions("a meadow", "a cat: 0,0,0.5,0.5", steps=2, bootstrap_steps=3)


def test_defaults_are_a_wide_panorama_and_compare_methods_run():
    from demos.tabs.multidiffusion import COMPARE_METHODS

    assert default_width() > native_side()
    images = [method.run("a beach", **{**method.parameters, "steps": 1}).image for method in COMPARE_METHODS]
    assert [image.size for image in images] == [(default_width(), native_side())] * 2
