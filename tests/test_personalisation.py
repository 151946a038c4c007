"""Personalisation tab (tiny profile): each method attaches to the shared SD-1.5 base only for its run,
changes exactly what its paper says it changes (one embedding row; low-rank attention updates;
cross-attention K/V), and leaves plain SD bit-identical afterwards. Tiny weights are random: the tests
assert properties of the mechanism, never what a picture looks like."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from demos.tabs import compare
from demos.tabs.personalisation import (
    METHODS, PLAIN_SUBJECT, UPLOADED, Attachment, active_state, attached, concept_attachment, concept_footprint,
    filled, generate, run_all_methods, run_personalisation, run_training, sampling_pipeline, unet_prefixed,
)
from models.pipelines.personalisation_training import save_weights
from tests.conftest import ROOT
from models import UserError
from models.personalisation import (
    CONCEPTS, CUSTOM_DIFFUSION, CUSTOM_DIFFUSION_FILE, DREAMBOOTH_LORA, STYLE_LORA, TEXTUAL_INVERSION,
)
from models.stable_diffusion import SD15

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
