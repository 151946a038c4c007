"""Universal guidance on the shared SD-1.5 base: plain-DDIM equivalence, forward and backward guidance,
self-recurrence, the identity gain judged by a network that is not the guide, and bad input."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import models
from demos.tabs.universal_guidance import (CLIP, FACE_BOX, IDENTITY, IDENTITY_NETWORKS, JUDGE, PARSER, SEGMENTATION,
                                          STYLE, identity_guide, run_universal_guidance)
from models import UserError
from models.arcface import ARCFACE
from models.pipelines import universal_guidance as ug
from models.stable_diffusion import SD15
from tests.spies import step_inputs

PROMPT = "a portrait photo of a person"
FAST = dict(steps=3, seed=1, compare_plain=False)


@pytest.fixture(scope="module")
def base():
    return models.get(SD15)


@pytest.fixture(scope="module")
def reference() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def arcface_guide(base, reference):
    return identity_guide(reference, ARCFACE, base.device, None)


def sample(base, loss, seed: int = 0, **settings) -> ug.GuidanceTrace:
    return ug.universal_guidance_sample(base, PROMPT, loss, ug.GuidanceSettings(**settings),
                                        torch.Generator().manual_seed(seed))


def never_called(image: torch.Tensor) -> torch.Tensor:
    raise AssertionError("the guide ran although guidance is off")


@pytest.mark.mechanism
def test_strength_zero_no_backward_and_k_one_is_diffusers_plain_ddim(base):
    """The sampler with guidance off equals diffusers' own StableDiffusionPipeline with the same DDIM
    scheduler and seed, and leaves the shared base (its scheduler) as it was."""
    from diffusers import StableDiffusionPipeline

    timesteps_before = base.scheduler.timesteps
    trace = sample(base, never_called, steps=4, forward_strength=0.0, backward_steps=0, recurrence=1)
    plain = StableDiffusionPipeline.from_pipe(base, scheduler=ug.ddim_scheduler(base.scheduler), dtype=base.unet.dtype)
    expected = plain(PROMPT, num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
                     output_type="latent").images
    assert torch.allclose(trace.latents, expected, atol=1e-5)
    assert all(record.loss is None and record.unet_calls == 1 for record in trace.steps)
    assert base.scheduler.timesteps is timesteps_before or torch.equal(base.scheduler.timesteps, timesteps_before)
    assert type(base.scheduler).__name__ != "DDIMScheduler" or base.scheduler is not plain.scheduler


@pytest.mark.mechanism
def test_forward_guidance_moves_the_clean_estimate_down_the_guide_loss(base, arcface_guide):
    """One DDIM step from the same z_t: with s > 0 the ẑ0 built from the guided ε̂ has a lower identity loss
    than the plain ẑ0, for every seed (measured drops 0.01–0.03 at s = 100, t = the 2nd of 6 steps)."""
    scheduler = ug.ddim_scheduler(base.scheduler)
    scheduler.set_timesteps(6)
    t = scheduler.timesteps[1]
    with torch.no_grad():
        cond, uncond = base.encode_prompt(PROMPT, base.device, 1, True, "")
    embeddings = torch.cat([uncond, cond])
    drops = []
    for seed in range(4):
        z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
        guided = ug.GuidanceSettings(steps=6, forward_strength=100.0)
        _, z0_guided, record = ug.guided_ddim_step(base.unet, base.vae, scheduler, z, t, embeddings,
                                                   arcface_guide.loss, guided, 100.0, None)
        _, z0_plain, _ = ug.guided_ddim_step(base.unet, base.vae, scheduler, z, t, embeddings, None,
                                             ug.GuidanceSettings(steps=6), 0.0, None)
        with torch.no_grad():
            plain_loss = float(arcface_guide.loss(ug.decode(base.vae, z0_plain)))
            guided_loss = float(arcface_guide.loss(ug.decode(base.vae, z0_guided)))
        assert record.loss == pytest.approx(plain_loss, abs=1e-5)  # the step logged ℓ at the unguided ẑ0
        drops.append(plain_loss - guided_loss)
    assert min(drops) > 0.003, drops


@pytest.mark.mechanism
def test_one_backward_optimisation_lowers_the_guide_loss_on_x0(base, arcface_guide):
    """m Adam steps on Δ lower ℓ(D(ẑ0 + Δ)) for each of five ẑ0 (measured: 0.017–0.020 after one step,
    0.082–0.090 after five, from ≈ 0.64–0.74), and more steps lower it more."""
    for seed in range(5):
        z0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
        _, before, after_one = ug.backward_correction(base.vae, z0, arcface_guide.loss, 1, 0.01)
        delta, _, after_five = ug.backward_correction(base.vae, z0, arcface_guide.loss, 5, 0.01)
        assert before - after_one > 0.008, (seed, before, after_one)
        assert before - after_five > 0.04 and after_five < after_one, (seed, after_one, after_five)
        with torch.no_grad():
            assert float(arcface_guide.loss(ug.decode(base.vae, z0 + delta))) == pytest.approx(after_five, abs=1e-5)


@pytest.mark.mechanism
def test_backward_guidance_replaces_the_clean_estimate_by_the_corrected_one(base, arcface_guide):
    """ε̂ − sqrt(ᾱ/(1−ᾱ))·Δ* re-derives ẑ0 + Δ*: the step's ẑ0 carries the lower loss the optimisation reached."""
    trace = sample(base, arcface_guide.loss, steps=3, backward_steps=3, backward_lr=0.01)
    for record in trace.steps:
        before, after = record.backward
        assert after < before
    with torch.no_grad():
        final_x0 = trace.x0[-1][1]
    assert float(arcface_guide.loss(final_x0)) == pytest.approx(trace.steps[-1].backward[1], abs=2e-3)


