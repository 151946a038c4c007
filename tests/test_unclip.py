"""unCLIP with Kandinsky 2.2 (tiny prior + decoder in the published layouts): the decoder reads only the image
embedding, interpolation endpoints, slerp/lerp, the similarity panel, and bad input."""
from __future__ import annotations

import inspect
import random
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.tabs import unclip
from demos.tabs.unclip import (COMPARE_METHODS, PRIOR_RESULT, ImagesResult, decode, image_embedding, lerp,
                          run_interpolation, run_unclip, run_variations, slerp, text_embedding)
from models import UserError
from models.unclip import DECODER, PRIOR, TINY_EMBEDDING
from tests.spies import built_tab, event

CAT, COFFEE = str(ASSETS / "chelsea.jpg"), str(ASSETS / "coffee.jpg")


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_the_tiny_pair_has_the_published_folders_and_classes():
    prior, decoder = models.get(PRIOR), models.get(DECODER)
    assert type(prior).__name__ == "KandinskyV22PriorPipeline" and type(decoder).__name__ == "KandinskyV22Pipeline"
    assert set(prior.components) == {"prior", "image_encoder", "text_encoder", "tokenizer", "scheduler",
                                     "image_processor"}
    assert set(decoder.components) == {"unet", "scheduler", "movq"}
    # the decoder's UNet is conditioned on an image embedding of the prior's width, and on no text
    assert decoder.unet.config.addition_embed_type == "image"
    assert decoder.unet.config.encoder_hid_dim == prior.image_encoder.config.projection_dim == TINY_EMBEDDING
    assert "prompt" not in inspect.signature(type(decoder).__call__).parameters


@pytest.mark.parametrize("seed", [0, 3])
def test_the_decoder_is_conditioned_only_on_the_image_embedding(seed, monkeypatch):
    """Two different captions whose prior output is forced to one embedding give the same image."""
    prior = models.get(PRIOR)
    fixed = prior("a red cat", num_inference_steps=2, generator=torch.Generator().manual_seed(seed))
    other = prior("a red cat", num_inference_steps=2, generator=torch.Generator().manual_seed(seed + 1))
    monkeypatch.setattr(type(prior), "__call__", lambda self, *args, **kwargs: fixed)
    first = run_unclip("a red cat", decoder_steps=2, seed=seed).image
    second = run_unclip("a blue submarine under the sea", decoder_steps=2, seed=seed).image
    assert _same(first, second)
    # ...and decoding that embedding directly, without any text, is the same image
    assert _same(first, decode(models.get(DECODER), fixed.image_embeds, fixed.negative_image_embeds, seed, 2))
    # while another embedding changes it
    assert not _same(first, decode(models.get(DECODER), other.image_embeds, fixed.negative_image_embeds, seed, 2))


@pytest.mark.mechanism
@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_at_0_and_1_reproduces_the_two_endpoints(mode):
    strip = run_interpolation(CAT, COFFEE, frames=3, mode=mode, decoder_steps=2, seed=4)
    first, = run_variations(CAT, count=1, decoder_steps=2, seed=4).images
    last, = run_variations(COFFEE, count=1, decoder_steps=2, seed=4).images
    assert _same(strip.images[0], first) and _same(strip.images[-1], last)
    assert not _same(strip.images[1], first) and not _same(strip.images[1], last)
    assert strip.captions == ["t = 0.00", "t = 0.50", "t = 1.00"]


def test_interpolating_towards_a_text_uses_the_prior_for_that_end():
    strip = run_interpolation(CAT, None, "a cup of coffee", frames=2, decoder_steps=1, seed=0)
    assert len(strip.images) == 2 and strip.parameters["text_b"] == "a cup of coffee"


