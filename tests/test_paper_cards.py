"""More papers: every row of the course list has a card or a tab of its own; every card is complete in both
languages, its equations parse with the page's own KaTeX, its diagram is valid SVG, and each of its links
opens a real tab (a lesson step named in one opens that same tab); the tab shows every card, `?card=<id>`
opens one, and the page swaps each card for its gr.I18n key."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import gradio as gr
import pytest

from demos import DEMOS, TOPICS
from demos.shared import cards as card_data
from demos.shared.cards import CARD_TAB, load_cards, markdown, problems, title
from demos.shared.diagrams import label_in, render_svg
from tests.conftest import ROOT

CARDS = load_cards()
TITLES = {demo.title for demo in DEMOS}
# The course's list of papers (where this machine has it: the repository keeps the cards, not the list).
COURSE_LIST = ROOT / "assets" / "course_papers.md"  # the course notes' list of papers and ideas (SEED_PAPERS.md)
SVG = "{http://www.w3.org/2000/svg}"


def course_rows(text: str) -> list[str]:
    """The first cell of every table row of the course list (`\\|` is a | inside a cell)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|\-\s]+", line):
            continue
        cell = re.split(r"(?<!\\)\|", line)[1].strip().replace("\\|", "|")
        if cell not in ("paper / idea",):
            rows.append(cell)
    return rows


def test_the_course_list_parser_reads_cells_with_escaped_bars():
    table = "| paper / idea | takeaway |\n|---|---|\n| posterior q(x\\|y), β | mean |\n| GLIDE | CFG |\n"
    assert course_rows(table) == ["posterior q(x|y), β", "GLIDE"]


def test_every_paper_of_the_course_list_has_a_card_or_a_tab():
    rows = course_rows(COURSE_LIST.read_text())
    assert len(rows) >= 40
    tabs = json.loads(card_data.CARDS_FILE.read_text())["tabs"]
    with_card = {row for card in CARDS for row in card["rows"]}
    missing = [row for row in rows if row not in with_card and tabs.get(row) not in TITLES]
    assert missing == [], f"these rows have no card and no tab: {missing}"
    assert sorted(with_card - set(rows)) == [], "cards that answer rows the list no longer has"


def test_every_card_is_complete_in_both_languages_and_names_a_real_tab():
    assert len(CARDS) >= 30 and len({card["id"] for card in CARDS}) == len(CARDS)  # rows with a tab of their own need none
    assert [problem for card in CARDS for problem in problems(card)] == []
    topics = {topic.key for topic in TOPICS}
    assert {card["topic"] for card in CARDS} <= topics and CARD_TAB in TITLES


def test_a_broken_card_is_reported_field_by_field():
    good = dict(CARDS[0])
    assert problems(good) == []
    broken = {**good, "topic": "cooking", "equation": r"\frac{a}{b", "idea": {"en": "only English"},
              "try": {**good["try"], "tab": "ControlNett"}, "diagram": {"stages": []}}
    found = " | ".join(problems(broken))
    for expected in ("topic 'cooking'", "idea needs en and zh", "'ControlNett' is no tab", "{ left open", "stages"):
        assert expected in found, found
    wrong_step = {**good, "try": {**good["try"], "lesson": "controlling-generation", "step": 1}}
    assert "does not open" in " ".join(problems(wrong_step))
    assert problems({k: v for k, v in good.items() if k != "why"}) == [f"{good['id']}: missing why"]


def test_every_link_of_every_card_opens_a_real_tab():
    lessons = Path(card_data.ASSETS / "lessons")
    for card in CARDS:
        for language in ("en", "zh"):
            links = re.findall(r"\]\((\?[^)]+)\)", markdown(card, language))
            assert links, card["id"]
            for link in links:
                query = parse_qs(urlparse(link).query)
                assert query["tab"][0] in TITLES, (card["id"], link)
                if "lesson" in query:
                    steps = json.loads((lessons / f"{query['lesson'][0]}.json").read_text())["steps"]
                    assert steps[int(query["step"][0]) - 1]["tab"] == query["tab"][0], (card["id"], link)