@pytest.mark.mechanism
def test_self_recurrence_calls_the_unet_k_times_per_step(base, arcface_guide):
    calls = []
    hook = base.unet.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        trace = sample(base, arcface_guide.loss, steps=3, forward_strength=10.0, recurrence=3)
    finally:
        hook.remove()
    assert len(calls) == 9 and [record.unet_calls for record in trace.steps] == [3, 3, 3]
    once = sample(base, arcface_guide.loss, steps=3, forward_strength=10.0, recurrence=1)
    assert not torch.allclose(once.latents, trace.latents)  # the re-noised repeats change the sample


@pytest.mark.mechanism
def test_identity_guidance_raises_the_judges_similarity_to_the_reference_over_seeds(reference):
    """ArcFace guides, FaceNet-CASIA judges. Measured (6 steps, s = 100, 5 seeds, the tiny FaceNet reading
    160-px faces as the published one does): the guide's loss drops 0.16–0.26 for every seed and the judge's
    cosine rises 0.001–0.07 (median ≈ 0.011: two random tiny networks agree only a little); at s = 1000 the
    tiny guide overshoots and the judge's similarity falls (see the tab's strength note)."""
    assert JUDGE not in IDENTITY_NETWORKS.values()
    gains, drops = [], []
    for seed in range(5):
        result = run_universal_guidance(PROMPT, IDENTITY, reference, steps=6, strength=100.0, seed=seed)
        assert ARCFACE in result.parameters["guide_models"] and JUDGE in result.parameters["guide_models"]
        gains.append(result.similarity["universal guidance"] - result.similarity["plain SD"])
        drops.append(result.final_loss["plain SD"] - result.final_loss["universal guidance"])
    assert min(drops) > 0.08 and np.median(gains) > 0.005 and min(gains) > 0, (drops, gains)


def test_the_judge_is_not_the_guide(reference, monkeypatch):
    """A blind judge (one embedding for every face) scores 1 for both images, while the guide still steers."""
    judge = models.get(JUDGE)
    monkeypatch.setattr(judge, "embed", lambda faces: torch.ones(faces.shape[0], 512))
    result = run_universal_guidance(PROMPT, IDENTITY, reference, steps=3, strength=100.0, seed=0)
    assert result.similarity == {"universal guidance": pytest.approx(1.0), "plain SD": pytest.approx(1.0)}
    assert result.final_loss["universal guidance"] < result.final_loss["plain SD"]


