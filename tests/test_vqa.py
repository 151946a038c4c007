"""Visual QA on the tiny BLIP-2 and LLaVA models: prompts, generation through the real processors,
streaming, the side-by-side call with one side failing, and bad input."""
from __future__ import annotations

import inspect
import json
import logging
import random
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from PIL import Image

import models
from demos.tabs.vqa import (ASSETS, BLIP2_DECODING, BLIP2_MODELS, COMPARE_METHODS, INSTRUCTBLIP_MODELS, LLAVA_DECODING,
                       LLAVA_MODELS, Decoding, _default_llava, answer_blip2, ask, blip2_prompt,
                       export_conversation, llava_conversation, run_vqa, stream_llava)
from models import ModelUnavailable, UserError
from models.vqa import available_quantizations
from tests.spies import built_tab, event

CAT = Image.open(ASSETS / "chelsea.jpg").convert("RGB")
GREEDY = Decoding(max_new_tokens=12, strategy="greedy")
HISTORY = [{"role": "user", "content": "What animal is this?"}, {"role": "assistant", "content": "A cat."},
           {"role": "user", "content": [{"type": "text", "text": "What color is it?"}]},
           {"role": "assistant", "content": "Orange."}]


def _greedy_reference(handle, prompt: str, max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own processor + generate(), without the demo code: (prompt ids, output ids)."""
    inputs = handle.processor(images=CAT, text=prompt, return_tensors="pt")
    with torch.no_grad():
        output = handle.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    return inputs["input_ids"], output


# ---- prompt builders ----------------------------------------------------------------------------

def test_blip2_prompt_formats():
    assert blip2_prompt("what is the man holding?") == "Question: what is the man holding? Answer:"
    assert blip2_prompt("what is the man holding?", model="blip2-flan-t5-xl") == \
        "Question: what is the man holding? Short answer:"  # LAVIS's prompt for the Flan-T5 models
    assert blip2_prompt("ignored", mode="caption") == ""
    with pytest.raises(UserError, match="Unknown BLIP-2 mode"):
        blip2_prompt("q", mode="poem")


@pytest.mark.parametrize("name, expected", [
    ("llava-1.5-7b", "USER: <image>\nWhat animal is this? ASSISTANT: A cat. USER: What color is it? ASSISTANT: "
                     "Orange. USER: Is it asleep? ASSISTANT:"),
    ("llava-interleave-qwen-0.5b", "<|im_start|>user <image>\nWhat animal is this?<|im_end|><|im_start|>assistant "
                                   "\nA cat.<|im_end|><|im_start|>user \nWhat color is it?<|im_end|>"
                                   "<|im_start|>assistant \nOrange.<|im_end|><|im_start|>user \nIs it asleep?"
                                   "<|im_end|><|im_start|>assistant\n"),
])
def test_llava_chat_template_has_one_image_placeholder_and_turns_in_order(name, expected):
    conversation = llava_conversation(HISTORY, "Is it asleep?")
    assert [turn["role"] for turn in conversation] == ["user", "assistant", "user", "assistant", "user"]
    prompt = models.get(name).processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == expected  # the published checkpoint's template, rendered
    assert prompt.count("<image>") == 1


# ---- generation through the real processors -----------------------------------------------------

@pytest.mark.parametrize("name", BLIP2_MODELS)
def test_blip2_answer_is_transformers_greedy_output_without_the_prompt(name):
    handle = models.get(name)
    result = answer_blip2(CAT, "What animal is this?", "vqa", name, GREEDY)
    sent = "Question: What animal is this? " + ("Short answer:" if "flan-t5" in name else "Answer:")
    prompt_ids, output = _greedy_reference(handle, sent, 12)
    if handle.model.config.is_encoder_decoder:  # T5 decodes from scratch: nothing to cut
        expected = output
    else:  # OPT returns prompt + continuation
        assert torch.equal(output[0, :prompt_ids.shape[1]], prompt_ids[0])
        expected = output[:, prompt_ids.shape[1]:]
    assert result.answer == handle.processor.batch_decode(expected, skip_special_tokens=True)[0].strip()
    assert "Question:" not in result.answer
    assert result.image_tokens == handle.model.config.num_query_tokens == 32
    assert result.prompt == sent
    caption = answer_blip2(CAT, "ignored", "caption", name, GREEDY)
    assert caption.prompt == "" and caption.image_tokens == 32 and caption.prompt_tokens < result.prompt_tokens


@pytest.mark.parametrize("name, image_tokens", [("llava-1.5-7b", 576), ("llava-interleave-qwen-0.5b", 729)])
def test_llava_streams_growing_prefixes_that_join_to_the_greedy_answer(name, image_tokens):
    steps = list(stream_llava(CAT, HISTORY[:2], "What color is it?", name, replace(GREEDY, max_new_tokens=24)))
    partial, final = steps[:-1], steps[-1]
    assert len(partial) >= 2 and not any(step.done for step in partial) and final.done
    texts = [step.answer for step in steps]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert len(set(texts)) >= 2  # it really streamed

    handle = models.get(name)
    prompt_ids, output = _greedy_reference(handle, final.prompt, 24)
    expected = handle.processor.batch_decode(output[:, prompt_ids.shape[1]:], skip_special_tokens=True)[0].strip()
    assert final.answer == expected
    assert final.image_tokens == image_tokens == int((prompt_ids == handle.model.config.image_token_id).sum())
    assert final.new_tokens == output.shape[1] - prompt_ids.shape[1]
    assert "What color is it?" not in final.answer and final.prompt.count("<image>") == 1


def test_llava_beam_search_answers_once_and_sampling_is_reproducible_by_seed():
    (beam,) = list(stream_llava(CAT, [], "Describe it.", LLAVA_MODELS[1], replace(GREEDY, strategy="beam", num_beams=2)))
    assert beam.done and beam.new_tokens > 0
    sample = replace(LLAVA_DECODING, max_new_tokens=10, temperature=1.5, top_p=1.0, seed=7)
    first = list(stream_llava(CAT, [], "Describe it.", LLAVA_MODELS[1], sample))[-1].answer
    again = list(stream_llava(CAT, [], "Describe it.", LLAVA_MODELS[1], sample))[-1].answer
    assert first == again


def test_decoding_settings_are_checked():
    with pytest.raises(UserError, match="temperature"):
        replace(LLAVA_DECODING, temperature=0).checked()
    with pytest.raises(UserError, match="decoding strategy"):
        replace(BLIP2_DECODING, strategy="nucleus").checked()
    with pytest.raises(UserError, match="max new tokens"):
        replace(BLIP2_DECODING, max_new_tokens=10_000).checked()
    assert BLIP2_DECODING.generate_kwargs() == dict(max_new_tokens=30, repetition_penalty=1.5, do_sample=False,
                                                    num_beams=5)
    assert LLAVA_DECODING.generate_kwargs()["temperature"] == 0.2 and LLAVA_DECODING.generate_kwargs()["top_p"] == 0.7


# ---- InstructBLIP (MiniGPT-4's stand-in), on either side --------------------------------------------

INSTRUCTBLIP = INSTRUCTBLIP_MODELS[0]


def test_instructblip_prompt_is_built_by_its_processor_for_both_tokenizers():
    handle = models.get(INSTRUCTBLIP)
    assert blip2_prompt("What animal is this?", model=INSTRUCTBLIP) == "What animal is this?"  # the instruction
    assert blip2_prompt("ignored", "caption", INSTRUCTBLIP) == "A short image description:"
    inputs = handle.processor(images=CAT, text="What animal is this?", return_tensors="pt")
    ids = inputs["input_ids"][0]
    image_id = handle.model.config.image_token_id
    assert torch.equal(ids[:32], torch.full((32,), image_id))  # 32 query slots come first ...
    assert ids[32] == handle.processor.tokenizer.bos_token_id  # ... then the LLM's own BOS + instruction
    assert int((ids == image_id).sum()) == 32
    # The Q-Former reads the same instruction through its separate BERT tokenizer (no image tokens).
    assert handle.processor.qformer_tokenizer.decode(inputs["qformer_input_ids"][0], skip_special_tokens=True) \
        .replace(" ", "") == "whatanimalisthis?"
    assert handle.processor.tokenizer.decode(ids[33:]) == "What animal is this?"


def test_instructblip_answer_excludes_the_prompt_and_uses_the_instruction():
    handle = models.get(INSTRUCTBLIP)
    result = answer_blip2(CAT, "What animal is this?", "vqa", INSTRUCTBLIP, GREEDY)
    prompt_ids, output = _greedy_reference(handle, "What animal is this?", 12)
    assert torch.equal(output[0, :prompt_ids.shape[1]], prompt_ids[0])  # generate() echoes the prompt ...
    expected = handle.processor.batch_decode(output[:, prompt_ids.shape[1]:], skip_special_tokens=True)[0].strip()
    assert result.answer == expected  # ... which the demo cuts off
    assert result.new_tokens == output.shape[1] - prompt_ids.shape[1]
    assert result.image_tokens == 32 and "MiniGPT-4" in result.mechanism and "32 image tokens" in result.mechanism
    # The Q-Former reads the instruction: another question changes the image tokens' input, not only the text.
    with torch.no_grad():
        features = [handle.model.get_image_features(**{k: v for k, v in handle.processor(
            images=CAT, text=q, return_tensors="pt").items() if k in ("pixel_values", "qformer_input_ids",
                                                                      "qformer_attention_mask")}).pooler_output
            for q in ("What animal is this?", "Describe the colours.")]
    assert not torch.allclose(features[0], features[1])


@pytest.mark.parametrize("left, right", [(INSTRUCTBLIP, LLAVA_MODELS[1]), (BLIP2_MODELS[0], INSTRUCTBLIP)],
                         ids=["left of LLaVA", "right of BLIP-2"])
def test_instructblip_answers_side_by_side_on_either_side(left, right):
    steps = list(run_vqa(CAT, "What animal is this?", HISTORY[:2], blip2_model=left, llava_model=right,
                         blip2_decoding=GREEDY, llava_decoding=replace(GREEDY, max_new_tokens=16)))
    final = steps[-1]
    assert final.blip2.error is None and final.llava.error is None
    assert final.blip2.model == left and final.llava.model == right
    assert final.blip2.image_tokens == 32
    assert final.llava.image_tokens == (32 if right == INSTRUCTBLIP else 729)
    if right == INSTRUCTBLIP:  # one instruction, no chat history, streamed into the chat
        assert final.llava.prompt == "What animal is this?" and len(steps) >= 3
        assert final.history[2:] == [{"role": "user", "content": "What animal is this?"},
                                     {"role": "assistant", "content": final.llava.answer}]
    assert "What animal is this?" not in final.blip2.answer + final.llava.answer


def test_compare_runs_three_vqa_models_from_the_preset():
    from demos.tabs.compare import Plan, compare_grid, load_preset

    plan = load_preset("vqa-three-models")
    assert plan.methods == ["blip2-opt-2.7b", "instructblip-vicuna-7b", "llava-interleave-qwen-0.5b"]
    assert {m.name for m in COMPARE_METHODS} >= set(plan.methods)
    grid = compare_grid(Plan(**{**plan.__dict__, "values": plan.values[:1]}))
    assert len(grid) == 3 and all(not row[0].error for row in grid)
    own = answer_blip2(plan.inputs["image"], plan.values[0], model=INSTRUCTBLIP)
    assert grid[1][0].output.text == own.answer


# ---- side by side ---------------------------------------------------------------------------------

def test_one_call_answers_on_both_sides_and_extends_the_chat():
    steps = list(run_vqa(CAT, "What animal is this?", HISTORY[:2], llava_decoding=replace(GREEDY, max_new_tokens=16)))
    first, final = steps[0], steps[-1]
    assert first.blip2.done and not first.llava.done  # BLIP-2 answers before LLaVA starts streaming
    assert final.blip2.error is None and final.llava.error is None
    assert final.blip2.image_tokens == 32 and final.llava.image_tokens == 576
    assert final.history[:2] == HISTORY[:2]
    assert final.history[2:] == [{"role": "user", "content": "What animal is this?"},
                                 {"role": "assistant", "content": final.llava.answer}]
    assert final.blip2.seconds > 0 and final.llava.seconds > 0


@pytest.mark.parametrize("broken", [BLIP2_MODELS[0], LLAVA_MODELS[0]])
def test_a_model_that_cannot_be_fetched_fails_on_its_side_only(monkeypatch, broken):
    real_get = models.get

    def get(name, progress=None):
        if name == broken:
            raise ModelUnavailable(f"Could not load {name} from the Hugging Face Hub checkpoint (offline)")
        return real_get(name, progress)

    monkeypatch.setattr(models, "get", get)
    result = ask(CAT, "What animal is this?", llava_decoding=replace(GREEDY, max_new_tokens=8))
    failed, answered = (result.blip2, result.llava) if broken in BLIP2_MODELS else (result.llava, result.blip2)
    assert failed.error and f"Could not load {broken}" in failed.error and failed.answer == ""
    assert answered.error is None and answered.done and answered.new_tokens > 0
    if broken in LLAVA_MODELS:  # the failed exchange does not become chat context
        assert result.history == []


def test_quantized_loading_is_refused_clearly_without_bitsandbytes():
    if available_quantizations():
        pytest.skip("bitsandbytes and CUDA are present")
    assert not any(name.endswith(("-8bit", "-4bit")) for name in models.REGISTRY)
    result = ask(CAT, "What is this?", quantization="8-bit", llava_decoding=GREEDY)
    assert "needs a CUDA GPU and the bitsandbytes package" in result.blip2.error
    assert "needs a CUDA GPU and the bitsandbytes package" in result.llava.error


# ---- bad input and privacy ------------------------------------------------------------------------

@pytest.mark.parametrize("image, question, message", [
    (None, "What is this?", "Please provide an image"),
    (CAT, "", "Please type a question"),
    (CAT, "   \n", "Please type a question"),
    (CAT, "why?" * 2500, "10000 characters long; keep it under 2000"),
    (CAT, "What is <image>?", "<image> is where the models put the image"),
], ids=["no image", "empty question", "blank question", "10k-character question", "image placeholder"])
def test_bad_input_is_refused_before_any_model_runs(monkeypatch, image, question, message):
    monkeypatch.setattr(models, "get", lambda *args, **kwargs: pytest.fail("no model should load"))
    with pytest.raises(UserError, match=message):
        ask(image, question)


def test_rgba_is_flattened_onto_white_and_grayscale_is_expanded():
    settings = dict(blip2_decoding=GREEDY, llava_decoding=GREEDY, llava_model=LLAVA_MODELS[1])
    rgba = CAT.convert("RGBA")
    rgba.putalpha(0)
    white = Image.new("RGB", CAT.size, (255, 255, 255))
    assert ask(rgba, "What is this?", **settings).blip2.answer == ask(white, "What is this?", **settings).blip2.answer
    gray = CAT.convert("L")
    from_gray, from_rgb = ask(gray, "What is this?", **settings), ask(gray.convert("RGB"), "What is this?", **settings)
    assert (from_gray.blip2.answer, from_gray.llava.answer) == (from_rgb.blip2.answer, from_rgb.llava.answer)


def test_the_conversation_is_not_logged_and_saved_only_on_request(caplog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    secret = "Is my passport number 12345 visible?"
    result = ask(CAT, secret, llava_decoding=replace(GREEDY, max_new_tokens=4))
    assert secret not in caplog.text and list(tmp_path.iterdir()) == []
    saved = json.loads(open(export_conversation(result.history, {"answer": result.blip2.answer})).read())
    assert saved["llava_chat"][0] == {"role": "user", "content": secret}


def test_both_models_answer_through_the_api(app_server):
    from gradio_client import Client, handle_file

    client = Client(app_server.url, verbose=False)
    greedy = [16, "greedy", 1, 1.0, 1.0, 1.0]
    blip2, blip2_info, blip2_sent, chat, llava_info, llava_sent, seed = client.predict(
        handle_file(str(ASSETS / "coffee.jpg")), "What is in the cup?", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1],
        "none", 3, False, *greedy, *greedy, api_name="/vqa")
    assert blip2_sent == "Question: What is in the cup? Answer:" and "32 image tokens" in blip2_info
    assert "729 image tokens" in llava_info and llava_sent.count("<image>") == 1 and seed == 3
    assert [message["role"] for message in chat] == ["user", "assistant"]
    with pytest.raises(Exception, match="Please type a question"):
        client.predict(handle_file(str(ASSETS / "coffee.jpg")), "", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1],
                       "none", 3, False, *greedy, *greedy, api_name="/vqa")


@pytest.mark.parametrize("name", BLIP2_MODELS + INSTRUCTBLIP_MODELS + LLAVA_MODELS)
def test_tiny_layout_mirrors_the_published_repo(name, tmp_path):
    models.REGISTRY[name].tiny_builder(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= files
    assert ("chat_template.json" in files) == (name in LLAVA_MODELS)
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    if name in LLAVA_MODELS:  # processor and model agree on how many tokens the image becomes
        config = json.loads((tmp_path / "config.json").read_text())
        assert settings["vision_feature_select_strategy"] == config["vision_feature_select_strategy"]
        assert settings["patch_size"] == config["vision_config"]["patch_size"]
    else:
        assert settings["num_query_tokens"] == 32
    # InstructBLIP's repo keeps the Q-Former's BERT tokenizer in its own folder.
    assert (tmp_path / "qformer_tokenizer" / "tokenizer_config.json").is_file() == (name in INSTRUCTBLIP_MODELS)


# ---- every control reaches the side it belongs to, and only that --------------------------------------

COFFEE = Image.open(ASSETS / "coffee.jpg").convert("RGB")
PICTURES = {"chelsea": CAT, "coffee": COFFEE}
TRACE_DECODING = Decoding(max_new_tokens=2, strategy="greedy")
BASE = dict(image=CAT, question="What animal is this?", history=[], blip2_model=BLIP2_MODELS[0],
            llava_model=LLAVA_MODELS[1], mode="vqa")


def loaded_name(network) -> str | None:
    """The registry name of the loaded checkpoint this network belongs to."""
    return next((entry.name for entry in models.model_cache.loaded()
                 if getattr(entry.handle, "model", None) is network), None)


@contextmanager
def generate_calls(*names):
    """Every generate() call while the block runs, by checkpoint: its keyword arguments, and the seed torch's
    default generator was last seeded with (what sampling draws from). Patched on the classes of these
    checkpoints (the other checkpoints of a family share them), so a checkpoint the model cache evicts and
    loads again on the way is still seen."""
    calls = defaultdict(list)
    with pytest.MonkeyPatch.context() as patch:
        for cls in {type(models.get(name).model) for name in names}:
            def generate(self, *args, _real=cls.generate, **kwargs):
                calls[loaded_name(self)].append(dict(kwargs, seed=torch.initial_seed()))
                return _real(self, *args, **kwargs)

            patch.setattr(cls, "generate", generate)
        yield calls


def picture_of(name: str, pixels: torch.Tensor) -> str | None:
    """Which picture these pixels are, by the checkpoint's own image processor."""
    processor = models.get(name).processor.image_processor
    return next((picture for picture, image in PICTURES.items() if torch.equal(
        pixels, processor(images=image, return_tensors="pt")["pixel_values"].to(pixels.dtype))), None)


def vqa_trace(**changes) -> dict:
    """Per side, what its one generate() call got: the checkpoint, the text of its input ids, the picture."""
    with generate_calls(BASE["blip2_model"], BASE["llava_model"]) as calls:
        result = ask(**{**BASE, **changes}, blip2_decoding=TRACE_DECODING, llava_decoding=TRACE_DECODING)
    assert result.blip2.error is None and result.llava.error is None
    trace = {}
    for side, names in (("blip2", BLIP2_MODELS), ("llava", LLAVA_MODELS)):
        (name, call), = [(name, call) for name in names for call in calls[name]]
        text = models.get(name).processor.tokenizer.decode(call["input_ids"][0], skip_special_tokens=True)
        trace[side] = {"model": name, "text": text, "image": picture_of(name, call["pixel_values"])}
    return trace


@pytest.fixture(scope="module")
def baseline():
    return vqa_trace()


@pytest.mark.parametrize("control, value, changed, check", [
    ("image", COFFEE, {"blip2": {"image"}, "llava": {"image"}},
     lambda trace: trace["blip2"]["image"] == trace["llava"]["image"] == "coffee"),
    ("question", "Which colour is it?", {"blip2": {"text"}, "llava": {"text"}},
     lambda trace: all("Which colour is it?" in trace[side]["text"] for side in ("blip2", "llava"))),
    ("history", HISTORY[:2], {"llava": {"text"}},
     lambda trace: "A cat." in trace["llava"]["text"] and "A cat." not in trace["blip2"]["text"]),
    ("mode", "caption", {"blip2": {"text"}}, lambda trace: "What animal" not in trace["blip2"]["text"]),
    ("blip2_model", BLIP2_MODELS[1], {"blip2": {"model", "text"}},
     lambda trace: trace["blip2"]["model"] == BLIP2_MODELS[1] and "Short answer:" in trace["blip2"]["text"]),
    ("llava_model", LLAVA_MODELS[0], {"llava": {"model", "text"}},
     lambda trace: trace["llava"]["model"] == LLAVA_MODELS[0] and "ASSISTANT:" in trace["llava"]["text"]),
], ids=["image", "question", "history", "mode", "blip2_model", "llava_model"])
def test_each_input_reaches_the_side_it_belongs_to_and_only_that(baseline, control, value, changed, check):
    """One input changed at a time: what each side's generate() got moves where it should (the picture on
    both sides, the chat on LLaVA's only, the mode on BLIP-2's only, a model only its own side) and nowhere else."""
    assert baseline["blip2"] == {"model": BLIP2_MODELS[0], "image": "chelsea",
                                 "text": "Question: What animal is this? Answer:"}
    trace = vqa_trace(**{control: value})
    for side in ("blip2", "llava"):
        moved = {part for part in trace[side] if trace[side][part] != baseline[side][part]}
        assert moved == changed.get(side, set()), side
    assert check(trace)


@pytest.fixture(scope="module")
def tab():
    from demos.tabs import vqa

    return built_tab(vqa)


DECODING_FIELDS = {"max_new_tokens": "Max new tokens", "strategy": "Decoding", "num_beams": "Beams",
                   "temperature": "Temperature", "top_p": "Top-p", "repetition_penalty": "Repetition penalty"}


def widgets(decoding: Decoding) -> list:
    """One side's six decoding widgets' values, in the order they are wired."""
    return [getattr(decoding, field) for field in DECODING_FIELDS]


def test_every_settings_widget_is_wired_to_the_parameter_of_its_name(tab):
    """The twelve decoding widgets look alike: each is told apart by its side's default, and must feed
    that side's parameter of the handler (which builds the two `Decoding`s from them)."""
    fn = event(tab, "vqa")
    wired = dict(zip(inspect.signature(fn.fn).parameters, fn.inputs))
    for side, defaults in (("blip2", BLIP2_DECODING), ("llava", LLAVA_DECODING)):
        for field, label in DECODING_FIELDS.items():
            widget = wired[f"{side}_{field}"]
            assert (widget.label, widget.value) == (label, getattr(defaults, field)), f"{side}_{field}"
    settings = ("image", "question", "history", "blip2_model", "mode", "llava_model", "precision", "seed", "randomize")
    assert [(wired[name].label, wired[name].value) for name in settings[3:]] == [
        ("Model", BLIP2_MODELS[0]), ("Mode", "vqa"), ("Model", _default_llava()), ("Weights", "none"), ("Seed", 0),
        ("Random seed", False)]
    assert [wired[name].label for name in settings[:3]] == ["Image", "Question", "Chat"]
    assert len(fn.inputs) == len(settings) + 2 * len(DECODING_FIELDS)


def reaching_generate(decoding: Decoding) -> dict:
    """What generate() must get for these settings: sampling reads temperature and top-p, beam search the beams."""
    settings = dict(max_new_tokens=decoding.max_new_tokens, repetition_penalty=decoding.repetition_penalty,
                    do_sample=decoding.strategy == "sample",
                    num_beams=decoding.num_beams if decoding.strategy == "beam" else 1)
    if decoding.strategy == "sample":
        settings.update(temperature=decoding.temperature, top_p=decoding.top_p)
    return settings


GENERATE_KEYS = ("max_new_tokens", "repetition_penalty", "do_sample", "num_beams", "temperature", "top_p")


@pytest.mark.parametrize("blip2, llava, seed", [
    (Decoding(3, "sample", 3, 0.7, 0.8, 1.2), Decoding(4, "beam", 2, 1.3, 0.6, 1.1), 3),
    (Decoding(4, "beam", 3, 1.5, 0.5, 1.05), Decoding(3, "sample", 4, 0.6, 0.9, 1.3), 8),
    (Decoding(2, "greedy", 4, 1.5, 0.5, 1.25), Decoding(2, "greedy", 3, 0.6, 0.9, 1.15), 11),
], ids=["sample | beam", "beam | sample", "greedy | greedy"])
def test_each_decoding_widget_and_the_seed_reach_their_own_sides_generate(tab, blip2, llava, seed):
    """Through the /vqa handler: every value (none of them a default) reaches generate() of its own side, in
    the form its strategy uses, and the seed in the box seeds both; nothing of one side leaks to the other."""
    ask_for_ui = event(tab, "vqa").fn
    with generate_calls(BLIP2_MODELS[0], LLAVA_MODELS[1]) as calls:
        *_, last = ask_for_ui(CAT, "What is this?", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1], "none", seed, False,
                              *widgets(blip2), *widgets(llava))
    for name, decoding in ((BLIP2_MODELS[0], blip2), (LLAVA_MODELS[1], llava)):
        (call,) = calls[name]
        assert {key: call[key] for key in GENERATE_KEYS if key in call} == reaching_generate(decoding), name
        assert call["seed"] == seed
    assert last[-1] == seed  # shown back in the seed box