def katex_errors(formulas: list[str]) -> list[str]:
    """Each formula typeset by the page's own KaTeX (gradio's bundle), run by node: the errors."""
    import gradio

    bundle = next((Path(gradio.__file__).parent / "templates" / "frontend" / "assets").glob("katex-*.js"))
    script = (f"import katex from {json.dumps(bundle.as_uri())};\nimport {{ readFileSync }} from 'node:fs';\n"
              "const errors = [];\n"
              "for (const [tex, display] of JSON.parse(readFileSync(0, 'utf8'))) {\n"
              "  try { katex.renderToString(tex, {displayMode: display, throwOnError: true}); }\n"
              "  catch (error) { errors.push(tex.slice(0, 60) + ': ' + error.message); }\n"
              "}\nconsole.log(JSON.stringify(errors));\n")
    done = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(formulas),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the page's KaTeX")
def test_every_equation_and_inline_formula_parses_with_the_pages_katex():
    formulas = [[card["equation"], True] for card in CARDS]
    formulas += [[inline, False] for card in CARDS for field in ("idea", "why") for language in ("en", "zh")
                 for inline in re.findall(r"(?<!\$)\$([^$]+)\$(?!\$)", card[field][language])]
    assert len(formulas) > len(CARDS)
    assert katex_errors(formulas) == []
    assert katex_errors([[r"\frac{a}{b", True]]) != []  # the check can fail


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_diagram_is_valid_svg_with_its_labels_in_the_language(language):
    for card in CARDS:
        spec = card["diagram"]
        root = ET.fromstring(render_svg(spec, language))
        assert root.tag == f"{SVG}svg" and float(root.get("width")) > 0 and float(root.get("height")) > 0
        shown = [node.text for node in root.iter(f"{SVG}text")]
        expected = [label_in(label, language) for label in spec["stages"]]
        expected += [label_in(label, language) for _, label in spec.get("inputs", [])]
        assert sorted(shown) == sorted(expected), card["id"]
        assert len(root.findall(f"{SVG}polygon")) >= len(expected) - 1  # an arrow into every box but the first


def built_tab():
    """The tab as the app builds it, without a server (`tests.spies.built_tab`, without importing torch)."""
    from demos.tabs import paper_cards

    with gr.Blocks() as blocks:
        paper_cards.build_ui()
    return blocks


def test_the_tab_shows_every_card_under_its_topic_and_a_link_opens_one():
    from demos.tabs import paper_cards

    blocks = built_tab()
    accordions = {block.elem_id: block for block in blocks.blocks.values() if isinstance(block, gr.Accordion)}
    assert [accordion.label for accordion in accordions.values()] == [title(card) for _, cards in
                                                                      paper_cards.cards_by_topic() for card in cards]
    for card in CARDS:
        accordion = accordions[f"card-{card['id']}"]
        tab = accordion.parent
        while not isinstance(tab, gr.Tab):
            tab = tab.parent
        assert tab.id == f"cards-{card['topic']}"
        body = [child.value for child in accordion.children if isinstance(child, gr.Markdown)]
        assert body == [markdown(card)] and card["citation"] in body[0]
    load = next(fn for fn in blocks.fns.values() if fn.api_visibility == "private" and not fn.inputs)
    opened = load.fn(type("Request", (), {"query_params": {"card": "glide"}})())
    assert opened[0].selected == "cards-diffusion"
    chosen = [card["id"] for card, update in zip([c for _, cs in paper_cards.cards_by_topic() for c in cs], opened[1:])
              if not isinstance(update, type(gr.skip()))]
    assert chosen == ["glide"]
    nothing = load.fn(type("Request", (), {"query_params": {}})())
    assert all(isinstance(update, type(gr.skip())) for update in nothing)


def test_the_page_shows_each_card_in_the_readers_language():
    from gradio.i18n import I18nData

    from demos.page.i18n import all_tables, translate_page

    tables = all_tables()
    blocks = built_tab()
    translate_page(blocks)
    keys = [block.value.key for block in blocks.blocks.values()
            if isinstance(block, gr.Markdown) and isinstance(block.value, I18nData)]
    assert {f"pp_card_{card['id']}_body" for card in CARDS} <= set(keys)
    glide = next(card for card in CARDS if card["id"] == "glide")
    chinese = tables["zh"]["pp_card_glide_body"]
    assert glide["idea"]["zh"] in chinese and glide["equation"] in chinese and "在这里试试" in chinese
    assert "扩散" in chinese.split("](?tab=")[0].rsplit("[", 1)[1]  # the tab's title, in Chinese
    assert tables["en"]["pp_card_glide_body"] == markdown(glide)