def test_every_guide_runs_end_to_end_with_its_views(reference):
    for guide, network in [(IDENTITY, "FaceNet (VGGFace2)"), (SEGMENTATION, "ArcFace (insightface)"),
                           (STYLE, "ArcFace (insightface)")]:
        result = run_universal_guidance(PROMPT, guide, reference, identity_network=network, strength=10.0,
                                        backward=True, backward_steps=1, guide_resolution="half", **FAST)
        assert result.image.size == (128, 128) and result.plain_image is None
        assert len(result.steps) == 3 and all(record.loss is not None for record in result.steps)
        assert len(result.filmstrip) >= 2 and result.parameters["guide"] == guide
        assert 0 < result.cost["guide decode share"] < 1
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 20:44] = 255
    result = run_universal_guidance(PROMPT, SEGMENTATION, None, mask=mask, strength=10.0, **FAST)
    assert np.asarray(result.target_view).shape == (128, 128)


def test_same_seed_same_image(reference):
    first = run_universal_guidance(PROMPT, IDENTITY, reference, strength=100.0, **FAST)
    second = run_universal_guidance(PROMPT, IDENTITY, reference, strength=100.0, **FAST)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_bad_input_is_a_user_error(reference):
    with pytest.raises(UserError, match="No face found in the reference"):
        run_universal_guidance(PROMPT, IDENTITY, skimage.data.coffee(), **FAST)
    with pytest.raises(UserError, match="segmentation target is 100×50"):
        run_universal_guidance(PROMPT, SEGMENTATION, reference, mask=np.full((50, 100), 255, np.uint8), **FAST)
    with pytest.raises(UserError, match="all one colour"):
        run_universal_guidance(PROMPT, SEGMENTATION, reference, mask=np.zeros((64, 64), np.uint8), **FAST)
    for strength in (-1, 1e7, float("nan")):
        with pytest.raises(UserError, match="strength s"):
            run_universal_guidance(PROMPT, IDENTITY, reference, strength=strength, **FAST)
    with pytest.raises(UserError, match="Self-recurrence k"):
        run_universal_guidance(PROMPT, IDENTITY, reference, recurrence=0, **FAST)
    with pytest.raises(UserError, match="reference image"):
        run_universal_guidance(PROMPT, STYLE, None, **FAST)
    with pytest.raises(UserError, match="prompt"):
        run_universal_guidance("", IDENTITY, reference, **FAST)
    with pytest.raises(UserError, match="Choose a guide"):
        run_universal_guidance(PROMPT, "depth", reference, **FAST)


# ---- every control of the tab reaches the sampler ------------------------------------------------
# Each control varied with everything else fixed, traced where it acts: what the shared UNet is called
# with, the ε̂ each DDIM step takes, the networks that read the decoded clean estimate.

TRACE = dict(steps=2, seed=1, compare_plain=False)  # the smallest run


@pytest.fixture
def resident(monkeypatch):
    """No model is unloaded during the test (the cache keeps 4 by default; this file uses 6): the handles a
    test hooks or spies on are the ones the run uses."""
    monkeypatch.setattr(models.model_settings, "max_loaded_models", 0)
    return models.get(SD15)


@pytest.fixture
def unet_calls(resident):
    """Every call of the shared UNet during the test: latents, timestep, text embeddings and its ε output."""
    calls: list[SimpleNamespace] = []

    def record(module, args, kwargs, output):
        calls.append(SimpleNamespace(z=args[0].detach().clone(), t=int(args[1]), eps=output.sample.detach().clone(),
                                     text=kwargs["encoder_hidden_states"].detach().clone()))

    hook = resident.unet.register_forward_hook(record, with_kwargs=True)
    yield calls
    hook.remove()


@pytest.fixture
def ddim_inputs(monkeypatch):
    """The ε̂ each DDIM step is taken with: after CFG and forward guidance."""
    from diffusers import DDIMScheduler

    return step_inputs(monkeypatch, DDIMScheduler)


