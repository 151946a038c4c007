"""CLIP interrogator on the tiny BLIP-2 and CLIP models: the bank ranking is CLIP's cosine ordering,
the greedy chain's rules, the caption, the reconstructed prompt, the Compare plan, and bad input."""
from __future__ import annotations

import inspect
import json

import pytest
import torch
from PIL import Image

import models
from demos.tabs import clip_interrogator as interrogator
from demos.tabs.clip_interrogator import (ASSETS, BANKS, CAPTION_MODELS, CLIP_CONTEXT, CLIP_MODELS, SD_METHOD,
                                     bank_embeddings, bank_rows, caption_image, classic_prompt, compare_plan,
                                     greedy_chain, image_embedding, load_bank, rank, run_clip_interrogator)
from models import UserError

PHOTOS = [Image.open(ASSETS / name).convert("RGB") for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")]


@pytest.mark.mechanism
@pytest.mark.parametrize("clip_model", [CLIP_MODELS[0], CLIP_MODELS[1]])
def test_bank_ranking_is_clips_cosine_ordering_computed_directly(clip_model):
    clip = models.get(clip_model)
    for photo in PHOTOS:
        for bank in BANKS:
            phrases = load_bank(bank)
            ranked = rank(image_embedding(clip, photo), phrases, bank_embeddings(clip, bank), len(phrases))
            # CLIP's own forward pass: logits_per_image = exp(logit_scale) · cosine.
            inputs = clip.processor(text=list(phrases), images=photo, return_tensors="pt", padding=True)
            with torch.no_grad():
                logits = clip.model(**inputs).logits_per_image[0] / clip.model.logit_scale.exp()
            order = torch.argsort(logits, descending=True, stable=True).tolist()
            assert [phrase for phrase, _ in ranked] == [phrases[i] for i in order]
            assert torch.allclose(torch.tensor([score for _, score in ranked]), logits[order], atol=1e-5)
            gaps = logits[order][:-1] - logits[order][1:]
            assert (gaps >= 0).all()


def _stub(table: dict[str, float]):
    """A similarity that scores a prompt by the sum of its phrases' values (the caption scores 0)."""
    def similarity(texts):
        return torch.tensor([sum(table.get(part, 0.0) for part in text.split(", ")) for text in texts])
    return similarity


def test_greedy_chain_picks_the_argmax_each_round_and_stops_without_gain():
    table = {"a": 0.3, "b": 0.5, "c": 0.1, "d": -0.2, "e": -0.4}
    prompt, steps = greedy_chain("cap", list(table), _stub(table), lambda text: True, min_flavors=0, max_flavors=10)
    assert [phrase for phrase, _ in steps] == ["b", "a", "c"]  # best first; d would lower the score
    assert prompt == "cap, b, a, c" and steps[-1][1] == pytest.approx(0.9)
    # min_flavors forces rounds past the point of no gain, but the best prompt seen is returned.
    prompt, steps = greedy_chain("cap", list(table), _stub(table), lambda text: True, min_flavors=5, max_flavors=10)
    assert [phrase for phrase, _ in steps] == ["b", "a", "c", "d", "e"] and prompt == "cap, b, a, c"
    # max_flavors caps the rounds; a prompt that no longer fits is never chosen.
    assert len(greedy_chain("cap", list(table), _stub(table), lambda t: True, 0, 2)[1]) == 2
    prompt, _ = greedy_chain("cap", list(table), _stub(table), lambda text: "b" not in text.split(", "), 0, 10)
    assert prompt == "cap, a, c"


def test_classic_prompt_joins_the_best_phrase_of_each_bank():
    banks = {"mediums": [("an oil painting", 0.3)], "artists": [("by Claude Monet", 0.2)],
             "movements": [("Impressionism", 0.25)], "flavors": [("golden hour", 0.3), ("soft focus", 0.2),
                                                                 ("serene", 0.1), ("eerie", 0.0)]}
    assert classic_prompt("a pond with water lilies", banks) == ("a pond with water lilies, an oil painting by Claude "
                                                                 "Monet, Impressionism, golden hour, soft focus, serene")


@pytest.mark.parametrize("caption_model", CAPTION_MODELS)
def test_caption_is_blip2_greedy_output_without_the_image_slots(caption_model):
    handle = models.get(caption_model)
    inputs = handle.processor(images=PHOTOS[0], text="", return_tensors="pt")
    with torch.no_grad():
        output = handle.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    if not handle.model.language_model.config.is_encoder_decoder:
        assert (output[0, :32] == handle.model.config.image_token_id).all()
        output = output[:, inputs["input_ids"].shape[1]:]
    assert caption_image(handle, PHOTOS[0], 6) == handle.processor.batch_decode(output, skip_special_tokens=True)[0].strip()


@pytest.mark.mechanism
def test_best_mode_returns_the_candidate_clip_scores_highest_within_77_tokens():
    clip = models.get(CLIP_MODELS[0])
    for photo in PHOTOS:
        result = run_clip_interrogator(photo, top_k=3, min_flavors=1, max_flavors=4)
        assert set(result.candidates) == {"caption", "classic", "chain"}
        assert result.prompt == max(result.candidates.values(), key=lambda c: c[1])[0]
        embedded = image_embedding(clip, photo)
        for text, score in result.candidates.values():  # each score is the prompt's cosine, recomputed here
            inputs = clip.processor(text=[text], return_tensors="pt", truncation=True, max_length=77)
            with torch.no_grad():
                feature = torch.nn.functional.normalize(clip.model.get_text_features(**inputs).pooler_output, dim=-1)
            assert float(feature[0] @ embedded) == pytest.approx(score, abs=1e-5)
        chain = result.candidates["chain"][0]
        assert chain.startswith(result.caption) and 1 <= len(result.chain_steps) <= 4
        assert len(clip.processor.tokenizer(chain)["input_ids"]) <= CLIP_CONTEXT
        assert [row[0] for row in bank_rows(result)] == [bank for bank in BANKS for _ in range(3)]
        assert result.banks["artists"][0][0].startswith("by ")
    classic = run_clip_interrogator(PHOTOS[0], mode="classic")
    assert set(classic.candidates) == {"caption", "classic"} and classic.prompt == classic.candidates["classic"][0]


def test_generate_from_prompt_writes_a_plan_that_compare_runs_with_plain_sd():
    from demos.tabs.compare import plan_from_json
    from demos.tabs.controlnet import COMPARE_METHODS

    path = compare_plan("a cat on a sofa, an oil painting by Claude Monet", seed=5)
    plan = plan_from_json(json.loads(open(path).read()))
    assert plan.methods == [SD_METHOD] and SD_METHOD in {m.name for m in COMPARE_METHODS}
    assert plan.inputs == {"prompt": "a cat on a sofa, an oil painting by Claude Monet", "seed": 5}
    assert plan.task == COMPARE_METHODS[0].task.name and plan.values == [5, 6]
    with pytest.raises(UserError, match="Interrogate an image first"):
        compare_plan("  ")


def test_banks_are_small_unique_lists_with_their_source_noted():
    licences = (ASSETS / "LICENSES.md").read_text()
    for bank in BANKS:
        phrases = load_bank(bank)
        assert 20 <= len(phrases) <= 200 and len(set(phrases)) == len(phrases)
        assert f"interrogator/{bank}.txt" in licences


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=None), "Please provide an image to interrogate"),
    (dict(image=Image.new("RGB", (1, 1))), "at least 16 pixels"),
    (dict(caption_model="gpt-4"), "Unknown caption model"),
    (dict(clip_model="clip-vit-huge"), "Unknown CLIP model"),
    (dict(mode="poem"), "Unknown mode"),
    (dict(top_k=0), "phrases shown per bank"),
    (dict(max_flavors=100), "most chain phrases"),
    (dict(min_flavors=9, max_flavors=8), "fewest chain phrases"),
    (dict(caption_tokens=1.5), "whole number"),
])
def test_bad_input_is_refused_before_any_model_runs(monkeypatch, kwargs, message):
    monkeypatch.setattr(models, "get", lambda *args, **kwargs: pytest.fail("no model should load"))
    with pytest.raises(UserError, match=message):
        run_clip_interrogator(**{"image": PHOTOS[0], **kwargs})