@pytest.mark.parametrize("randomize", [False, True])
def test_random_seed_replaces_the_typed_seed_on_both_sides_and_is_shown(tab, monkeypatch, randomize):
    """"Random seed" is read by the handler: ticked, a drawn seed (pinned here) seeds both sides' sampling and
    goes back to the seed box; unticked, the typed one does."""
    monkeypatch.setattr(random, "randint", lambda low, high: 4321)
    sample = Decoding(2, "sample", 1, 1.0, 1.0, 1.0)
    with generate_calls(BLIP2_MODELS[0], LLAVA_MODELS[1]) as calls:
        *_, last = event(tab, "vqa").fn(CAT, "What is this?", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1], "none",
                                          5, randomize, *widgets(sample), *widgets(sample))
    expected = 4321 if randomize else 5
    assert [call["seed"] for name in (BLIP2_MODELS[0], LLAVA_MODELS[1]) for call in calls[name]] == [expected] * 2
    assert last[-1] == expected


def test_weights_choice_reaches_loading(tab, monkeypatch):
    """"none" loads the plain checkpoints; a bitsandbytes choice asks for the quantized rows (refused here)."""
    if available_quantizations():
        pytest.skip("bitsandbytes and CUDA are present")
    loaded, real_get = [], models.get
    monkeypatch.setattr(models, "get", lambda name, progress=None: loaded.append(name) or real_get(name, progress))
    ask_for_ui = event(tab, "vqa").fn
    greedy = widgets(TRACE_DECODING)
    *_, plain = ask_for_ui(CAT, "What is this?", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1], "none", 0, False,
                           *greedy, *greedy)
    assert loaded == [BLIP2_MODELS[0], LLAVA_MODELS[1]] and "could not answer" not in plain[1] + plain[4]
    *_, quantized = ask_for_ui(CAT, "What is this?", [], BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1], "8-bit", 0, False,
                               *greedy, *greedy)
    assert "bitsandbytes" in quantized[1] and "bitsandbytes" in quantized[4]