def counting(monkeypatch, owner, method: str) -> list[int]:
    """Count the calls of `owner.method` (a network's embed or logits) during the test; the batch of each."""
    calls: list[int] = []
    real = getattr(owner, method)

    def spy(*args, **kwargs):
        images = args[0] if args else next(iter(kwargs.values()))
        calls.append(images.shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, method, spy)
    return calls


def test_the_prompt_is_what_the_unet_is_conditioned_on(resident, reference, unet_calls):
    embeddings = []
    for prompt in (PROMPT, "an oil painting of a face"):
        unet_calls.clear()
        run_universal_guidance(prompt, IDENTITY, reference, strength=10.0, **TRACE)
        with torch.no_grad():
            cond, uncond = resident.encode_prompt(prompt, resident.device, 1, True, "")
        embeddings.append(torch.cat([uncond, cond]))
        assert len(unet_calls) == TRACE["steps"] and all(torch.equal(call.text, embeddings[-1]) for call in unet_calls)
    assert not torch.equal(*embeddings)


@pytest.mark.parametrize("steps, recurrence", [(2, 1), (3, 1), (2, 2)])
def test_steps_and_self_recurrence_set_the_timesteps_the_unet_runs(resident, reference, unet_calls, steps, recurrence):
    """DDIM over `steps` timesteps, each one repeated k times (re-noised back to t in between)."""
    result = run_universal_guidance(PROMPT, IDENTITY, reference, steps=steps, strength=10.0, recurrence=recurrence,
                                    seed=1, compare_plain=False)
    schedule = ug.ddim_scheduler(resident.scheduler)
    schedule.set_timesteps(steps)
    assert [call.t for call in unet_calls] == [int(t) for t in schedule.timesteps for _ in range(recurrence)]
    assert [record.unet_calls for record in result.steps] == [recurrence] * steps


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_the_cfg_scale_combines_the_unets_two_predictions(reference, unet_calls, ddim_inputs, cfg):
    """Forward guidance off: each DDIM step takes ε_u + w·(ε_c − ε_u) of its UNet output; at w = 1 the
    unconditional half is not computed at all."""
    run_universal_guidance(PROMPT, IDENTITY, reference, guidance_scale=cfg, forward=False, **TRACE)
    assert len(ddim_inputs) == len(unet_calls) == TRACE["steps"]
    for call, eps in zip(unet_calls, ddim_inputs):
        if cfg == 1.0:
            assert call.z.shape[0] == 1 and torch.equal(eps, call.eps)
        else:
            uncond, cond = call.eps.chunk(2)
            torch.testing.assert_close(eps, uncond + cfg * (cond - uncond))


GUIDED = dict(TRACE, strength=10.0, guided_fraction=1.0)  # forward guidance at s = 10 on both steps


def guidance_shifts(reference: Image.Image, **settings) -> tuple[list[ug.StepRecord], list[torch.Tensor]]:
    """A run's step records and, per step, what forward guidance added to the CFG ε̂ the UNet gave
    (the ε̂ the DDIM step took minus ε_u + 7.5·(ε_c − ε_u) of that step's UNet output)."""
    from diffusers import DDIMScheduler

    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.model_settings, "max_loaded_models", 0)  # the UNet hooked is the one the run uses
        taken = step_inputs(patch, DDIMScheduler)
        hook = models.get(SD15).unet.register_forward_hook(
            lambda module, args, output: outputs.append(output.sample.detach().clone()))
        try:
            result = run_universal_guidance(PROMPT, IDENTITY, reference, **settings)
        finally:
            hook.remove()
    shifts = []
    for output, eps in zip(outputs, taken):
        uncond, cond = output.chunk(2)
        shifts.append(eps - (uncond + 7.5 * (cond - uncond)))
    return result.steps, shifts


@pytest.fixture(scope="module")
def constant_guidance(reference):
    """The plain setting the forward-guidance controls are compared with: s = 10 on both steps."""
    return guidance_shifts(reference, **GUIDED)


