"""Samplers & guidance tab (tiny profile): which scheduler steps and how often the UNet runs, that the
shared base gets its own scheduler back, CFG's formula on made-up branch outputs, the negative prompt in
the ∅ slot, each branch's x̂0, and DDIM inversion's error against steps and guidance. Tiny weights are
random: the tests assert properties of the mechanism, never what a picture looks like."""
from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

import models
from demos.shared.comparison import IMAGE
from demos.tabs.samplers_and_guidance import (
    COMPARE_METHODS, SAMPLER_NAMES, classifier_guidance_text, run_cfg_branches, run_guidance_sweep,
    run_inversion_error, run_sampler, run_sampler_sweep,
)
from models import UserError
from models.pipelines import prompt_to_prompt as p2p
from models.pipelines.cfg_branches import Branches, guided
from models.pipelines.samplers import SAMPLERS, swapped_scheduler
from models.stable_diffusion import SD15
from tests.conftest import ROOT
from tests.spies import step_inputs, unet_forward_calls

SIDE = 64  # an 8×8 latent on the tiny UNet
PROMPT = "a red cube"
CAT = ROOT / "assets" / "chelsea.jpg"
# UNet calls for N steps, as diffusers' schedulers lay out their timesteps: PNDM (PLMS) warms up with one
# extra call; Heun evaluates twice a step except the last, which has no correction.
EXPECTED_CALLS = {"DDIM": lambda n: n, "PNDM": lambda n: n + 1, "Euler": lambda n: n, "Euler ancestral": lambda n: n,
                  "Heun": lambda n: 2 * n - 1, "DPM-Solver++": lambda n: n}
SCHEDULER_CLASSES = {name: getattr(diffusers, class_name) for name, (class_name, _) in SAMPLERS.items()}


@pytest.fixture(scope="module")
def pipe():
    return models.get(SD15)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


# ---- samplers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_the_chosen_scheduler_class_steps_once_per_unet_call_and_counts_as_diffusers_lays_out(monkeypatch, pipe,
                                                                                              sampler):
    original = pipe.scheduler
    stepped = {name: step_inputs(monkeypatch, cls) for name, cls in SCHEDULER_CLASSES.items()}
    calls = unet_forward_calls(monkeypatch, pipe.unet)
    run = run_sampler(PROMPT, sampler, 3, guidance_scale=7.5, seed=1, resolution=SIDE)
    assert run.unet_calls == len(calls) == EXPECTED_CALLS[sampler](3)
    assert len(stepped[sampler]) == run.unet_calls  # the pipeline stepped with this class, once per call
    assert all(not seen for name, seen in stepped.items() if name != sampler)
    assert run.scheduler_class == type(SCHEDULER_CLASSES[sampler].from_config(original.config)).__name__
    assert all(call.sample.shape[0] == 2 for call in calls)  # CFG: ∅ and prompt in one batch
    assert pipe.scheduler is original and run.image.size == (SIDE, SIDE)


def test_dpm_solver_is_the_plus_plus_variant(pipe):
    from models.pipelines.samplers import make_sampler

    scheduler = make_sampler(pipe.scheduler.config, "DPM-Solver++")
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.num_train_timesteps == 1000
    assert torch.equal(scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod)  # the base's β schedule


def test_the_swap_puts_the_shared_scheduler_back_even_when_the_run_fails(monkeypatch, pipe):
    original, registered = pipe.scheduler, tuple(pipe.config["scheduler"])
    seen_during = []
    real_step = diffusers.HeunDiscreteScheduler.step

    def step(self, *args, **kwargs):
        seen_during.append(pipe.scheduler is self)
        raise RuntimeError("a step that breaks")

    monkeypatch.setattr(diffusers.HeunDiscreteScheduler, "step", step)
    with pytest.raises(RuntimeError, match="a step that breaks"):
        run_sampler(PROMPT, "Heun", 2, seed=0, resolution=SIDE)
    assert seen_during == [True] and pipe.scheduler is original
    monkeypatch.setattr(diffusers.HeunDiscreteScheduler, "step", real_step)
    with pytest.raises(KeyError), swapped_scheduler(pipe, diffusers.EulerDiscreteScheduler.from_config(original.config)):
        assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
        raise KeyError("inside the swap")
    assert pipe.scheduler is original and tuple(pipe.config["scheduler"]) == registered
    assert type(original).__name__ == "PNDMScheduler"  # the published SD-1.5 base's own


