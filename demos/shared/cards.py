"""Cards for the papers the course covers that have no runnable demo here (`assets/paper_cards.json`).

A card is data: its topic (a key of `demos.TOPICS`), the rows of the course's list of papers it answers,
title and citation, the idea and why there is no demo (both languages), the key equation (LaTeX, typeset by
the page), a diagram spec (`demos.shared.diagrams`), and the nearest tab to try (its title, optionally a
lesson step that sets the tab up). A card for a row that will become a tab of its own names that tab as
`planned_tab` (the file's `tabs` maps such rows to their tabs, so the card may go once the tab exists). The
cards tab shows the English Markdown; `card_tables` gives both languages as gr.I18n keys (as the lessons
do), so the page's language switch picks one.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from demos import ASSETS, DEMOS, TOPICS
from demos.shared.diagrams import check_spec, render_svg

CARDS_FILE = ASSETS / "paper_cards.json"
LANGUAGES = ("en", "zh")
TEXT_FIELDS = ("title", "idea", "why")
FIELDS = {"id", "topic", "rows", "citation", "equation", "diagram", "try", "planned_tab", *TEXT_FIELDS}
CARD_TAB = "More papers"  # the title of the tab that shows the cards (its row in demos.DEMOS)
WORDS = {  # the fixed words of a card, in each language
    "try": {"en": "Try it here:", "zh": "在这里试试："},
    "why": {"en": "Why no demo here:", "zh": "为什么这里没有演示："},
    "planned": {"en": "Planned as a tab of its own:", "zh": "计划做成单独的标签页："},
    "now": {"en": "Now a tab of its own:", "zh": "现已有单独的标签页："},
    "lesson": {"en": " (step {} of the lesson)", "zh": "（课程第 {} 步）"},
}


@lru_cache(maxsize=1)
def load_cards() -> tuple[dict[str, Any], ...]:
    """The cards, in the file's order (which is the course's order within a topic)."""
    return tuple(json.loads(CARDS_FILE.read_text())["cards"])


def text(value: str | dict[str, str], language: str) -> str:
    return value if isinstance(value, str) else value.get(language) or value["en"]


def try_link(card: dict[str, Any]) -> str:
    """The query string that opens the card's nearest tab (and its lesson step, if it names one)."""
    target = card["try"]
    query = {"tab": target["tab"]}
    if target.get("lesson"):
        query.update(lesson=target["lesson"], step=str(target["step"]))
    return "?" + urlencode(query)


def card_link(card: dict[str, Any]) -> str:
    """The query string that opens the cards tab on this card."""
    return "?" + urlencode({"tab": CARD_TAB, "card": card["id"]})


def title(card: dict[str, Any], language: str = "en") -> str:
    return text(card["title"], language)


def markdown(card: dict[str, Any], language: str = "en", shown: dict[str, str] | None = None) -> str:
    """The card's body in one language: citation, idea, equation, diagram, where to try it, why no demo.
    `shown` maps a tab's English title to its title in `language` (the page's table)."""
    shown = shown or {}
    words = {name: text(value, language) for name, value in WORDS.items()}
    target = card["try"]
    tab = target["tab"]
    where = f"[{shown.get(tab, tab)}]({try_link(card)})"
    if target.get("lesson"):
        where += words["lesson"].format(target["step"])
    parts = [f"*{card['citation']}*", text(card["idea"], language), f"$${card['equation']}$$",
             render_svg(card["diagram"], language),
             f"**{words['try']}** {where} — {text(target['what'], language)}",
             f"**{words['why']}** {text(card['why'], language)}"]
    planned = card.get("planned_tab")
    if planned:
        exists = planned in {demo.title for demo in DEMOS}
        parts.append(f"**{words['now']}** [{shown.get(planned, planned)}](?{urlencode({'tab': planned})})" if exists
                     else f"**{words['planned']}** {planned}")
    return "\n\n".join(parts)


def card_key(card: dict[str, Any], field: str) -> str:
    return f"pp_card_{card['id']}_{field}"


def card_tables(tables: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Every card's title and body as gr.I18n keys per language; `tables` are the page's own (key -> text per
    language), for the tab titles a card links to."""
    keys = {english: key for key, english in tables["en"].items()}
    found: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        shown = {demo.title: tables[language].get(keys.get(demo.title, ""), demo.title) for demo in DEMOS}
        found[language] = {}
        for card in load_cards():
            found[language][card_key(card, "title")] = title(card, language)
            found[language][card_key(card, "body")] = markdown(card, language, shown)
    return found


def equation_problems(latex: str) -> list[str]:
    """Braces and \\left/\\right that do not pair up, or a `$` that would end the page's math early."""
    found, depth = [], 0
    for char in re.sub(r"\\[{}]", "", latex):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            found.append("a } closes nothing")
            break
    if depth > 0:
        found.append(f"{depth} {{ left open")
    if len(re.findall(r"\\left\b", latex)) != len(re.findall(r"\\right\b", latex)):
        found.append("\\left and \\right do not pair up")
    if "$" in latex or not latex.strip():
        found.append("empty, or holds a $")
    return found


def problems(card: Any) -> list[str]:
    """What is wrong with one card (empty if nothing): a missing field or language, an unknown topic or tab, a
    lesson step that opens another tab, an equation that does not balance, a diagram that does not render."""
    if not isinstance(card, dict):
        return [f"a card must be an object, not {card!r}"]
    name = card.get("id", "?")
    found = [f"missing {field}" for field in sorted(FIELDS - {"planned_tab"} - set(card))]
    found += [f"unknown field {field}" for field in sorted(set(card) - FIELDS)]
    if found:
        return [f"{name}: {problem}" for problem in found]
    if not re.fullmatch(r"[a-z0-9_]+", card["id"]):
        found.append("its id must be lower-case letters, digits and _")
    if card["topic"] not in {topic.key for topic in TOPICS} - {"compare"}:
        found.append(f"topic {card['topic']!r} is not a paper topic of demos.TOPICS")
    if not card["rows"] or not all(isinstance(row, str) and row.strip() for row in card["rows"]):
        found.append("rows must name the rows of the course list it answers")
    for field in (*TEXT_FIELDS, "what"):
        value = card["try"].get("what") if field == "what" else card[field]
        if not (isinstance(value, dict) and set(value) == set(LANGUAGES) and all(v.strip() for v in value.values())):
            found.append(f"{field} needs en and zh")
    titles = {demo.title for demo in DEMOS} - {CARD_TAB}
    target = card["try"]
    if target.get("tab") not in titles:
        found.append(f"try.tab {target.get('tab')!r} is no tab of demos.DEMOS")
    if target.get("lesson"):
        path = ASSETS / "lessons" / f"{target['lesson']}.json"
        steps = json.loads(path.read_text())["steps"] if path.is_file() else []
        step = target.get("step")
        if not isinstance(step, int) or not 1 <= step <= len(steps) or steps[step - 1]["tab"] != target.get("tab"):
            found.append(f"lesson {target['lesson']!r} step {step!r} does not open {target.get('tab')!r}")
    found += equation_problems(card["equation"])
    found += check_spec(card["diagram"])
    return [f"{name}: {problem}" for problem in found]
