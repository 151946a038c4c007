"""English and Simplified Chinese for the whole page, through gradio's own i18n (`gr.I18n`).

Tabs keep their English strings in code. The strings live in one file per language,
`demos/page/translations/en.json` and `zh.json` (the same keys). After the page is built, `translate_page`
replaces every label, info, placeholder, button text, tab and accordion title, choice and static
Markdown whose English text is in en.json with gr.I18n's key for it; the browser then shows it in its
language, or in the one picked with the page's language switch. Texts that are not in the table stay
English (tests/test_i18n.py lists every visible one, so a new tab's strings are reported). Paper
citations are not translated. Shipped lessons carry their own two languages, added here as keys.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from demos.shared.messages import LANGUAGES

TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def table(language: str) -> dict[str, str]:
    """key -> text for one language, as stored."""
    return json.loads((TRANSLATIONS / f"{language}.json").read_text())


def lesson_key(lesson: str, field: str, step: int | None = None) -> str:
    return f"pp_lesson_{lesson}_{field}" if step is None else f"pp_lesson_{lesson}_{step + 1}_{field}"


def text_in(value: str | dict[str, str], language: str = "en") -> str:
    """A lesson text in one language (English where that language is missing)."""
    if isinstance(value, str):
        return value
    return value.get(language) or value.get("en") or next(iter(value.values()), "")


def step_text(look_at: str | dict[str, str], question: str | dict[str, str], language: str) -> str:
    """What the class reads for a lesson step, in one language: what to look at, then the question."""
    text = text_in(look_at, language)
    asked = table(language if language in LANGUAGES else "en")["pp_question_for_the_class"]
    return text + (f"\n\n**{asked}** {text_in(question, language)}" if question else "")


def shipped_lesson_files() -> list[Path]:
    """The lessons that ship with the app (`assets/lessons/*.json`)."""
    from demos import ASSETS

    return sorted((ASSETS / "lessons").glob("*.json"))


def lesson_lines(language: str = "en") -> str:
    """The shipped lessons as a Markdown list of links to their first steps (the Start tab's)."""
    lines = []
    for path in shipped_lesson_files():
        data = json.loads(path.read_text())
        lines.append(f"- [{text_in(data['title'], language)}](?lesson={path.stem}&step=1) · {len(data['steps'])}")
    return "\n".join(lines)


def lesson_tables() -> dict[str, dict[str, str]]:
    """The shipped lessons' texts as keys per language (a text given as one string is the same in both)."""
    tables: dict[str, dict[str, str]] = {language: {"pp_lesson_links": lesson_lines(language)} for language in LANGUAGES}
    for path in shipped_lesson_files():
        data = json.loads(path.read_text())
        for language in LANGUAGES:
            tables[language][lesson_key(path.stem, "title")] = text_in(data["title"], language)
            for index, raw in enumerate(data["steps"]):
                tables[language][lesson_key(path.stem, "step", index)] = step_text(
                    raw["look_at"], raw.get("question") or "", language)
    return tables


def all_tables() -> dict[str, dict[str, str]]:
    from demos.shared.cards import card_tables  # the paper cards carry both languages too, like the lessons

    own, lessons = {language: table(language) for language in LANGUAGES}, lesson_tables()
    cards = card_tables(own)
    return {language: {**own[language], **lessons[language], **cards[language]} for language in LANGUAGES}


def translated(text: str) -> str:
    """`text` as a gr.I18n reference where the table has it (for a Markdown written by a handler)."""
    from gradio.i18n import I18nData

    key = {english: key for key, english in table("en").items()}.get(text)
    return str(I18nData(key)) if key else text


def page_i18n():
    """The gr.I18n that `launch(i18n=...)` takes."""
    import gradio as gr

    return gr.I18n(**all_tables())


def is_name(text: str) -> bool:
    """A choice or column shown as a name, the same in every language: a checkpoint, a preset's slug, a
    number, an acronym (`clip-vit-base-patch32`, `DDIM`, `2`). Words (`face identity`, `lerp`) are texts."""
    return not re.search(r"\s", text) and not re.fullmatch(r"[a-z]{3,}", text)


def visible_texts(app: Any) -> Iterator[tuple[Any, str, str]]:
    """(block, where, English text) for every string a user reads on the built page: labels, info,
    placeholders, button texts, tab and accordion titles, shown choices, table headers and static Markdown."""
    import gradio as gr

    for block in app.blocks.values():
        for attribute in ("label", "info", "placeholder"):
            value = getattr(block, attribute, None)
            if isinstance(value, str) and value.strip():
                yield block, attribute, value
        if isinstance(block, (gr.Button, gr.Markdown)) and isinstance(block.value, str) and block.value.strip():
            yield block, "value", block.value
        if isinstance(block, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)):
            for shown, value in block.choices or []:
                if isinstance(shown, str) and (shown != str(value) or not is_name(shown)):
                    yield block, "choices", shown
        if isinstance(block, gr.Dataframe):  # the page's script shows headers in the reader's language
            yield from ((block, "headers", header) for header in block.headers or []
                        if isinstance(header, str) and not is_name(header))


def is_citation(text: str) -> bool:
    """A tab's paper line (`*Authors, Title, Venue*`): paper titles stay in their own language."""
    from demos import DEMOS

    return bool(re.fullmatch(r"\*.+\*", text)) and text.strip("*") in {demo.paper for demo in DEMOS}


def translate_page(app: Any) -> None:
    """Swap every English text that has a key for gr.I18n's reference to it (in place, before launch)."""
    from gradio.i18n import I18nData

    keys = {text: key for key, text in all_tables()["en"].items()}
    for block, where, text in list(visible_texts(app)):
        key = keys.get(text)
        if key is None or where == "headers":  # a header is a plain string in the browser: see panels.JS
            continue
        if where == "choices":
            block.choices = [(I18nData(key) if shown == text else shown, value) for shown, value in block.choices]
        else:
            setattr(block, where, I18nData(key))
