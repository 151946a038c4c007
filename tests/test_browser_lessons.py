"""Browser tests: walk a lesson with Next only, open a step's link in a fresh page, and switch the page
to Chinese (every visible label of four tabs changes). Screenshots at 1280×800 go to artifacts/."""
from __future__ import annotations

import re

import pytest

from demos.page.i18n import table
from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()

from playwright.sync_api import expect  # noqa: E402 (after the skip: Chromium may be missing)

expect.set_options(timeout=30_000)  # panel updates on a 2-core machine shared with model runs

EN, ZH = table("en"), table("zh")
UNCHANGED = {text for key, text in EN.items() if ZH[key] == text}  # names: GLIGEN, LCM-LoRA, x_t, ...




def start(page, url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(url)
    expect(page.locator("#tiny-banner")).to_be_visible(timeout=30_000)
    if "lang=" not in url and page.evaluate("() => localStorage.getItem('pp-lang')"):  # a failed test's switch
        page.evaluate("() => localStorage.removeItem('pp-lang')")
        page.reload()
        expect(page.locator("#tiny-banner")).to_be_visible(timeout=30_000)


def open_lessons(page) -> None:
    """The Lessons sidebar slides in from the right (a step link opens it by itself)."""
    if not page.locator("#lessons.open").count():
        page.locator("#lessons .toggle-button").click()
    expect(page.locator("#lessons.open")).to_have_count(1)


def pick(page, title: str) -> None:
    open_lessons(page)
    page.locator("#lesson-pick input").click()
    page.get_by_role("option", name=title).click()


def selected_tabs(page) -> list[str]:
    return [tab.inner_text().strip() for tab in page.locator("[role=tab][aria-selected=true]").all() if tab.is_visible()]


def test_walk_vision_and_language_with_next_only(app_server, page):
    start(page, app_server.url)
    pick(page, "Vision and language")
    counter, text = page.locator("#lesson-counter"), page.locator("#lesson-text")
    expect(counter).to_contain_text("1 / 5 · CLIP zero-shot")
    assert "CLIP zero-shot" in selected_tabs(page) and "Classify one image" in selected_tabs(page)
    expect(page.get_by_label("Candidate labels (comma or newline separated)")).to_have_value("cat, dog, tiger, lion, fox")
    expect(page.locator("#clip-prompts")).to_contain_text("a photo of a fox.", timeout=60_000)  # the step ran itself
    for beside in ("#clip-top", "#lesson-text", "#lesson-next"):  # the result in view with the step, no scrolling
        expect(page.locator(beside)).to_be_in_viewport()
    page.screenshot(path=str(ARTIFACTS / "lesson-step-1.png"))

    page.locator("#lesson-next").click()
    expect(counter).to_contain_text("2 / 5 · CLIP zero-shot")
    expect(text).to_contain_text("Prompt ensembling")
    expect(page.get_by_label("Prompt templates, one per line ({} = label)")).to_have_value(re.compile(r"^itap of a \{\}\."))
    expect(page.locator("#clip-prompts")).to_contain_text("a origami cat.", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-step-2.png"))

    page.locator("#lesson-next").click()
    expect(counter).to_contain_text("3 / 5 · Visual QA: BLIP-2 vs LLaVA")
    assert "Visual QA: BLIP-2 vs LLaVA" in selected_tabs(page)
    expect(page.get_by_label("Question", exact=True)).to_have_value("What is the person wearing?")
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value(re.compile("What is the person wearing"),
                                                                      timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-step-3.png"))

    page.locator("#lesson-next").click()
    expect(counter).to_contain_text("4 / 5")
    expect(text).to_contain_text("Caption mode")
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value(re.compile("Describe the picture"),
                                                                      timeout=120_000)
    page.locator("#lesson-next").click()
    expect(counter).to_contain_text("5 / 5 · BLIP-2 matching")
    assert "BLIP-2 matching" in selected_tabs(page)
    page.locator("#lesson-next").click()  # past the last step: stays on it
    expect(counter).to_contain_text("5 / 5")
    page.locator("#lesson-previous").click()
    expect(counter).to_contain_text("4 / 5")


def test_a_step_link_opened_in_a_fresh_page_restores_the_tab_and_the_inputs(app_server, browser_context):
    teacher = browser_context.new_page()
    start(teacher, app_server.url)
    pick(teacher, "How diffusion samples: DDPM → DDIM η → LDM → LCM")
    for step in (2, 3):  # one click at a time: gradio drops a click made while the last one is pending
        teacher.locator("#lesson-next").click()
        expect(teacher.locator("#lesson-counter")).to_contain_text(f"{step} / 5")
    link = teacher.locator("#lesson-link textarea, #lesson-link input").first
    expect(link).to_have_value(re.compile(r"\?lesson=how-diffusion-samples&step=3$"))
    url = link.input_value()
    teacher.close()

    student = browser_context.new_page()
    start(student, url)
    expect(student.locator("#lesson-counter")).to_contain_text("3 / 5 · How diffusion samples")
    expect(student.locator("#lesson-text")).to_contain_text("DDIM η")
    assert "DDPM / DDIM (pixels)" in selected_tabs(student)
    expect(student.locator("#pixel-steps input[type=number]")).to_be_visible()
    expect(student.locator("#pixel-steps input[type=number]")).to_have_value("50")
    expect(student.get_by_label("η (DDIM only)").first).to_have_value("0")
    student.screenshot(path=str(ARTIFACTS / "lesson-link.png"))
    student.close()


def visible_english(page) -> list[str]:
    """Labels, buttons, tab and accordion titles on the page that are still an English text of the table."""
    texts = page.locator("[data-testid=block-info], [data-testid=block-label], button, [role=tab], label span")
    shown = set(texts.evaluate_all("els => els.filter(e => e.offsetParent && !e.closest('.visually-hidden'))"
                                   ".map(e => e.innerText.split('\\n')[0].trim())"))
    return sorted(shown & (set(EN.values()) - UNCHANGED))


def eventually(condition, seconds: float = 30) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)
    return condition()


@pytest.mark.parametrize("tab", ["CLIP zero-shot", "ControlNet", "Paint-by-Example", "How diffusion samples"])
def test_switching_to_chinese_changes_every_visible_label_of_a_tab(app_server, page, tab):
    start(page, app_server.url)
    open_tab(page, tab)
    assert eventually(lambda: len(visible_english(page)) >= 20), visible_english(page)  # the tab's labels are there
    english = visible_english(page)
    page.locator("#language-zh").click()
    expect(page.get_by_role("tab", name=ZH[next(k for k, v in EN.items() if v == "Start")])).to_be_visible()
    assert eventually(lambda: visible_english(page) == []), visible_english(page)
    for text in ("Seed", "Steps", "Prompt"):  # a few labels, by their Chinese text
        key = next(k for k, v in EN.items() if v == text)
        if text in english:
            expect(page.get_by_text(ZH[key], exact=True).filter(visible=True).first).to_be_visible()
    page.locator("#language-en").click()  # back, for the next test on this server
    assert eventually(lambda: set(visible_english(page)) >= set(english)), set(english) - set(visible_english(page))


def test_a_lesson_in_chinese(app_server, page):
    """The closing note's screenshots: one lesson's steps with the page in Chinese."""
    start(page, app_server.url + "?lang=zh")
    pick(page, "视觉与语言")
    expect(page.locator("#lesson-counter")).to_contain_text("1 / 5 · CLIP 零样本分类")
    expect(page.locator("#lesson-text")).to_contain_text("CLIP 把照片和每个标签")
    expect(page.locator("#clip-prompts")).to_contain_text("a photo of a fox.", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-zh-step-1.png"))
    page.locator("#lesson-next").click()
    expect(page.locator("#lesson-text")).to_contain_text("提示词集成")
    expect(page.locator("#clip-prompts")).to_contain_text("a origami cat.", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-zh-step-2.png"))
    page.locator("#lesson-next").click()
    expect(page.locator("#lesson-counter")).to_contain_text("3 / 5 · 视觉问答")
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value(re.compile("What is the person wearing"),
                                                                      timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "lesson-zh-step-3.png"))
    link = page.locator("#lesson-link textarea, #lesson-link input").first
    expect(link).to_have_value(re.compile(r"step=3&lang=zh$"))
    page.locator("#language-en").click()
