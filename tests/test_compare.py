"""The Compare tab: cells equal each tab's own run_*, exports re-run, failures stay in their cell."""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from PIL import Image

import models
from demos import ASSETS
from demos.tabs import compare
from demos.tabs.clip_zero_shot import SCORES, run_clip_zero_shot
from demos.tabs.compare import Plan, compare_grid, export, load_preset, plan_from_json, run_compare
from demos.shared.generation import read_parameters
from models import ModelUnavailable, UserError

CAT = Image.open(ASSETS / "chelsea.jpg").convert("RGB")
THREE = ["clip-vit-base-patch32", "clip-vit-base-patch16", "clip-vit-large-patch14"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


def plan(**overrides) -> Plan:
    values = dict(task=SCORES.name, methods=THREE, inputs={"image": CAT, "labels": "cat, dog, fox"},
                  sweep="template", values=TEMPLATES)
    return Plan(**{**values, **overrides})


def test_three_methods_by_two_values_equal_each_methods_own_run():
    grid = compare_grid(plan())
    assert [len(row) for row in grid] == [2, 2, 2]
    for row, model in enumerate(THREE):
        for column, template in enumerate(TEMPLATES):
            cell = grid[row][column]
            own = run_clip_zero_shot(CAT, "cat, dog, fox", template, model)
            assert cell.method == model and cell.parameters == {"template": template} and not cell.error
            assert cell.output.scores == pytest.approx(dict(zip(own.labels, own.probabilities)), abs=1e-6)
    # different models really are different models, not one answer copied
    assert grid[0][0].output.scores != pytest.approx(grid[2][0].output.scores, abs=1e-4)


def test_exported_json_reruns_to_the_same_grid_and_png_carries_parameters():
    original = plan()
    grid = compare_grid(original)
    png, json_path = export(original, grid)
    rerun = compare_grid(plan_from_json(open(json_path).read()))
    assert [[c.output.scores for c in row] for row in rerun] == [[c.output.scores for c in row] for row in grid]
    metadata = read_parameters(png)
    assert metadata["methods"] == THREE and metadata["values"] == TEMPLATES
    assert len(metadata["cells"]) == 3 and metadata["cells"][1][0]["parameters"] == {"template": TEMPLATES[0]}
    image = Image.open(png)
    assert image.width > 2 * compare.TILE and image.height > 3 * compare.TILE


def test_a_failing_method_fills_its_own_cell_and_the_rest_complete(monkeypatch):
    real_get = models.get

    def unavailable_b16(name, progress=None):
        if name == "clip-vit-base-patch16":
            raise ModelUnavailable("Could not load clip-vit-base-patch16 from 'openai/clip-vit-base-patch16'")
        return real_get(name, progress)

    monkeypatch.setattr(models, "get", unavailable_b16)
    grid = compare_grid(plan())
    assert all("clip-vit-base-patch16" in cell.error for cell in grid[1])
    assert all(cell.output is not None and not cell.error for row in (grid[0], grid[2]) for cell in row)
    assert "error: Could not load" in grid[1][0].caption


def test_cells_stream_in_as_they_finish():
    seen = [(row, column) for row, column, _ in run_compare(plan())]
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_preset_loads_and_runs():
    preset = load_preset("clip-three-models-two-templates")
    assert preset.methods == THREE and preset.inputs["image"].size == Image.open(ASSETS / "chelsea.jpg").size
    assert len(compare_grid(preset)) == 3


@pytest.mark.parametrize("overrides, message", [
    (dict(methods=[]), "at least one method"),
    (dict(methods=["stable-diffusion-9"]), "Not a method"),
    (dict(sweep="guidance_scale"), "no parameter 'guidance_scale'"),
    (dict(values=[]), "at least one value"),
    (dict(task="telepathy"), "Unknown task"),
    (dict(values=[f"{i} {{}}" for i in range(20)]), "more than the limit"),
])
def test_bad_plans_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        list(run_compare(plan(**overrides)))


def test_parse_values_and_bad_json():
    assert compare.parse_values("5, 7.5,10", 7.5) == [5.0, 7.5, 10.0]
    assert compare.parse_values("a {}\nb, {}", "x") == ["a {}", "b, {}"]
    assert compare.parse_values("20, 30", 25) == [20, 30]
    with pytest.raises(UserError, match="must be numbers"):
        compare.parse_values("high, low", 7.5)
    with pytest.raises(UserError, match="not a comparison"):
        plan_from_json(json.dumps({"methods": []}))
    with pytest.raises(UserError, match="not a comparison"):
        plan_from_json(json.dumps({"task": SCORES.name, "methods": [], "inputs": {"image": "../../etc/passwd"}}))


def test_image_cells_equal_the_controlnet_tabs_own_images():
    from demos.tabs.controlnet import run_controlnet

    image_plan = load_preset("one-control-map-three-methods")
    image_plan.sweep, image_plan.values = "steps", [3]
    image_plan.inputs["prompt"] = "an astronaut"
    grid = compare_grid(Plan(**{**image_plan.__dict__, "methods": image_plan.methods[:2]}))
    own = run_controlnet(image_plan.inputs["control_image"], "canny", "an astronaut", seed=0, steps=3,
                         guidance_scale=7.5, compare_plain=True)
    plain, controlnet = grid[0][0].output.image, grid[1][0].output.image
    assert np.array_equal(np.asarray(plain), np.asarray(own.plain_images[0]))
    assert np.array_equal(np.asarray(controlnet), np.asarray(own.images[0]))
    assert not np.array_equal(np.asarray(plain), np.asarray(controlnet))


def test_answer_cells_sweep_the_question_through_the_vqa_tabs_own_functions():
    from demos.tabs.vqa import answer_blip2

    questions = load_preset("blip2-vs-llava-five-questions")
    questions.values = questions.values[:2]
    grid = compare_grid(Plan(**{**questions.__dict__, "methods": ["blip2-opt-2.7b"]}))
    for cell, question in zip(grid[0], questions.values):
        assert cell.parameters == {"question": question} and not cell.error
        assert cell.output.text == answer_blip2(questions.inputs["image"], question, model="blip2-opt-2.7b").answer


def test_box_cells_equal_the_layout_guidance_and_gligen_tabs_own_images():
    from demos.tabs.gligen import run_gligen
    from demos.tabs.layout_guidance import run_layout_guidance

    layout = load_preset("one-layout-four-methods")
    layout.methods, layout.sweep, layout.values = ["Layout guidance (Chen et al.)", "GLIGEN"], "steps", [3]
    grid = compare_grid(layout)
    prompt, boxes = layout.inputs["prompt"], layout.inputs["boxes"]
    guided = run_layout_guidance(prompt, boxes, steps=3, seed=445, compare_unguided=False)
    gligen = run_gligen(prompt, boxes, steps=3, seed=445)
    assert np.array_equal(np.asarray(grid[0][0].output.image), np.asarray(guided.image))
    assert np.array_equal(np.asarray(grid[1][0].output.image), np.asarray(gligen.image))


# ---- the tab's controls reach the comparison ---------------------------------------------------

def test_the_sweep_menu_offers_only_what_every_ticked_method_takes():
    """Ticking methods changes what can be swept: the parameters every ticked method takes, nothing else."""
    task, narrow, wide = next((task, a, b) for task in compare.tasks() for methods in [compare.methods_for(task)]
                              for a in methods for b in methods if set(a.parameters) < set(b.parameters))

    def offered(chosen):
        return {choice[1] if isinstance(choice, tuple) else choice
                for choice in compare.on_methods(task, [method.name for method in chosen]).choices}

    assert offered([wide]) == set(wide.parameters) and offered([narrow]) == set(narrow.parameters)
    assert offered([narrow, wide]) == set(narrow.parameters) != set(wide.parameters)
    assert offered([]) == set()


def test_the_slider_shows_the_two_cells_picked():
    tiles = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    captions = [f"{index}: cell {index}" for index in range(len(tiles))]
    assert compare.show_pair(tiles, captions[0], captions[2]) == (tiles[0], tiles[2])
    assert compare.show_pair(tiles, captions[2], captions[1]) == (tiles[2], tiles[1])
    assert compare.show_pair(tiles, None, captions[1]) is None
    assert compare.show_pair([], captions[0], captions[1]) is None


@pytest.fixture(scope="module")
def handlers():
    """The tab's event handlers by endpoint, as the page wires them."""
    import app
    from demos import DEMOS

    demo = next(d for d in DEMOS if d.module == "demos.tabs.compare")
    return {fn.api_name: fn.fn for fn in app.build_app([demo]).fns.values() if fn.api_name}


def widget_value(update):
    """What a widget holds after a handler returned `update` for it (a value, a component, or gr.update)."""
    if isinstance(update, dict):
        return update.get("value")
    return getattr(update, "value", update)


def tiles(images) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


PRESET = "clip-three-models-two-templates"


@pytest.mark.parametrize("name", [PRESET, "one-prompt-four-personalisations"])
def test_loading_a_preset_fills_every_widget_with_that_presets_plan(handlers, name):
    """The preset box names the plan that fills task, methods, the shared inputs, sweep and values."""
    loaded = [widget_value(update) for update in handlers["compare_preset"](name)]
    widgets = dict(zip(inspect.signature(handlers["compare"]).parameters, loaded))
    preset = load_preset(name)
    assert (widgets["task"], widgets["methods"], widgets["sweep"]) == (preset.task, preset.methods, preset.sweep)
    assert widgets["values"].splitlines() == [str(value) for value in preset.values]
    for field, value in preset.inputs.items():
        if isinstance(value, Image.Image):
            assert np.array_equal(np.asarray(widgets[field]), np.asarray(value))
        else:
            assert widgets[field] == value


@pytest.mark.parametrize("change", [
    {},
    {"methods": THREE[:1]},
    {"labels": "cat, dog"},
    {"values": "a photo of a {}."},
])
def test_preset_then_compare_runs_exactly_the_plan_the_widgets_hold(handlers, change):
    """Load a preset (task, methods, inputs, sweep and values fill their widgets), change one widget, press
    Compare: the grid is the one `compare_grid` gives for that plan, the exported JSON records it and the
    re-run of that JSON gives the same grid again."""
    loaded = [widget_value(update) for update in handlers["compare_preset"](PRESET)]
    compare_for_ui = handlers["compare"]
    names = list(inspect.signature(compare_for_ui).parameters)  # task, methods, one per shared input, sweep, values
    widgets = dict(zip(names, loaded))
    widgets.update(change)
    *_, (_, status, png, json_path, cells, left, right) = compare_for_ui(*[widgets[name] for name in names])
    preset = load_preset(PRESET)
    expected = Plan(task=widgets["task"], methods=widgets["methods"],
                    inputs={name: widgets[name] for name in preset.inputs}, sweep=widgets["sweep"],
                    values=compare.parse_values(widgets["values"], ""))
    reference = [compare.render_cell(cell) for row in compare_grid(expected) for cell in row]
    assert len(cells) == len(expected.methods) * len(expected.values) and status.startswith("Done")
    for got, want in zip(tiles(cells), tiles(reference)):
        assert np.array_equal(got, want)
    exported = json.loads(open(json_path).read())
    assert exported["methods"] == expected.methods and exported["values"] == expected.values
    assert exported["inputs"]["labels"] == widgets["labels"]
    *_, (_, _, _, _, rerun, _, _) = handlers["compare_rerun"](json_path)
    assert all(np.array_equal(got, want) for got, want in zip(tiles(rerun), tiles(reference)))


def test_sampler_cells_equal_the_samplers_tabs_own_images():
    from demos.tabs.samplers_and_guidance import COMPARE_METHODS, SAMPLER_NAMES, run_sampler

    names = [method.name for method in compare.methods_for("text + layout → image")]
    assert [method.name for method in COMPARE_METHODS] == [name for name in names if "sampler (diffusers)" in name]
    assert len(COMPARE_METHODS) == len(SAMPLER_NAMES)
    chosen = [method.name for method in COMPARE_METHODS if method.name.split()[1] in ("Heun", "DPM-Solver++")]
    grid = compare_grid(Plan("text + layout → image", chosen, {"prompt": "a red cube", "seed": 3}, sweep="steps",
                             values=[2]))
    heun, dpm = (run_sampler("a red cube", sampler, 2, seed=3).image for sampler in ("Heun", "DPM-Solver++"))
    assert np.array_equal(np.asarray(grid[0][0].output.image), np.asarray(heun))
    assert np.array_equal(np.asarray(grid[1][0].output.image), np.asarray(dpm))
    assert not np.array_equal(np.asarray(heun), np.asarray(dpm))