def test_plain_sd_is_identical_before_and_after_a_sweep(pipe):
    def plain():
        return pipe(PROMPT, num_inference_steps=2, height=SIDE, width=SIDE, output_type="np",
                    generator=torch.Generator().manual_seed(4)).images

    before = plain()
    sweep = run_sampler_sweep(PROMPT, ["Heun", "Euler ancestral"], [2, 3], seed=4, resolution=SIDE)
    np.testing.assert_array_equal(plain(), before)
    assert [(run.sampler, run.steps) for run in sweep.runs] == [("Heun", 2), ("Heun", 3), ("Euler ancestral", 2),
                                                                ("Euler ancestral", 3)]
    assert [run.unet_calls for run in sweep.runs] == [3, 5, 2, 3] and sweep.seed == 4


@pytest.mark.mechanism
def test_every_ode_sampler_lands_near_ddims_image_at_enough_steps():
    """All five deterministic samplers integrate the same probability-flow ODE from the same x_T: at 12 steps
    their images lie far closer to DDIM's than a 2-step run does. Measured over seeds 0–3, mean difference in
    levels of 255: at 12 steps ≤ 1.92 (PNDM), at 30 steps ≤ 0.81; DPM-Solver++ at 2 steps ≥ 11.6. Euler
    ancestral (an SDE sampler: fresh noise every step, so another image) stays 21–25 away even at 30 steps, so
    it is left out."""
    for seed in (0, 1, 2):
        reference = pixels(run_sampler(PROMPT, "DDIM", 12, seed=seed, resolution=SIDE).image)
        for sampler in ("PNDM", "Euler", "Heun", "DPM-Solver++"):
            near = np.abs(pixels(run_sampler(PROMPT, sampler, 12, seed=seed, resolution=SIDE).image) - reference).mean()
            assert near < 3.5, (sampler, seed, near)
        coarse = np.abs(pixels(run_sampler(PROMPT, "DPM-Solver++", 2, seed=seed, resolution=SIDE).image) - reference)
        assert coarse.mean() > 8, (seed, coarse.mean())


# ---- classifier-free guidance ----------------------------------------------------------------------

def test_guidance_formula_on_made_up_branches():
    generator = torch.Generator().manual_seed(0)
    unconditional, conditional = torch.randn(2, 1, 4, 8, 8, generator=generator)
    torch.testing.assert_close(guided(unconditional, conditional, 0.0), unconditional)
    torch.testing.assert_close(guided(unconditional, conditional, 1.0), conditional)
    torch.testing.assert_close(guided(unconditional, conditional, 7.5),
                               unconditional + 7.5 * (conditional - unconditional))


def constant_branches(module, args, kwargs, output):
    """The UNet's prediction replaced by one constant per half of the batch [∅ ; prompt]: 0.1 and 0.3."""
    sample = args[0] if args else kwargs["sample"]
    levels = torch.tensor([0.1, 0.3][:sample.shape[0]], dtype=sample.dtype).view(-1, 1, 1, 1)
    return type(output)(sample=levels.expand(-1, 4, *sample.shape[2:]).clone())


