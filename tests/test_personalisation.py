"""Personalisation tab (tiny profile): each method attaches to the shared SD-1.5 base only for its run,
changes exactly what its paper says it changes (one embedding row; low-rank attention updates;
cross-attention K/V), and leaves plain SD bit-identical afterwards. Tiny weights are random: the tests
assert properties of the mechanism, never what a picture looks like."""
from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import models
from demos.tabs import compare
from demos.tabs.personalisation import (
    METHODS, PLAIN_SUBJECT, UPLOADED, Attachment, active_state, attached, concept_attachment, concept_footprint,
    filled, generate, run_all_methods, run_personalisation, run_training, sampling_pipeline, unet_prefixed,
)
from demos.shared.inputs import rgb_image
from models.pipelines.personalisation_training import pixels as training_pixels, save_weights
from tests.conftest import ROOT
from models import UserError
from models.personalisation import (
    CONCEPTS, CUSTOM_DIFFUSION, CUSTOM_DIFFUSION_FILE, DREAMBOOTH_LORA, STYLE_LORA, TEXTUAL_INVERSION,
)
from models.stable_diffusion import SD15
from tests.spies import step_inputs

PROMPT = "a photo of {} on the beach"
STEPS, SIDE = 2, 64


@pytest.fixture(scope="module")
def pipe():
    return sampling_pipeline(models.get(SD15))


def plain(pipe, seed=0, prompt=PROMPT):
    return generate(pipe, filled(prompt, PLAIN_SUBJECT), seed, STEPS, 7.5, SIDE).latent


def distance(a, b) -> float:
    return float((a - b).norm())


@pytest.mark.mechanism
@pytest.mark.parametrize("method", [m for m in METHODS if m != "plain SD"])
def test_plain_sd_is_identical_before_and_after_each_method(pipe, method):
    state = active_state(pipe)
    words = pipe.tokenizer("a photo of a cat").input_ids
    read_back = pipe.tokenizer.decode(words)
    before = plain(pipe, seed=3)
    result = run_personalisation(PROMPT, method, 1.0, 0.5, seed=3, steps=STEPS, resolution=SIDE)
    assert result.latent_distance > 0.01  # the method did change the picture while attached
    torch.testing.assert_close(plain(pipe, seed=3), before, rtol=0, atol=0)
    assert active_state(pipe) == state  # no adapter, processor or token left behind
    assert pipe.tokenizer.decode(words) == read_back  # and the shared tokenizer still reads words back


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lora_weight_zero_is_plain_sd_and_half_lies_between(pipe, seed):
    base = generate(pipe, "a red cube", seed, STEPS, 7.5, SIDE).latent
    latents = {}
    for weight in (0.0, 0.5, 1.0):
        with attached(pipe, concept_attachment(STYLE_LORA, weight)):
            latents[weight] = generate(pipe, "a red cube", seed, STEPS, 7.5, SIDE).latent
    assert torch.equal(latents[0.0], base)
    half, full = distance(latents[0.5], base), distance(latents[1.0], base)
    assert 0 < half < full
    assert distance(latents[0.5], latents[1.0]) < full  # between the two ends, not beside them


@pytest.mark.mechanism
def test_two_loras_mix_with_set_adapters(pipe):
    attachment = concept_attachment(STYLE_LORA, 1.0)
    attachment.loras.update(concept_attachment(DREAMBOOTH_LORA, 0.0).loras)
    with attached(pipe, attachment):
        assert active_state(pipe)["adapters"] == sorted([STYLE_LORA, DREAMBOOTH_LORA])
        style_only = generate(pipe, "a red cube", 0, STEPS, 7.5, SIDE).latent
        pipe.set_adapters([STYLE_LORA, DREAMBOOTH_LORA], [1.0, 1.0])
        mixed = generate(pipe, "a red cube", 0, STEPS, 7.5, SIDE).latent
    with attached(pipe, concept_attachment(STYLE_LORA, 1.0)):
        assert torch.equal(generate(pipe, "a red cube", 0, STEPS, 7.5, SIDE).latent, style_only)
    assert distance(mixed, style_only) > 0.01


