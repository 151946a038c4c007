"""The shared box editor's parsing and validation, and the GLIGEN tab on the tiny gated UNet,
and what each of its controls changes in the UNet's inputs."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image, ImageOps

import models
from demos.shared.boxes import (CANVAS_SIDE, Box, annotation_from_boxes, blank_canvas, boxes_from_annotation,
                         draw_boxes, example_layouts, layout_to_text, normalise, parse_layout)
from demos.shared.generation import read_parameters
from demos.tabs.gligen import run_gligen
from models import UserError
from models.gligen import GLIGEN, GLIGEN_INPAINTING, MAX_OBJECTS
from tests.spies import assert_classifier_free_guidance, call_arguments, step_inputs, unet_forward_calls

PROMPT = "a teddy bear and a red ball on a wooden table"


def test_text_form_reads_normalised_and_pixel_boxes_and_json():
    boxes = parse_layout("# a comment\nteddy bear: 0.1, 0.2, 0.5, 0.9\n\nred ball: 256 128 512 384")
    assert boxes == [Box("teddy bear", 0.1, 0.2, 0.5, 0.9), Box("red ball", 0.5, 0.25, 1.0, 0.75)]
    as_json = json.dumps({"prompt": PROMPT, "boxes": [{"phrase": b.phrase, "box": b.xyxy} for b in boxes]})
    assert parse_layout(as_json) == boxes
    assert parse_layout(layout_to_text(boxes)) == boxes


@pytest.mark.parametrize("pixels", [(0, 0, 512, 512), (17, 40, 301, 222), (100, 1, 101, 2)])
def test_pixel_to_normalised_round_trips(pixels):
    box = normalise("x", *pixels, CANVAS_SIDE, CANVAS_SIDE)
    assert all(0 <= value <= 1 for value in box.xyxy)
    assert box.to_pixels(CANVAS_SIDE, CANVAS_SIDE) == pixels
    assert normalise("x", *box.to_pixels(640, 480), 640, 480).to_pixels(640, 480) == box.to_pixels(640, 480)


def test_canvas_value_converts_both_ways():
    boxes = [Box("teddy bear", 0.125, 0.25, 0.5, 0.75)]
    value = annotation_from_boxes(boxes, blank_canvas())
    assert value["boxes"][0]["xmin"] == 64 and value["boxes"][0]["label"] == "teddy bear"
    assert boxes_from_annotation(value) == boxes
    assert boxes_from_annotation(None) == []


def test_example_layouts_parse_and_name_words_of_their_prompts():
    layouts = example_layouts()
    assert len(layouts) >= 3
    for layout in layouts:
        for box in parse_layout(layout.text):
            assert box.phrase in layout.prompt


def test_boxes_are_drawn_where_they_are():
    image = draw_boxes(Image.new("RGB", (100, 100), "white"), [Box("a", 0.2, 0.2, 0.6, 0.6)], width=1)
    assert image.getpixel((20, 40)) != (255, 255, 255) and image.getpixel((40, 40)) == (255, 255, 255)


def test_gligen_gets_normalised_xyxy_boxes_in_phrase_order(monkeypatch):
    pipe = models.get(GLIGEN)
    calls = call_arguments(monkeypatch, type(pipe))
    result = run_gligen(PROMPT, "red ball: 256, 128, 512, 384\nteddy bear: 0.1, 0.2, 0.5, 0.9", beta=0.5, steps=2,
                        seed=11)
    ((_, kwargs),) = calls
    assert kwargs["gligen_phrases"] == ["red ball", "teddy bear"]
    assert kwargs["gligen_boxes"] == [[0.5, 0.25, 1.0, 0.75], [0.1, 0.2, 0.5, 0.9]]
    assert kwargs["gligen_scheduled_sampling_beta"] == 0.5 and kwargs["num_inference_steps"] == 2
    assert result.parameters["seed"] == 11
    again = run_gligen(PROMPT, "red ball: 256, 128, 512, 384\nteddy bear: 0.1, 0.2, 0.5, 0.9", beta=0.5, steps=2,
                       seed=11)
    assert list(again.image.getdata()) == list(result.image.getdata())  # same seed


def test_inserting_into_an_image_uses_the_inpainting_checkpoint_with_that_image(monkeypatch):
    from demos import ASSETS

    pipe = models.get(GLIGEN_INPAINTING)
    assert pipe.unet.config.in_channels == 9  # latent + masked-image latent + mask
    calls = call_arguments(monkeypatch, type(pipe))
    result = run_gligen(PROMPT, "red ball: 0.6,0.5,0.9,0.8", steps=2, seed=1, image=str(ASSETS / "coffee.jpg"))
    ((called, kwargs),) = calls
    assert called is pipe and kwargs["gligen_inpaint_image"].size == Image.open(ASSETS / "coffee.jpg").size
    assert result.parameters["model"] == GLIGEN_INPAINTING
    assert result.image.size == (pipe.vae.config.sample_size,) * 2


def test_inserting_with_the_same_seed_gives_the_same_image_whatever_ran_before():
    """The pipeline noises the inpainting latent with torch's global generator; the seed must still decide."""
    import torch

    from demos import ASSETS

    def insert(seed: int) -> list:
        torch.rand(7)  # other work advances the global generator between requests
        result = run_gligen(PROMPT, "red ball: 0.6,0.5,0.9,0.8", steps=2, seed=seed, image=str(ASSETS / "coffee.jpg"))
        return list(result.image.getdata())

    first = insert(5)
    assert insert(5) == first
    assert insert(6) != first
    state = torch.random.get_rng_state()
    run_gligen(PROMPT, "red ball: 0.6,0.5,0.9,0.8", steps=2, seed=5, image=str(ASSETS / "coffee.jpg"))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left as it was