def test_rgba_is_flattened_onto_white():
    rgba = PHOTOS[0].convert("RGBA")
    rgba.putalpha(0)
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    assert run_clip_interrogator(rgba, max_flavors=2).prompt == run_clip_interrogator(white, max_flavors=2).prompt


def test_interrogates_through_the_api(app_server):
    from gradio_client import Client, handle_file

    client = Client(app_server.url, verbose=False)
    prompt, info, table = client.predict(handle_file(str(ASSETS / "chelsea.jpg")), CAPTION_MODELS[0], CLIP_MODELS[0],
                                         "best", 3, 1, 4, 8, api_name="/clip_interrogator")
    assert prompt and "Greedy chain" in info and len(table["data"]) == 3 * len(BANKS)
    plan = client.predict(prompt, api_name="/clip_interrogator_plan")
    assert json.loads(open(plan).read())["inputs"]["prompt"] == prompt


# ---- every setting reaches its stage, and moves only that ------------------------------------------------

BASE = dict(caption_model=CAPTION_MODELS[0], clip_model=CLIP_MODELS[1], mode="best", top_k=2, min_flavors=1,
            max_flavors=2, caption_tokens=4)


def picture_of(model: str, pixels: torch.Tensor) -> int | None:
    """Which of PHOTOS these pixels are, by the checkpoint's own image processor."""
    processor = models.get(model).processor.image_processor
    return next((index for index, photo in enumerate(PHOTOS) if torch.equal(
        pixels, processor(images=photo, return_tensors="pt")["pixel_values"].to(pixels.dtype))), None)