def test_regenerate_asks_the_last_question_again_over_the_chat_before_it(tab):
    """Regenerate reads the chat widget: its last question is asked again, with only the turns before it as
    LLaVA's context, and the chat ends with the new answer instead of the old one."""
    greedy = widgets(TRACE_DECODING)
    *_, last = event(tab, "vqa_regenerate").fn(CAT, HISTORY, BLIP2_MODELS[0], "vqa", LLAVA_MODELS[1], "none", 0,
                                                 False, *greedy, *greedy)
    _, _, blip2_sent, chat, _, llava_sent, _ = last
    assert blip2_sent == blip2_prompt("What color is it?")
    template = models.get(LLAVA_MODELS[1]).processor.apply_chat_template
    assert llava_sent == template(llava_conversation(HISTORY[:2], "What color is it?"), add_generation_prompt=True)
    assert chat[:3] == HISTORY[:2] + [{"role": "user", "content": "What color is it?"}] and len(chat) == 4


def test_save_writes_the_chat_and_blip2s_shown_answer_and_prompt(tab):
    """Save reads three widgets (the chat, BLIP-2's answer and its prompt box): each lands in the file."""
    path = event(tab, "vqa_save").fn(HISTORY[:2], "a cat", "Question: What animal is this? Answer:")
    saved = json.loads(open(path).read())
    assert saved == {"llava_chat": HISTORY[:2],
                     "blip2": {"answer": "a cat", "prompt": "Question: What animal is this? Answer:"}}