@pytest.mark.parametrize("layout, message", [
    ("ball: -0.1, 0.2, 0.5, 0.9", "outside the image"),
    ("ball: 0.4, 0.2, 0.1, 0.9", "no area"),
    ("", "at least one box"),
    ("\n".join(["ball: 0.1,0.1,0.4,0.4"] * (MAX_OBJECTS + 1)), f"At most {MAX_OBJECTS} boxes"),
    ("ball 0.1 0.1 0.4 0.4", "phrase: x0, y0, x1, y1"),
])
def test_gligen_refuses_bad_layouts(layout, message):
    with pytest.raises(UserError, match=message):
        run_gligen(PROMPT, layout, steps=1)


def test_box_endpoints_answer_through_gradio_client(app_server):
    from gradio_client import Client

    client = Client(app_server.url, verbose=False)
    layout = "teddy bear: 0.1,0.2,0.5,0.9\nred ball: 320, 256, 480, 448"
    boxed, image, plain, info, guided_maps, plain_maps, energy, seed = client.predict(
        PROMPT, layout, 2, 1, 2, 30, 0.2, 7.5, 9, False, True, 0.0, 1, api_name="/layout_guidance")
    assert seed == 9 and "teddy bear" in info
    assert read_parameters(image)["boxes"][1] == ["red ball", 0.625, 0.5, 0.9375, 0.875]
    assert Image.open(guided_maps).size == Image.open(plain_maps).size
    boxed, image, grounding, seed = client.predict(PROMPT, layout, 0.3, 2, 7.5, 4, False, None, api_name="/gligen")
    assert seed == 4 and [row[0] for row in grounding] == ["teddy bear", "red ball"]
    plain, guided, gligen, seed = client.predict(PROMPT, layout, 2, 6, False, api_name="/boxes_side_by_side")
    assert seed == 6 and Image.open(plain).size == Image.open(gligen).size
    with pytest.raises(Exception, match="phrase 'dragon' is not in the prompt"):
        client.predict(PROMPT, "dragon: 0.1,0.1,0.5,0.5", 2, 1, 2, 30, 0.2, 7.5, 9, False, True, 0.0, 1,
                       api_name="/layout_guidance")


# ---- every control of the tab reaches the gated UNet ---------------------------------------------------

LAYOUT = "teddy bear: 0.1,0.2,0.5,0.9\nred ball: 0.6,0.5,0.9,0.8"


