"""DiffFace-style face swap: sampler, mask schedule, face toolkit (real MTCNN), run_face_swap."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

import models
from demos.tabs.face_swap import (GUIDES, IDENTITY_VIEWS, JUDGE, MIN_FACE_SIDE, feathered_face_mask, guide_region,
                                  paste_face_back, preview_faces, run_face_swap)
from models import UserError
from models.faces import align_face, invert, transform_points
from models.pipelines import face_swap as face_swap_pipeline
from models.pipelines.face_swap import (face_swap_sample, face_views, guided_step, identity_loss, mask_weights,
                                        reconstruction_loss, unclamped_scheduler)

FAST = dict(steps=4, start_noise=1.0, mask_threshold=1, candidates=1, seed=3)  # 4 steps, tiny models
# Where the FFHQ recipe puts the eyes in a 256² crop: 64 px apart around x = 128, ~0.47 of the height.
TEMPLATE_EYES_256 = np.array([[96.0, 121.0], [160.0, 121.0]])


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def detector():
    return models.get("face-detector-mtcnn")


@pytest.fixture(scope="module")
def prior():
    return models.get("ddpm-celebahq-256")


@pytest.fixture(scope="module")
def aligned_faces(astronaut, detector, prior):
    """Aligned target (astronaut) and source (cameraman) at the tiny prior's size: ([-1,1] tensor, AlignedFace)."""
    size = prior.unet.config.sample_size
    camera = np.asarray(Image.open("assets/camera.jpg").convert("RGB"))
    pair = []
    for photo in (astronaut, camera):
        aligned = align_face(photo, detector.detect(Image.fromarray(photo))[0], size)
        pair.append((torch.from_numpy(aligned.image).permute(2, 0, 1)[None].float() / 127.5 - 1, aligned))
    return pair


@pytest.fixture(scope="module")
def aligned_pair(aligned_faces):
    """The aligned target and source with their detection boxes (FaceNet's crop)."""
    return [(pixels, torch.tensor(aligned.box, dtype=torch.float32)) for pixels, aligned in aligned_faces]


