"""More papers: a card for each paper of the course that has no runnable demo here — the idea, its key
equation, a diagram drawn for this project, the nearest tab to try (a link that opens it, set up by a lesson
step where one fits) and why there is no demo. The cards are data (`assets/paper_cards.json`, read by
`demos.shared.cards`), grouped by the page's topics; `?tab=More papers&card=<id>` opens one.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from demos import TOPICS
from demos.shared.cards import load_cards, markdown, title
from demos.shared.widgets import MATH

INTRO = ("Papers the course covers that have no runnable demo here: for each, the idea, its key equation, a "
         "diagram, the nearest mechanism to try in this playground (the link opens that tab) and why there is "
         "no demo — no public weights, a licence, or a size no classroom machine holds.")


def cards_by_topic() -> list[tuple[Any, list[dict[str, Any]]]]:
    """The page's topics that have cards, in course order, with their cards in the file's order."""
    cards = load_cards()
    return [(topic, members) for topic in TOPICS if (members := [card for card in cards if card["topic"] == topic.key])]


def open_card(cards: list[dict[str, Any]], request: gr.Request) -> list[Any]:
    """On page load: `?card=<id>` selects the card's topic and opens it."""
    wanted = request.query_params.get("card", "") if request is not None else ""
    card = next((card for card in cards if card["id"] == wanted), None)
    if card is None:
        return [gr.skip()] * (1 + len(cards))
    return [gr.Tabs(selected=f"cards-{card['topic']}"),
            *[gr.Accordion(open=True) if other is card else gr.skip() for other in cards]]


def build_ui() -> None:
    gr.Markdown(INTRO)
    accordions, shown = [], []
    with gr.Tabs(elem_id="paper-cards") as topics:
        for topic, cards in cards_by_topic():
            with gr.Tab(topic.title, id=f"cards-{topic.key}"):
                for card in cards:
                    with gr.Accordion(title(card), open=False, elem_id=f"card-{card['id']}") as accordion:
                        gr.Markdown(markdown(card), latex_delimiters=MATH, elem_classes="paper-card")
                    accordions.append(accordion)
                    shown.append(card)

    def on_load(request: gr.Request) -> list[Any]:
        return open_card(shown, request)

    gr.on(None, on_load, None, [topics, *accordions], api_visibility="private", queue=False)