def spy_on_unet(monkeypatch, model: str) -> list[SimpleNamespace]:
    """Each call of `model`'s UNet: its latent input, text embedding and output, and which of its gated
    self-attention (grounding) layers were on."""
    from diffusers.models.attention import GatedSelfAttentionDense

    unet = models.get(model).unet
    gates = [module for module in unet.modules() if isinstance(module, GatedSelfAttentionDense)]
    assert gates
    return unet_forward_calls(monkeypatch, unet, grounded=lambda: {gate.enabled for gate in gates})


@pytest.fixture
def unet_calls(monkeypatch) -> list[SimpleNamespace]:
    return spy_on_unet(monkeypatch, GLIGEN)


def direction(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor / tensor.norm()).flatten()


def test_the_prompt_is_the_text_the_unet_reads(unet_calls):
    pipe = models.get(GLIGEN)
    for prompt in (PROMPT, "a red ball next to a teddy bear on the beach"):
        unet_calls.clear()
        run_gligen(prompt, LAYOUT, steps=1, seed=1)
        expected, _ = pipe.encode_prompt(prompt, pipe.device, 1, False)
        for call in unet_calls:
            _, conditional = call.text.chunk(2)
            torch.testing.assert_close(conditional, expected)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0, 9.0])
def test_the_cfg_scale_weights_the_prompts_noise_prediction_against_the_unconditional_one(
        guidance_scale, unet_calls, monkeypatch):
    used = step_inputs(monkeypatch, type(models.get(GLIGEN).scheduler))
    run_gligen(PROMPT, LAYOUT, steps=1, guidance_scale=guidance_scale, seed=1)
    assert_classifier_free_guidance([call.output for call in unet_calls], used, guidance_scale)


@pytest.mark.parametrize("beta, steps", [(0.0, 3), (0.5, 3), (1.0, 3), (0.5, 1)])
def test_beta_is_the_share_of_denoising_calls_with_the_grounding_layers_on_and_steps_their_number(
        beta, steps, unet_calls):
    run_gligen(PROMPT, LAYOUT, beta=beta, steps=steps, seed=1)
    scheduler = type(models.get(GLIGEN).scheduler).from_config(models.get(GLIGEN).scheduler.config)
    scheduler.set_timesteps(steps)  # PNDM adds a warm-up call to the steps asked for
    assert len(unet_calls) == len(scheduler.timesteps)
    grounded = int(beta * len(unet_calls))
    assert [call.grounded for call in unet_calls] == [{index < grounded} for index in range(len(unet_calls))]


def test_the_seed_draws_the_starting_latent_and_randomize_draws_a_fresh_seed(unet_calls):
    for seed, randomize in ((1, False), (2, False), (1, True)):
        unet_calls.clear()
        result = run_gligen(PROMPT, LAYOUT, steps=1, seed=seed, randomize=randomize)
        used = result.parameters["seed"]
        assert used != seed if randomize else used == seed
        start = unet_calls[0].sample[:1]
        noise = torch.randn(start.shape, generator=torch.Generator().manual_seed(used))
        torch.testing.assert_close(direction(start), direction(noise))


def test_the_image_to_insert_into_is_what_the_inpainting_unet_sees_outside_the_boxes(monkeypatch):
    """The inpainting UNet reads 4 extra channels of the image's latent, zeroed inside the boxes, and the
    box mask: a different image changes the former, not the latter."""
    from demos import ASSETS

    calls = spy_on_unet(monkeypatch, GLIGEN_INPAINTING)
    coffee = Image.open(ASSETS / "coffee.jpg").convert("RGB")
    seen = []
    for picture in (coffee, ImageOps.flip(coffee)):
        calls.clear()
        run_gligen(PROMPT, "red ball: 0.6,0.5,0.9,0.8", steps=1, seed=1, image=picture)
        image_latent, mask = calls[0].sample[:1, 4:8], calls[0].sample[:1, 8:]
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        assert (image_latent * (1 - mask)).abs().max() == 0  # nothing of the image inside the box
        seen.append((image_latent, mask))
    (first, first_mask), (second, second_mask) = seen
    assert torch.equal(first_mask, second_mask) and not torch.allclose(first, second)
