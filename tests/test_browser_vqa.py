"""Browser test: ask a question on an example in the tiny profile and see both models answer."""
from __future__ import annotations

import re

from tests.conftest import ARTIFACTS, open_tab, require_browser

require_browser()


def test_vqa_tab_answers_an_example_on_both_sides(app_server, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "Visual QA: BLIP-2 vs LLaVA")
    page.get_by_role("gridcell", name="What is in the cup?").click()
    expect(page.get_by_role("textbox", name="Question")).to_have_value("What is in the cup?", timeout=15_000)
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#vqa-blip2-info")).to_contain_text("32 image tokens", timeout=90_000)
    expect(page.locator("#vqa-llava-info")).to_contain_text(re.compile(r"(576|729) image tokens"), timeout=90_000)
    expect(page.locator("#vqa-blip2-prompt textarea")).to_have_value("Question: What is in the cup? Answer:")
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value(re.compile(r"<image>\s*\n?What is in the cup\?"))
    chat = page.locator("#vqa-llava-chat")
    user_turns, bot_turns = chat.locator("[data-testid='user']"), chat.locator("[data-testid='bot']")
    expect(user_turns).to_have_count(1)
    expect(bot_turns).to_have_count(1)
    expect(user_turns.first).to_contain_text("What is in the cup?")
    page.screenshot(path=str(ARTIFACTS / "vqa.png"), full_page=True)

    # Regenerate replaces the last answer; a follow-up question extends the chat.
    seed = page.get_by_role("spinbutton", name="Seed")
    expect(seed).to_have_value("0")
    page.get_by_label("Random seed").check()
    page.get_by_role("button", name="Regenerate", exact=True).click()
    expect(seed).not_to_have_value("0", timeout=90_000)  # the run happened and returned the seed it drew
    expect(page.locator("#vqa-llava-info")).to_contain_text("image tokens", timeout=90_000)
    expect(user_turns).to_have_count(1)
    expect(bot_turns).to_have_count(1)
    page.get_by_role("textbox", name="Question").fill("Is it hot?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(user_turns).to_have_count(2, timeout=90_000)
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value(re.compile(r"What is in the cup\?.*Is it hot\?",
                                                                                re.S), timeout=90_000)

    page.get_by_role("button", name="Clear chat", exact=True).click()
    expect(chat).not_to_contain_text("What is in the cup?", timeout=15_000)


def test_instructblip_is_selectable_on_either_side(app_server, page):
    """InstructBLIP (MiniGPT-4's stand-in) answers on the left next to LLaVA, then on the right."""
    from playwright.sync_api import expect

    page.goto(app_server.url)
    expect(page.locator("#tiny-banner")).to_contain_text("random weights", timeout=30_000)
    open_tab(page, "Visual QA: BLIP-2 vs LLaVA")
    page.get_by_role("gridcell", name="What is in the cup?").click()
    expect(page.get_by_role("textbox", name="Question")).to_have_value("What is in the cup?", timeout=15_000)
    option = re.compile(r"^instructblip-vicuna-7b")

    page.locator(".vqa-model input").first.click()
    page.get_by_role("option", name=option).click()
    page.get_by_role("button", name="Ask", exact=True).click()
    left_info = page.locator("#vqa-blip2-info")
    expect(left_info).to_contain_text("instructblip-vicuna-7b", timeout=90_000)
    expect(left_info).to_contain_text("32 image tokens")
    expect(left_info).to_contain_text("MiniGPT-4")
    expect(page.locator("#vqa-blip2-prompt textarea")).to_have_value("What is in the cup?")
    expect(page.locator("#vqa-llava-info")).to_contain_text(re.compile(r"(576|729) image tokens"), timeout=90_000)

    page.locator(".vqa-model input").nth(1).click()
    page.get_by_role("option", name=option).click()
    page.get_by_role("button", name="Ask", exact=True).click()
    right_info = page.locator("#vqa-llava-info")
    expect(right_info).to_contain_text("MiniGPT-4", timeout=90_000)
    expect(right_info).to_contain_text("32 image tokens")
    expect(page.locator("#vqa-llava-prompt textarea")).to_have_value("What is in the cup?")
    page.screenshot(path=str(ARTIFACTS / "vqa_instructblip.png"), full_page=True)
