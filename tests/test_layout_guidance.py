"""Layout guidance (Chen et al.): the energy, phrase → token positions, and the guided sampler on the
tiny SD-1.5 stand-in, and what each control of the tab changes in the UNet's passes."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import models
from demos.tabs.layout_guidance import (MAX_BOXES, attention_panels, attention_views, energy_figure,
                                       run_layout_guidance)
from models import UserError
from models.clip import tiny_tokenizer
from models.pipelines import layout_guidance as lg
from tests.spies import assert_classifier_free_guidance, step_inputs, unet_forward_calls

PROMPT = "a cat and a teddy bear and a cat"
LAYOUT = "cat: 0,0,0.5,0.5\nteddy bear: 0.5,0.5,1,1\ncat: 0,0.5,0.5,1"


# ---- the energy on hand-made maps ----------------------------------------------------------------

def _maps(inside: float, heads: int = 2, side: int = 4, tokens: int = 5) -> torch.Tensor:
    """Token 1 puts `inside` of its mass uniformly in the top-left quadrant, the rest elsewhere."""
    grid = torch.zeros(side, side)
    box = torch.zeros(side, side, dtype=torch.bool)
    box[: side // 2, : side // 2] = True
    grid[box] = inside / box.sum()
    grid[~box] = (1 - inside) / (~box).sum()
    maps = torch.full((heads, side * side, tokens), 0.1)
    maps[:, :, 1] = grid.reshape(-1)
    return maps


@pytest.mark.parametrize("inside, expected", [(1.0, 0.0), (0.0, 1.0), (0.5, 0.25)])
def test_energy_is_zero_inside_one_outside_and_squared_in_between(inside, expected):
    top_left = [[0.0, 0.0, 0.5, 0.5]]
    maps = _maps(inside)
    assert float(lg.layout_energy([maps, maps], [[1]], [top_left])) == pytest.approx(expected, abs=1e-6)
    # Unnormalised maps (a softmax over tokens never sums to 1 over pixels) give the same energy.
    assert float(lg.layout_energy([3 * maps], [[1]], [top_left])) == pytest.approx(expected, abs=1e-6)


def test_energy_averages_over_objects_tokens_and_layers():
    top_left, right_half = [[0.0, 0.0, 0.5, 0.5]], [[0.5, 0.0, 1.0, 1.0]]
    inside, outside = _maps(1.0), _maps(0.0)
    # one object fully inside, one fully outside → (0 + 1) / 2
    assert float(lg.layout_energy([inside], [[1], [1]], [top_left, [[0.6, 0.6, 1, 1]]])) == pytest.approx(0.5)
    # two layers, one good one bad → 0.5
    assert float(lg.layout_energy([inside, outside], [[1]], [top_left])) == pytest.approx(0.5)
    # tokens 1 (inside) and 2 (uniform: 1/4 of the pixels are in the box) → mean of 0 and (3/4)²
    assert float(lg.layout_energy([inside], [[1, 2]], [top_left])) == pytest.approx(0.5 * 0.75 ** 2)
    # the union of an object's boxes is its mask
    assert float(lg.layout_energy([outside], [[1]], [top_left + right_half])) == pytest.approx((1 - 2 / 3) ** 2)


# ---- phrase → token positions with the real CLIPTokenizer class ------------------------------------

def _tokenizer_with_whole_word_cat():
    """A CLIPTokenizer where "cat" is one BPE token and "teddy bear" is many (no merges for them)."""
    from transformers import CLIPTokenizer

    base = tiny_tokenizer()
    vocab = dict(base.get_vocab())
    for token in ("ca", "cat</w>"):
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[("c", "a"), ("ca", "t</w>")], model_max_length=77)


def test_token_indices_cover_multi_token_phrases_and_follow_repeated_words_in_order():
    tokenizer = _tokenizer_with_whole_word_cat()
    ids = tokenizer(PROMPT).input_ids
    groups = lg.phrase_token_indices(tokenizer, PROMPT, ["teddy bear", "cat", "cat"])
    teddy, first_cat, second_cat = groups
    assert ids[0] == tokenizer.bos_token_id and min(map(min, groups)) >= 1
    assert len(teddy) == len(tokenizer("teddy bear", add_special_tokens=False).input_ids) > 2
    assert teddy == list(range(teddy[0], teddy[-1] + 1))
    assert tokenizer.decode([ids[i] for i in teddy]).strip() == "teddy bear"
    assert first_cat == [2] and len(second_cat) == 1 and second_cat[0] > teddy[-1]
    assert tokenizer.convert_ids_to_tokens([ids[second_cat[0]]]) == ["cat</w>"]
    with pytest.raises(lg.PhraseNotInPrompt, match="'dog'"):
        lg.phrase_token_indices(tokenizer, PROMPT, ["dog"])
    with pytest.raises(lg.PhraseNotInPrompt, match="listed 3 times but occurs 2"):
        lg.phrase_token_indices(tokenizer, PROMPT, ["cat", "cat", "cat"])
    with pytest.raises(lg.PhraseNotInPrompt):  # "cat" is not a word of "a cats party"
        lg.phrase_token_indices(tokenizer, "a cats party", ["cat"])


# ---- the guided sampler on the tiny model ----------------------------------------------------------

STEPS, GUIDED = 4, 2


def _sample(loss_scale: float) -> lg.LayoutGuidanceOutput:
    base = models.get("sd15")
    groups = lg.phrase_token_indices(base.tokenizer, PROMPT, ["cat", "teddy bear", "cat"])
    boxes = [[[0, 0, 0.5, 0.5]], [[0.5, 0.5, 1, 1]], [[0, 0.5, 0.5, 1]]]
    return lg.generate_with_layout_guidance(
        lg.lms_pipeline(base), PROMPT, groups, boxes, torch.Generator().manual_seed(7), steps=STEPS,
        guided_steps=GUIDED, iterations=3, loss_scale=lg.LOSS_SCALE, loss_threshold=0.0) if loss_scale else \
        lg.generate_with_layout_guidance(
            lg.lms_pipeline(base), PROMPT, groups, boxes, torch.Generator().manual_seed(7), steps=STEPS,
            guided_steps=GUIDED, loss_scale=0.0)


@pytest.fixture(scope="module")
def guided_and_plain():
    return _sample(lg.LOSS_SCALE), _sample(0.0)


@pytest.mark.mechanism
def test_guidance_lowers_the_energy_at_every_guided_step_and_raises_in_box_attention(guided_and_plain):
    guided, plain = guided_and_plain
    for record in guided.steps[:GUIDED]:
        assert len(record.energies) == 3
        assert record.energy_after < record.energies[0]  # after the updates vs before them
        assert all(b < a for a, b in zip(record.energies, record.energies[1:] + [record.energy_after]))
    assert all(not record.energies for record in guided.steps[GUIDED:])
    assert guided.steps[0].energies[0] == pytest.approx(plain.steps[0].energy_after, abs=1e-4)  # same start
    assert guided.steps[-1].inside_after > plain.steps[-1].inside_after
    assert not np.array_equal(np.asarray(guided.image), np.asarray(plain.image))


def test_scale_zero_reproduces_plain_stable_diffusion_and_the_shared_unet_is_left_as_found(guided_and_plain):
    _, plain = guided_and_plain
    base = models.get("sd15")
    before = {name: type(p) for name, p in base.unet.attn_processors.items()}
    reference = lg.lms_pipeline(base)(PROMPT, num_inference_steps=STEPS, guidance_scale=lg.CFG_SCALE,
                                      generator=torch.Generator().manual_seed(7)).images[0]
    difference = np.abs(np.asarray(reference, float) - np.asarray(plain.image, float))
    assert difference.max() <= 2  # same image, up to float rounding of explicit vs fused attention
    assert {name: type(p) for name, p in base.unet.attn_processors.items()} == before
    assert not any(isinstance(p, lg.CaptureCrossAttention) for p in base.unet.attn_processors.values())
    assert base.unet.dtype == base.vae.dtype == torch.float32  # from_pipe with dtype did not recast the base


def test_run_returns_images_maps_and_parameters():
    result = run_layout_guidance(PROMPT, LAYOUT, steps=2, guided_steps=1, iterations=1, seed=3)
    assert result.parameters["seed"] == 3 and result.parameters["scheduler"] == "LMSDiscreteScheduler"
    assert result.image.size == result.plain_image.size
    guided_view, plain_view = attention_views(result, 1)
    assert guided_view.size == plain_view.size and guided_view.size[0] == 3 * 256
    assert result.steps[0].phrase_maps.shape[0] == 3
    assert energy_figure(result) is not None


@pytest.mark.parametrize("layout, message", [
    ("cat: 0.5,0.5,1.2,0.9", "outside the image"),
    ("cat: 600,10,700,100", "outside the image"),
    ("cat: 0.5,0.5,0.5,0.9", "no area"),
    (": 0.1,0.1,0.4,0.4", "no phrase"),
    ("", "at least one box"),
    ("cat: 0.1,0.1", "four numbers"),
    ("\n".join(["cat: 0.1,0.1,0.4,0.4"] * (MAX_BOXES + 1)), f"At most {MAX_BOXES} boxes"),
    ("dog: 0.1,0.1,0.4,0.4", "phrase 'dog' is not in the prompt"),
])
def test_bad_layouts_are_refused_with_a_clear_message(layout, message):
    with pytest.raises(UserError, match=message):
        run_layout_guidance(PROMPT, layout, steps=1)


def test_forward_guidance_moves_a_share_of_each_token_mass_into_its_box_in_the_conditional_half():
    maps = torch.cat([_maps(0.0), _maps(0.0)])  # [uncond heads; cond heads], token 1 all outside the box
    top_left = [[0.0, 0.0, 0.5, 0.5]]
    assert torch.equal(lg.forward_guidance_edit([[1]], [top_left], 0.0, True)(maps), maps)
    edited = lg.forward_guidance_edit([[1]], [top_left], 0.5, True)(maps)
    uncond, cond = edited.chunk(2)
    assert torch.equal(uncond, maps.chunk(2)[0]) and torch.equal(cond[:, :, [0, 2, 3, 4]], maps[2:, :, [0, 2, 3, 4]])
    assert torch.allclose(cond[:, :, 1].sum(dim=1), maps[2:, :, 1].sum(dim=1))  # each token keeps its mass
    share = lg.inside_fraction(cond, [1], top_left)
    assert (share > 0.4).all() and (share <= 0.5 + 1e-6).all()  # about λ of it now lies inside


def test_forward_guidance_alone_changes_the_image_and_raises_in_box_attention(guided_and_plain):
    _, plain = guided_and_plain
    base = models.get("sd15")
    groups = lg.phrase_token_indices(base.tokenizer, PROMPT, ["cat", "teddy bear", "cat"])
    boxes = [[[0, 0, 0.5, 0.5]], [[0.5, 0.5, 1, 1]], [[0, 0.5, 0.5, 1]]]
    forward = lg.generate_with_layout_guidance(
        lg.lms_pipeline(base), PROMPT, groups, boxes, torch.Generator().manual_seed(7), steps=STEPS,
        guided_steps=GUIDED, loss_scale=0.0, forward_strength=0.5)
    assert all(not record.energies for record in forward.steps)  # no gradient steps
    assert forward.steps[0].inside_after > plain.steps[0].inside_after
    assert not np.array_equal(np.asarray(forward.image), np.asarray(plain.image))


# ---- which layers and how far: the paper's choices ---------------------------------------------------

@pytest.mark.mechanism
def test_the_energy_reads_the_mid_block_and_up_blocks_1_at_their_coarse_resolutions():
    """SD's 4 guided maps (8² mid block, 16² up_blocks.1 at 512 px): the coarsest cross-attention."""
    unet = models.get("sd15").unet
    side = 32  # latent side: the mid block runs at side/8, up_blocks.1 at side/4
    latents = torch.randn(1, unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with lg.capture_cross_attention(unet) as store, torch.no_grad():
        store.recording = True
        unet(latents, 10, encoder_hidden_states=text)
    names = list(store.maps)
    mid = [n for n in names if n.startswith("mid_block.")]
    up = [n for n in names if n.startswith("up_blocks.1.")]
    assert mid and up and len(mid) + len(up) == len(names)
    assert all(n.endswith("attn2.processor") for n in names)  # cross-attention, not self-attention
    assert {store.maps[n].shape[1] for n in mid} == {(side // 8) ** 2}
    assert {store.maps[n].shape[1] for n in up} == {(side // 4) ** 2}


@pytest.mark.mechanism
def test_one_guidance_update_moves_the_latent_by_sigma_squared_times_the_energy_gradient():
    base = models.get("sd15")
    pipe = lg.lms_pipeline(base)
    groups = lg.phrase_token_indices(base.tokenizer, PROMPT, ["cat", "teddy bear", "cat"])
    boxes = [[[0, 0, 0.5, 0.5]], [[0.5, 0.5, 1, 1]], [[0, 0.5, 0.5, 1]]]
    pipe.scheduler.set_timesteps(STEPS)
    timestep, sigma = pipe.scheduler.timesteps[0], float(pipe.scheduler.sigmas[0])
    assert sigma > 2  # early LMS sigmas are large: σ and σ² differ several-fold
    with torch.no_grad():
        conditional, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * sigma
    with lg.capture_cross_attention(pipe.unet) as store:
        store.recording = True
        with torch.enable_grad():
            probe = latents.clone().requires_grad_(True)
            pipe.unet(pipe.scheduler.scale_model_input(probe, timestep), timestep, encoder_hidden_states=conditional)
            energy = lg.layout_energy(store.layer_maps(conditional_half=False), groups, boxes)
            (gradient,) = torch.autograd.grad(energy, probe)
        store.maps.clear()
        record = lg.StepRecord(0, int(timestep), sigma)
        moved = lg._guide(pipe, store, latents, timestep, sigma, conditional, groups, boxes, iterations=1,
                          loss_scale=lg.LOSS_SCALE, loss_threshold=0.0, record=record)
    expected = -lg.LOSS_SCALE * sigma ** 2 * gradient
    assert float((moved - latents - expected).norm() / expected.norm()) < 1e-3
    assert record.energies == [pytest.approx(float(energy), abs=1e-6)]


# ---- every control of the tab reaches the sampler ---------------------------------------------------

@pytest.fixture
def unet_calls(monkeypatch) -> list[SimpleNamespace]:
    """Each call of the shared SD-1.5 UNet: its latent input, text embedding and output, and whether it
    ran with gradients (a guidance pass) or without (a denoising step)."""
    unet = models.get("sd15").unet
    return unet_forward_calls(monkeypatch, unet, guidance=torch.is_grad_enabled)


def direction(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor / tensor.norm()).flatten()


BASE_RUN = dict(steps=2, guided_steps=1, iterations=2, loss_threshold=0.0)


@pytest.mark.parametrize("change", [{}, {"steps": 3}, {"guided_steps": 2}, {"iterations": 3}, {"loss_threshold": 1.0}],
                         ids=["base", "steps", "guided_steps", "iterations", "loss_threshold"])
def test_steps_guided_steps_iterations_and_the_threshold_set_the_unet_passes(change, unet_calls):
    """Each of the first `guided_steps` steps runs up to `iterations` guidance passes (forward and backward,
    prompt only) and stops after one whose energy is at or below the threshold; every step then runs one
    denoising pass. The energy lies in [0, 1], so a threshold of 1 stops after the first pass."""
    settings = {**BASE_RUN, **change}
    result = run_layout_guidance(PROMPT, LAYOUT, seed=3, compare_unguided=False, **settings)
    passes = 1 if settings["loss_threshold"] >= 1 else settings["iterations"]
    expected = [passes if step < settings["guided_steps"] else 0 for step in range(settings["steps"])]
    assert [len(record.energies) for record in result.steps] == expected
    assert [call.guidance for call in unet_calls] == [kind for count in expected for kind in [True] * count + [False]]


def test_the_loss_scale_sets_how_far_a_guidance_pass_moves_the_latent(unet_calls):
    """One pass moves z by loss_scale·σ²·∇E with the gradient taken at the same start: twice the scale, twice
    the move; scale 0 runs no pass."""
    moves = {}
    for scale in (10.0, 20.0):
        unet_calls.clear()
        run_layout_guidance(PROMPT, LAYOUT, steps=1, guided_steps=1, iterations=1, loss_scale=scale, seed=3,
                            compare_unguided=False)
        guide, denoise = unet_calls
        assert guide.guidance and not denoise.guidance
        moves[scale] = denoise.sample[:1] - guide.sample  # both scaled by the same σ of step 1
    assert moves[10.0].abs().max() > 0
    torch.testing.assert_close(moves[20.0], 2 * moves[10.0], rtol=1e-3, atol=1e-5)
    unet_calls.clear()
    run_layout_guidance(PROMPT, LAYOUT, steps=1, guided_steps=1, loss_scale=0, seed=3, compare_unguided=False)
    assert [call.guidance for call in unet_calls] == [False]


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0, 9.0])
def test_the_cfg_scale_weights_the_prompts_noise_prediction_against_the_unconditional_one(
        guidance_scale, unet_calls, monkeypatch):
    from diffusers import LMSDiscreteScheduler

    used = step_inputs(monkeypatch, LMSDiscreteScheduler)
    run_layout_guidance(PROMPT, LAYOUT, steps=2, guided_steps=0, guidance_scale=guidance_scale, seed=3,
                        compare_unguided=False)
    assert len(unet_calls) == 2
    assert_classifier_free_guidance([call.output for call in unet_calls], used, guidance_scale)


def test_the_forward_strength_moves_a_share_of_the_phrases_attention_into_their_boxes():
    """With the energy off (loss scale 0), forward guidance is all that differs from the unguided twin:
    the in-box share of the step's attention rises with λ and λ = 0 is the twin."""
    gain = {}
    for strength in (0.0, 0.3, 0.8):
        result = run_layout_guidance(PROMPT, LAYOUT, steps=1, guided_steps=1, loss_scale=0, forward_strength=strength,
                                     seed=3)
        gain[strength] = result.steps[0].inside_after - result.plain_steps[0].inside_after
        if strength == 0:
            assert np.array_equal(np.asarray(result.image), np.asarray(result.plain_image))
    assert gain[0.0] == 0 and 0 < gain[0.3] < gain[0.8]


def test_the_prompt_is_the_text_the_unet_reads_and_the_layout_says_which_tokens_and_where(unet_calls):
    base = models.get("sd15")
    for prompt in ("a cat and a dog", "a dog on a red rug"):
        unet_calls.clear()
        run_layout_guidance(prompt, "dog: 0,0,0.5,0.5", steps=1, guided_steps=0, seed=3, compare_unguided=False)
        _, conditional = unet_calls[0].text.chunk(2)
        expected, _ = base.encode_prompt(prompt, base.device, 1, False)
        torch.testing.assert_close(conditional, expected)

    def step_one(layout: str) -> lg.StepRecord:
        return run_layout_guidance("a cat and a dog", layout, steps=1, guided_steps=0, seed=3,
                                   compare_unguided=False).steps[0]

    everywhere, corner, other_phrase = step_one("cat: 0,0,1,1"), step_one("cat: 0,0,0.5,0.5"), step_one("dog: 0,0,1,1")
    assert everywhere.inside_after == pytest.approx(1.0) and everywhere.energy_after == pytest.approx(0.0, abs=1e-6)
    assert corner.inside_after < 1 and corner.energy_after > 0
    assert not np.allclose(everywhere.phrase_maps, other_phrase.phrase_maps)  # the dog's tokens, not the cat's


def test_the_seed_draws_the_starting_latent_and_randomize_draws_a_fresh_seed(unet_calls):
    for seed, randomize in ((3, False), (4, False), (3, True)):
        unet_calls.clear()
        result = run_layout_guidance(PROMPT, LAYOUT, steps=1, guided_steps=0, seed=seed, randomize=randomize,
                                     compare_unguided=False)
        used = result.parameters["seed"]
        assert used != seed if randomize else used == seed
        start = unet_calls[0].sample[:1]
        noise = torch.randn(start.shape, generator=torch.Generator().manual_seed(used))
        torch.testing.assert_close(direction(start), direction(noise))


@pytest.mark.parametrize("compare", [False, True])
def test_compare_adds_an_unguided_run_from_the_same_starting_latent(compare, unet_calls):
    result = run_layout_guidance(PROMPT, LAYOUT, steps=1, guided_steps=1, iterations=1, seed=3,
                                 compare_unguided=compare)
    denoising = [call for call in unet_calls if not call.guidance]
    assert len(denoising) == (2 if compare else 1)
    assert (result.plain_image is not None) == (result.plain_steps is not None) == compare
    if compare:
        assert not result.plain_steps[0].energies
        assert torch.equal(denoising[1].sample[:1], unet_calls[0].sample)  # the guided run's first pass


def test_the_map_step_picks_the_denoising_step_whose_attention_is_shown():
    result = run_layout_guidance(PROMPT, LAYOUT, steps=2, guided_steps=1, iterations=1, seed=3)
    for step in (1, 2):
        guided, plain = attention_views(result, step)
        expected_guided = attention_panels(result.image, result.steps[step - 1].phrase_maps, result.boxes,
                                           f"guided, step {step}")
        expected_plain = attention_panels(result.plain_image, result.plain_steps[step - 1].phrase_maps, result.boxes,
                                          f"no guidance, step {step}")
        assert np.array_equal(np.asarray(guided), np.asarray(expected_guided))
        assert np.array_equal(np.asarray(plain), np.asarray(expected_plain))
    assert not np.allclose(result.steps[0].phrase_maps, result.steps[1].phrase_maps)


# ---- the start and end tokens' maps beside the phrases' ----------------------------------------------

def test_start_and_end_token_maps_are_shown_when_asked_and_read_from_the_same_attention_store(monkeypatch):
    """Each denoising pass's stored cross-attention (the conditional half of the guided layers) gives the
    phrases' maps and, for positions 0 and the first end position, the start and end tokens' maps: head
    mean at that token, each layer resized to the finest, then the layer mean. With the toggle off the
    views are the phrases' alone (the default run's), on they add <|startoftext|> first and
    <|endoftext|> last."""
    from demos.tabs.layout_guidance import map_panels, shown_maps

    passes = []
    real_layer_maps = lg.AttentionStore.layer_maps

    def layer_maps(self, conditional_half):
        maps = real_layer_maps(self, conditional_half)
        if conditional_half:  # a denoising pass (guidance reads the prompt-only batch)
            passes.append([m.detach().clone() for m in maps])
        return maps

    monkeypatch.setattr(lg.AttentionStore, "layer_maps", layer_maps)
    result = run_layout_guidance("a cat and a dog", "dog: 0.5,0,1,1", steps=2, guided_steps=1, iterations=1, seed=3,
                                 compare_unguided=False)
    tokenizer = models.get("sd15").tokenizer
    ids = tokenizer("a cat and a dog").input_ids
    end = len(ids) - 1
    assert result.special_tokens == [(0, "<|startoftext|>"), (end, "<|endoftext|>")] and ids[end] == tokenizer.eos_token_id
    assert len(passes) == len(result.steps)  # one denoising pass per step
    for record, layers in zip(result.steps, passes):
        side = record.phrase_maps.shape[-1]
        for row, position in enumerate((0, end)):
            expected = torch.stack([torch.nn.functional.interpolate(
                m[:, :, position].float().mean(dim=0).reshape(1, 1, *(2 * [int(m.shape[1] ** 0.5)])),
                size=(side, side), mode="bilinear")[0, 0] for m in layers]).mean(dim=0)
            np.testing.assert_allclose(record.token_maps[row], expected.numpy(), rtol=1e-5, atol=1e-7)
    off, on = shown_maps(result, result.steps, 1), shown_maps(result, result.steps, 1, special=True)
    assert [(m.label, m.tokens) for m in off] == [("dog", result.token_groups[0])]
    assert [(m.label, m.tokens) for m in on] == [("<|startoftext|>", [0]), ("dog", result.token_groups[0]),
                                                 ("<|endoftext|>", [end])]
    assert np.array_equal(on[0].heat, result.steps[1].token_maps[0]) and np.array_equal(on[-1].heat,
                                                                                     result.steps[1].token_maps[1])
    guided_off, _ = attention_views(result, 2)
    guided_on, _ = attention_views(result, 2, special=True)
    assert np.array_equal(np.asarray(guided_off), np.asarray(attention_panels(
        result.image, result.steps[1].phrase_maps, result.boxes, "guided, step 2")))
    assert np.array_equal(np.asarray(guided_on), np.asarray(map_panels(result.image, on, result.boxes,
                                                                       "guided, step 2")))
    assert guided_on.width == guided_off.width + 2 * 256
