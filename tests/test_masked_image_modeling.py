"""BEiT vs MAE tab: BEiT's [MASK] token goes exactly where the mask says, MAE masks the same patches and
keeps the visible ones in place, and BEiT's blockwise masking generator (tiny BEiT and MAE)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import models
from demos.tabs.masked_image_modeling import (LEGEND_CLASSES, MASK_MODES, blockwise_mask, class_colours,
                                              parse_patches, random_mask, run_beit_segmentation,
                                              run_masked_image_modeling, toggle_patch)
from models import UserError
from models.beit import ADE20K_LABELS, BEIT_ADE, BEIT_BASE, MAE_BASE
from tests.test_masks import scene


@pytest.fixture
def beit_embeddings():
    """The patch embeddings entering BEiT's mask substitution and the embeddings leaving it."""
    embeddings = models.get(BEIT_BASE).model.beit.embeddings
    seen = {}

    def keep(name):
        return lambda _, __, out: seen.update({name: (out if torch.is_tensor(out) else out[0]).detach()})

    hooks = [embeddings.patch_embeddings.register_forward_hook(keep("patches")),
             embeddings.register_forward_hook(keep("out"))]
    yield embeddings, seen
    for hook in hooks:
        hook.remove()


@pytest.mark.parametrize("mode", MASK_MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_the_chosen_patches_get_the_mask_token_and_only_they_are_predicted(beit_embeddings, mode, seed):
    embeddings, seen = beit_embeddings
    result = run_masked_image_modeling(scene(90, 70, seed), mode, 0.4, "0 0\n2 3\n7 7", seed=seed)
    mask = torch.from_numpy(result.mask)
    tokens = seen["out"][0, 1:]  # after [CLS]
    token = embeddings.mask_token[0, 0]
    assert torch.allclose(tokens[mask], token.expand(int(mask.sum()), -1))
    assert torch.allclose(tokens[~mask], seen["patches"][0][~mask])
    assert not torch.isclose(tokens[~mask], token).all(-1).any()
    rows, columns = np.divmod(np.flatnonzero(result.mask), result.side)
    assert [(row, column) for row, column, *_ in result.predictions] == list(zip(rows.tolist(), columns.tolist()))
    assert all(0 <= token_id < 8192 and 0 < p <= 1 for *_, token_id, p in result.predictions)
    if mode == "patches":
        assert sorted(zip(rows.tolist(), columns.tolist())) == [(0, 0), (2, 3), (7, 7)]


@pytest.mark.parametrize("mode", ["blockwise", "random"])
@pytest.mark.parametrize("seed", [0, 3])
def test_beit_predictions_are_its_argmax_and_probability_for_the_masked_patches(mode, seed):
    result = run_masked_image_modeling(scene(64, 64, seed), mode, 0.5, seed=seed)
    handle = models.get(BEIT_BASE)
    inputs = handle.processor(images=result.picture, return_tensors="pt")
    with torch.no_grad():
        logits = handle.model(**inputs, bool_masked_pos=torch.from_numpy(result.mask)[None]).logits[0]
    probabilities = logits.softmax(-1)[torch.from_numpy(result.mask)]
    assert [row[2] for row in result.predictions] == probabilities.argmax(-1).tolist()
    np.testing.assert_allclose([row[3] for row in result.predictions], probabilities.max(-1).values, atol=1e-4)


@pytest.mark.parametrize("mode", MASK_MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mae_masks_the_same_patches_and_keeps_the_visible_ones_in_place(mode, seed, monkeypatch):
    mae = models.get(MAE_BASE).model
    seen = {}
    forward = mae.forward

    def spy(*args, **kwargs):
        output = forward(*args, **kwargs)
        seen.update(mask=output.mask[0].bool(), ids_restore=output.ids_restore[0])
        return output

    monkeypatch.setattr(mae, "forward", spy)
    ratio = mae.config.mask_ratio
    result = run_masked_image_modeling(scene(80, 64, seed), mode, 0.3, "1 1\n4 6", seed=seed)
    assert mae.config.mask_ratio == ratio  # restored after the run
    assert torch.equal(seen["mask"], torch.from_numpy(result.mask))
    # MAE's encoder saw exactly the visible patches, in their own positions
    visible = torch.argsort(seen["ids_restore"])[: int((~result.mask).sum())]
    assert sorted(visible.tolist()) == np.flatnonzero(~result.mask).tolist()
    side, patch = result.side, mae.config.patch_size
    original = np.asarray(result.picture)
    shown = np.asarray(result.reconstruction.resize(result.picture.size, 0))  # nearest back to the model's side
    pixel_mask = np.kron(result.mask.reshape(side, side), np.ones((patch, patch), dtype=bool))
    assert np.array_equal(shown[~pixel_mask], original[~pixel_mask])
    predicted = np.asarray(result.reconstruction_only.resize(result.picture.size, 0))
    assert np.array_equal(shown[pixel_mask], predicted[pixel_mask])


def test_mae_patchify_round_trip():
    mae = models.get(MAE_BASE).model
    pixels = torch.randn(2, 3, mae.config.image_size, mae.config.image_size)
    assert torch.equal(mae.unpatchify(mae.patchify(pixels)), pixels)


@pytest.mark.parametrize("seed", range(6))
def test_blockwise_masking_as_in_beit(seed):
    """75 of 196 patches (or fewer, when ten tries in a row add nothing), reproducible from the seed,
    and in blocks: far less boundary between masked and visible patches than random masking's."""
    mask = blockwise_mask(14, 75, random.Random(seed))
    assert 60 <= mask.sum() <= 75
    assert np.array_equal(mask, blockwise_mask(14, 75, random.Random(seed)))
    scattered = random_mask(14, int(mask.sum()), random.Random(seed))
    assert scattered.sum() == mask.sum()
    assert boundary(mask.reshape(14, 14)) < 0.6 * boundary(scattered.reshape(14, 14))


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_the_mask_ratio_sets_how_many_patches_both_models_see_masked(beit_embeddings, ratio):
    """Random masking hides round(ratio·N) patches, and that many reach BEiT as [MASK] tokens; blockwise
    masking hides about that many (never more)."""
    embeddings, seen = beit_embeddings
    picture = scene(64, 64, 0)
    random_run = run_masked_image_modeling(picture, "random", ratio, seed=1)
    patches = random_run.side ** 2
    assert random_run.mask.sum() == round(ratio * patches) == random_run.parameters["masked"]
    token = embeddings.mask_token[0, 0]
    assert int(torch.isclose(seen["out"][0, 1:], token).all(-1).sum()) == round(ratio * patches)
    blockwise = run_masked_image_modeling(picture, "blockwise", ratio, seed=1)
    assert 0.5 * round(ratio * patches) <= blockwise.mask.sum() <= round(ratio * patches)


def boundary(grid: np.ndarray) -> int:
    """Edges between a masked and a visible patch."""
    return int((grid[1:] != grid[:-1]).sum() + (grid[:, 1:] != grid[:, :-1]).sum())


def test_patch_clicks_and_bad_inputs():
    text = toggle_patch("", 100, 30, 448, 8)
    assert text == "0 1"
    assert toggle_patch(text, 100, 30, 448, 8) == ""
    assert parse_patches("0 1; 7 7", 8).sum() == 2
    picture = scene(64, 64)
    with pytest.raises(UserError, match="row col"):
        run_masked_image_modeling(picture, "patches", patches="a b")
    with pytest.raises(UserError, match="outside"):
        run_masked_image_modeling(picture, "patches", patches="9 0")
    with pytest.raises(UserError, match="Click patches"):
        run_masked_image_modeling(picture, "patches", patches="")
    everything = "\n".join(f"{row} {column}" for row in range(8) for column in range(8))
    with pytest.raises(UserError, match="Every patch"):
        run_masked_image_modeling(picture, "patches", patches=everything)
    with pytest.raises(UserError, match="mask ratio"):
        run_masked_image_modeling(picture, "random", mask_ratio=1.0)
    with pytest.raises(UserError, match="masking"):
        run_masked_image_modeling(picture, "checkerboard")
    with pytest.raises(UserError, match="Please provide"):
        run_masked_image_modeling(None)


# ---- what pre-training buys: BEiT fine-tuned for ADE20K segmentation ---------------------------------

@pytest.fixture
def segmentation_logits(monkeypatch):
    """The logits of every call of the model the segmentation loads."""
    model = models.get(BEIT_ADE).model
    seen = []
    forward = model.forward

    def spy(*args, **kwargs):
        output = forward(*args, **kwargs)
        seen.append(output.logits.detach().clone())
        return output

    monkeypatch.setitem(vars(model), "forward", spy)
    return seen


@pytest.mark.parametrize("size", [(90, 70), (40, 64)])
def test_the_class_map_is_the_argmax_of_the_logits_upsampled_to_the_picture(segmentation_logits, size):
    result = run_beit_segmentation(scene(*size, seed=size[0]), opacity=0.5)
    (logits,) = segmentation_logits
    assert logits.shape[1] == 150
    upsampled = torch.nn.functional.interpolate(logits, size=size[::-1], mode="bilinear", align_corners=False)
    assert result.class_map.shape == size[::-1] == (result.picture.height, result.picture.width)
    assert np.array_equal(result.class_map, upsampled[0].argmax(0).numpy())
    assert len(np.unique(result.class_map)) > 1  # a random tiny model still labels pixels differently
    expected = np.rint(0.5 * np.asarray(result.picture, np.float32) + 0.5 * class_colours(150)[result.class_map])
    assert np.abs(np.asarray(result.overlay, np.float32) - expected).max() <= 1


def test_the_legend_lists_the_largest_classes_and_its_areas_sum_to_the_image():
    result = run_beit_segmentation(scene(120, 80, 5), opacity=1.0)
    ids, counts = np.unique(result.class_map, return_counts=True)
    by_area = sorted(zip(counts.tolist(), ids.tolist()), key=lambda pair: -pair[0])
    named = [row for row in result.legend if row[0] >= 0]
    assert [(row[4], row[0]) for row in named] == by_area[:LEGEND_CLASSES]
    assert [row[1] for row in named] == [ADE20K_LABELS[row[0]].strip() for row in named]
    assert sum(row[4] for row in result.legend) == 120 * 80
    assert abs(sum(row[3] for row in result.legend) - 100) < 0.1
    assert len(result.legend) == min(len(ids), LEGEND_CLASSES) + (len(ids) > LEGEND_CLASSES)
    overlay = np.asarray(result.overlay)  # at full opacity, each pixel is its class colour
    assert np.array_equal(overlay, class_colours(150)[result.class_map])


def test_the_segmentation_uses_the_fine_tuned_model_not_the_pre_trained_one():
    from transformers import BeitForSemanticSegmentation

    handle = models.get(BEIT_ADE)
    assert models.REGISTRY[BEIT_ADE].checkpoint == "microsoft/beit-base-finetuned-ade-640-640"
    assert isinstance(handle.model, BeitForSemanticSegmentation)
    assert [handle.model.config.id2label[i] for i in range(150)] == list(ADE20K_LABELS)
    result = run_beit_segmentation(scene(64, 64, 1))
    assert result.parameters["model"] == "microsoft/beit-base-finetuned-ade-640-640"
    assert models.get(BEIT_BASE).model is not handle.model


def test_segmentation_bad_inputs():
    with pytest.raises(UserError, match="Please provide"):
        run_beit_segmentation(None)
    with pytest.raises(UserError, match="opacity"):
        run_beit_segmentation(scene(64, 64), opacity=1.5)


@pytest.mark.hub
def test_hub_beit_finds_the_person_in_the_astronaut_photo():
    from PIL import Image

    from demos import ASSETS

    result = run_beit_segmentation(Image.open(ASSETS / "astronaut.jpg"))
    assert "person" in [row[1] for row in result.legend[:3]]