@pytest.mark.mechanism
def test_textual_inversion_adds_the_files_vector_and_leaves_other_prompts_alone(pipe):
    vector = models.get(TEXTUAL_INVERSION)["learned_embeds.bin"]["<cat-toy>"]
    table_before = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    without_token = plain(pipe, seed=4)
    with attached(pipe, concept_attachment(TEXTUAL_INVERSION)):
        token_id = pipe.tokenizer.convert_tokens_to_ids("<cat-toy>")
        table = pipe.text_encoder.get_input_embeddings().weight
        torch.testing.assert_close(table[token_id], vector.to(table.dtype), rtol=0, atol=0)
        torch.testing.assert_close(table[: len(table_before)], table_before, rtol=0, atol=0)  # other rows untouched
        assert torch.equal(plain(pipe, seed=4), without_token)
        with_token = generate(pipe, filled(PROMPT, "a <cat-toy> toy"), 4, STEPS, 7.5, SIDE).latent
    assert distance(with_token, without_token) > 0.01
    assert "<cat-toy>" not in pipe.tokenizer.get_added_vocab()
    assert pipe.text_encoder.get_input_embeddings().weight.shape == table_before.shape


def effective_attention_weights(unet) -> dict[str, torch.Tensor]:
    """Every attention projection weight the UNet computes with: a Custom Diffusion processor's own
    K/V replace the layer's."""
    weights = {}
    for name, processor in unet.attn_processors.items():
        attention = unet.get_submodule(name.rsplit(".", 1)[0])
        for projection in ("to_q", "to_k", "to_v"):
            own = getattr(processor, f"{projection}_custom_diffusion", None)
            weights[f"{name}.{projection}"] = (own or getattr(attention, projection)).weight.detach().clone()
        weights[f"{name}.to_out"] = attention.to_out[0].weight.detach().clone()
    return weights


@pytest.mark.mechanism
def test_custom_diffusion_changes_only_the_cross_attention_keys_and_values(pipe):
    before = effective_attention_weights(pipe.unet)
    others = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    with attached(pipe, concept_attachment(CUSTOM_DIFFUSION)):
        during = effective_attention_weights(pipe.unet)
        assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"CustomDiffusionAttnProcessor"}
    changed = sorted(k for k in before if not torch.equal(before[k], during[k]))
    cross_layers = [n for n in before if n.endswith("attn2.processor.to_k")]
    assert len(changed) == 2 * len(cross_layers) > 0
    assert all(".attn2.processor.to_k" in k or ".attn2.processor.to_v" in k for k in changed)
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in others.items())  # the base's own weights


def test_custom_diffusion_holds_the_shared_unets_attention_from_other_runs_while_attached(pipe):
    """Another tab's run that swaps attention processors (prompt-to-prompt, layout guidance) must wait for
    Custom Diffusion's to end, not replace its processors halfway through; LoRA and tokens need no hold."""
    from models.stable_diffusion import _PROCESSOR_SWAP

    with attached(pipe, concept_attachment(STYLE_LORA, 1.0)):
        assert not _PROCESSOR_SWAP.locked()
    with attached(pipe, concept_attachment(CUSTOM_DIFFUSION)):
        assert _PROCESSOR_SWAP.locked()
    assert not _PROCESSOR_SWAP.locked()
    assert active_state(pipe)["processors"] == ["AttnProcessor2_0"]


@pytest.mark.mechanism
def test_custom_diffusion_with_the_bases_own_keys_and_values_reproduces_plain_sd(pipe):
    """The processor replaces K/V by its copies: copies of the base's K/V must give the base's output."""
    weights = dict(models.get(CUSTOM_DIFFUSION)[CUSTOM_DIFFUSION_FILE])
    for key in [k for k in weights if isinstance(weights[k], torch.Tensor)]:
        layer, projection = key.split(".processor.")
        weights[key] = getattr(pipe.unet.get_submodule(layer), projection.split("_custom")[0]).weight.detach().clone()
    base = plain(pipe, seed=6)
    with attached(pipe, Attachment(attention=weights)):
        assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"CustomDiffusionAttnProcessor"}
        torch.testing.assert_close(plain(pipe, seed=6), base, rtol=1e-4, atol=1e-5)