def test_every_w_of_the_sweep_reaches_the_step_w0_unconditional_w1_conditional(monkeypatch, pipe):
    taken = step_inputs(monkeypatch, diffusers.DDIMScheduler)
    calls = unet_forward_calls(monkeypatch, pipe.unet)
    hook = pipe.unet.register_forward_hook(constant_branches, with_kwargs=True)
    try:
        sweep = run_guidance_sweep(PROMPT, scales=[15, 0, 1, 3, 7.5], steps=2, seed=0, resolution=SIDE)
    finally:
        hook.remove()
    starts = [call.sample for call in calls[::2]]  # every w starts from the one x_T of the seed
    assert len(starts) == 5 and all(torch.equal(start, starts[0]) for start in starts)
    assert sweep.scales == [0, 1, 3, 7.5, 15] and sweep.unet_calls == 10 and len(sweep.images) == 5
    levels = [float(noise.mean()) for noise in taken]
    assert all(torch.allclose(noise, torch.full_like(noise, noise.flatten()[0])) for noise in taken)
    assert levels == pytest.approx([0.1 + w * 0.2 for w in (0, 0, 1, 1, 3, 3, 7.5, 7.5, 15, 15)], abs=1e-5)
    assert levels[:4] == pytest.approx([0.1, 0.1, 0.3, 0.3], abs=1e-6)  # w = 0: ε_∅ alone; w = 1: ε_c alone


def test_branches_at_the_chosen_step_are_the_two_halves_and_their_mix(monkeypatch, pipe):
    calls = unet_forward_calls(monkeypatch, pipe.unet)
    taken = step_inputs(monkeypatch, diffusers.DDIMScheduler)
    result = run_cfg_branches(PROMPT, "", guidance_scale=4.0, steps=4, at_step=3, seed=2, resolution=SIDE)
    branches = result.branches
    unconditional, conditional = calls[2].output.chunk(2)
    torch.testing.assert_close(branches.epsilon["unconditional"], unconditional)
    torch.testing.assert_close(branches.epsilon["conditional"], conditional)
    torch.testing.assert_close(branches.epsilon["guided"], taken[2])
    torch.testing.assert_close(branches.latent, calls[2].sample[:1])
    assert (result.step, result.t) == (3, branches.timestep + 1) and len(result.captioned) == 4
    assert not torch.allclose(unconditional, conditional)


def test_the_negative_prompt_is_what_the_unconditional_branch_encodes(monkeypatch, pipe):
    empty, negative, prompt = p2p.encode_text(pipe, ["", "blurry, dark", PROMPT])
    calls = unet_forward_calls(monkeypatch, pipe.unet)
    run_cfg_branches(PROMPT, "blurry, dark", steps=2, at_step=1, seed=0, resolution=SIDE)
    for call in calls:
        torch.testing.assert_close(call.text[0], negative)
        torch.testing.assert_close(call.text[1], prompt)
    calls.clear()
    run_cfg_branches(PROMPT, "", steps=2, at_step=1, seed=0, resolution=SIDE)
    torch.testing.assert_close(calls[0].text[0], empty)
    assert not torch.allclose(empty, negative)


@pytest.mark.parametrize("alpha_bar", [0.05, 0.5, 0.98])
def test_each_branchs_x0_is_the_forward_process_solved_for_x0(alpha_bar):
    """Made-up x0 and three different ε: z_t = √ᾱ x0 + √(1−ᾱ) ε_true; a branch predicting ε_true gives x0 back
    exactly, one that is off by δ gives x0 − √((1−ᾱ)/ᾱ)·δ; the guided one equals DDIM's own x̂0."""
    generator = torch.Generator().manual_seed(1)
    x0, true_noise, offset = torch.randn(3, 1, 4, 8, 8, generator=generator, dtype=torch.float64)
    z_t = alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * true_noise
    noises = {"unconditional": true_noise, "conditional": true_noise + offset,
              "guided": guided(true_noise, true_noise + offset, 3.0)}
    predicted = Branches(0, 500, alpha_bar, z_t, noises).predicted_x0()
    torch.testing.assert_close(predicted["unconditional"], x0)
    torch.testing.assert_close(predicted["conditional"], x0 - ((1 - alpha_bar) / alpha_bar) ** 0.5 * offset)
    torch.testing.assert_close(predicted["guided"], x0 - 3 * ((1 - alpha_bar) / alpha_bar) ** 0.5 * offset)


def test_x0_of_the_guided_branch_is_ddims_own_prediction(pipe):
    result = run_cfg_branches(PROMPT, "", guidance_scale=7.5, steps=3, at_step=2, seed=5, resolution=SIDE)
    branches = result.branches
    scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(3)
    own = scheduler.step(branches.epsilon["guided"], branches.timestep, branches.latent).pred_original_sample
    torch.testing.assert_close(branches.predicted_x0()["guided"], own)
    assert branches.alpha_bar == pytest.approx(float(scheduler.alphas_cumprod[branches.timestep]))


