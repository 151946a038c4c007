"""Prompt-to-prompt and null-text inversion on the tiny SD-1.5 stand-in: the word mappers, the
controller's edits on hand-made maps, whole runs (same prompt → same image, replace changes it,
re-weight 1 = no re-weight), the shared base left as it was, and inversion + optimisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.compare import compare_grid, load_preset
from demos.tabs.prompt_to_prompt import run_prompt_to_prompt
from models import UserError
from models.pipelines import null_text_inversion as nti
from models.pipelines import prompt_to_prompt as p2p
from models.stable_diffusion import SD15

STEPS = 4


@pytest.fixture(scope="module")
def base():
    return models.get(SD15)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


# ---- words, tokens and mappers ---------------------------------------------------------------------

def test_word_spans_tile_the_prompt_tokens(base):
    tokenizer = base.tokenizer
    prompt = "a cat riding a bicycle"
    spans = p2p.word_token_spans(tokenizer, prompt)
    ids = tokenizer(prompt).input_ids
    assert [p for span in spans for p in span] == list(range(1, len(ids) - 1))
    assert tokenizer.decode([ids[p] for p in spans[1]]).strip() == "cat"


def test_replace_mapper_rows_sum_to_one_and_is_the_identity_for_one_prompt(base):
    tokenizer = base.tokenizer
    same = p2p.replace_mapper(tokenizer, "a cat riding", "a cat riding")
    assert torch.equal(same, torch.eye(77))
    swapped = p2p.replace_mapper(tokenizer, "a cat riding", "a dog riding")  # as many tokens
    assert torch.allclose(swapped.sum(dim=1), torch.ones(77))


def test_replace_mapper_spreads_a_longer_word_and_keeps_the_end_token_aligned(base):
    tokenizer = base.tokenizer
    source, target = "a cat riding", "a tiger riding"
    mapper = p2p.replace_mapper(tokenizer, source, target)
    (_, cat, riding), (_, tiger, riding_after) = (p2p.word_token_spans(tokenizer, p) for p in (source, target))
    assert len(tiger) > len(cat)
    assert torch.allclose(mapper[cat][:, tiger], torch.full((len(cat), len(tiger)), 1 / len(tiger)))
    assert all(mapper[a, b] == 1 for a, b in zip(riding, riding_after))
    end_source, end_target = len(tokenizer(source).input_ids) - 1, len(tokenizer(target).input_ids) - 1
    assert mapper[end_source, end_target] == 1  # the repo's M[j, j] fill would shift it


def test_refine_mapper_is_the_identity_for_one_prompt_and_leaves_new_words_their_own(base):
    tokenizer = base.tokenizer
    mapper, alphas = p2p.refine_mapper(tokenizer, "a cat", "a cat")
    assert torch.equal(mapper, torch.arange(77)) and torch.equal(alphas, torch.ones(77))
    source, target = "a cat", "a big cat"
    mapper, alphas = p2p.refine_mapper(tokenizer, source, target)
    source_ids, target_ids = tokenizer(source).input_ids, tokenizer(target).input_ids
    big = p2p.word_token_spans(tokenizer, target)[1]
    kept = [j for j in range(len(target_ids)) if j not in big]
    assert all(alphas[j] == 1 and source_ids[mapper[j]] == target_ids[j] for j in kept)
    assert alphas[big].sum() < len(big)  # at least the new word's unmatched tokens keep their own maps


def test_equalizer_weights_the_words_tokens_only(base):
    scale = p2p.equalizer(base.tokenizer, "a fluffy cat", "fluffy", 3.0)
    fluffy = p2p.word_token_spans(base.tokenizer, "a fluffy cat")[1]
    assert torch.all(scale[fluffy] == 3.0) and scale.sum() == 77 + 2.0 * len(fluffy)
    with pytest.raises(p2p.EditError, match="not in the edited prompt"):
        p2p.equalizer(base.tokenizer, "a fluffy cat", "dog", 3.0)


# ---- the controller on hand-made attention ---------------------------------------------------------

def _probabilities(prompts: int, heads: int, pixels: int, keys: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((2 * prompts * heads, pixels, keys), generator=generator).softmax(dim=-1)


def test_controller_edits_only_the_conditional_edit_rows_in_their_window():
    heads, latent = 2, 64  # an 8x8 latent: self-attention is replaced at ≤ 2x2 = 4 pixels
    edit = p2p.CrossEdit("replace", torch.eye(77))
    controller = p2p.AttentionController(2, steps=10, latent_pixels=latent, edit=edit,
                                         cross_replace_steps=0.5, self_replace_steps=0.3)
    cross = _probabilities(2, heads, 16, 77)
    controller.step = 4
    out = controller(cross, heads, is_cross=True).reshape(4, heads, 16, 77)
    grouped = cross.reshape(4, heads, 16, 77)
    assert torch.equal(out[:3], grouped[:3])  # uncond halves and the source are untouched
    assert torch.equal(out[3], grouped[2])  # the edit takes the source's map (identity mapper)
    controller.step = 5  # past cross_replace_steps·N
    assert torch.equal(controller(cross, heads, is_cross=True), cross)
    small_self, large_self = _probabilities(2, heads, 4, 4), _probabilities(2, heads, 16, 16)
    controller.step = 2
    out = controller(small_self, heads, is_cross=False).reshape(4, heads, 4, 4)
    assert torch.equal(out[3], small_self.reshape(4, heads, 4, 4)[2])
    assert torch.equal(controller(large_self, heads, is_cross=False), large_self)  # finer layers keep their own
    controller.step = 3
    assert torch.equal(controller(small_self, heads, is_cross=False), small_self)


@pytest.mark.mechanism
def test_store_only_processors_compute_what_the_default_ones_do(base):
    latents = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    text = p2p.encode_text(base, ["a cat", "a dog"])
    with torch.no_grad():
        plain = base.unet(latents, 500, encoder_hidden_states=text).sample
        controller = p2p.AttentionController(1, 1, 256)
        with p2p.controlled_attention(base.unet, controller):
            stored = base.unet(latents, 500, encoder_hidden_states=text).sample
    assert torch.allclose(plain, stored, atol=1e-5)
    assert controller.map_calls > 0


# ---- whole runs -------------------------------------------------------------------------------------

def run(source: str, edited: str, edit: str = "replace", seed: int = 0, **kwargs):
    return run_prompt_to_prompt(source, edited, edit, steps=STEPS, seed=seed, **kwargs)


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_prompt_with_full_cross_replace_gives_the_source_image(seed):
    result = run("a cat riding a bicycle", "a cat riding a bicycle", seed=seed, cross_replace_steps=1.0)
    assert np.abs(pixels(result.source_image) - pixels(result.edited_image)).max() <= 1


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replacing_a_word_changes_the_image(seed):
    result = run("a cat riding a bicycle", "a dog riding a bicycle", seed=seed, cross_replace_steps=1.0)
    assert np.abs(pixels(result.source_image) - pixels(result.edited_image)).mean() > 1.0


@pytest.mark.mechanism
def test_full_cross_replace_gives_the_edit_the_source_attention(base):
    steps = STEPS
    schedule = p2p.DDIMSchedule.for_scheduler(base.scheduler.config, steps)
    x_t = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    replaced = p2p.AttentionController(2, steps, 256, p2p.cross_edit(base.tokenizer, "replace", "a cat", "a dog"),
                                       cross_replace_steps=1.0)
    p2p.sample(base, ["a cat", "a dog"], x_t, schedule, controller=replaced)
    maps = replaced.token_maps()
    assert torch.allclose(maps[0], maps[1], atol=1e-6)
    free = p2p.AttentionController(2, steps, 256, p2p.cross_edit(base.tokenizer, "replace", "a cat", "a dog"),
                                   cross_replace_steps=0.0, self_replace_steps=0.0)
    p2p.sample(base, ["a cat", "a dog"], x_t, schedule, controller=free)
    assert not torch.allclose(free.token_maps()[0], free.token_maps()[1], atol=1e-4)


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 1])
def test_reweight_by_one_is_no_reweight_and_other_weights_change_the_edit(seed):
    prompt = "a fluffy cat"
    plain = run(prompt, prompt, "refine", seed=seed)
    one = run(prompt, prompt, "reweight", seed=seed, word="fluffy", weight=1.0)
    five = run(prompt, prompt, "reweight", seed=seed, word="fluffy", weight=5.0)
    assert np.array_equal(pixels(plain.edited_image), pixels(one.edited_image))
    assert np.abs(pixels(five.edited_image) - pixels(plain.edited_image)).mean() > 0.5


def test_the_shared_base_is_the_same_after_a_run(base):
    def plain_sd():
        return base("a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    output_type="np").images[0]

    processors = dict(base.unet.attn_processors)
    before = plain_sd()
    run("a cat riding a bicycle", "a dog riding a bicycle")
    assert dict(base.unet.attn_processors) == processors
    assert np.array_equal(before, plain_sd())
    assert all(parameter.grad is None for parameter in base.unet.parameters())


def test_processors_are_restored_when_a_run_fails(base):
    processors = dict(base.unet.attn_processors)
    with pytest.raises(RuntimeError):
        with p2p.controlled_attention(base.unet, p2p.AttentionController(1, 1, 256)):
            raise RuntimeError("interrupted")
    assert dict(base.unet.attn_processors) == processors


@pytest.mark.parametrize("arguments, message", [
    (("a cat riding", "a big dog riding"), "refine"),
    (("", "a dog"), "prompt"),
    (("a cat", "x" * 10_000), "characters"),
    (("a fluffy cat", "a fluffy cat", "reweight"), "not in the edited prompt"),
    (("a cat", "a dog", "swap"), "replace, refine, reweight"),
])
def test_bad_input_is_refused_with_what_to_do(arguments, message):
    with pytest.raises(UserError, match=message):
        run_prompt_to_prompt(*arguments, steps=STEPS)


def test_bad_numbers_are_refused():
    with pytest.raises(UserError, match="Cross-attention"):
        run_prompt_to_prompt("a cat", "a dog", cross_replace_steps=1.5)
    with pytest.raises(UserError, match="photo"):
        run_prompt_to_prompt("a cat", "a dog", photo=Image.new("RGB", (1, 1)))


# ---- DDIM and null-text inversion ---------------------------------------------------------------

def test_ddim_step_is_diffusers_ddim_and_inversion_undoes_it(base):
    from diffusers import DDIMScheduler

    schedule = p2p.DDIMSchedule.for_scheduler(base.scheduler.config, 10)
    scheduler = DDIMScheduler.from_config(base.scheduler.config, clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    latent, noise = torch.randn((1, 4, 8, 8), generator=generator), torch.randn((1, 4, 8, 8), generator=generator)
    for timestep in schedule.timesteps:
        expected = scheduler.step(noise, timestep, latent).prev_sample
        assert torch.allclose(schedule.step(noise, timestep, latent), expected, atol=1e-5)
        back = schedule.move(noise, schedule.step(noise, timestep, latent), timestep - schedule.stride, timestep)
        assert torch.allclose(back, latent, atol=1e-4)


def test_learning_rate_and_early_stop_follow_the_notebook():
    assert nti.learning_rate(0) == pytest.approx(1e-2) and nti.learning_rate(49) == pytest.approx(1e-2 * 0.51)
    assert nti.early_stop_threshold(0) == pytest.approx(1e-5)
    assert nti.early_stop_threshold(10) == pytest.approx(1e-5 + 10 * 2e-5)


@pytest.mark.mechanism
@pytest.mark.parametrize("photo, prompt", [("chelsea.jpg", "a cat"), ("coffee.jpg", "a cup of coffee"),
                                           ("astronaut.jpg", "an astronaut")])
def test_optimised_null_embeddings_reconstruct_better_than_plain_ddim_inversion(base, photo, prompt):
    inversion = nti.invert(base, Image.open(ASSETS / photo), prompt, steps=3, inner_steps=10)
    before, after = inversion.latent_error["DDIM inversion"], inversion.latent_error["null-text inversion"]
    assert after < 0.85 * before, (before, after)  # measured 25-31 % lower on the tiny model (4 photos)
    assert all(len(step) <= 10 for step in inversion.losses)
    assert inversion.unet_calls["null-text optimisation"] == 3 + inversion.iterations + 3
    assert set(inversion.psnr) == {"VAE round trip", "DDIM inversion", "null-text inversion"}


def test_each_null_embedding_is_fitted_to_the_next_point_of_the_inversion_trajectory(base, monkeypatch):
    """Step i (from z*_T down) optimises ∅_i so that the guided DDIM step lands on z*_{T−i−1}: the loss
    compares with exactly that latent of the trajectory, never its neighbour (a trace of the targets)."""
    import types

    targets = []

    def mse_loss(prediction, target):
        targets.append(target.detach().clone())
        return torch.nn.functional.mse_loss(prediction, target)

    steps = 3
    schedule = p2p.DDIMSchedule.for_scheduler(base.scheduler.config, steps)
    conditional = nti.encode_text(base, ["a cat"]).to(base.unet.dtype)
    photo = nti.square_photo(Image.open(ASSETS / "chelsea.jpg").convert("RGB"), nti.model_side(base))
    trajectory = nti.ddim_inversion(base.unet, nti.encode_image(base, photo), conditional, schedule)
    monkeypatch.setattr(nti, "F", types.SimpleNamespace(mse_loss=mse_loss))
    nti.null_optimization(base.unet, trajectory, conditional, nti.encode_text(base, [""]), schedule,
                          inner_steps=2, epsilon=-1.0)  # a threshold below 0: both inner updates always run
    assert len(targets) == 2 * steps
    for index in range(steps):
        for target in targets[2 * index: 2 * index + 2]:
            assert torch.equal(target, trajectory[steps - index - 1].float()), f"step {index} fitted elsewhere"
    assert not any(torch.equal(targets[0], targets[2 * index]) for index in (1, 2))  # three distinct latents


@pytest.mark.mechanism
def test_no_optimisation_is_plain_ddim_inversion(base):
    inversion = nti.invert(base, Image.open(ASSETS / "chelsea.jpg"), "a cat", steps=3, inner_steps=0)
    assert inversion.latent_error["DDIM inversion"] == inversion.latent_error["null-text inversion"]


def test_inversion_is_cached_per_photo_prompt_and_steps(base):
    photo = Image.open(ASSETS / "rocket.jpg")
    first = nti.invert(base, photo, "a rocket", steps=2, inner_steps=2)
    calls = []
    hook = base.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        again = nti.invert(base, photo.copy(), "a rocket", steps=2, inner_steps=2)
    finally:
        hook.remove()
    assert again is first and not calls
    assert nti.invert(base, photo, "a rocket launch", steps=2, inner_steps=2) is not first


def test_an_edit_of_a_photo_starts_from_its_inversion():
    photo = Image.open(ASSETS / "chelsea.jpg")
    result = run("a cat", "a cat", photo=photo, cross_replace_steps=1.0, inner_steps=2)
    reconstruction = result.inversion.reconstructions["null-text inversion"]
    assert np.abs(pixels(result.source_image) - pixels(reconstruction)).max() <= 1
    assert result.source_image.size == result.inversion.image.size


# ---- side by side -----------------------------------------------------------------------------------

def test_the_side_by_side_preset_runs_all_three_methods():
    plan = load_preset("one-photo-one-edit-three-methods")
    assert len(plan.methods) == 3 and plan.inputs["mask"].size == plan.inputs["image"].size
    plan.sweep, plan.values = "steps", [2]
    grid = compare_grid(plan)
    assert [cell.error for row in grid for cell in row] == ["", "", ""]
    assert all(row[0].output.image is not None for row in grid)


# ---- the start and end tokens' maps beside the words' ---------------------------------------------------

@pytest.fixture(scope="module")
def run_and_store():
    """A short run, and the maps its controller returned (`token_maps` spied on)."""
    stored = []
    real_token_maps = p2p.AttentionController.token_maps
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(p2p.AttentionController, "token_maps", lambda self: stored.append(real_token_maps(self)) or stored[-1])
        result = run("a cat riding", "a dog riding")
    return result, stored


def test_start_and_end_token_maps_are_listed_when_asked_and_come_from_the_controllers_store(run_and_store, base):
    """With the toggle on, the strip shows position 0 (<|startoftext|>) before the words and the first end
    position after them, labelled with the tokenizer's own tokens; the heat of each tile is the controller's
    stored map at that position. Off, only the words (the strip of the default run)."""
    from demos.tabs.prompt_to_prompt import map_views, shown_tokens, token_panels

    result, stored = run_and_store
    (maps,) = stored
    assert torch.equal(result.token_maps, maps.cpu())
    source, edited = result.parameters["source_prompt"], result.parameters["edited_prompt"]
    for index, prompt in enumerate((source, edited)):
        ids = base.tokenizer(prompt).input_ids
        end = len(ids) - 1
        words = [(position, base.tokenizer.convert_ids_to_tokens(ids[position]).replace("</w>", ""))
                 for position in range(1, end)]
        assert shown_tokens(result.tokens[index], special=False) == words
        on = shown_tokens(result.tokens[index], special=True)
        assert on == [(0, "<|startoftext|>"), *words, (end, "<|endoftext|>")]
        assert ids[end] == base.tokenizer.eos_token_id and base.tokenizer.convert_ids_to_tokens(ids[0]) == "<|startoftext|>"
        for position, _ in on:  # each tile's heat is the stored attention at its token position
            assert torch.equal(result.token_maps[index][..., position], maps[index][..., position].cpu())
    off_views, on_views = map_views(result, special=False), map_views(result, special=True)
    for index, (image, title) in enumerate([(result.source_image, f"source: {source}"), (result.edited_image, f"edit: {edited}")]):
        expected = token_panels(maps[index].cpu(), result.tokens[index], image, title, special=True)
        assert np.array_equal(np.asarray(on_views[index]), np.asarray(expected))
    assert np.array_equal(np.asarray(off_views[0]), np.asarray(result.source_maps))
    assert on_views[0].width == off_views[0].width + 2 * 96
    # the start tile is the stored position-0 map: drawing a strip from a map that is 0 there changes only it
    blanked = result.token_maps[0].clone()
    blanked[..., 0] = 0
    image = result.source_image
    changed = np.asarray(token_panels(blanked, result.tokens[0], image, "t", True)) != np.asarray(
        token_panels(result.token_maps[0], result.tokens[0], image, "t", True))
    assert changed[36:, :96].any() and not changed[36:, 96:].any()


def test_the_tab_shows_the_start_and_end_tokens_by_default_and_the_toggle_redraws_without_a_run(run_and_store):
    from demos.tabs import prompt_to_prompt as tab_module
    from tests.spies import built_tab, event

    tab = built_tab(tab_module)
    toggle = next(block for block in tab.blocks.values() if getattr(block, "label", "") == "Show start/end tokens")
    assert toggle.value is True
    redraw = next(fn for fn in tab.fns.values() if toggle in fn.inputs and fn.api_name != "prompt_to_prompt")
    result, _ = run_and_store
    on, off = redraw.fn(result, True), redraw.fn(result, False)
    assert np.array_equal(np.asarray(off[1]), np.asarray(result.edited_maps))
    assert on[0].width == result.source_maps.width + 2 * 96
    assert list(event(tab, "prompt_to_prompt").inputs)[-1] is toggle