def test_footprints_count_what_each_method_adds():
    width = models.get(SD15).text_encoder.config.hidden_size
    ti, lora, dreambooth, custom = (concept_footprint(name) for name in (TEXTUAL_INVERSION, STYLE_LORA,
                                                                         DREAMBOOTH_LORA, CUSTOM_DIFFUSION))
    assert ti.parameters == width and ti.per_block["text embedding"] == width
    lora_tensors = models.get(STYLE_LORA)["pytorch_lora_weights.bin"].values()
    assert lora.parameters == sum(t.numel() for t in lora_tensors) and lora.per_block["text embedding"] == 0
    kv = [t for t in models.get(CUSTOM_DIFFUSION)[CUSTOM_DIFFUSION_FILE].values() if isinstance(t, torch.Tensor)]
    assert custom.parameters == sum(t.numel() for t in kv) + 2 * width  # K/V copies + two token rows
    # A token file of Custom Diffusion carries the whole table it was sliced from: bigger than its one row.
    assert custom.file_bytes > 4 * sum(t.numel() for t in kv)
    assert ti.file_bytes < lora.file_bytes and dreambooth.parameters == lora.parameters


def test_all_methods_share_the_prompt_and_seed():
    result = run_all_methods(PROMPT, seed=1, steps=STEPS, resolution=SIDE)
    assert len(result.images) == 7 and result.chart.size[0] > 300
    captions = [caption for _, caption in result.images]
    assert all(caption.endswith("on the beach") for caption in captions)
    pixels = [np.asarray(image, dtype=np.int16) for image, _ in result.images]
    assert np.array_equal(pixels[0], pixels[2])  # the style LoRA at weight 0 is plain SD
    assert not np.array_equal(pixels[2], pixels[4])


def test_the_tab_registers_its_methods_in_compare():
    names = {m.name for m in compare.all_methods()}
    assert {"SD-1.5 + textual inversion <cat-toy>", "SD-1.5 + LoRA (weight 0.5)",
            "SD-1.5 + Custom Diffusion <new1> <new2>"} <= names


def test_every_heavy_event_of_the_tab_waits_in_the_one_gpu_queue():
    """Two users' runs cannot interleave on the shared base: every public event of the tab shares the
    GPU queue with concurrency 1 (so one run's adapters are gone before the next one attaches its own)."""
    import app
    from demos import DEMOS

    demo = next(d for d in DEMOS if d.module == "demos.tabs.personalisation")
    blocks = app.build_app([demo])
    public = [fn for fn in blocks.fns.values() if fn.api_visibility == "public" and fn.api_name.startswith("personalis")]
    assert {fn.api_name for fn in public} >= {"personalise", "personalise_all"}
    assert all(fn.concurrency_id == app.GPU_QUEUE and fn.concurrency_limit == 1 for fn in public)


def save_lora_for(tmp_path, cross_attention_dim: int):
    """A LoRA saved by diffusers for a UNet of SD-1.5's tiny shape but another text width (another base)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from models.stable_diffusion import tiny_unet_config

    unet = UNet2DConditionModel(**tiny_unet_config(cross_attention_dim=cross_attention_dim))
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_k", "to_v"]))
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name="other.safetensors")
    return str(tmp_path / "other.safetensors")


@pytest.mark.parametrize("call, message", [
    (lambda: run_personalisation("", "LoRA"), "Please enter a prompt"),
    (lambda: run_personalisation(PROMPT, "fine-tuning"), "Unknown method"),
    (lambda: run_personalisation(PROMPT, "LoRA", lora_weight=3), "between 0 and 1.5"),
    (lambda: run_personalisation(PROMPT, "LoRA", steps=10_000), "between 1 and"),
    (lambda: run_personalisation(PROMPT, "LoRA", resolution=100), "multiple of 8"),
    (lambda: run_personalisation(PROMPT, UPLOADED), "Upload a .safetensors"),
])
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_a_lora_for_another_base_is_refused_naming_the_mismatch(tmp_path):
    path = save_lora_for(tmp_path, cross_attention_dim=64)
    with pytest.raises(UserError, match=r"another base model: `.*attn2\.to_k` of the unet has 32 features here but 64"):
        run_personalisation(PROMPT, UPLOADED, uploaded=path, steps=STEPS, resolution=SIDE)
    assert active_state(models.get(SD15))["adapters"] == []


def test_a_non_weights_upload_is_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="Could not read"):
        run_personalisation(PROMPT, UPLOADED, uploaded=str(junk))


def test_old_lora_files_get_the_unet_prefix():
    state = models.get(DREAMBOOTH_LORA)["pytorch_lora_weights.bin"]
    assert all(key.startswith("unet.") for key in unet_prefixed(state))
    assert CONCEPTS[DREAMBOOTH_LORA].subject in filled("{}", CONCEPTS[DREAMBOOTH_LORA].subject)


# ---- training ----------------------------------------------------------------------------------

PHOTOS = [str(ROOT / "assets" / name) for name in ("chelsea.jpg", "reference_cat.jpg")]
TRAINING = {"textual inversion": (0.1, ""), "LoRA": (1e-2, "<my-concept> toy")}  # learning rate, subject for {}


def base_snapshot() -> dict[str, torch.Tensor]:
    """The base's weights by module path (a deleted peft adapter leaves its wrapper: `to_q.base_layer.weight`)."""
    base = models.get(SD15)
    return {f"{name}.{key.replace('.base_layer', '')}": tensor.clone() for name in ("unet", "text_encoder")
            for key, tensor in getattr(base, name).state_dict().items()}