def test_slerp_keeps_the_endpoints_and_the_norm_and_uses_the_angle_between_the_vectors():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 32, generator=generator), torch.randn(1, 32, generator=generator)
    b = b / b.norm() * a.norm()
    assert torch.equal(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    for t in (0.25, 0.5, 0.8):
        assert torch.allclose(slerp(a, b, t).norm(), a.norm(), rtol=1e-5)
    # the midpoint bisects the angle: equal cosine to both ends, along â + b̂
    middle = slerp(a, b, 0.5)
    cos = torch.nn.functional.cosine_similarity
    assert torch.allclose(cos(middle, a), cos(middle, b), atol=1e-6)
    assert torch.allclose(cos(middle, a + b), torch.ones(1), atol=1e-6)
    assert torch.allclose(lerp(a, b, 0.5), (a + b) / 2)


def test_the_similarity_panel_measures_the_actual_result():
    result = run_unclip("a lighthouse", prior_steps=2, decoder_steps=2, seed=1)
    prior = models.get(PRIOR)
    predicted = prior("a lighthouse", num_inference_steps=2, generator=torch.Generator().manual_seed(1)).image_embeds
    actual = image_embedding(prior, result.image)
    assert result.similarities[PRIOR_RESULT] == pytest.approx(
        float(torch.nn.functional.cosine_similarity(predicted.float(), actual.float())), abs=1e-5)  # bf16 on a CPU
    assert all(-1 <= value <= 1 for value in result.similarities.values())
    assert text_embedding(prior, "a lighthouse").shape == predicted.shape
    assert result.prior_seconds > 0 and result.decoder_seconds > 0


def test_variations_differ_by_seed_and_stay_reproducible():
    first = run_variations(CAT, count=2, decoder_steps=2, seed=10)
    again = run_variations(CAT, count=1, decoder_steps=2, seed=11)
    assert not _same(first.images[0], first.images[1])
    assert _same(first.images[1], again.images[0])
    assert first.captions[0].startswith("seed 10 · cos to the upload")


@pytest.mark.parametrize("call, message", [
    (lambda: run_variations(None), "Please provide an image"),
    (lambda: run_variations(CAT, count=0), "number of variations"),
    (lambda: run_interpolation(None, COFFEE), "first image"),
    (lambda: run_interpolation(CAT, None, ""), "second image"),
    (lambda: run_interpolation(CAT, COFFEE, frames=1), "Frames"),
    (lambda: run_interpolation(CAT, COFFEE, mode="cubic"), "slerp, lerp"),
    (lambda: run_unclip(""), "Please"),
    (lambda: run_unclip("x" * 10_000), "characters"),
    (lambda: run_unclip("a cat", decoder_steps=0), "Decoder steps"),
    (lambda: run_unclip("a cat", prior_steps=1), "Prior steps must be between 2"),
    (lambda: run_unclip("a cat", prior_guidance=100), "guidance"),
])
def test_bad_input_is_refused_plainly(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_the_compare_method_makes_an_image():
    method, = COMPARE_METHODS
    image = method.run("a red cat", **{**method.parameters, "steps": 1}).image
    assert image.size == (64, 64)


# ---- every control reaches the prior or the decoder, and moves only that ---------------------------------

ROCKET = str(ASSETS / "rocket.jpg")
PICTURES = {"chelsea": CAT, "coffee": COFFEE, "rocket": ROCKET}


@contextmanager
def pipeline_calls():
    """Every call of the prior and decoder pipelines while the block runs: what it was given (its arguments,
    the seed of its generator), what the prior returned, and how many times its denoiser (prior transformer,
    decoder UNet) ran in it. These tests read what reaches the networks, not pictures: the decoder's UNet and
    MoVQ are swapped for zero outputs of their shapes (bf16 convolutions are slow on a CPU); the pipelines'
    own loops, schedulers and guidance still run."""
    prior, decoder = models.get(PRIOR), models.get(DECODER)
    calls, runs = {"prior": [], "decoder": []}, {"prior": 0, "decoder": 0}

    def counter(kind):
        def hook(module, args, output):
            runs[kind] += 1
        return hook

    def spy(kind, real):
        def call(self, *args, **kwargs):
            record = dict(kwargs, args=args, seed=kwargs["generator"].initial_seed())
            if "image_embeds" in kwargs:
                record["image_embeds"] = kwargs["image_embeds"].clone()
            before = runs[kind]
            output = real(self, *args, **kwargs)
            calls[kind].append(dict(record, denoiser_runs=runs[kind] - before, output=output))
            return output
        return call

    def unet(sample, *args, **kwargs):
        return (torch.zeros(sample.shape[0], decoder.unet.config.out_channels, *sample.shape[2:], dtype=sample.dtype),)

    def movq_decode(latents, *args, **kwargs):
        scale = 2 ** (len(decoder.movq.config.block_out_channels) - 1)
        return {"sample": torch.zeros(latents.shape[0], 3, latents.shape[2] * scale, latents.shape[3] * scale)}

    hooks = [prior.prior.register_forward_hook(counter("prior")),
             decoder.unet.register_forward_hook(counter("decoder"))]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(type(prior), "__call__", spy("prior", type(prior).__call__))
            patch.setattr(type(decoder), "__call__", spy("decoder", type(decoder).__call__))
            patch.setattr(decoder.unet, "forward", unet)
            patch.setattr(decoder.movq, "decode", movq_decode)
            yield calls
    finally:
        for hook in hooks:
            hook.remove()


EMBEDDINGS: dict[str, torch.Tensor] = {}


def picture_of(embedding: torch.Tensor) -> str | None:
    """Which of PICTURES this is the CLIP image embedding of."""
    for name, path in PICTURES.items():
        if name not in EMBEDDINGS:
            EMBEDDINGS[name] = image_embedding(models.get(PRIOR), Image.open(path).convert("RGB"))
    return next((name for name, embedded in EMBEDDINGS.items() if torch.equal(embedding, embedded)), None)


TEXT = dict(prompt="a red cat", prior_steps=2, decoder_steps=1, prior_guidance=4.0, decoder_guidance=4.0, seed=0)


def text_trace(**changes) -> dict:
    with pipeline_calls() as calls:
        run_unclip(**{**TEXT, **changes})
    (prior,), (decoder,) = calls["prior"], calls["decoder"]
    return {"prompt": prior["args"][0], "prior_steps": prior["denoiser_runs"],
            "prior_guidance": prior["guidance_scale"], "decoder_steps": decoder["denoiser_runs"],
            "decoder_guidance": decoder["guidance_scale"], "seed": (prior["seed"], decoder["seed"])}


@pytest.fixture(scope="module")
def text_baseline():
    return text_trace()


@pytest.mark.parametrize("control, value, moved", [
    ("prompt", "a lighthouse", {"prompt": "a lighthouse"}),
    ("prior_steps", 3, {"prior_steps": 3}),
    ("decoder_steps", 2, {"decoder_steps": 2}),
    ("prior_guidance", 7.5, {"prior_guidance": 7.5}),
    ("decoder_guidance", 2.5, {"decoder_guidance": 2.5}),
    ("seed", 5, {"seed": (5, 5)}),
], ids=["prompt", "prior_steps", "decoder_steps", "prior_guidance", "decoder_guidance", "seed"])
def test_each_text_to_image_control_reaches_its_stage_and_moves_only_that(text_baseline, control, value, moved):
    """The caption and the prior's settings reach the prior (its transformer runs once per prior step), the
    decoder's settings the decoder (its UNet once per step), the seed both generators; nothing else moves."""
    baseline = text_baseline
    assert baseline == {**{key: TEXT[key] for key in baseline if key != "seed"}, "seed": (TEXT["seed"],) * 2}
    trace = text_trace(**{control: value})
    assert {part for part in trace if trace[part] != baseline[part]} == set(moved)
    assert trace == {**baseline, **moved}


VARY = dict(image=CAT, count=1, decoder_steps=1, decoder_guidance=4.0, seed=0)


def variations_trace(**changes) -> dict:
    with pipeline_calls() as calls:
        run_variations(**{**VARY, **changes})
    decoder = calls["decoder"]
    return {"image": {picture_of(call["image_embeds"]) for call in decoder}, "count": len(decoder),
            "decoder_steps": {call["denoiser_runs"] for call in decoder},
            "decoder_guidance": {call["guidance_scale"] for call in decoder}, "seed": decoder[0]["seed"],
            "prior": len(calls["prior"])}


@pytest.fixture(scope="module")
def variations_baseline():
    return variations_trace()


@pytest.mark.parametrize("control, value, moved", [
    ("image", COFFEE, {"image": {"coffee"}}),
    ("count", 2, {"count": 2}),
    ("decoder_steps", 2, {"decoder_steps": {2}}),
    ("decoder_guidance", 6.0, {"decoder_guidance": {6.0}}),
    ("seed", 5, {"seed": 5}),
], ids=["image", "count", "decoder_steps", "decoder_guidance", "seed"])
def test_each_variations_control_reaches_the_decoder_and_moves_only_that(variations_baseline, control, value,
                                                                       moved):
    """The upload's own embedding is decoded `count` times (one decoder call each, the prior never runs), with
    the steps and guidance asked for, the first from the seed in the box."""
    baseline = variations_baseline
    assert baseline == {"image": {"chelsea"}, "count": 1, "decoder_steps": {1}, "decoder_guidance": {4.0}, "seed": 0,
                        "prior": 0}
    trace = variations_trace(**{control: value})
    assert {part for part in trace if trace[part] != baseline[part]} == set(moved)
    assert trace == {**baseline, **moved}


INTERPOLATE = dict(image_a=CAT, image_b=COFFEE, frames=3, mode="slerp", decoder_steps=1, seed=0)


def path_of(embeddings: list[torch.Tensor]) -> set[str]:
    """Which interpolation the frames between the two ends follow, recomputed from the ends."""
    first, last, n = embeddings[0], embeddings[-1], len(embeddings)
    return {next((mode for mode, mix in (("slerp", slerp), ("lerp", lerp))
                  if torch.equal(embedding, mix(first, last, index / (n - 1)))), "neither")
            for index, embedding in enumerate(embeddings[1:-1], start=1)}


def interpolation_trace(**changes) -> dict:
    with pipeline_calls() as calls:
        run_interpolation(**{**INTERPOLATE, **changes})
    decoder = calls["decoder"]
    embeddings = [call["image_embeds"] for call in decoder]
    return {"ends": (picture_of(embeddings[0]), picture_of(embeddings[-1])), "frames": len(decoder),
            "mode": path_of(embeddings), "decoder_steps": {call["denoiser_runs"] for call in decoder},
            "seed": {call["seed"] for call in decoder}}


@pytest.fixture(scope="module")
def interpolation_baseline():
    return interpolation_trace()


@pytest.mark.parametrize("control, value, moved", [
    ("image_a", ROCKET, {"ends": ("rocket", "coffee")}),
    ("image_b", ROCKET, {"ends": ("chelsea", "rocket")}),
    ("frames", 4, {"frames": 4}),
    ("mode", "lerp", {"mode": {"lerp"}}),
    ("decoder_steps", 2, {"decoder_steps": {2}}),
    ("seed", 5, {"seed": {5}}),
], ids=["image_a", "image_b", "frames", "mode", "decoder_steps", "seed"])
def test_each_interpolation_control_reaches_the_decoder_and_moves_only_that(interpolation_baseline, control,
                                                                          value, moved):
    """A and B are the ends of the path the decoder is given, the frames how many points of it, the path
    (slerp or lerp) the points between, the steps and the one seed each frame's decoding."""
    baseline = interpolation_baseline
    assert baseline == {"ends": ("chelsea", "coffee"), "frames": 3, "mode": {"slerp"}, "decoder_steps": {1},
                        "seed": {0}}
    trace = interpolation_trace(**{control: value})
    assert {part for part in trace if trace[part] != baseline[part]} == set(moved)
    assert trace == {**baseline, **moved}


@pytest.mark.parametrize("text", ["a cup of coffee", "a red rocket"])
def test_text_for_b_reaches_the_prior_only_when_b_has_no_image(text):
    """Without image B, the text goes through the prior and its embedding is the path's end B; with an
    image B, the text is not used at all."""
    with pipeline_calls() as calls:
        run_interpolation(CAT, None, text, frames=2, decoder_steps=1, seed=2)
    (prior,) = calls["prior"]
    assert prior["args"] == (text,) and prior["seed"] == 2
    assert torch.equal(calls["decoder"][-1]["image_embeds"], prior["output"].image_embeds)
    with pipeline_calls() as calls:
        run_interpolation(CAT, COFFEE, text, frames=2, decoder_steps=1, seed=2)
    assert calls["prior"] == [] and picture_of(calls["decoder"][-1]["image_embeds"]) == "coffee"


RUNS = {"text → image": lambda **seed: run_unclip("a red cat", prior_steps=2, decoder_steps=1, **seed),
        "variations": lambda **seed: run_variations(CAT, count=1, decoder_steps=1, **seed),
        "interpolation": lambda **seed: run_interpolation(CAT, COFFEE, frames=2, decoder_steps=1, **seed)}


@pytest.mark.parametrize("randomize", [False, True])
@pytest.mark.parametrize("tab_name", list(RUNS))
def test_random_seed_replaces_the_typed_seed_everywhere_and_is_reported(monkeypatch, tab_name, randomize):
    """"Random seed" draws a seed that every generator of the run uses and that goes back to the seed box
    (the handlers return `parameters["seed"]`); unticked, the typed seed is used."""
    monkeypatch.setattr(random, "randint", lambda low, high: 4321)
    with pipeline_calls() as calls:
        result = RUNS[tab_name](seed=7, randomize=randomize)
    expected = 4321 if randomize else 7
    assert {call["seed"] for kind in calls for call in calls[kind]} == {expected}
    assert result.parameters["seed"] == expected


@pytest.fixture(scope="module")
def tab():
    from demos.tabs import unclip

    return built_tab(unclip)


def test_the_frame_slider_shows_the_frame_nearest_to_t(tab, monkeypatch):
    """"Show the frame nearest to t" is applied by the handlers: with the strip when it is made, and on its
    own (on release) over the strip kept in the page. The run is a stand-in returning three plain frames
    (what the handler passes to it is checked too: each widget to the parameter of its name)."""
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    asked = []

    def run(*args, **kwargs):
        asked.append(inspect.signature(run_interpolation).bind(*args, **kwargs).arguments)
        return ImagesResult(frames, ["t = 0.00", "t = 0.50", "t = 1.00"], {"seed": 9, "cosine_a_b": 0.5}, 0.1)

    monkeypatch.setattr(unclip, "run_interpolation", run)
    interpolate = event(tab, "unclip_interpolation").fn
    frame_at = next(fn.fn for fn in tab.fns.values() if getattr(fn.fn, "__name__", "") == "frame_at")
    for t, index in ((0.0, 0), (0.3, 1), (0.5, 1), (0.8, 2), (1.0, 2)):
        _, frame, _, seed, kept = interpolate(CAT, COFFEE, "a cup", 3, "lerp", 4, 9, False, t)
        assert frame is frames[index] and kept == frames and seed == 9
        assert frame_at(frames, t) is frames[index]
    assert {key: value for key, value in asked[0].items() if key != "progress"} == dict(
        image_a=CAT, image_b=COFFEE, text_b="a cup", frames=3, mode="lerp", decoder_steps=4, seed=9, randomize=False)
