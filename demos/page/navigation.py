"""The page's tab bar: Start, then one tab per topic in course order, each holding its papers' tabs.

Every paper tab keeps its English title as its id (lesson steps, setup links, the tests and the API's tab
chains name it), so a paper is two clicks from the start: its topic, then its tab. A topic whose only paper
has the topic's own title (Personalisation, Compare) is that paper's tab, without a bar of one. The page
keeps the open paper in its address (`?tab=<title>`, see `panels.JS`), so "Copy a link to this exact
setup" (gradio's deep link: the inputs) reopens the same tab too, and `?tab=ControlNet` alone opens one.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr

from demos import TOPICS, Demo, Topic


def topics_with(demos: list[Demo]) -> list[tuple[Topic, list[Demo]]]:
    """The topics that hold any of `demos`, in course order, with those demos in theirs. A demo under no
    known topic would silently have no tab, so it is an error."""
    lost = [demo.title for demo in demos if demo.topic not in {topic.key for topic in TOPICS}]
    if lost:
        raise ValueError(f"{lost} name no topic of demos.TOPICS ({[topic.key for topic in TOPICS]})")
    return [(topic, members) for topic in TOPICS if (members := [d for d in demos if d.topic == topic.key])]


def tab_bar(app: gr.Blocks, demos: list[Demo], start_page: Callable[[], None],
            build_tab: Callable[[Demo], None]) -> None:
    """Build Start and the topic tabs (`build_tab(demo)` fills one paper's tab), and open the paper a
    link names. Every paper's own tab carries the class `paper-tab`, nested in a topic or not."""
    where: dict[str, list[tuple[gr.Tabs, str]]] = {}  # paper title -> the (bar, tab id) to select, top first
    with gr.Tabs(elem_id="topics") as bar:
        with gr.Tab("Start", id="start"):
            start_page()
        for topic, members in topics_with(demos):
            if len(members) == 1 and members[0].title == topic.title:
                with gr.Tab(topic.title, id=members[0].title, elem_classes="paper-tab"):
                    build_tab(members[0])
                where[members[0].title] = [(bar, members[0].title)]
                continue
            with gr.Tab(topic.title, id=f"topic-{topic.key}"), gr.Tabs(elem_classes="paper-tabs") as papers:
                for demo in members:
                    with gr.Tab(demo.title, id=demo.title, elem_classes="paper-tab"):
                        build_tab(demo)
                    where[demo.title] = [(bar, f"topic-{topic.key}"), (papers, demo.title)]
    _open_linked_tab(app, where)


def _open_linked_tab(app: gr.Blocks, where: dict[str, list[tuple[gr.Tabs, str]]]) -> None:
    bars = list({id(tabs): tabs for path in where.values() for tabs, _ in path}.values())

    def open_tab(request: gr.Request):
        path = dict((id(tabs), tab) for tabs, tab in where.get(request.query_params.get("tab", ""), []))
        return [gr.Tabs(selected=path[id(tabs)]) if id(tabs) in path else gr.skip() for tabs in bars]

    app.load(open_tab, None, bars, api_visibility="private", queue=False)