@pytest.mark.mechanism
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", list(TRAINING))
def test_training_lowers_the_loss_and_its_file_reproduces_the_in_memory_result(method, seed, tmp_path):
    learning_rate, subject = TRAINING[method]
    base = models.get(SD15)
    before, flags = base_snapshot(), [p.requires_grad for p in base.unet.parameters()]
    state = active_state(base)
    updates = list(run_training(PHOTOS, method, steps=30, learning_rate=learning_rate, seed=seed, sample_every=15,
                                resolution=SIDE, sample_steps=STEPS))
    last = updates[-1]
    probes = [loss for _, loss in last.probe_losses]
    assert [step for step, _ in last.probe_losses] == [0, 15, 30] and probes[-1] < probes[0]  # same noise draws
    if method == "LoRA":  # TI's one vector moves the loss less than its per-step noise (see the README)
        fifth = len(last.losses) // 5
        assert np.mean(last.losses[-fifth:]) < np.mean(last.losses[:fifth])
    assert [caption for _, caption in last.samples] == ["step 15", "step 30"] and last.done
    # Training attached to the shared base and took everything away again.
    assert active_state(base) == state and [p.requires_grad for p in base.unet.parameters()] == flags
    after = base_snapshot()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # The downloaded file, loaded back, gives the picture the in-memory weights gave (same prompt and seed).
    path = save_weights(method, last.weights, tmp_path)
    again = run_personalisation("a photo of a {}", UPLOADED, 1.0, 0.0, seed=seed, steps=STEPS, resolution=SIDE,
                                uploaded=str(path), uploaded_token=subject)
    assert again.prompt == last.sample_prompt
    difference = np.abs(np.asarray(again.image, np.int16) - np.asarray(last.samples[-1][0], np.int16))
    assert difference.max() <= 1


@pytest.mark.mechanism
def test_lora_training_changes_only_lora_parameters_and_textual_inversion_only_its_vector():
    tokenizer = models.get(SD15).tokenizer
    words = tokenizer("a photo of a cat").input_ids
    read_back, vocabulary = tokenizer.decode(words), len(tokenizer)
    ti = list(run_training(PHOTOS[:1], "textual inversion", steps=2, seed=1, sample_every=2, resolution=SIDE,
                           sample_steps=1))[-1]
    assert len(tokenizer) == vocabulary and tokenizer.decode(words) == read_back  # the shared tokenizer as it was
    width = models.get(SD15).text_encoder.config.hidden_size
    assert list(ti.weights) == ["<my-concept>"] and ti.weights["<my-concept>"].shape == (1, width)
    lora = list(run_training(PHOTOS[:1], "LoRA", steps=2, rank=3, seed=1, sample_every=2, resolution=SIDE,
                             sample_steps=1))[-1]
    assert all(".lora." in key and key.startswith("unet.") for key in lora.weights)
    assert {min(t.shape) for t in lora.weights.values()} == {3}  # rank 3: every factor has a side of 3