def test_classifier_guidance_is_named_with_links_to_the_tabs_that_use_it():
    text = classifier_guidance_text()
    assert r"\nabla_{x_t} \log p(y \mid x_t)" in text and r"\sqrt{1-\bar\alpha_t}" in text
    assert "(?tab=Face%20swap%20%28DiffFace%29)" in text and "(?tab=Universal%20guidance)" in text


# ---- DDIM inversion ----------------------------------------------------------------------------------

def gaussian_data_unet(pipe, spread: float = 0.5, mean: float = 1.0):
    """A deterministic stand-in for the UNet: the exact ε-prediction for data z0 ~ N(μ, s²I), μ = `mean` for the
    prompt and 0 for ∅ — ε(z_t) = √(1−ᾱ)(z_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ). Its probability-flow ODE is smooth in t,
    so DDIM's discretisation error (the only error of inversion without guidance) must fall with steps, while
    the prompt's mean differing from ∅'s makes guidance move the path back."""
    empty = p2p.encode_text(pipe, [""])[0]
    alphas = pipe.scheduler.alphas_cumprod.double()

    def forward(sample, timestep, *args, encoder_hidden_states=None, return_dict=True, **kwargs):
        alpha = alphas[int(timestep)]
        is_prompt = torch.tensor([not torch.allclose(text, empty) for text in encoder_hidden_states])
        mu = (is_prompt.double() * mean).view(-1, 1, 1, 1)
        noise = ((1 - alpha) ** 0.5 * (sample.double() - alpha ** 0.5 * mu) / (alpha * spread ** 2 + 1 - alpha))
        return (noise.to(sample.dtype),)
    return forward


def test_inversion_error_falls_with_steps_and_guidance_breaks_it_on_a_smooth_stand_in(monkeypatch, pipe):
    """With the tiny random UNet the error is not monotone in the steps (its ε is not a smooth function of t;
    measured: 0.40, 1.37, 0.71, 0.29, 0.34 for 2–50 steps), so the property is checked on the stand-in above."""
    monkeypatch.setitem(vars(pipe.unet), "forward", gaussian_data_unet(pipe))
    result = run_inversion_error(CAT, PROMPT, [2, 5, 10, 25], [1, 7.5], resolution=SIDE)
    plain, with_guidance = result.errors(1.0), result.errors(7.5)
    assert all(later < 0.7 * earlier for earlier, later in zip(plain, plain[1:])), plain
    assert all(guided_error > 10 * plain_error for guided_error, plain_error in zip(with_guidance[1:], plain[1:]))
    assert with_guidance[-1] > 0.5 * with_guidance[0]  # guidance's error does not go away with more steps
    assert result.unet_calls == 42 + 2 * 42 and [trip.steps for trip in result.trips[::2]] == [2, 5, 10, 25]


@pytest.mark.mechanism
def test_on_the_tiny_unet_guidance_on_the_way_back_makes_the_reconstruction_worse():
    """Measured for the cat and the astronaut at 10 steps: w = 7.5 gives 7× the latent error of w = 1."""
    for photo in (CAT, ROOT / "assets" / "astronaut.jpg"):
        result = run_inversion_error(photo, "a photo", [10], [1, 7.5], resolution=SIDE)
        plain, with_guidance = result.errors(1.0), result.errors(7.5)
        assert with_guidance[0] > 2.5 * plain[0], (photo.name, plain, with_guidance)
        assert result.unet_calls == 10 + 2 * 10 and len(result.captioned) == 3 and result.vae_psnr > 0


