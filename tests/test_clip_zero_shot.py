"""CLIP zero-shot on the tiny model: properties that hold only if the computation is right."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import models
from demos import ASSETS
from demos.tabs.clip_zero_shot import (CLIP_MODELS, DEFAULT_TEMPLATE, PAPER_ENSEMBLE, parse_templates,
                                  run_clip_similarity, run_clip_zero_shot, similarity_heatmap)
from models import UserError
from models.pipelines.clip_loss import symmetric_info_nce
from tests.spies import built_tab, event

MODEL = "clip-vit-base-patch32"
CAT = Image.open(ASSETS / "chelsea.jpg")
LABELS = ["cat", "dog", "rocket", "cup of coffee"]


def test_probabilities_sum_to_one_and_match_transformers_own_forward():
    result = run_clip_zero_shot(CAT, LABELS, "a photo of a {}.", MODEL)
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-5)
    handle = models.get(MODEL)
    inputs = handle.processor(text=[f"a photo of a {label}." for label in LABELS], images=[CAT],
                              return_tensors="pt", padding=True)
    with torch.no_grad():
        reference = handle.model(**inputs).logits_per_image.softmax(-1)[0]
    assert result.probabilities == pytest.approx(reference.tolist(), abs=1e-5)


def test_permuting_labels_permutes_scores():
    forward = run_clip_zero_shot(CAT, LABELS, model=MODEL)
    backward = run_clip_zero_shot(CAT, list(reversed(LABELS)), model=MODEL)
    assert backward.probabilities == pytest.approx(list(reversed(forward.probabilities)), abs=1e-6)
    assert dict(forward.top(4)) == pytest.approx(dict(backward.top(4)), abs=1e-6)


def test_template_reaches_the_tokenizer(monkeypatch):
    handle = models.get(MODEL)
    seen: list[str] = []
    original = handle.processor.tokenizer

    class Spy:
        def __getattr__(self, name):
            return getattr(original, name)

        def __call__(self, texts, **kwargs):
            seen.extend(texts)
            return original(texts, **kwargs)

    monkeypatch.setattr(handle.processor, "tokenizer", Spy())
    result = run_clip_zero_shot(CAT, "cat, dog", "a blurry sketch of a {}", MODEL)
    assert "a blurry sketch of a cat" in seen and "a blurry sketch of a dog" in seen
    assert result.prompts == [["a blurry sketch of a cat"], ["a blurry sketch of a dog"]]


def test_ensemble_averages_normalised_prompt_embeddings():
    templates = PAPER_ENSEMBLE[:3]
    result = run_clip_zero_shot(CAT, "cat, dog", templates, MODEL)
    handle = models.get(MODEL)
    with torch.no_grad():
        pixels = handle.processor.image_processor(images=[CAT], return_tensors="pt")["pixel_values"]
        image = torch.nn.functional.normalize(handle.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        expected = []
        for label in ("cat", "dog"):
            tokens = handle.processor.tokenizer([t.replace("{}", label) for t in templates], padding=True, return_tensors="pt")
            texts = torch.nn.functional.normalize(handle.model.get_text_features(**tokens).pooler_output, dim=-1)
            expected.append(float(image[0] @ torch.nn.functional.normalize(texts.mean(0), dim=0)))
    assert result.similarities == pytest.approx(expected, abs=1e-5)
    single = run_clip_zero_shot(CAT, "cat, dog", templates[:1], MODEL)
    assert single.similarities != pytest.approx(result.similarities, abs=1e-6)


def test_rgba_is_flattened_onto_white_and_grayscale_is_expanded():
    rgba = CAT.convert("RGBA")
    rgba.putalpha(0)  # fully transparent
    white = Image.new("RGB", CAT.size, (255, 255, 255))
    assert run_clip_zero_shot(rgba, LABELS, model=MODEL).probabilities == pytest.approx(
        run_clip_zero_shot(white, LABELS, model=MODEL).probabilities, abs=1e-6)
    gray = CAT.convert("L")
    assert run_clip_zero_shot(gray, LABELS, model=MODEL).probabilities == pytest.approx(
        run_clip_zero_shot(gray.convert("RGB"), LABELS, model=MODEL).probabilities, abs=1e-6)
    assert run_clip_zero_shot(np.asarray(CAT), LABELS, model=MODEL).probabilities == pytest.approx(
        run_clip_zero_shot(CAT, LABELS, model=MODEL).probabilities, abs=1e-6)


def test_huge_image_is_downscaled_not_refused():
    huge = Image.new("RGB", (8000, 8000), (30, 60, 90))
    result = run_clip_zero_shot(huge, LABELS, model=MODEL)
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("image, labels, templates, message", [
    (None, "cat, dog", None, "Please provide an image"),
    (Image.new("RGB", (1, 1)), "cat, dog", None, "1x1 pixels"),
    (CAT, "", None, "at least one label"),
    (CAT, " , \n ,", None, "at least one label"),
    (CAT, "cat, dog, Cat", None, "Duplicate label: Cat"),
    (CAT, "cat", "a photo", "needs {} where the label goes"),
    (CAT, "x" * 10_000, None, "characters long"),
    (CAT, ",".join(f"label{i}" for i in range(500)), None, "At most"),
])
def test_bad_input_gets_a_clear_error(image, labels, templates, message):
    with pytest.raises(UserError, match=message):
        run_clip_zero_shot(image, labels, templates, MODEL)


def test_unknown_model_is_refused():
    with pytest.raises(UserError, match="Unknown CLIP model"):
        run_clip_zero_shot(CAT, "cat", None, "resnet-50")


def test_long_prompt_is_truncated_with_a_warning():
    result = run_clip_zero_shot(CAT, ["cat " * 60, "dog"], "{}", MODEL)
    assert result.warnings and "77-token limit" in result.warnings[0]


def test_parse_templates_defaults_and_lines():
    assert parse_templates("") == ["a photo of a {}."]
    assert parse_templates("a {}\n\n  art of the {}.  ") == ["a {}", "art of the {}."]


def test_similarity_matrix_rows_agree_with_zero_shot():
    images = [ASSETS / "chelsea.jpg", ASSETS / "astronaut.jpg", ASSETS / "rocket.jpg"]
    texts = ["a cat", "an astronaut", "a rocket", "a cup of coffee"]
    result = run_clip_similarity([str(path) for path in images], "\n".join(texts), "{}", MODEL)
    assert result.similarities.shape == (3, 4) and result.image_names[0] == "chelsea.jpg"
    assert result.probabilities.sum(axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    for row, path in enumerate(images):
        single = run_clip_zero_shot(Image.open(path), texts, "{}", MODEL)
        assert result.probabilities[row] == pytest.approx(single.probabilities, abs=1e-5)
    figure = similarity_heatmap(result)
    assert len(figure.axes[0].texts) == 12  # one annotation per cell


def test_similarity_needs_images():
    with pytest.raises(UserError, match="at least one image"):
        run_clip_similarity([], "a cat", "{}", MODEL)


def test_hub_checkpoint_that_cannot_be_fetched_names_itself_and_the_offline_way(monkeypatch):
    """The real hub loader, offline (HF_HUB_OFFLINE=1 in conftest): a clear error, no crash."""
    monkeypatch.setattr(models.model_settings, "profile", "hub")
    models.model_cache.evict("clip-vit-large-patch14")
    with pytest.raises(models.ModelUnavailable) as error:
        run_clip_zero_shot(CAT, "cat, dog", None, "clip-vit-large-patch14")
    message = str(error.value)
    assert "openai/clip-vit-large-patch14 is not fully in this machine's cache (1.71 GB missing" in message
    assert "python app.py --download --model clip-vit-large-patch14" in message
    assert "python app.py --models tiny" in message


# ---- every control of the two sub-tabs reaches CLIP, and moves only its own input ---------------------

COFFEE = Image.open(ASSETS / "coffee.jpg")


def loaded_name(network) -> str | None:
    """The registry name of the loaded checkpoint this network belongs to."""
    return next((entry.name for entry in models.model_cache.loaded()
                 if getattr(entry.handle, "model", None) is network), None)


def clip_trace(run) -> dict:
    """What reached CLIP while `run()` ran: the checkpoints whose encoders ran, the pixels the image encoder
    got and the token ids the text encoder got, call by call (patched on the class: any checkpoint is seen)."""
    seen = {"model": set(), "pixels": [], "input_ids": []}
    cls = type(models.get(CLIP_MODELS[0]).model)
    with pytest.MonkeyPatch.context() as patch:
        for method, part, key in (("get_image_features", "pixels", "pixel_values"),
                                  ("get_text_features", "input_ids", "input_ids")):
            def spy(self, *args, _real=getattr(cls, method), _part=part, _key=key, **kwargs):
                seen["model"].add(loaded_name(self))
                seen[_part].append(kwargs[_key].clone())
                return _real(self, *args, **kwargs)

            patch.setattr(cls, method, spy)
        run()
    return seen


def expected_trace(model: str, images: list, prompts: list[str]) -> dict:
    """The same, computed from the settings with the checkpoint's own processor: one image batch, one
    batch of prompts (label-major), both encoders of `model` only."""
    processor = models.get(model).processor
    return {"model": {model},
            "pixels": [processor.image_processor(images=images, return_tensors="pt")["pixel_values"]],
            "input_ids": [processor.tokenizer(prompts, padding=True, return_tensors="pt").input_ids]}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a == b


def changed_parts(trace: dict, baseline: dict) -> set[str]:
    return {part for part in trace if not same(trace[part], baseline[part])}


PART = {"image": "pixels", "images": "pixels", "labels": "input_ids", "texts": "input_ids",
        "templates": "input_ids", "template": "input_ids", "model": "model"}
CLASSIFY = dict(image=CAT, labels="cat, dog", templates="a photo of a {}.", model=CLIP_MODELS[0])
CLASSIFY_PROMPTS = ["a photo of a cat.", "a photo of a dog."]


@pytest.mark.parametrize("control, value, prompts", [
    ("image", COFFEE, CLASSIFY_PROMPTS),
    ("labels", "cup of coffee, rocket", ["a photo of a cup of coffee.", "a photo of a rocket."]),
    ("templates", "art of the {}.\na {} in a video game.",
     ["art of the cat.", "a cat in a video game.", "art of the dog.", "a dog in a video game."]),
    ("model", CLIP_MODELS[1], CLASSIFY_PROMPTS),
], ids=["image", "labels", "templates", "model"])
def test_each_classify_control_reaches_clip_and_moves_only_its_own_input(control, value, prompts):
    """Classify's inputs one at a time: the picture reaches the image encoder, labels and templates the text
    encoder as label × template prompts, the model picks whose encoders run; the other inputs stay put."""
    baseline = clip_trace(lambda: run_clip_zero_shot(**CLASSIFY))
    assert same(baseline, expected_trace(CLIP_MODELS[0], [CAT], CLASSIFY_PROMPTS))
    settings = {**CLASSIFY, control: value}
    trace = clip_trace(lambda: run_clip_zero_shot(**settings))
    assert changed_parts(trace, baseline) == {PART[control]}
    assert same(trace, expected_trace(settings["model"], [settings["image"]], prompts))


SIMILARITY = dict(images=[str(ASSETS / "chelsea.jpg")], texts="a cat\na dog", template="{}", model=CLIP_MODELS[0])


@pytest.mark.parametrize("control, value, prompts", [
    ("images", [str(ASSETS / "coffee.jpg"), str(ASSETS / "chelsea.jpg")], ["a cat", "a dog"]),
    ("texts", "a rocket\na cup of tea", ["a rocket", "a cup of tea"]),
    ("template", "a sketch of {}", ["a sketch of a cat", "a sketch of a dog"]),
    ("model", CLIP_MODELS[1], ["a cat", "a dog"]),
], ids=["images", "texts", "template", "model"])
def test_each_similarity_control_reaches_clip_and_moves_only_its_own_input(control, value, prompts):
    """The same for the image × text matrix: every uploaded image in one batch, each text through the
    template, the chosen checkpoint."""
    baseline = clip_trace(lambda: run_clip_similarity(**SIMILARITY))
    settings = {**SIMILARITY, control: value}
    trace = clip_trace(lambda: run_clip_similarity(**settings))
    assert changed_parts(trace, baseline) == {PART[control]}
    images = [Image.open(path).convert("RGB") for path in settings["images"]]
    assert same(trace, expected_trace(settings["model"], images, prompts))


@pytest.fixture(scope="module")
def tab():
    from demos.tabs import clip_zero_shot

    return built_tab(clip_zero_shot)


@pytest.mark.parametrize("top_k", [2, 4])
def test_top_k_shows_that_many_labels_the_most_probable_first(tab, top_k):
    """Top-k is applied by the handler (the run scores every label): the Label widget gets exactly the k
    most probable labels of the table beside it."""
    top, table, _, _ = event(tab, "clip_zero_shot").fn(CAT, ", ".join(LABELS), "a photo of a {}.", MODEL, top_k)
    probabilities = dict(zip(table["label"], table["probability"]))
    assert len(probabilities) == len(LABELS)
    assert list(top) == sorted(probabilities, key=lambda label: -probabilities[label])[:top_k]
    assert top == {label: probabilities[label] for label in top}


def test_template_buttons_fill_the_templates_box_with_the_papers_ensemble_or_one_template(tab):
    """The two buttons only write the templates box, which the run reads: seven prompts per label, or one."""
    templates = next(block for block in tab.blocks.values()
                     if str(getattr(block, "label", "")).startswith("Prompt templates"))
    fills = sorted((fn.fn() for fn in tab.fns.values() if list(fn.outputs) == [templates]), key=len)
    assert fills == [DEFAULT_TEMPLATE, "\n".join(PAPER_ENSEMBLE)]
    for fill in fills:
        prompts = run_clip_zero_shot(CAT, "cat", fill, MODEL).prompts
        assert prompts == [[template.replace("{}", "cat") for template in fill.splitlines()]]


# ---- CLIP's loss on the image × text matrix (symmetric InfoNCE) -------------------------------------------


SQUARE_IMAGES = [str(ASSETS / name) for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg")]
SQUARE_TEXTS = ["a photo of a cat", "a photo of an astronaut", "a cup of coffee"]


def test_info_nce_matches_a_hand_computation_on_made_up_similarities():
    """τ = 10 on s = [[.3, .1], [.2, .25]]: logits [[3, 1], [2, 2.5]]. Rows (image → text): the diagonal
    entries are 1/(1+e^-2) and 1/(1+e^-0.5); columns (text → image): 1/(1+e^-1) and 1/(1+e^-1.5)."""
    import math

    nce = symmetric_info_nce([[0.3, 0.1], [0.2, 0.25]], temperature=10.0)
    image_loss = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-0.5))) / 2
    text_loss = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-1.5))) / 2
    assert nce.image_loss == pytest.approx(image_loss, abs=1e-12)
    assert nce.text_loss == pytest.approx(text_loss, abs=1e-12)
    assert nce.loss == pytest.approx((image_loss + text_loss) / 2, abs=1e-12)
    assert nce.image_to_text[0] == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))], abs=1e-12)
    assert nce.text_to_image[:, 1] == pytest.approx([1 / (1 + math.exp(1.5)), 1 / (1 + math.exp(-1.5))], abs=1e-12)
    # the same as torch's cross-entropy of the rows and of the columns against the diagonal
    logits = 10.0 * torch.tensor([[0.3, 0.1], [0.2, 0.25]], dtype=torch.float64)
    targets = torch.arange(2)
    assert nce.image_loss == pytest.approx(float(F.cross_entropy(logits, targets)), abs=1e-12)
    assert nce.text_loss == pytest.approx(float(F.cross_entropy(logits.T, targets)), abs=1e-12)


def test_info_nce_has_both_softmaxes_for_any_shape_and_a_loss_only_when_square():
    nce = symmetric_info_nce(np.arange(6).reshape(2, 3) / 10, temperature=100.0)
    assert nce.image_to_text.sum(axis=1) == pytest.approx(np.ones(2)) and nce.text_to_image.sum(axis=0) == pytest.approx(np.ones(3))
    assert not nce.square and nce.loss is None and nce.image_loss is None


def test_the_tabs_loss_is_the_one_transformers_clip_model_returns_with_return_loss():
    result = run_clip_similarity(SQUARE_IMAGES, "\n".join(SQUARE_TEXTS), "{}", MODEL)
    handle = models.get(MODEL)
    inputs = handle.processor(text=SQUARE_TEXTS, images=[Image.open(path) for path in SQUARE_IMAGES],
                              return_tensors="pt", padding=True)
    with torch.no_grad():
        output = handle.model(**inputs, return_loss=True)
    assert result.contrastive.temperature == pytest.approx(float(handle.model.logit_scale.detach().exp()))
    assert result.contrastive.loss == pytest.approx(float(output.loss), abs=1e-5)
    assert result.contrastive.image_to_text == pytest.approx(output.logits_per_image.softmax(-1).numpy(), abs=1e-5)
    assert result.contrastive.text_to_image == pytest.approx(output.logits_per_text.softmax(-1).T.numpy(), abs=1e-5)
    assert result.contrastive.image_to_text == pytest.approx(result.probabilities, abs=1e-5)


def test_a_caption_swapped_for_a_near_duplicate_recomputes_the_loss_and_the_view_says_so(tab):
    from demos.tabs.clip_zero_shot import loss_summary, run_clip_caption_swap, swap_summary

    images, texts = SQUARE_IMAGES[:2], "\n".join(SQUARE_TEXTS[:2])
    swap = run_clip_caption_swap(images, texts, 2, "a photo of a cat.", "{}", MODEL)
    assert swap.before.texts == SQUARE_TEXTS[:2] and swap.after.texts == ["a photo of a cat", "a photo of a cat."]
    alone = run_clip_similarity(images, swap.after.texts, "{}", MODEL)
    assert swap.after.contrastive.loss == pytest.approx(alone.contrastive.loss, abs=1e-9)
    assert swap.after.contrastive.loss != pytest.approx(swap.before.contrastive.loss, abs=1e-6)
    text = swap_summary(swap)
    assert f"from L = {swap.before.contrastive.loss:.3f} to **L = {swap.after.contrastive.loss:.3f}**" in text
    assert "2 'a photo of an astronaut' replaced by 'a photo of a cat.'" in text
    from demos.shared.messages import translate

    chinese = translate(text, "zh")  # each paragraph by its own template, none swallowing the next
    assert chinese.count("\n\n") == 2 and "replaced by" not in chinese and "went from" not in chinese
    assert f"**L = {swap.before.contrastive.loss:.3f}**" in loss_summary(swap.before)
    assert event(tab, "clip_caption_swap").fn(images, texts, "{}", MODEL, 2, "a photo of a cat.") == text


@pytest.mark.parametrize("texts, caption, replacement, message", [
    ("a cat\nan astronaut", 1, "a kitten", "square batch: as many texts as images"),
    ("\n".join(SQUARE_TEXTS), 4, "a kitten", "between 1 and 3"),
    ("\n".join(SQUARE_TEXTS), 1, "  ", "Type the caption that replaces caption 1"),
    ("\n".join(SQUARE_TEXTS), 1, "a photo of an astronaut", "Duplicate text"),
])
def test_a_swap_that_cannot_be_made_is_refused_with_what_to_do(texts, caption, replacement, message):
    from demos.tabs.clip_zero_shot import run_clip_caption_swap

    with pytest.raises(UserError, match=message):
        run_clip_caption_swap(SQUARE_IMAGES, texts, caption, replacement, "{}", MODEL)


def test_the_matrix_view_shows_both_softmaxes_and_the_loss_or_why_there_is_none(tab):
    handler = event(tab, "clip_similarity").fn
    figure, _, rows, columns, loss = handler(SQUARE_IMAGES, "\n".join(SQUARE_TEXTS), "{}", MODEL)
    result = run_clip_similarity(SQUARE_IMAGES, "\n".join(SQUARE_TEXTS), "{}", MODEL)
    assert np.asarray(rows.value["data"])[:, 1:].astype(float) == pytest.approx(result.probabilities, abs=1e-3)
    shown = np.asarray(columns.value["data"])[:, 1:].astype(float)
    assert shown == pytest.approx(result.contrastive.text_to_image, abs=1e-3)
    assert shown.sum(axis=0) == pytest.approx(np.ones(3), abs=1e-2)
    assert f"**L = {result.contrastive.loss:.3f}**" in loss and len(figure.axes[0].patches) == 3  # the diagonal
    _, _, _, _, loss = handler(SQUARE_IMAGES[:2], "\n".join(SQUARE_TEXTS), "{}", MODEL)
    assert "square batch" in loss and "2 images and 3 texts" in loss
