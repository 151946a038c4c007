"""Browser: the page a class finds its way around — every topic and every paper tab in its bar (no "More
tabs" menu) at a laptop's 1280×800 and a projector's 1024×768, in English and Chinese; the Start tab's
topics and lesson links; a setup link that reopens a paper tab two levels down with its inputs."""
from __future__ import annotations

import pytest

from demos import DEMOS, TOPICS
from demos.page.i18n import table
from demos.page.navigation import topics_with
from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()

from playwright.sync_api import expect  # noqa: E402 (after the skip: Chromium may be missing)

EN, ZH = table("en"), table("zh")
KEY = {text: key for key, text in EN.items()}


def shown(text: str, language: str) -> str:
    return ZH[KEY[text]] if language == "zh" else text


def bar_tabs(page, bar) -> list[str]:
    return [tab.inner_text().strip() for tab in bar.get_by_role("tab").all() if tab.is_visible()]


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("size", [(1280, 800), (1024, 768)], ids=["1280x800", "1024x768"])
def test_every_topic_and_paper_tab_is_in_its_bar(app_server, page, size, language):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(f"{app_server.url}?lang={language}", wait_until="load")
    topics = page.locator("#topics > .tab-wrapper")
    expect(topics.get_by_role("tab", name=shown("Start", language), exact=True)).to_be_visible(timeout=30_000)
    assert bar_tabs(page, topics) == [shown("Start", language), *[shown(t.title, language) for t in TOPICS]]
    assert not page.locator("#topics > .tab-wrapper").get_by_role("button", name="More tabs").count()
    for topic, members in topics_with(DEMOS):
        topics.get_by_role("tab", name=shown(topic.title, language), exact=True).click()
        if len(members) > 1:
            papers = page.locator(".paper-tabs").filter(visible=True).locator(":scope > .tab-wrapper")
            expect(papers.get_by_role("tab").first).to_be_visible()
            assert bar_tabs(page, papers) == [shown(demo.title, language) for demo in members], topic.title
            assert not papers.get_by_role("button", name="More tabs").count(), topic.title
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"navigation-{size[0]}x{size[1]}-{language}.png"))


def test_the_start_page_lists_the_topics_and_opens_a_lesson_from_its_link(app_server, page):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{app_server.url}?lang=en", wait_until="load")  # the switch is remembered: back to English
    for topic in TOPICS:
        expect(page.locator(".prose.start-topic").filter(has_text=topic.summary[:40])).to_be_visible(timeout=30_000)
    expect(page.locator("#start-readiness")).to_contain_text("Segment Anything")
    with page.expect_popup() as opened:  # gradio opens a Markdown link in a new tab
        page.locator("#start-lessons").get_by_role("link", name="Controlling generation").click()
    lesson = opened.value
    expect(lesson.locator("#lesson-counter")).to_contain_text("1 / 6 · ControlNet", timeout=30_000)
    expect(lesson.locator("#lessons.open")).to_have_count(1)
    expect(lesson.get_by_role("tab", name="ControlNet", exact=True)).to_have_attribute("aria-selected", "true")
    lesson.screenshot(path=str(ARTIFACTS / "start-lesson-link.png"))
    lesson.close()


def test_a_setup_link_reopens_a_paper_tab_two_levels_down_with_its_inputs(app_server, browser_context):
    """After a run, "Copy a link to this exact setup" gives a link that opens the same paper tab (the page
    keeps it in its address) with that run's results (gradio's deep link)."""
    browser_context.grant_permissions(["clipboard-read", "clipboard-write"])
    teacher = browser_context.new_page()
    teacher.goto(f"{app_server.url}?lang=en", wait_until="load")
    open_tab(teacher, "BEiT vs MAE")
    teacher.locator("#mim-examples img").first.click()  # an example photo
    expect(teacher.locator("#mim-image img").first).to_be_visible(timeout=30_000)
    teacher.get_by_text("patches I click", exact=True).click()
    teacher.locator("#mim-patches textarea").fill("1 1\n2 2")
    teacher.locator("#mim-run").click()
    expect(teacher.locator("#mim-info")).to_contain_text("2 of 64 patches masked", timeout=60_000)
    teacher.get_by_role("button", name="Copy a link to this exact setup").click()
    teacher.wait_for_function("async () => (await navigator.clipboard.readText()).includes('deep_link=')")
    link = teacher.evaluate("() => navigator.clipboard.readText()")
    assert "tab=BEiT+vs+MAE" in link or "tab=BEiT%20vs%20MAE" in link, link
    teacher.close()
    student = browser_context.new_page()
    student.goto(link, wait_until="load")
    expect(student.get_by_role("tab", name="BEiT vs MAE", exact=True)).to_have_attribute("aria-selected", "true",
                                                                                       timeout=30_000)
    expect(student.locator("#mim-info")).to_contain_text("2 of 64 patches masked")
    student.close()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_formulas_render_as_mathematics(app_server, page, language):
    """The tabs' formulas are LaTeX, typeset by the page (KaTeX) in both languages."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{app_server.url}?lang={language}", wait_until="load")
    for tab, at_least in (("How diffusion samples", 3), ("InstructPix2Pix", 4), ("Universal guidance", 2)):
        open_tab(page, tab)
        expect(page.locator(".katex-display, .katex").filter(visible=True).first).to_be_visible(timeout=30_000)
        assert page.locator(".katex").filter(visible=True).count() >= at_least, tab
        assert not page.get_by_text("$$", exact=False).filter(visible=True).count(), f"{tab}: raw LaTeX shown"
    open_tab(page, "How diffusion samples")
    page.screenshot(path=str(ARTIFACTS / f"formulas-{language}.png"))
    page.goto(f"{app_server.url}?lang=en", wait_until="load")  # the switch is remembered: back to English


def test_a_chinese_page_shows_chinese_choices_table_headers_and_errors(app_server, page):
    """Choices are translated labels over unchanged API values, table headers follow the page's language,
    and a refused request says why in Chinese."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{app_server.url}?lang=zh", wait_until="load")
    open_tab(page, "Universal guidance")
    for choice in ("face identity", "segmentation", "CLIP style"):
        expect(page.get_by_text(shown(choice, "zh"), exact=True).filter(visible=True).first).to_be_visible(
            timeout=30_000)
    open_tab(page, "unCLIP")
    headers = page.locator("#unclip-results thead span.header")
    expect(headers.first).to_have_text(shown("embeddings compared", "zh"), timeout=30_000)
    open_tab(page, "CLIP zero-shot")
    examples = page.locator(".paper-tab:visible thead th[role=columnheader]:not(.header-cell)")  # an Examples table
    expect(examples.first).to_have_text(shown("Image", "zh"), timeout=30_000)
    assert not [header for header in examples.all_inner_texts() if header.strip() in KEY and
                header.strip() != shown(header.strip(), "zh")], examples.all_inner_texts()
    page.locator("#run-clip_zero_shot").click()  # no image yet
    expect(page.locator(".toast-body").filter(has_text="请提供").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "chinese-error.png"))
    page.goto(f"{app_server.url}?lang=en", wait_until="load")  # the switch is remembered: back to English
