"""How-diffusion-samples tab (tiny profile): the forward process against closed-form statistics,
DDIM's determinism, ε/x0/v conversions, the VAE's latent scaling, LCM-LoRA's isolation and step
count, the consistency model, and input validation. Tiny weights are random: the tests assert
properties of the mechanism, never what a picture looks like."""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import pytest
import torch

import models
from demos.tabs import compare
from demos.shared.comparison import IMAGE
from demos.tabs.diffusion_basics import (
    CONSISTENCY_TWO_STEP, COMPARE_SAMPLERS, LCM_ADAPTER, lcm_lora_attached, run_consistency, run_determinism,
    run_forward_process, run_latent_sampler, run_parameterisations, run_pixel_sampler, run_vae_roundtrip,
)
from models import UserError
from models.ddpm import CELEBAHQ_SCHEDULER
from models.few_step import LCM_LORA, LCM_LORA_FILE
from models.pipelines.diffusion_maths import (
    alpha_bars, decode_latent, denoise, encode_to_latent, epsilon_from_x0, make_scheduler, noised, parameterisations,
    velocity,
)
from tests.conftest import ROOT

ASTRONAUT = ROOT / "assets" / "astronaut.jpg"
SCHEDULES = ["linear", "squaredcos_cap_v2"]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def closed_form_alpha_bar(schedule: str, t: int) -> float:
    """ᾱ_t from the papers' formulas, independent of diffusers: DDPM's linear β and iDDPM's cosine f(t)/f(0)."""
    if schedule == "linear":
        return float(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t - 1])
    f = lambda step: math.cos((step / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


# ---- forward process -------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_match_the_papers_closed_forms(schedule):
    for t in (1, 10, 250, 500, 900):
        assert alpha_bars(schedule)[t].item() == pytest.approx(closed_form_alpha_bar(schedule, t), rel=1e-4)
    assert alpha_bars(schedule)[0] == 1 and bool((alpha_bars(schedule).diff() < 0).all())


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t", [1, 250, 700])
def test_forward_process_has_the_predicted_mean_and_variance(schedule, t):
    samples = 20_000
    x0 = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    noise = torch.randn((samples, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_t = noised(x0.expand(samples, -1, -1, -1), noise, t, schedule)
    alpha_bar = closed_form_alpha_bar(schedule, t)
    variance = 1 - alpha_bar
    # Five standard errors per pixel: a wrong √ᾱ or a missing square root is off by far more.
    assert (x_t.mean(0) - alpha_bar ** 0.5 * x0[0]).abs().max() < 5 * (variance / samples) ** 0.5
    assert (x_t.var(0) - variance).abs().max() < 5 * variance * (2 / samples) ** 0.5


def test_t_zero_returns_x0_and_scrubbing_t_only_reweights_the_same_noise():
    clean = run_forward_process(ASTRONAUT, t=0)
    assert np.array_equal(pixels(clean.noisy), pixels(clean.clean)) and clean.alpha_bar == 1
    runs = [run_forward_process(ASTRONAUT, t=t) for t in (50, 300, 900)]
    assert all(np.array_equal(pixels(r.noise), pixels(clean.noise)) for r in runs)  # one ε for every t
    distances = [np.abs(pixels(r.noisy) - pixels(r.clean)).mean() for r in runs]
    assert distances[0] < distances[1] < distances[2]
    assert runs[0].snr > runs[1].snr > runs[2].snr and runs[0].plot.size == runs[2].plot.size


# ---- DDPM / DDIM -----------------------------------------------------------------------------

def test_ddim_with_an_oracle_noise_prediction_lands_exactly_on_x0():
    """The update itself is right: fed the true ε of a known x0, deterministic DDIM returns that x0."""
    x0 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    scheduler = make_scheduler(CELEBAHQ_SCHEDULER, "DDIM")
    scheduler.set_timesteps(10)
    x_T = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    oracle = lambda x, t: epsilon_from_x0(x, x0, float(scheduler.alphas_cumprod[t]))  # noqa: E731
    result, trajectory, predicted = denoise(oracle, scheduler, x_T, {"eta": 0.0}, 3, lambda x: x, None, "DDIM")
    torch.testing.assert_close(result, x0)
    assert len(trajectory) == len(predicted) == 3


def test_ddim_eta_zero_is_deterministic_and_ignores_the_noise_generator():
    first = run_pixel_sampler("DDIM", 5, eta=0.0, seed=3)
    again = run_pixel_sampler("DDIM", 5, eta=0.0, seed=3)
    other_noise = run_pixel_sampler("DDIM", 5, eta=0.0, seed=3, noise_seed=99)
    other_start = run_pixel_sampler("DDIM", 5, eta=0.0, seed=4)
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert np.array_equal(pixels(first.image), pixels(other_noise.image))
    assert np.abs(pixels(first.image) - pixels(other_start.image)).mean() > 1
    assert first.unet_calls == 5 and first.timesteps == [801, 601, 401, 201, 1]
    assert len(first.trajectory) == len(first.predicted_x0) == 5


def test_ddim_eta_one_with_another_noise_generator_differs():
    stochastic = run_determinism(steps=5, eta=1.0, seed=3)
    deterministic = run_determinism(steps=5, eta=0.0, seed=3)
    assert deterministic.max_difference == 0
    assert stochastic.max_difference > 10
    assert stochastic.first.seed == stochastic.second.seed != stochastic.second.noise_seed


def test_ddpm_runs_one_unet_call_per_respaced_step():
    result = run_pixel_sampler("DDPM", 8, seed=1, snapshots=2)
    assert result.unet_calls == 8 and len(result.timesteps) == 8 and len(result.trajectory) == 2
    assert result.image.size == (32, 32)


# ---- ε / x0 / v --------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t", [1, 100, 500, 900])
def test_epsilon_x0_v_conversions_round_trip(schedule, t):
    generator = torch.Generator().manual_seed(t)
    x0 = torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    epsilon = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    x_t = noised(x0, epsilon, t, schedule)
    alpha_bar = float(alpha_bars(schedule)[t])
    truth = {"epsilon": epsilon, "x0": x0, "v": velocity(epsilon, x0, alpha_bar)}
    for prediction_type, given in (("epsilon", "epsilon"), ("sample", "x0"), ("v_prediction", "v")):
        converted = parameterisations(truth[given], x_t, alpha_bar, prediction_type)
        for name in truth:
            torch.testing.assert_close(converted[name], truth[name], rtol=1e-9, atol=1e-9)
    from diffusers import DDPMScheduler  # v as diffusers defines it for v-prediction training

    scheduler = DDPMScheduler(**{**CELEBAHQ_SCHEDULER, "beta_schedule": schedule})
    torch.testing.assert_close(truth["v"], scheduler.get_velocity(x0, epsilon, torch.tensor([t - 1])))


def test_parameterisation_view_converts_the_network_output_to_all_three():
    result = run_parameterisations(ASTRONAUT, t=400, seed=2)
    assert result.prediction_type == "epsilon"  # what google/ddpm-celebahq-256 was trained on
    assert set(result.predicted) == set(result.true) == set(result.errors) == {"epsilon", "x0", "v"}
    assert result.alpha_bar == pytest.approx(closed_form_alpha_bar("linear", 400), rel=1e-4)
    # x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ: an error in ε̂ reaches x̂0 multiplied by (1−ᾱ)/ᾱ.
    ratio = (1 - result.alpha_bar) / result.alpha_bar
    assert result.errors["x0"] == pytest.approx(result.errors["epsilon"] * ratio, rel=1e-3)


# ---- latent diffusion ------------------------------------------------------------------------

def test_vae_latent_is_4_by_h8_by_w8_and_decodes_to_the_input_size():
    result = run_vae_roundtrip(ASTRONAUT, resolution=64)
    assert result.latent_shape == (4, 8, 8)
    assert result.reconstruction.size == result.original.size == (64, 64)
    assert result.pixel_elements == 48 * result.latent_elements and len(result.channels) == 4


def test_latent_is_scaled_before_diffusion_and_unscaled_before_decoding():
    vae = models.get("sd15").vae
    factor = vae.config.scaling_factor
    assert factor != 1
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        raw = vae.encode(x).latent_dist.mode()
        latent = encode_to_latent(vae, x)
        torch.testing.assert_close(latent, raw * factor)
        torch.testing.assert_close(decode_latent(vae, latent), vae.decode(raw).sample)


# ---- few-step samplers -----------------------------------------------------------------------

def test_tiny_lcm_lora_is_saved_under_the_published_file_name():
    from huggingface_hub import try_to_load_from_cache

    models.get(LCM_LORA)
    download, _ = models.model_cache.plan(models.REGISTRY[LCM_LORA])
    assert list(download.files) == [LCM_LORA_FILE]
    assert Path(try_to_load_from_cache(download.where, LCM_LORA_FILE, cache_dir=models.model_cache.caches().hub,
                                       revision=download.revision)).is_file()


def test_lcm_lora_is_attached_only_during_its_run_and_makes_exactly_four_unet_calls():
    from demos.shared.generation import generator_for

    pipe = models.get("sd15")

    def plain_sd():
        return pipe("a red cube", num_inference_steps=2, generator=generator_for(5), output_type="np").images

    before = plain_sd()
    lcm = run_latent_sampler("a red cube", "LCM", 4, seed=5)
    assert lcm.adapters == [LCM_ADAPTER]
    assert lcm.unet_calls == 4
    assert lcm.timesteps == [1000, 760, 500, 260]  # LCM's skipping grid over 50 original steps, paper t
    assert all(LCM_ADAPTER not in names for names in pipe.get_list_adapters().values())
    np.testing.assert_array_equal(plain_sd(), before)


def test_lcm_lora_changes_the_unet_while_attached():
    """The isolation test above means something only if the tiny LoRA really alters the network."""
    pipe = models.get("sd15")
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        text, _ = pipe.encode_prompt("a red cube", "cpu", 1, False)
        plain = pipe.unet(latent, 500, encoder_hidden_states=text).sample
    with lcm_lora_attached(pipe, None), torch.inference_mode():
        adapted = pipe.unet(latent, 500, encoder_hidden_states=text).sample
    assert (adapted - plain).abs().mean() > 1e-3


def unet_batches(pipe, run) -> list[tuple[int, int]]:
    """(latent batch, text batch) of every UNet call `run()` makes."""
    seen = []

    def record(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        seen.append((sample.shape[0], kwargs["encoder_hidden_states"].shape[0]))

    hook = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("guidance_scale", [1.0, 7.5])
def test_lcm_samples_without_cfg_whatever_the_scale_and_ddim_with_it(guidance_scale):
    """LCM-LoRA's distillation folded guidance in: one conditional branch per call, never the ∅ half;
    DDIM at the same scale batches ∅ and the prompt (batch 2) when the scale is above 1."""
    pipe = models.get("sd15")
    lcm = unet_batches(pipe, lambda: run_latent_sampler("a red cube", "LCM", 2, guidance_scale=guidance_scale,
                                                        seed=0, resolution=64, snapshots=1))
    ddim = unet_batches(pipe, lambda: run_latent_sampler("a red cube", "DDIM", 2, guidance_scale=guidance_scale,
                                                         seed=0, resolution=64, snapshots=1))
    assert lcm == [(1, 1)] * 2
    assert ddim == [(2, 2) if guidance_scale > 1 else (1, 1)] * 2


def test_ddim_on_sd15_runs_cfg_in_one_batched_unet_call_per_step_and_previews_x0():
    result = run_latent_sampler("a red cube", "DDIM", 3, guidance_scale=7.5, seed=1, resolution=64, snapshots=3)
    assert result.unet_calls == 3 and result.adapters == []
    assert result.image.size == (64, 64) and len(result.predicted_x0) == 3
    assert result.predicted_x0[0][0].size == (64, 64)


def test_consistency_model_one_and_two_steps():
    one = run_consistency(145, steps=1, seed=7)
    two = run_consistency(145, steps=2, seed=7)
    again = run_consistency(145, steps=1, seed=7)
    assert (one.unet_calls, two.unet_calls) == (1, len(CONSISTENCY_TWO_STEP))
    assert np.array_equal(pixels(one.image), pixels(again.image))
    assert one.image.size == two.image.size == (32, 32)


def test_samplers_join_the_compare_tab_and_run_there():
    names = {method.name for method in compare.methods_for(IMAGE.name)}
    assert set(COMPARE_SAMPLERS) <= names
    plan = compare.Plan(IMAGE.name, list(COMPARE_SAMPLERS), {"prompt": "a red cube", "seed": 2}, sweep="steps",
                        values=[2])
    grid = compare.compare_grid(plan)
    assert [cell.error for row in grid for cell in row] == [""] * len(COMPARE_SAMPLERS)
    assert all(cell.output.image is not None for row in grid for cell in row)


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: run_forward_process(None), "Please provide an image"),
    (lambda: run_forward_process(ASTRONAUT, t=1001), "between 0 and 1000"),
    (lambda: run_forward_process(ASTRONAUT, schedule="sigmoid"), "Unknown noise schedule"),
    (lambda: run_pixel_sampler("Euler"), "Unknown sampler 'Euler'"),
    (lambda: run_pixel_sampler("DDIM", 0), "number of steps"),
    (lambda: run_pixel_sampler("DDIM", 5, eta=1.5), "η must be between 0 and 1"),
    (lambda: run_parameterisations(ASTRONAUT, t=0), "no noise to predict"),
    (lambda: run_vae_roundtrip(ASTRONAUT, resolution=100), "multiple of 8"),
    (lambda: run_latent_sampler("", "DDIM"), "Please enter a prompt"),
    (lambda: run_latent_sampler("a cat", "LCM", 20), "between 1 and 8"),
    (lambda: run_consistency(1000), "ImageNet class"),
    (lambda: run_consistency(1, steps=3), "consistency steps"),
])
def test_bad_input_is_a_clear_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


# ---- UI and API ------------------------------------------------------------------------------

def test_the_tab_builds_with_an_api_name_on_every_public_event():
    from app import build_app
    from demos import DEMOS

    demo = next(d for d in DEMOS if d.module == "demos.tabs.diffusion_basics")
    app = build_app([demo])
    names = {fn.api_name for fn in app.fns.values() if fn.api_visibility == "public"}
    assert {"diffusion_forward", "pixel_sampler", "ddim_determinism", "ddim_vs_ddpm", "parameterisations",
            "vae_roundtrip", "latent_sampler", "lcm_vs_ddim", "consistency_model"} <= names


def test_forward_process_and_ddim_answer_through_gradio_client(app_server):
    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(app_server.url, verbose=False)
    clean, _noise, noisy, info, _plot = client.predict(handle_file(str(ASTRONAUT)), 0, "linear", 0,
                                                      api_name="/diffusion_forward")
    assert np.array_equal(pixels(Image.open(clean).convert("RGB")), pixels(Image.open(noisy).convert("RGB")))
    assert "ᾱ_t = **1.0000**" in info
    image, info, _trajectory, _x0, seed = client.predict("DDIM", 4, 0.0, 2, 5, False, api_name="/pixel_sampler")
    assert "DDIM-4" in info and "4 UNet calls" in info and seed == 5


def test_every_other_view_answers_through_gradio_client(app_server):
    from gradio_client import Client, handle_file

    client = Client(app_server.url, verbose=False)
    face = handle_file(str(ASTRONAUT))
    assert "identical" in client.predict(2, 0.0, 3, False, api_name="/ddim_determinism")[2]
    _noisy, gallery, info = client.predict(face, 300, 1, api_name="/parameterisations")
    assert len(gallery) == 6 and "**epsilon**" in info
    _original, _reconstruction, channels, info = client.predict(face, 64, api_name="/vae_roundtrip")
    assert len(channels) == 4 and "48×" in info
    *_, info, _trajectory, _x0, _seed = client.predict("a red cube", "DDIM", 2, 7.5, 64, 1, False,
                                                      api_name="/latent_sampler")
    assert "2 UNet calls" in info
    *_, info, _seed = client.predict("a red cube", 2, 25, 64, 1, False, api_name="/lcm_vs_ddim")
    assert "LCM-2: 2 UNet calls" in info and "DDIM-25" in info
    *_, info, _seed = client.predict(145, 1, False, api_name="/consistency_model")
    assert "1 step = 1 UNet call" in info and "2 steps = 2 calls" in info
