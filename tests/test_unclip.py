"""unCLIP with Kandinsky 2.2 (tiny prior + decoder in the published layouts): the decoder reads only the image
embedding, interpolation endpoints, slerp/lerp, the similarity panel, and bad input."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import models
from demos import ASSETS
from demos.tabs.unclip import (COMPARE_METHODS, PRIOR_RESULT, decode, image_embedding, lerp, run_interpolation,
                          run_unclip, run_variations, slerp, text_embedding)
from models import UserError
from models.unclip import DECODER, PRIOR, TINY_EMBEDDING

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


@pytest.mark.mechanism
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


@pytest.mark.mechanism
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
