"""InstructPix2Pix on the tiny 8-channel stand-in: the authors' resize, the three-branch batch and what
each branch sees, guidance off at s_T = s_I = 1, seeds, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.instruct_pix2pix import COMPARE_METHODS, model_input, run_instruct_pix2pix
from models import UserError
from models.instruct_pix2pix import INSTRUCT_PIX2PIX

PHOTO = Image.open(ASSETS / "chelsea.jpg").convert("RGB")


def test_the_tiny_model_has_the_published_layout():
    pipe = models.get(INSTRUCT_PIX2PIX)
    assert type(pipe).__name__ == "StableDiffusionInstructPix2PixPipeline"
    assert pipe.unet.config.in_channels == 8 and pipe.unet.config.out_channels == 4
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (512, 512), (1000, 90)])
def test_resize_follows_the_authors_rule(size):
    fitted = model_input(Image.new("RGB", size), 512)
    width, height = fitted.size
    assert width % 64 == 0 and height % 64 == 0
    # the short side is rounded up to a multiple of 64 once the long side is 512
    short = min(size) * 512 / max(size)
    assert min(width, height) == max(64, int(np.ceil(short / 64)) * 64)


class Spy:
    def __init__(self):
        self.samples, self.embeddings = [], []

    def __call__(self, module, args, kwargs, output):
        self.samples.append(args[0].detach().clone())
        self.embeddings.append(kwargs["encoder_hidden_states"].detach().clone())


def spy_run(**kwargs):
    pipe = models.get(INSTRUCT_PIX2PIX)
    spy = Spy()
    hook = pipe.unet.register_forward_hook(spy, with_kwargs=True)
    try:
        result = run_instruct_pix2pix(PHOTO, "make it snowy", steps=3, **kwargs)
    finally:
        hook.remove()
    return pipe, spy, result


def test_three_branches_see_the_image_latent_unscaled_and_the_empty_image():
    pipe, spy, result = spy_run(text_cfg=7.5, image_cfg=1.5)
    assert result.unet_batch == 3 and {s.shape[0] for s in spy.samples} == {3}
    pixels = pipe.image_processor.preprocess(result.input)
    with torch.no_grad():
        image_latent = pipe.vae.encode(pixels).latent_dist.mode()  # the mode, not × scaling_factor
    for sample in spy.samples:
        assert torch.allclose(sample[0, 4:], image_latent[0], atol=1e-5)
        assert torch.allclose(sample[1, 4:], image_latent[0], atol=1e-5)
        assert not sample[2, 4:].any()  # ∅_I: an all-zero image latent
    text, empty, _ = spy.embeddings[0]
    assert not torch.equal(text, empty) and torch.equal(spy.embeddings[0][1], spy.embeddings[0][2])
    assert [label for _, label in result.branches][-1] == "combined ε̃" and len(result.branches) == 4


def test_text_and_image_scale_one_run_the_conditional_branch_alone():
    _, spy, result = spy_run(text_cfg=1.0, image_cfg=1.0)
    assert result.unet_batch == 1 and {s.shape[0] for s in spy.samples} == {1}
    assert torch.any(spy.samples[0][0, 4:] != 0)  # the one branch is image + text
    assert len(result.branches) == 1


def test_same_seed_same_image_and_another_seed_another():
    first = run_instruct_pix2pix(PHOTO, "make it snowy", steps=2, seed=3).image
    again = run_instruct_pix2pix(PHOTO, "make it snowy", steps=2, seed=3).image
    other = run_instruct_pix2pix(PHOTO, "make it snowy", steps=2, seed=4).image
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


@pytest.mark.parametrize("arguments, message", [
    ((None, "make it snowy"), "photo"),
    ((PHOTO, "   "), "instruction"),
    ((PHOTO, "x" * 10_000), "characters"),
    ((PHOTO, "make it snowy", 0.5), "text guidance"),
    ((PHOTO, "make it snowy", 7.5, 0.9), "image guidance"),
    ((PHOTO, "make it snowy", 7.5, 1.5, 0), "Steps"),
    ((Image.new("RGB", (1, 1)), "make it snowy"), "at least"),
    ((Image.new("RGB", (4000, 40)), "make it snowy"), "elongated"),
])
def test_bad_input_is_refused_with_what_to_do(arguments, message):
    with pytest.raises(UserError, match=message):
        run_instruct_pix2pix(*arguments)


def test_compare_rows_are_image_cfg_values_of_one_method():
    assert [m.parameters["image_cfg"] for m in COMPARE_METHODS] == [1.0, 1.5, 2.0]
    output = COMPARE_METHODS[1].run(**{**COMPARE_METHODS[1].parameters, "image": PHOTO,
                                       "instruction": "make it snowy", "seed": 0, "steps": 2})
    assert output.image is not None


def constant_branches(module, args, kwargs, output):
    """The UNet's prediction replaced by one constant per branch of the batch [image + text, image only,
    ∅]: 0.3, 0.1 and 0 — so ε̃ shows which scale multiplied which difference (the tiny model's own branches
    are nearly equal, and a swap of s_T and s_I would barely show in its pictures)."""
    sample = args[0] if args else kwargs["sample"]
    levels = torch.tensor([0.3, 0.1, 0.0][:sample.shape[0]], dtype=sample.dtype).view(-1, 1, 1, 1)
    return (levels.expand(-1, 4, *sample.shape[2:]).clone(),)


def expected_guided_noise(text_cfg: float, image_cfg: float) -> float:
    """The paper's ε̃ for the constants above: 0 + s_I·(0.1 − 0) + s_T·(0.3 − 0.1)."""
    return image_cfg * 0.1 + text_cfg * 0.2


@pytest.mark.parametrize("text_cfg, image_cfg", [(7.5, 1.5), (2.0, 5.0)])
def test_each_scale_multiplies_its_own_difference_in_the_pipeline_and_the_branch_view(
        monkeypatch, text_cfg, image_cfg):
    pipe = models.get(INSTRUCT_PIX2PIX)
    guided, decoded = [], []
    original_step, original_decode = pipe.scheduler.step, pipe.vae.decode

    def step(model_output, *args, **kwargs):
        guided.append(model_output.detach().clone())
        return original_step(model_output, *args, **kwargs)

    def decode(latents, *args, **kwargs):
        decoded.append(latents.detach().clone())
        return original_decode(latents, *args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", step)
    hook = pipe.unet.register_forward_hook(constant_branches, with_kwargs=True)
    try:
        monkeypatch.setattr(pipe.vae, "decode", decode)
        result = run_instruct_pix2pix(PHOTO, "make it snowy", text_cfg=text_cfg, image_cfg=image_cfg, steps=2)
    finally:
        hook.remove()
    expected = expected_guided_noise(text_cfg, image_cfg)
    assert all(torch.allclose(noise, torch.full_like(noise, expected)) for noise in guided)  # what the pipeline used
    # The branch view: x0 = z − σ·ε of ∅, image only, image + text and ε̃ (decoded in one batch).
    sigma = float(pipe.scheduler.sigmas[1])
    clean = decoded[-1] * pipe.vae.config.scaling_factor
    latent = clean[0]  # the ∅ branch predicts 0: its x0 is the latent itself
    for view, noise in zip(clean, (0.0, 0.1, 0.3, expected)):
        assert torch.allclose(view, latent - sigma * noise, atol=1e-5)
    assert [label for _, label in result.branches] == ["unconditional ε(z, ∅, ∅)", "image only ε(z, c_I, ∅)",
                                                       "image + text ε(z, c_I, c_T)", "combined ε̃"]