@pytest.mark.parametrize("call, message", [
    (lambda: next(run_training([], "LoRA")), "Upload 3 to 10 photos"),
    (lambda: next(run_training(None, "LoRA")), "Upload 3 to 10 photos"),
    (lambda: next(run_training([str(ROOT / "README.md")], "LoRA")), "Could not read training photo 1"),
    (lambda: next(run_training(PHOTOS, "LoRA", steps=100_000)), "step budget must be between 1 and"),
    (lambda: next(run_training(PHOTOS * 6, "LoRA")), "At most"),
    (lambda: next(run_training(PHOTOS, "DreamBooth")), "Unknown training method"),
    (lambda: next(run_training(PHOTOS, "textual inversion", token="a")), "already a word"),
    (lambda: next(run_training(PHOTOS, "LoRA", token="two words")), "one word without spaces"),
])
def test_bad_training_input_is_refused_with_a_message(call, message):
    with pytest.raises(UserError, match=message):
        call()


# ---- every control of the tab reaches the computation ---------------------------------------------
# Each control varied with everything else fixed, traced where it acts: what the shared UNet is called
# with (latents, timesteps, text, the LoRA weights its layers apply, its attention processors, the token
# rows of the text encoder), the ε̂ each DDIM step takes, what the VAE encodes and what training optimises.

def lora_weights_in_use(unet) -> set[tuple[str, float]]:
    """(adapter, weight) of every adapter the UNet's LoRA layers apply: scaling / (α/r), as `set_adapters` set it."""
    from peft.tuners.lora import LoraLayer

    return {(adapter, round(layer.scaling[adapter] * layer.r[adapter] / layer.lora_alpha[adapter], 6))
            for layer in unet.modules() if isinstance(layer, LoraLayer) and not layer.disable_adapters
            for adapter in layer.active_adapters if adapter in layer.scaling}


@pytest.fixture
def resident(monkeypatch):
    """No model is unloaded during the test (the cache keeps 4 by default; each concept's files count as one):
    the handles a test hooks are the ones the run uses."""
    monkeypatch.setattr(models.model_settings, "max_loaded_models", 0)
    return models.get(SD15)


@pytest.fixture
def unet_runs(resident):
    """Every call of the shared UNet during the test: latents, timestep, text embeddings, ε output, the LoRA
    weights and attention processors it runs with, and the added tokens' embedding rows at that moment."""
    base = resident
    calls: list[SimpleNamespace] = []

    def record(module, args, kwargs, output):
        table = base.text_encoder.get_input_embeddings().weight
        calls.append(SimpleNamespace(
            latents=args[0].detach().clone(), t=args[1], text=kwargs["encoder_hidden_states"].detach().clone(),
            eps=(output[0] if isinstance(output, tuple) else output.sample).detach().clone(),
            loras=lora_weights_in_use(module), processors={type(p).__name__ for p in module.attn_processors.values()},
            tokens={token: table[index].detach().clone() for token, index in base.tokenizer.get_added_vocab().items()}))

    hook = base.unet.register_forward_hook(record, with_kwargs=True)
    yield calls
    hook.remove()


@pytest.fixture
def ddim_inputs(monkeypatch):
    """The ε̂ each DDIM step of a generation is taken with (after classifier-free guidance)."""
    from diffusers import DDIMScheduler

    return step_inputs(monkeypatch, DDIMScheduler)


def ddim_timesteps(steps: int) -> list[int]:
    from diffusers import DDIMScheduler

    schedule = DDIMScheduler.from_config(models.get(SD15).scheduler.config)
    schedule.set_timesteps(steps)
    return [int(t) for t in schedule.timesteps]


