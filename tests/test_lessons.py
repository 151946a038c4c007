"""Lessons: every shipped lesson fits the page (tabs, endpoints, parameters, values), a malformed lesson
names its step and field, and a step loads the widgets it names (and only those) into the right tab."""
from __future__ import annotations

import copy
import json

import gradio as gr
import pytest

from demos import DEMOS
from demos.page.i18n import shipped_lesson_files, table
from demos.page.lessons import lesson_to_json, parse_lesson, read_lesson, step_link, widget_value
from models import UserError


@pytest.fixture(scope="module")
def app():
    from app import build_app

    return build_app()


@pytest.fixture(scope="module")
def endpoints(app):
    from demos.page.lessons import page_endpoints

    return page_endpoints(app)


def shipped(name: str) -> dict:
    return json.loads(next(p for p in shipped_lesson_files() if p.stem == name).read_text())


def test_the_four_lessons_the_course_needs_are_shipped_and_each_validates(endpoints):
    names = {path.stem for path in shipped_lesson_files()}
    assert {"vision-and-language", "controlling-generation", "editing-with-a-mask", "how-diffusion-samples",
            "from-ddpm-to-score-sdes"} <= names
    for path in shipped_lesson_files():
        lesson = read_lesson(path.read_text(), path.stem, endpoints)
        assert len(lesson.steps) >= 3
        for step in lesson.steps:
            assert step.tab in {demo.title for demo in DEMOS}
            assert set(step.inputs) <= set(endpoints[step.endpoint].parameters)
            assert isinstance(step.look_at, dict) and set(step.look_at) == {"en", "zh"}  # both languages


def test_the_lessons_cover_the_tabs_the_issue_names(endpoints):
    tabs = {name: [step["tab"] for step in shipped(name)["steps"]] for name in
            ("vision-and-language", "controlling-generation", "editing-with-a-mask", "how-diffusion-samples")}
    assert tabs["vision-and-language"][:3] == ["CLIP zero-shot", "CLIP zero-shot", "Visual QA: BLIP-2 vs LLaVA"]
    assert {"ControlNet", "Layout guidance", "GLIGEN"} <= set(tabs["controlling-generation"])
    assert tabs["editing-with-a-mask"] == ["Paint-by-Example", "Paint-by-Example", "Face swap (DiffFace)"]
    endpoints_used = [step["endpoint"] for step in shipped("how-diffusion-samples")["steps"]]
    assert endpoints_used == ["diffusion_forward", "pixel_sampler", "ddim_determinism", "latent_sampler", "lcm_vs_ddim"]
    theory = [step["endpoint"] for step in shipped("from-ddpm-to-score-sdes")["steps"]]
    assert theory == ["posterior_coefficients", "reverse_variance", "score_view", "score_sde", "unet_blocks",
                      "sampler_sweep", "cfg_branches", "ddim_inversion_error"]


BROKEN = [  # (what is changed in step 2 of the vision-and-language lesson, field the error must name)
    (lambda step: step.update(tab="CLIP zero shot"), "field 'tab'"),
    (lambda step: step.update(endpoint="vqa"), "field 'endpoint'"),  # an endpoint of another tab
    (lambda step: step["inputs"].update(label="cat"), "field 'inputs.label'"),
    (lambda step: step["inputs"].update(top_k="five"), "field 'inputs.top_k'"),
    (lambda step: step["inputs"].update(top_k=500), "field 'inputs.top_k'"),
    (lambda step: step["inputs"].update(model="clip-vit-huge"), "field 'inputs.model'"),
    (lambda step: step["inputs"].update(image="../app.py"), "field 'inputs.image'"),
    (lambda step: step["inputs"].update(labels=["cat", "dog"]), "field 'inputs.labels'"),
    (lambda step: step.pop("look_at"), "field 'look_at'"),
    (lambda step: step.update(look_at={"en": "x", "fr": "y"}), "field 'look_at'"),
    (lambda step: step.update(questoin="typo"), "field 'questoin'"),
]


@pytest.mark.parametrize("break_it, field", BROKEN)
def test_a_malformed_lesson_names_the_step_and_the_field(endpoints, break_it, field):
    data = copy.deepcopy(shipped("vision-and-language"))
    break_it(data["steps"][1])
    with pytest.raises(UserError) as error:
        parse_lesson(data, "mine", endpoints)
    assert "Lesson 'mine', step 2," in str(error.value) and field in str(error.value)


def test_a_file_that_is_not_a_lesson_says_where_it_breaks(endpoints):
    with pytest.raises(UserError, match=r"not valid JSON \(line 2"):
        read_lesson('{"title": "x",\n "steps": [,]}', "mine", endpoints)
    with pytest.raises(UserError, match="field 'steps'"):
        parse_lesson({"title": "x", "steps": []}, "mine", endpoints)
    with pytest.raises(UserError, match="step 1: must be an object"):
        parse_lesson({"title": "x", "steps": ["CLIP"]}, "mine", endpoints)


def test_an_exported_lesson_imports_back_to_the_same_steps(endpoints):
    path = next(p for p in shipped_lesson_files() if p.stem == "controlling-generation")
    lesson = read_lesson(path.read_text(), path.stem, endpoints)
    again = read_lesson(lesson_to_json(lesson), path.stem, endpoints)
    assert again == lesson


def test_a_step_sets_the_widgets_it_names_in_its_own_tab_and_sub_tab(app, endpoints):
    path = next(p for p in shipped_lesson_files() if p.stem == "how-diffusion-samples")
    lesson = read_lesson(path.read_text(), path.stem, endpoints)
    step = lesson.steps[2]  # DDIM η: the DDPM / DDIM sub-tab of "How diffusion samples"
    endpoint = endpoints[step.endpoint]
    (topic_bar, topic_tab), (paper_bar, paper_tab), (sub_bar, sub_tab) = endpoint.tabs
    assert topic_tab.id == "topic-diffusion" and paper_tab.id == "How diffusion samples"
    assert table("en")[sub_tab.label.key] == "DDPM / DDIM (pixels)"
    assert sub_bar in [block for block in app.blocks.values() if isinstance(block, gr.Tabs)]
    eta = endpoint.parameters["eta"].component
    assert isinstance(eta, gr.Slider) and widget_value(eta, step.inputs["eta"]) == 0.0
    image = endpoints["diffusion_forward"].parameters["image"].component
    assert widget_value(image, "astronaut.jpg").size == (512, 512)
    assert step_link(lesson, 2) == "?lesson=how-diffusion-samples&step=3"


def test_the_page_loads_every_shipped_lesson_into_the_panel(app):
    picker = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "lesson-pick")
    assert {value for _, value in picker.choices} == {path.stem for path in shipped_lesson_files()}


def test_imported_lessons_are_named_by_their_content():
    from demos.page.lessons import imported_name

    assert imported_name("a") == imported_name("a") != imported_name("b")
