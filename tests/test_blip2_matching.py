"""BLIP-2 matching tab: ITM is the softmax of the matching head's two logits (match class) and ranks the
captions; ITC is the best of the 32 query–caption cosines; every caption reaches the model (tiny BLIP-2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from demos.tabs.blip2_matching import MAX_CAPTIONS, run_blip2_matching
from models import UserError
from models.blip2_retrieval import BLIP2_ITM
from tests.test_masks import scene

CAPTIONS = "a photo of a cat\na dog on the sky\na red cup, with coffee\nthe man is flying"


@pytest.fixture
def forward_calls(monkeypatch):
    """Every call of the retrieval model: its keyword arguments and its output."""
    model = models.get(BLIP2_ITM).model
    calls = []
    forward = model.forward

    def spy(*args, **kwargs):
        output = forward(*args, **kwargs)
        calls.append((kwargs, output))
        return output

    monkeypatch.setitem(vars(model), "forward", spy)
    return calls


def test_itm_is_the_softmax_of_the_matching_head_and_ranks_the_captions(forward_calls):
    result = run_blip2_matching(scene(90, 70, 1), CAPTIONS)
    (itm_kwargs, itm_output), (itc_kwargs, _) = forward_calls
    assert itm_kwargs["use_image_text_matching_head"] is True and itc_kwargs["use_image_text_matching_head"] is False
    logits = itm_output.logits_per_image
    assert logits.shape == (4, 2)
    expected = logits.softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(result.itm_probability, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.itm_logits, logits.numpy())
    assert result.ranking == list(np.argsort(-expected, kind="stable"))
    table = result.table
    assert [row[1] for row in table] == [result.captions[i] for i in result.ranking]
    assert [row[2] for row in table] == sorted((row[2] for row in table), reverse=True)


def test_each_caption_reaches_the_model_paired_with_the_image(forward_calls):
    """N captions → N rows of ids (a caption keeps its comma), the ITM batch pairs the one image with each."""
    result = run_blip2_matching(scene(64, 64, 2), CAPTIONS)
    (itm_kwargs, _), (itc_kwargs, _) = forward_calls
    tokenizer = models.get(BLIP2_ITM).processor.tokenizer
    ids = itm_kwargs["input_ids"]
    assert ids.shape[0] == 4 and result.captions == CAPTIONS.splitlines()
    decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert [text.replace(" ", "") for text in decoded] == [c.replace(" ", "") for c in result.captions]
    pixels = itm_kwargs["pixel_values"]
    assert pixels.shape[0] == 4 and all(torch.equal(pixels[0], pixels[i]) for i in range(4))
    assert torch.equal(itc_kwargs["pixel_values"], pixels[:1]) and torch.equal(itc_kwargs["input_ids"], ids)
    assert len(result.table) == 4 and result.parameters["captions"] == 4


def test_itc_is_the_best_query_cosine_recomputed_from_the_q_former():
    """Recompute ITC from the model's parts: the 32 query outputs and the text's [CLS], each projected and
    normalised; the similarity is the largest of the 32 cosines (not their mean, not one query)."""
    handle = models.get(BLIP2_ITM)
    model = handle.model
    picture = scene(80, 64, 3)
    result = run_blip2_matching(picture, CAPTIONS)
    inputs = handle.processor(images=picture, text=result.captions, return_tensors="pt", padding=True)
    with torch.no_grad():
        patches = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
        queries = model.qformer(query_embeds=model.query_tokens, encoder_hidden_states=patches,
                                encoder_attention_mask=torch.ones(patches.shape[:-1], dtype=torch.long))[0]
        text = model.qformer(query_embeds=model.embeddings(input_ids=inputs["input_ids"]), query_length=0,
                             attention_mask=inputs["attention_mask"])[0][:, 0]
        z = torch.nn.functional.normalize(model.vision_projection(queries[0]), dim=-1)
        t = torch.nn.functional.normalize(model.text_projection(text), dim=-1)
    cosines = (z @ t.T).numpy()
    assert cosines.shape == (model.config.num_query_tokens, 4) == (32, 4)
    np.testing.assert_allclose(result.query_cosines, cosines, atol=1e-5)
    np.testing.assert_allclose(result.itc_similarity, cosines.max(0), atol=1e-5)
    assert not np.allclose(cosines.max(0), cosines.mean(0))
    assert [row[6] for row in result.table] == [int(cosines[:, i].argmax()) for i in result.ranking]


def test_bad_inputs_are_refused_with_a_clear_message():
    picture = scene(64, 64)
    with pytest.raises(UserError, match="at least one caption"):
        run_blip2_matching(picture, "\n  \n")
    with pytest.raises(UserError, match=f"At most {MAX_CAPTIONS} captions"):
        run_blip2_matching(picture, "\n".join(f"caption {i}" for i in range(MAX_CAPTIONS + 1)))
    with pytest.raises(UserError, match="image"):
        run_blip2_matching(None, CAPTIONS)
    with pytest.raises(UserError, match="Duplicate caption"):
        run_blip2_matching(picture, "a cat\nA cat")


@pytest.mark.hub
def test_hub_itm_ranks_the_true_caption_first_for_the_cat():
    from PIL import Image

    from demos import ASSETS

    captions = "a photo of a cat\na photo of a dog\na photo of a car\na photo of an astronaut\na cup of coffee"
    result = run_blip2_matching(Image.open(ASSETS / "chelsea.jpg"), captions)
    assert result.captions[result.ranking[0]] == "a photo of a cat"
    assert result.itm_probability[0] > 0.5 > max(result.itm_probability[1:])
    assert int(np.argmax(result.itc_similarity)) == 0