# ---- validation, UI, Compare -----------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: run_sampler("", "DDIM"), "Please enter a prompt"),
    (lambda: run_sampler(PROMPT, "LMS"), "Unknown sampler 'LMS'"),
    (lambda: run_sampler(PROMPT, "DDIM", 0), "number of steps"),
    (lambda: run_sampler(PROMPT, "DDIM", 5, guidance_scale=-1), "guidance scale w"),
    (lambda: run_sampler(PROMPT, "DDIM", 5, resolution=100), "multiple of 8"),
    (lambda: run_sampler_sweep(PROMPT, []), "at least one sampler"),
    (lambda: run_sampler_sweep(PROMPT, ["DDIM"], "5, x"), "must be a number"),
    (lambda: run_sampler_sweep(PROMPT, ["DDIM"], [1, 2, 3, 4, 5, 6, 7]), "At most 6 values"),
    (lambda: run_sampler_sweep(PROMPT, SAMPLER_NAMES, [1, 2, 3, 4, 5]), "more than the limit"),
    (lambda: run_sampler_sweep(PROMPT, 1e12), "Unknown sampler"),
    (lambda: run_cfg_branches(PROMPT, steps=5, at_step=6), "step to open up"),
    (lambda: run_guidance_sweep(PROMPT, scales=float("nan")), "guidance scale w must be between"),
    (lambda: run_guidance_sweep(PROMPT, scales=""), "at least one value"),
    (lambda: run_inversion_error(None, "a cat"), "Please provide a photo to invert"),
    (lambda: run_inversion_error(CAT, "a cat", [0]), "number of inversion steps"),
])
def test_bad_input_is_a_clear_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_the_tab_builds_with_an_api_name_on_every_public_event():
    from app import build_app
    from demos import DEMOS

    demo = next(d for d in DEMOS if d.module == "demos.tabs.samplers_and_guidance")
    basics = next(d for d in DEMOS if d.title == "How diffusion samples")
    assert demo.topic == basics.topic == "diffusion" and DEMOS.index(demo) > DEMOS.index(basics)
    app = build_app([demo])
    names = {fn.api_name for fn in app.fns.values() if fn.api_visibility == "public"}
    assert {"sampler_sweep", "cfg_branches", "guidance_sweep", "ddim_inversion_error"} <= names


def test_each_sampler_is_a_compare_method_running_the_tabs_own_sampler(monkeypatch):
    """Their cells equal the tab's own images: tests/test_compare.py runs one through the Compare tab."""
    assert [method.task for method in COMPARE_METHODS] == [IMAGE] * len(SAMPLER_NAMES)
    stepped = step_inputs(monkeypatch, diffusers.HeunDiscreteScheduler)
    heun = next(method for method in COMPARE_METHODS if method.name.startswith("SD-1.5 Heun"))
    output = heun.run(**{**heun.parameters, "prompt": PROMPT, "steps": 2, "seed": 3, "boxes": ""})
    assert output.image is not None and len(stepped) == 3


def test_every_handler_answers_as_the_page_wires_it():
    """The four buttons' handlers, at toy sizes: what each returns into its widgets."""
    from PIL import Image

    from demos.tabs import samplers_and_guidance
    from tests.spies import built_tab, event

    tab = built_tab(samplers_and_guidance)
    gallery, info, seed = event(tab, "sampler_sweep").fn(PROMPT, "", ["Heun"], [2], 7.5, SIDE, 3, False)
    assert len(gallery) == 1 and "**Heun** (`HeunDiscreteScheduler`): UNet calls 3;" in info and seed == 3
    image, x0, info, seed = event(tab, "cfg_branches").fn(PROMPT, "dark", 7.5, 2, 5, SIDE, 1, False)
    assert isinstance(image, Image.Image) and len(x0) == 4 and "Step 2 of 2" in info  # the step is capped at steps
    sweep, info, _ = event(tab, "guidance_sweep").fn(PROMPT, "", "7.5, 1", 2, SIDE, 1, False)
    assert [caption for _, caption in sweep] == ["w = 1", "w = 7.5"] and "4 UNet calls" in info
    plot, info, reconstructions = event(tab, "ddim_inversion_error").fn(str(CAT), "a cat", [2], "1", SIDE)
    assert isinstance(plot, Image.Image) and len(reconstructions) == 2 and "w = 1 on the way back: latent MSE" in info