def centre_mask(size: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


# ---- the M_t schedule and the sampler --------------------------------------------------------

def test_mask_schedule_starts_at_zero_rises_linearly_and_is_one_from_lambda_on():
    weights = mask_weights(75, 30)  # DiffFace: 75 steps run, λ = 30
    assert weights[0] == 0.0
    assert np.allclose(np.diff(weights[:46]), 1 / 45)  # linear up to τ = λ−1 (step 45)
    assert weights[45] == 1.0 and all(w == 1.0 for w in weights[45:])
    assert all(0 < w < 1 for w in weights[1:45])
    assert mask_weights(10, 0) == [i / 10 for i in range(10)]  # λ = 0: reaches 1 only after the last step
    with pytest.raises(ValueError):
        mask_weights(10, 10)


def plain_masked_sdedit(unet, scheduler, target, mask, steps, skip, threshold, generator):
    """Reference: SDEdit from the noised target with DiffFace's blend, written without guidance, with
    DiffFace's unclamped x0 (`clip_denoised=False`) in the DDPM mean."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(scheduler.config, clip_sample=False)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[skip:]
    count = len(timesteps)
    noise = lambda: randn_tensor(target.shape, generator=generator, dtype=target.dtype)  # noqa: E731
    x = scheduler.add_noise(target, noise(), timesteps[:1])
    for index, t in enumerate(timesteps):
        with torch.no_grad():
            eps = unet(x, t).sample
            alpha = scheduler.alphas_cumprod[t]
            x0 = (x - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            x_prev = scheduler.step(eps, t, x, generator=generator).prev_sample
        previous = t - scheduler.config.num_train_timesteps // steps
        background = scheduler.add_noise(target, noise(), previous.view(1)) if previous >= 0 else target
        m_t = mask * min(1.0, index / (count - threshold))
        x = m_t * x_prev + (1 - m_t) * background
    return mask * x0 + (1 - mask) * target


@pytest.mark.mechanism
def test_zero_guidance_equals_plain_masked_sdedit_and_keeps_the_target_outside_the_mask(prior, aligned_pair):
    (target, _), _ = aligned_pair
    mask = centre_mask(target.shape[-1])
    zero = {"identity": (0.0, lambda x: x.sum()), "reconstruction": (0.0, reconstruction_loss(target))}
    trace = face_swap_sample(prior.unet, prior.scheduler, target, mask, zero, steps=6, skip=1, threshold=2,
                             generator=torch.Generator().manual_seed(7))
    reference = plain_masked_sdedit(prior.unet, prior.scheduler, target, mask, 6, 1, 2, torch.Generator().manual_seed(7))
    assert torch.allclose(trace.image, reference, atol=1e-5)
    assert torch.equal(trace.image[mask.expand_as(target) == 0], target[mask.expand_as(target) == 0])
    assert not torch.allclose(trace.image, target)  # inside the mask something was sampled
    assert trace.losses == {}  # zero-weight terms are not evaluated


def test_the_sampler_never_clamps_x0_and_leaves_the_shared_scheduler_alone(prior, aligned_pair):
    """DiffFace samples with clip_denoised=False; the published prior's config says clip_sample=True."""
    (target, _), _ = aligned_pair
    assert prior.scheduler.config.clip_sample  # as google/ddpm-celebahq-256 ships it
    assert not unclamped_scheduler(prior.scheduler).config.clip_sample
    timesteps_before = prior.scheduler.timesteps.clone()
    trace = face_swap_sample(prior.unet, prior.scheduler, target, centre_mask(target.shape[-1]), {}, steps=6, skip=1,
                             threshold=2, generator=torch.Generator().manual_seed(7))
    # The tiny prior predicts almost no noise, so at high noise its x0 = x_t/sqrt(ᾱ) lies far outside [-1, 1].
    assert max(float(x0.abs().max()) for _, x0 in trace.x0) > 1.5
    assert torch.equal(prior.scheduler.timesteps, timesteps_before)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@pytest.fixture(scope="module", params=sorted(GUIDES.values()))
def identity_setup(prior, aligned_faces, request):
    """The target, a centre mask and L_id toward the source (one clean view: deterministic), for each identity
    guide of the tab: FaceNet on the detection box, ArcFace on its 5-point template crop."""
    (target, aligned_target), (source, aligned_source) = aligned_faces
    guide = models.get(request.param)
    source_region, target_region = guide_region(request.param, aligned_source), guide_region(request.param, aligned_target)
    mask = centre_mask(target.shape[-1])
    with torch.no_grad():
        source_embedding = guide.embed(face_views(source, source_region, guide.image_size))
    return target, mask, identity_loss(guide.embed, source_embedding, mask, target_region, guide.image_size, 1, None)


@pytest.mark.mechanism
def test_one_guided_step_moves_the_mean_down_the_identity_loss_for_every_seed(prior, identity_setup):
    """First-order check: the shift is exactly −λ·β̃_t·∇_x L(x_in(x_t)), and moving x_t by it lowers
    that loss (Armijo: by at least half the first-order prediction), for each of five noisy x_t."""
    target, _, loss = identity_setup
    scheduler = unclamped_scheduler(prior.scheduler)
    scheduler.set_timesteps(25)
    t = scheduler.timesteps[10]
    alpha = scheduler.alphas_cumprod[t]
    fac = (1 - alpha).sqrt()
    weight = 3.0  # small: the step stays in the first-order regime (measured: L drops ~0.002 of ~0.65)

    def step_loss(x: torch.Tensor) -> torch.Tensor:
        x0 = (x - fac * prior.unet(x, t).sample) / alpha.sqrt()
        return loss(fac * x0 + (1 - fac) * x)

    for seed in range(5):
        x = scheduler.add_noise(target, torch.randn(target.shape, generator=torch.Generator().manual_seed(seed)),
                                t.view(1))
        step = guided_step(prior.unet, scheduler, x, t, {"identity": (weight, loss)}, torch.Generator().manual_seed(0))
        plain = guided_step(prior.unet, scheduler, x, t, {"identity": (0.0, loss)}, torch.Generator().manual_seed(0))
        with torch.enable_grad():
            probe = x.clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(step_loss(probe), probe)
        expected = -weight * scheduler._get_variance(t) * gradient
        assert relative_error(step.shift, expected) < 1e-3
        assert relative_error(step.x_prev - plain.x_prev, expected) < 1e-2  # same noise, only the mean moved
        with torch.no_grad():
            before, after = float(step_loss(x)), float(step_loss(x + step.shift))
        predicted = float((gradient * step.shift).sum())  # < 0: the directional derivative
        assert predicted < 0 and after < before + 0.5 * predicted, (seed, before, after, predicted)


@pytest.mark.mechanism
def test_identity_guidance_lowers_the_final_identity_loss_over_seeds(prior, identity_setup):
    """End to end over whole trajectories: the median drop over five seeds clears a margin, and no seed
    gets worse. Measured (12 steps, skip 2, λ_id 100): FaceNet (160-px input, as published) drop 0.011–0.016,
    median 0.012; ArcFace (tiny pack, template crop) drop 0.24–0.28. λ = 100 keeps each update a few % of the latent (λ = 300 with the old clamped mean
    overshot: see the face-swap tab's note on large λ)."""
    target, mask, loss = identity_setup

    def final_loss(weight: float, seed: int) -> float:
        trace = face_swap_sample(prior.unet, prior.scheduler, target, mask, {"identity": (weight, loss)}, steps=12,
                                 skip=2, threshold=4, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return float(loss(trace.image))

    drops = [final_loss(0.0, seed) - final_loss(100.0, seed) for seed in range(11, 16)]
    assert np.median(drops) > 0.006 and min(drops) > 0, drops


# ---- face toolkit on a real photo -------------------------------------------------------------

def test_real_mtcnn_finds_one_face_and_alignment_puts_the_eyes_on_the_template(astronaut, detector):
    faces = detector.detect(Image.fromarray(astronaut))
    assert len(faces) == 1 and faces[0].score > 0.99 and faces[0].side > MIN_FACE_SIDE
    aligned = align_face(astronaut, faces[0], 256)
    assert aligned.image.shape == (256, 256, 3)
    assert np.abs(aligned.landmarks[:2] - TEMPLATE_EYES_256).max() < 4  # within a few pixels
    points = np.random.default_rng(0).uniform(0, 512, size=(20, 2))
    back = transform_points(invert(aligned.matrix), transform_points(aligned.matrix, points))
    assert np.abs(back - points).max() < 1e-6
    # The aligned crop really shows that region: warping it back matches the photo around the eyes.
    restored, mask = paste_face_back(astronaut, aligned.image, aligned, np.ones((256, 256), np.float32))
    x0, y0, x1, y1 = faces[0].box.astype(int)
    error = np.abs(restored[y0:y1, x0:x1].astype(int) - astronaut[y0:y1, x0:x1].astype(int)).mean()
    assert error < 6, error


def test_paste_back_restores_the_photo_outside_the_feathered_mask(astronaut, detector):
    aligned = align_face(astronaut, detector.detect(Image.fromarray(astronaut))[0], 64)
    face = np.zeros((64, 64), np.float32)
    face[20:44, 16:48] = 1
    soft = feathered_face_mask(face, grow=2, blur=3)
    assert 0 < soft[18, 30] < 1 or 0 < soft[16, 30] < 1  # the edge is soft
    result = np.full((64, 64, 3), 255, np.uint8)
    composite, mask = paste_face_back(astronaut, result, aligned, soft)
    outside = mask == 0
    assert outside.mean() > 0.9
    assert np.array_equal(composite[outside], astronaut[outside])
    assert (composite[mask > 0.99] >= 250).all()  # inside, the new pixels


# ---- run_face_swap: the tab's function ---------------------------------------------------------

def test_swap_end_to_end_keeps_the_target_outside_the_mask_and_marks_the_png(astronaut):
    result = run_face_swap("assets/camera.jpg", Image.fromarray(astronaut), **FAST)  # camera.jpg is grayscale
    assert result.image.size == (512, 512) and result.faces_found == 1
    photo = np.asarray(result.image)
    paste = np.asarray(result.paste_mask)
    assert np.array_equal(photo[paste == 0], astronaut[paste == 0])
    assert (paste > 0).any() and not np.array_equal(photo, astronaut)
    parameters = result.parameters
    assert "generated" in parameters["generated"].lower() and parameters["seed"] == 3
    assert len(result.schedule) == 4 and result.schedule[0] == 0.0
    assert set(result.similarity) == {"source↔result", "target↔result", "source↔target"}
    assert len(result.trajectory) >= 2


@pytest.mark.mechanism
def test_every_weighted_loss_term_guides_the_tab_and_identity_changes_the_face(astronaut):
    only_identity = dict(FAST, lambda_seg=0.0, lambda_rec=0.0)
    guided = run_face_swap("assets/camera.jpg", astronaut, **{**only_identity, "lambda_id": 6000.0})
    unguided = run_face_swap("assets/camera.jpg", astronaut, **{**only_identity, "lambda_id": 0.0})
    assert set(guided.losses) == {"identity"} and len(guided.losses["identity"]) == len(guided.schedule)
    assert unguided.losses == {}
    assert not np.array_equal(np.asarray(guided.aligned["result"]), np.asarray(unguided.aligned["result"]))
    all_terms = run_face_swap("assets/camera.jpg", astronaut, **FAST)
    assert set(all_terms.losses) == {"identity", "parsing", "reconstruction"}


@pytest.mark.mechanism
@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_candidates_are_scored_by_the_judge_not_by_the_guide(astronaut, monkeypatch, guide):
    """With the judge made blind (one embedding for every face), every candidate scores exactly 1, the
    first is kept; the guide still steers (its own loss stays a real function of the face)."""
    judge = models.get("facenet-casia-webface")
    assert judge is not models.get(GUIDES[guide])
    monkeypatch.setattr(judge, "embed", lambda faces: torch.ones(faces.shape[0], 512))
    result = run_face_swap("assets/camera.jpg", astronaut, **{**FAST, "candidates": 2}, identity_guide=guide)
    assert result.parameters["identity_guide"] == GUIDES[guide]
    assert result.candidate_scores == [pytest.approx(1.0), pytest.approx(1.0)]
    assert result.parameters["chosen_candidate"] == 1
    assert len(set(result.losses["identity"])) > 1


def test_same_seed_same_swap(astronaut):
    first = run_face_swap("assets/camera.jpg", astronaut, **FAST)
    second = run_face_swap("assets/camera.jpg", astronaut, **FAST)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_no_face_errors_name_the_image():
    with pytest.raises(UserError, match="No face found in the source image"):
        run_face_swap(skimage.data.coffee(), "assets/astronaut.jpg", **FAST)
    with pytest.raises(UserError, match="No face found in the target image"):
        run_face_swap("assets/astronaut.jpg", skimage.data.rocket(), **FAST)


def test_several_faces_the_chosen_one_is_swapped(astronaut):
    camera = np.asarray(Image.open("assets/camera.jpg").convert("RGB"))
    group = np.concatenate([astronaut, camera], axis=1)  # face 1 left, face 2 right
    result = run_face_swap("assets/astronaut.jpg", group, target_face=2, **FAST)
    paste = np.asarray(result.paste_mask)
    assert result.faces_found == 2 and result.parameters["target_face"] == 2
    assert paste[:, :512].max() == 0 and paste[:, 512:].max() > 0
    with pytest.raises(UserError, match="2 face"):
        run_face_swap("assets/astronaut.jpg", group, target_face=3, **FAST)


def test_tiny_faces_are_refused(astronaut):
    small = Image.fromarray(astronaut).resize((200, 200))  # the face shrinks to about 34 px
    with pytest.raises(UserError, match=f"at least {MIN_FACE_SIDE} pixels"):
        run_face_swap("assets/astronaut.jpg", small, **FAST)


def test_rgba_and_grayscale_photos_are_accepted(astronaut):
    rgba = Image.fromarray(astronaut).convert("RGBA")
    gray = Image.fromarray(astronaut).convert("L")
    result = run_face_swap(rgba, gray, **FAST)
    assert result.image.mode == "RGB" and result.image.size == (512, 512)


def test_bad_settings_are_user_errors(astronaut):
    with pytest.raises(UserError, match="mask-schedule"):
        run_face_swap(astronaut, astronaut, **{**FAST, "mask_threshold": 4})
    with pytest.raises(UserError, match="Steps"):
        run_face_swap(astronaut, astronaut, **{**FAST, "steps": 1})
    with pytest.raises(UserError, match="source face"):
        run_face_swap(None, astronaut, **FAST)


def test_the_expected_time_counts_guided_steps_and_uses_the_measured_cost():
    from demos.tabs.face_swap import StepCost, expected_time

    cost = StepCost()
    assert "8 guided steps × 2 candidates = 16 steps" in expected_time(10, 0.8, 2, cost)
    assert "first run measures" in expected_time(10, 0.8, 2, cost)
    cost.record(seconds=40.0, guided_steps=16)  # a first run, with model loading
    cost.record(seconds=16.0, guided_steps=16)
    assert "expected ≈ 300 s (1.00 s per step" in expected_time(100, 0.75, 4, cost)


def test_the_page_starts_on_the_quick_settings():
    from demos.tabs.face_swap import QUICK, SwapSettings

    assert QUICK.steps_run * QUICK.candidates * 10 < SwapSettings().steps_run * SwapSettings().candidates


def test_the_schedule_plot_marks_lambda_where_the_mask_becomes_full():
    from types import SimpleNamespace

    from demos.tabs.face_swap import schedule_plot
    from models.pipelines.face_swap import mask_weights

    for steps_run, threshold in [(8, 3), (75, 30)]:
        weights = mask_weights(steps_run, threshold)
        result = SimpleNamespace(schedule=weights, parameters={"mask_threshold": threshold}, losses={})
        line = [line for line in schedule_plot(result).axes[0].lines if line.get_label().startswith("λ")][0]
        x = line.get_xdata()[0]  # steps are numbered from 1
        assert weights[x - 1] == 1.0 and weights[x - 2] < 1.0


# ---- every control of the tab reaches the sampler ------------------------------------------------
# The tab's controls, each varied with everything else fixed, traced where it acts: the timesteps and
# inputs the face prior's UNet receives, the weights each guided step applies, the networks that embed.

CAMERA = "assets/camera.jpg"
SAMPLER = dict(steps=2, start_noise=1.0, mask_threshold=0, candidates=1, seed=3)  # the smallest swap


@pytest.fixture
def resident(monkeypatch):
    """No model is unloaded during the test (the cache keeps 4 by default, a swap uses 5): the handles a test
    hooks or spies on are the ones the run uses."""
    monkeypatch.setattr(models.model_settings, "max_loaded_models", 0)


@pytest.fixture
def unet_inputs(resident):
    """(timestep, x_t) of every call of the face prior's UNet during the test."""
    calls: list[tuple[int, torch.Tensor]] = []
    unet = models.get("ddpm-celebahq-256").unet
    hook = unet.register_forward_hook(lambda module, args, output: calls.append((int(args[1]),
                                                                                 args[0].detach().clone())))
    yield calls
    hook.remove()


@pytest.mark.parametrize("change, steps, steps_run, candidates", [  # each row changes one control of SAMPLER
    ({"steps": 3}, 3, 3, 1),
    ({"start_noise": 0.5}, 2, 1, 1),  # half the schedule: only its last (least noisy) step runs
    ({"candidates": 2}, 2, 2, 2),  # SAMPLER's own trajectory, once per candidate
])
def test_steps_start_noise_and_candidates_set_the_timesteps_the_prior_runs(astronaut, prior, unet_inputs, change,
                                                                           steps, steps_run, candidates):
    """Steps respace the schedule, start noise says where on it sampling starts (SDEdit's skip), and each of
    N candidates runs the whole trajectory from its own noise: the UNet sees exactly those timesteps."""
    result = run_face_swap(CAMERA, astronaut, **{**SAMPLER, **change})
    schedule = unclamped_scheduler(prior.scheduler)
    schedule.set_timesteps(steps)
    expected = [int(t) for t in schedule.timesteps[steps - steps_run:]]
    assert [t for t, _ in unet_inputs] == expected * candidates
    assert len(result.schedule) == steps_run and len(result.candidate_scores) == candidates
    starts = [x for index, (_, x) in enumerate(unet_inputs) if index % steps_run == 0]
    assert all(not torch.equal(starts[0], other) for other in starts[1:])  # candidate k draws with seed + k


def test_the_mask_schedule_lambda_changes_the_blend_from_the_first_step_where_w_differs(astronaut, unet_inputs):
    """λ sets w(τ) of M_t = M·w(τ): two λs give the UNet the same inputs up to the step after the first
    w that differs, and different ones from there on; the schedule reported is the one used."""
    traces, weights = [], []
    for threshold in (0, 1):
        result = run_face_swap(CAMERA, astronaut, **{**SAMPLER, "steps": 3, "mask_threshold": threshold})
        assert result.schedule == mask_weights(3, threshold)
        weights.append(result.schedule)
        traces.append([x for _, x in unet_inputs])
        unet_inputs.clear()
    first = next(index for index, (a, b) in enumerate(zip(*weights)) if a != b)  # w(τ) of step `first` differs
    (low, high) = traces
    assert all(torch.equal(low[index], high[index]) for index in range(first + 1))
    assert not torch.allclose(low[first + 1], high[first + 1])


def test_the_seed_and_randomize_set_the_noise_the_sampler_starts_from(astronaut, prior, unet_inputs):
    """Sampling starts at x_T = sqrt(ᾱ)·target + sqrt(1−ᾱ)·ε(seed): between two runs on the same faces the
    first UNet input differs by exactly sqrt(1−ᾱ)·(ε(seed₁) − ε(seed₂)). Randomize draws a new seed, the
    one reported, and that seed is the one sampled with."""
    first_inputs, seeds = [], []
    for randomize in (False, True):
        result = run_face_swap(CAMERA, astronaut, **SAMPLER, randomize=randomize)
        seeds.append(result.seed)
        first_inputs.append(unet_inputs[0])
        unet_inputs.clear()
    typed, drawn = seeds
    assert typed == SAMPLER["seed"] != drawn and result.parameters["seed"] == drawn
    (t, typed_start), (_, drawn_start) = first_inputs
    fac = (1 - unclamped_scheduler(prior.scheduler).alphas_cumprod[t]).sqrt()

    def noise(seed: int) -> torch.Tensor:
        return randn_tensor(typed_start.shape, generator=torch.Generator().manual_seed(seed), dtype=typed_start.dtype)

    torch.testing.assert_close(typed_start - drawn_start, fac * (noise(typed) - noise(drawn)), rtol=0, atol=1e-5)


def test_each_lambda_weights_its_own_loss_term_in_every_guided_step(astronaut, monkeypatch):
    """Each λ is the weight its term gets in every guided step (`guided_step` moves the mean by −λ·β̃·∇L:
    see the first-order test above) and a λ of 0 drops its term; two runs give each λ a zero and a non-zero
    value, and each run's steps weight the three terms exactly as set."""
    seen: list[dict[str, float]] = []
    real_step = face_swap_pipeline.guided_step

    def spy(unet, scheduler, x, t, losses, generator):
        seen.append({name: weight for name, (weight, _) in losses.items()})
        return real_step(unet, scheduler, x, t, losses, generator)

    monkeypatch.setattr(face_swap_pipeline, "guided_step", spy)
    for weights in ({"identity": 0.0, "parsing": 220.0, "reconstruction": 33.0},
                    {"identity": 700.0, "parsing": 0.0, "reconstruction": 0.0}):
        seen.clear()
        result = run_face_swap(CAMERA, astronaut, **SAMPLER, lambda_id=weights["identity"],
                               lambda_seg=weights["parsing"], lambda_rec=weights["reconstruction"])
        assert seen == [weights] * SAMPLER["steps"]
        assert set(result.losses) == {term for term, weight in weights.items() if weight}  # λ = 0: not evaluated


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_the_identity_guide_is_the_network_that_embeds_the_source_and_every_guided_step(astronaut, resident,
                                                                                         monkeypatch, guide):
    """The chosen network embeds the source once and the sample once per guided step (IDENTITY_VIEWS crops at
    a time); the other guide never runs. The judge is neither of them."""
    calls: dict[str, list[int]] = {}
    for name in {*GUIDES.values(), JUDGE}:
        network = models.get(name)
        calls[name] = []
        monkeypatch.setattr(network, "embed", lambda faces, embed=network.embed, seen=calls[name]: (
            seen.append(faces.shape[0]), embed(faces))[1])
    run_face_swap(CAMERA, astronaut, **SAMPLER, identity_guide=guide)
    chosen, other = GUIDES[guide], next(name for name in GUIDES.values() if name != GUIDES[guide])
    assert calls[chosen] == [1] + [IDENTITY_VIEWS] * SAMPLER["steps"]
    assert calls[other] == [] and calls[JUDGE]  # the judge scored the candidate


def test_the_source_sets_only_the_identity_to_reach(astronaut, unet_inputs, monkeypatch):
    """Another source face changes the embedding the identity loss pulls toward, nothing of the target: the
    sampler starts from the same noised target, the mask is the same, and the identity loss differs."""
    guide = models.get(GUIDES["ArcFace (insightface)"])
    embedded: list[torch.Tensor] = []
    monkeypatch.setattr(guide, "embed", lambda faces, embed=guide.embed: embedded.append(faces.detach().clone())
                        or embed(faces))
    runs = []
    for source in (CAMERA, skimage.data.astronaut()):
        embedded.clear()
        result = run_face_swap(source, astronaut, **SAMPLER)
        runs.append((result, embedded[0], unet_inputs[0][1]))
        unet_inputs.clear()
    (camera, camera_source, camera_start), (self_swap, self_source, self_start) = runs
    assert not torch.allclose(camera_source, self_source)  # the guide read two different source faces
    assert torch.equal(camera_start, self_start) and np.array_equal(np.asarray(camera.mask), np.asarray(self_swap.mask))
    assert camera.losses["identity"][0] != pytest.approx(self_swap.losses["identity"][0], abs=1e-6)


def test_the_face_preview_numbers_the_faces_of_the_target_it_is_given(astronaut):
    """The target's change event boxes the faces the detector finds in *that* photo, left to right."""
    camera = np.asarray(Image.open(CAMERA).convert("RGB"))
    group = np.concatenate([astronaut, camera], axis=1)
    for target, faces in [(astronaut, 1), (group, 2)]:
        drawn, count = preview_faces(target)
        assert count == faces and drawn.size == (target.shape[1], target.shape[0])
        changed = np.abs(np.asarray(drawn, np.int16) - target).sum(axis=-1) > 0
        assert changed.any() and changed.mean() < 0.2  # boxes drawn, the photo otherwise as given
    assert changed[:, :512].any() and changed[:, 512:].any()  # a box on each face of the group