def start_noise(seed: int, side: int) -> torch.Tensor:
    """z_T of a generation at `seed` (DDIM's initial σ is 1)."""
    channels = models.get(SD15).unet.config.in_channels
    return torch.randn((1, channels, side // 8, side // 8), generator=torch.Generator().manual_seed(seed))


def assert_sampled_with(calls, eps_inputs, steps: int, side: int, seed: int, guidance: float, pictures: int) -> None:
    """`pictures` generations of `steps` DDIM steps at `side` pixels, each from ε(seed), each step's ε̂ the
    classifier-free combination ε_u + w·(ε_c − ε_u) of its UNet output (w ≤ 1: the conditional ε alone)."""
    assert [int(call.t) for call in calls] == ddim_timesteps(steps) * pictures
    assert all(torch.equal(call.latents[:1], start_noise(seed, side)) for call in calls[::steps])
    assert len(eps_inputs) == len(calls)
    for call, eps in zip(calls, eps_inputs):
        if guidance <= 1:
            assert call.latents.shape[0] == 1 and torch.equal(eps, call.eps)
        else:
            uncond, cond = call.eps.chunk(2)
            torch.testing.assert_close(eps, uncond + guidance * (cond - uncond))


SAMPLING = [(2, 2 * SIDE, 5, 3.0), (1, SIDE, 0, 1.0)]  # steps, resolution, seed, guidance: two values of each


@pytest.mark.parametrize("steps, side, seed, guidance", SAMPLING)
def test_steps_resolution_seed_and_guidance_set_how_both_pictures_are_sampled(unet_runs, ddim_inputs, steps, side,
                                                                              seed, guidance):
    result = run_personalisation(PROMPT, "LoRA", 1.0, 0.0, seed, steps, guidance, side)
    assert_sampled_with(unet_runs, ddim_inputs, steps, side, seed, guidance, pictures=2)  # plain SD and the method
    assert result.plain.size == result.image.size == (side, side) and result.seed == seed


@pytest.mark.parametrize("steps, side, seed, guidance", SAMPLING)
def test_run_every_method_takes_the_same_steps_resolution_seed_and_guidance(unet_runs, ddim_inputs, steps, side, seed,
                                                                            guidance):
    """"All methods, one prompt" samples with One method's steps, guidance and resolution and its own seed."""
    result = run_all_methods(PROMPT, seed, steps, guidance, side)
    assert_sampled_with(unet_runs, ddim_inputs, steps, side, seed, guidance, pictures=7)
    assert all(image.size == (side, side) for image, _ in result.images) and result.seed == seed


def test_the_prompt_template_reaches_the_text_encoder_with_each_pictures_subject(resident, unet_runs):
    """`{}` is filled with "a cat" for plain SD and with the method's subject for the other picture: the UNet
    is conditioned on exactly those prompts (and the empty one of classifier-free guidance)."""
    pipe = sampling_pipeline(resident)
    conditions = []
    for template in (PROMPT, "{} in the snow"):
        unet_runs.clear()
        run_personalisation(template, "LoRA", seed=0, steps=1, resolution=SIDE)
        for call, subject in zip(unet_runs, (PLAIN_SUBJECT, CONCEPTS[STYLE_LORA].subject)):
            with torch.no_grad():
                cond, uncond = pipe.encode_prompt(filled(template, subject), pipe.device, 1, True, "")
            assert torch.equal(call.text, torch.cat([uncond, cond]))
        conditions.append(unet_runs[0].text)
    assert not torch.equal(*conditions)


@pytest.mark.parametrize("method, lora_weight, dreambooth_weight, loras, concept", [
    ("plain SD", 1.0, 0.7, set(), None),
    ("LoRA", 1.0, 0.0, {(STYLE_LORA, 1.0)}, None),
    ("LoRA", 0.5, 0.0, {(STYLE_LORA, 0.5)}, None),
    ("LoRA", 0.5, 0.7, {(STYLE_LORA, 0.5), (DREAMBOOTH_LORA, 0.7)}, None),
    ("DreamBooth-LoRA", 0.8, 0.7, {(DREAMBOOTH_LORA, 0.8)}, None),  # the DreamBooth mix-in is LoRA's only
    ("textual inversion", 1.0, 0.7, set(), TEXTUAL_INVERSION),
    ("Custom Diffusion", 1.0, 0.7, set(), CUSTOM_DIFFUSION),
])
def test_the_method_and_its_weights_are_what_the_unet_runs_with(unet_runs, method, lora_weight, dreambooth_weight,
                                                                loras, concept):
    """While the method's picture is sampled the UNet applies exactly the chosen adapters at the chosen weights
    (read off its LoRA layers), the method's token rows sit in the text encoder and Custom Diffusion's
    processors compute the attention; the plain picture runs with none of it."""
    result = run_personalisation(PROMPT, method, lora_weight, dreambooth_weight, seed=0, steps=1, resolution=SIDE)
    plain_call, method_call = unet_runs
    assert plain_call.loras == set() and method_call.loras == loras
    tokens = concept_attachment(concept).tokens if concept else {}
    added = {token: row for token, row in method_call.tokens.items() if token not in plain_call.tokens}
    assert added.keys() == tokens.keys()
    assert all(torch.equal(added[token], vector.reshape(-1).to(added[token].dtype)) for token, vector in tokens.items())
    custom = concept == CUSTOM_DIFFUSION
    assert method_call.processors == ({"CustomDiffusionAttnProcessor"} if custom else plain_call.processors)
    assert (result.latent_distance == 0) == (method == "plain SD")


@pytest.fixture(scope="module")
def page():
    """The page with this tab alone, as `app.py` builds it (input checks and translation included)."""
    import app
    from demos import DEMOS

    return app.build_app([next(d for d in DEMOS if d.module == "demos.tabs.personalisation")])


@pytest.fixture(scope="module")
def handlers(page):
    """The tab's event handlers by endpoint, as the page wires them."""
    return {fn.api_name: fn.fn for fn in page.fns.values() if fn.api_name}


def test_the_personalise_api_takes_the_upload_as_optional_and_says_what_file_it_wants(page):
    """A script that wants a built-in method sends no file; one that sends an image hears what the file must be."""
    import gradio as gr
    from gradio.data_classes import FileData

    parameters = page.get_api_info()["named_endpoints"]["/personalise"]["parameters"]
    required = [parameter["parameter_name"] for parameter in parameters if not parameter["parameter_has_default"]]
    assert not required and [parameter["parameter_name"] for parameter in parameters][-2:] == ["uploaded",
                                                                                             "uploaded_token"]
    upload = next(fn for fn in page.fns.values() if fn.api_name == "personalise").inputs[-2]
    with pytest.raises(gr.Error) as refused:
        upload.preprocess(FileData(path=str(PHOTOS[0]), orig_name=Path(PHOTOS[0]).name))
    assert refused.value.message == "LoRA or textual inversion: It takes files of these types: .safetensors."


HANDLER_ARGUMENTS = {  # each endpoint's inputs in the order the page sends them, seed and randomize last
    "personalise": (PROMPT, "plain SD", 1.0, 0.0, 1, 7.5, SIDE),  # then the optional upload and its subject
    "personalise_all": (PROMPT, 1, 7.5, SIDE),
    "train_concept": (PHOTOS[:1], "textual inversion", "<my-concept>", "toy", 1, 0, 4, 0, 1, SIDE),
}


@pytest.mark.parametrize("endpoint, randomize", [("personalise", False), ("personalise", True),
                                                 ("personalise_all", True), ("train_concept", True)])
def test_randomize_draws_the_seed_that_each_sub_tab_samples_with_and_shows(handlers, unet_runs, monkeypatch, endpoint,
                                                                           randomize):
    """The three sub-tabs resolve their seed in the handler: with randomize the drawn seed, not the typed
    one, is the one sampled from and written back to the seed box."""
    from demos.shared import generation

    monkeypatch.setattr(generation, "random", random.Random(7))  # resolve_seed's draws, made repeatable
    used = random.Random(7).randint(0, generation.MAX_SEED) if randomize else 9
    outputs = handlers[endpoint](*HANDLER_ARGUMENTS[endpoint], 9, randomize, progress=None)
    last = list(outputs)[-1] if endpoint == "train_concept" else outputs
    assert last[-1] == used and (used != 9) == randomize  # the seed box
    sample = next(call for call in unet_runs if call.latents.shape[0] == 2)  # CFG: a sample, not a training batch
    assert torch.equal(sample.latents[:1], start_noise(used, SIDE))


def trained(**settings):
    """The last update of a one-photo, one-step textual-inversion run at the smallest sizes, `settings` changed."""
    defaults = dict(photos=PHOTOS[:1], method="textual inversion", steps=1, seed=1, sample_every=1, resolution=SIDE,
                    sample_steps=1)
    return list(run_training(**{**defaults, **settings}))[-1]


@pytest.mark.parametrize("class_word, learning_rate", [("toy", 1e-3), ("dog", 1e-2)])
def test_textual_inversion_starts_at_the_class_word_and_steps_by_the_learning_rate(resident, class_word, learning_rate):
    """TI's vector starts at the class word's embedding (the mean over its tokens), and AdamW's first step moves
    each coordinate by lr·|g|/(|g| + ε): by the learning rate wherever the gradient is not vanishingly small."""
    base = resident
    ids = base.tokenizer.encode(class_word, add_special_tokens=False)
    start = base.text_encoder.get_input_embeddings().weight[ids].detach().float().mean(0)
    step = (trained(class_word=class_word, learning_rate=learning_rate).weights["<my-concept>"][0] - start).abs()
    assert step.max() <= learning_rate * (1 + 1e-3)
    assert float(step.median()) == pytest.approx(learning_rate, rel=1e-3)


@pytest.mark.parametrize("token, class_word", [("<my-concept>", "toy"), ("<zz-statue>", "statue")])
@pytest.mark.parametrize("method", list(TRAINING))
def test_the_trigger_word_and_class_are_what_the_text_encoder_reads_while_training(resident, method, token, class_word):
    """Every prompt of the run (training batches, probes, samples) holds the instance words: the new token for
    textual inversion, "token class" for LoRA, as DreamBooth binds a rare word to the class."""
    base = resident
    instance = token if method == "textual inversion" else f"{token} {class_word}"
    rows: list[tuple[list[int], list[int]]] = []

    def read(module, args):  # the instance's ids while its token exists
        wanted = base.tokenizer(instance, add_special_tokens=False).input_ids
        rows.extend((row, wanted) for row in args[0].tolist())

    hook = base.text_encoder.register_forward_pre_hook(read)
    try:
        last = trained(method=method, token=token, class_word=class_word)
    finally:
        hook.remove()
    end = base.tokenizer.eos_token_id
    prompts = [(row, wanted) for row, wanted in rows if row[1] != end]  # not the empty prompt of CFG
    assert prompts and all(any(row[i:i + len(wanted)] == wanted for i in range(len(row))) for row, wanted in prompts)
    assert last.sample_prompt == f"a photo of a {instance}"


def test_prior_preservation_adds_lambda_times_the_class_loss():
    """λ > 0: the frozen model first draws the class, and each step's loss is the instance loss plus λ times
    the loss on those pictures (the same draws at every λ): L(λ) − L(0) is proportional to λ."""
    first = {weight: trained(prior_weight=weight).losses[0] for weight in (0.0, 0.5, 1.0)}
    assert abs(first[0.5] - first[0.0]) > 1e-4
    assert first[1.0] - first[0.0] == pytest.approx(2 * (first[0.5] - first[0.0]), rel=1e-4)


@pytest.mark.parametrize("photos, side", [(PHOTOS[:1], SIDE), (PHOTOS[:1], 2 * SIDE), (PHOTOS[1:], SIDE)])
def test_the_photos_at_the_training_resolution_are_what_the_vae_encodes(resident, photos, side):
    vae = resident.vae
    seen: list[torch.Tensor] = []
    hook = vae.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        last = trained(photos=photos, resolution=side)
    finally:
        hook.remove()
    expected = [training_pixels(rgb_image(photo), side)[None] for photo in photos]
    assert len(seen) == len(expected) and all(torch.equal(a, b.to(a.dtype)) for a, b in zip(seen, expected))
    assert last.samples[-1][0].size == (side, side)


def test_the_training_seed_sets_the_noise_draws_and_the_samples(unet_runs):
    """The seed draws the training noise (the same photo and settings train differently) and the samples."""
    losses = []
    for seed in (1, 2):
        unet_runs.clear()
        last = trained(seed=seed)
        sample = next(call for call in unet_runs if call.latents.shape[0] == 2)  # CFG: the sample, not a batch
        assert torch.equal(sample.latents[:1], start_noise(seed, SIDE)) and last.seed == seed
        losses.append(last.losses + [loss for _, loss in last.probe_losses])
    assert losses[0] != losses[1]