@pytest.mark.parametrize("change, strengths", [
    ({"strength": 20.0}, [20.0, 20.0]),
    ({"decay": True}, [10.0, 5.0]),  # s_t = s·(1 − i/guided steps)
    ({"guided_fraction": 0.5}, [10.0, 0.0]),
    ({"forward": False}, [0.0, 0.0]),
])
def test_forward_guidance_shifts_the_noise_prediction_by_s_t_times_the_guides_gradient(reference, constant_guidance,
                                                                                      change, strengths):
    """Forward guidance adds s_t·sqrt(1−ᾱ)·∇ℓ to the CFG ε̂. Against the plain setting (s = 10 on both
    steps), a change of strength, decay, guided fraction or the forward toggle leaves every step before its
    first different s_t bit-identical; at that step the UNet input and ∇ℓ are still the same, so the shift
    scales by exactly the ratio of the two s_t (0 where the guide is off, which then never reads ẑ0)."""
    plain_steps, plain_shifts = constant_guidance
    steps, shifts = guidance_shifts(reference, **{**GUIDED, **change})
    assert [record.strength for record in plain_steps] == [10.0, 10.0]
    assert [record.strength for record in steps] == pytest.approx(strengths)
    assert [record.loss is not None for record in steps] == [s != 0 for s in strengths]
    first = next(index for index, s in enumerate(strengths) if s != 10.0)
    assert all(torch.equal(shifts[index], plain_shifts[index]) for index in range(first))
    assert plain_shifts[first].abs().max() > 0
    torch.testing.assert_close(shifts[first], plain_shifts[first] * (strengths[first] / 10.0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backward, backward_steps", [(False, 3), (True, 1), (True, 3)])
def test_backward_guidance_runs_m_adam_steps_on_the_guides_loss(reference, resident, monkeypatch, backward,
                                                              backward_steps):
    """Forward guidance off: the guide reads an image for the reference, for each step's backward guidance
    (m Adam steps, then ℓ at ẑ0 + Δ*) and for the final image: 2 + steps·(m + 1) calls, or 2 without."""
    calls = counting(monkeypatch, models.get(ARCFACE), "embed")
    result = run_universal_guidance(PROMPT, IDENTITY, reference, forward=False, backward=backward,
                                    backward_steps=backward_steps, **TRACE)
    assert len(calls) == 2 + TRACE["steps"] * (backward_steps + 1 if backward else 0)
    assert all((record.backward is not None) == backward for record in result.steps)


@pytest.mark.parametrize("resolution, scale", [("full", 1), ("half", 2), ("quarter", 4)])
def test_the_guide_resolution_is_the_size_of_the_latent_decoded_for_the_guide(resident, reference, resolution, scale):
    """Each guided step decodes ẑ0 downsampled by the chosen factor; the filmstrip and the result are
    decoded at full size."""
    sizes: list[int] = []
    hook = resident.vae.decoder.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[-1]))
    try:
        run_universal_guidance(PROMPT, IDENTITY, reference, strength=10.0, guide_resolution=resolution, **TRACE)
    finally:
        hook.remove()
    full = resident.unet.config.sample_size
    full_decodes = TRACE["steps"] + 1  # a filmstrip frame per step (2 steps) and the result
    if scale == 1:
        assert sizes == [full] * len(sizes) and len(sizes) == TRACE["steps"] + full_decodes
    else:
        assert sizes.count(full // scale) == TRACE["steps"] and sizes.count(full) == full_decodes


@pytest.mark.parametrize("resolution", ["full", "half", "quarter"])
def test_the_identity_guide_reads_the_face_region_at_every_guide_resolution(reference, monkeypatch, resolution):
    """At any guide resolution the recogniser should see the same part of the picture: FACE_BOX of it."""
    from demos.tabs import universal_guidance as tab

    boxes = []
    real_views = tab.face_views

    def views(images, region, *args):
        height, width = images.shape[-2:]
        boxes.append((region / torch.tensor([width, height, width, height])).tolist())
        return real_views(images, region, *args)

    monkeypatch.setattr(tab, "face_views", views)
    run_universal_guidance(PROMPT, IDENTITY, reference, strength=10.0, guide_resolution=resolution, **TRACE)
    assert boxes and all(box == pytest.approx(list(FACE_BOX)) for box in boxes)


@pytest.mark.parametrize("guide, network, reader", [
    (IDENTITY, "ArcFace (insightface)", ARCFACE),
    (IDENTITY, "FaceNet (VGGFace2)", "facenet-vggface2"),
    (SEGMENTATION, "ArcFace (insightface)", PARSER),
    (STYLE, "ArcFace (insightface)", CLIP),
])
def test_the_guide_and_identity_network_choose_the_network_that_reads_each_clean_estimate(reference, resident,
                                                                                          monkeypatch, guide, network,
                                                                                          reader):
    """The chosen guide (and, for identity, the chosen recogniser) reads the reference once, each guided step's
    decoded ẑ0 and the final image; no other guide network runs. The identity judge reads only the
    reference and the final image."""
    calls = {name: counting(monkeypatch, models.get(name), "embed") for name in (ARCFACE, "facenet-vggface2", JUDGE)}
    calls[PARSER] = counting(monkeypatch, models.get(PARSER), "logits")
    calls[CLIP] = counting(monkeypatch, models.get(CLIP).model, "get_image_features")
    run_universal_guidance(PROMPT, guide, reference, identity_network=network, strength=10.0, **TRACE)
    expected = {reader: 2 + TRACE["steps"], **({JUDGE: 2} if guide == IDENTITY else {})}
    assert {name: len(seen) for name, seen in calls.items() if seen} == expected


@pytest.mark.parametrize("guide", [IDENTITY, SEGMENTATION, STYLE])
def test_the_reference_sets_only_the_guides_target(reference, unet_calls, guide):
    """Two references, same seed: both runs start from the same latents and the UNet's first ẑ0 is the same,
    while the guide's target and its loss on that ẑ0 differ."""
    camera = Image.open("assets/camera.jpg")
    results, starts = [], []
    for picture in (reference, camera):
        unet_calls.clear()
        results.append(run_universal_guidance(PROMPT, guide, picture, strength=10.0, **TRACE))
        starts.append(unet_calls[0].z)
    first, second = results
    assert torch.equal(*starts)
    assert not np.array_equal(np.asarray(first.target_view.convert("RGB").resize((64, 64))),
                              np.asarray(second.target_view.convert("RGB").resize((64, 64))))
    assert first.steps[0].loss != pytest.approx(second.steps[0].loss, abs=1e-6)


def test_the_segmentation_mask_is_the_target_the_parser_is_pulled_toward(reference):
    """A painted mask replaces the reference's parse as the target (white = face): two masks, two targets,
    two losses on the same first ẑ0."""
    masks = []
    for rows, columns in [(slice(16, 48), slice(20, 44)), (slice(4, 30), slice(8, 60))]:
        mask = np.zeros((64, 64), np.uint8)
        mask[rows, columns] = 255
        masks.append(mask)
    results = [run_universal_guidance(PROMPT, SEGMENTATION, reference, mask=mask, strength=10.0, **TRACE)
               for mask in masks]
    for mask, result in zip(masks, results):
        side = result.image.size[0]
        expected = np.asarray(Image.fromarray(mask).resize((side, side), Image.Resampling.NEAREST)) > 127
        assert np.array_equal(np.asarray(result.target_view) > 127, expected)
    assert results[0].steps[0].loss != pytest.approx(results[1].steps[0].loss, abs=1e-6)


def test_the_seed_and_randomize_set_the_starting_latents(reference, unet_calls):
    """z_T = ε(seed) (DDIM's initial σ is 1); randomize draws a new seed, the one reported and used."""
    for randomize in (False, True):
        unet_calls.clear()
        result = run_universal_guidance(PROMPT, IDENTITY, reference, strength=10.0, randomize=randomize, **TRACE)
        used = result.parameters["seed"]
        assert (used != TRACE["seed"]) if randomize else (used == TRACE["seed"])
        start = unet_calls[0].z[:1]
        assert torch.equal(start, torch.randn(start.shape, generator=torch.Generator().manual_seed(used)))