def loaded_name(network) -> str | None:
    """The registry name of the loaded checkpoint this network belongs to."""
    return next((entry.name for entry in models.model_cache.loaded()
                 if getattr(entry.handle, "model", None) is network), None)


def interrogation_trace(image=PHOTOS[0], **changes) -> dict:
    """What each stage of one interrogation got: the captioner that ran and its token budget, the CLIP model
    that embedded the image, the picture each saw, the greedy chain's bounds; and what came out of the
    settings that only shape the result (rows shown per bank, the candidates built). The networks are spied
    on their classes, so a checkpoint the model cache evicts and loads again on the way is still seen."""
    seen = {"captioner": [], "clip": [], "chain": []}
    captioner_class = type(models.get(BASE["caption_model"]).model)  # every captioner, every CLIP is of these
    clip_class = type(models.get(BASE["clip_model"]).model)

    def generate(self, *args, _real=captioner_class.generate, **kwargs):
        seen["captioner"].append((loaded_name(self), kwargs["max_new_tokens"], kwargs["pixel_values"]))
        return _real(self, *args, **kwargs)

    def image_features(self, *args, _real=clip_class.get_image_features, **kwargs):
        seen["clip"].append((loaded_name(self), kwargs["pixel_values"]))
        return _real(self, *args, **kwargs)

    def chain(*args, _real=interrogator.greedy_chain, **kwargs):
        bound = inspect.signature(_real).bind(*args, **kwargs).arguments
        seen["chain"].append((bound["min_flavors"], bound["max_flavors"]))
        return _real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captioner_class, "generate", generate)
        patch.setattr(clip_class, "get_image_features", image_features)
        patch.setattr(interrogator, "greedy_chain", chain)
        result = run_clip_interrogator(image, **{**BASE, **changes})
    (captioner, caption_tokens, caption_pixels), = seen["captioner"]
    (clip, clip_pixels), = seen["clip"]
    return {"image": (picture_of(captioner, caption_pixels), picture_of(clip, clip_pixels)),
            "caption_model": captioner, "caption_tokens": caption_tokens, "clip_model": clip, "chain": seen["chain"],
            "top_k": {len(rows) for rows in result.banks.values()}, "mode": set(result.candidates)}


BASELINE = {"image": (0, 0), "caption_model": BASE["caption_model"], "caption_tokens": BASE["caption_tokens"],
            "clip_model": BASE["clip_model"], "chain": [(BASE["min_flavors"], BASE["max_flavors"])],
            "top_k": {BASE["top_k"]}, "mode": {"caption", "classic", "chain"}}


@pytest.fixture(scope="module")
def baseline():
    return interrogation_trace()


@pytest.mark.parametrize("control, value, moved", [
    ("image", PHOTOS[1], {"image": (1, 1)}),
    ("caption_model", CAPTION_MODELS[1], {"caption_model": CAPTION_MODELS[1]}),
    ("clip_model", CLIP_MODELS[2], {"clip_model": CLIP_MODELS[2]}),
    ("mode", "chain", {"mode": {"caption", "chain"}}),
    ("mode", "classic", {"mode": {"caption", "classic"}, "chain": []}),  # classic never runs the chain
    ("top_k", 3, {"top_k": {3}}),
    ("min_flavors", 2, {"chain": [(2, 2)]}),
    ("max_flavors", 3, {"chain": [(1, 3)]}),
    ("caption_tokens", 6, {"caption_tokens": 6}),
], ids=["image", "caption_model", "clip_model", "mode=chain", "mode=classic", "top_k", "min_flavors", "max_flavors",
        "caption_tokens"])
def test_each_setting_reaches_its_stage_and_moves_only_that(baseline, control, value, moved):
    """One widget changed at a time: the picture reaches both the captioner and CLIP, each model picker loads
    and runs that model, the caption length is the captioner's budget, the chain bounds reach the greedy chain,
    top-k and mode shape the result; every other stage gets what it got before."""
    assert baseline == BASELINE
    trace = interrogation_trace(**{control: value})
    assert {part for part in trace if trace[part] != baseline[part]} == set(moved)
    assert trace == {**BASELINE, **moved}
