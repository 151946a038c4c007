"""The Start tab: what the playground is, the topics and what each holds, the lessons, and which tabs are
ready on this machine (the class preflight of `python app.py --check`, without the network)."""
from __future__ import annotations

import gradio as gr

import models
from demos import Demo, Topic
from demos.page.i18n import lesson_lines

INTRO = ("**Paper Playground** runs landmark vision-language and diffusion papers on your own inputs, one tab "
         "per paper, and shows how each works — the attention maps, control maps, masks and trajectories — not "
         "only its result. Pick a topic above; each holds its papers' tabs. A lesson (the **Lessons** panel, "
         "right) walks a class through the tabs step by step.")
LESSONS_TITLE = "**Lessons** (a link opens the lesson at its first step):"


def topic_line(topic: Topic, members: list[Demo]) -> str:
    """One line of the topic list: its title, what it is about and its tabs."""
    return f"**{topic.title}** — {topic.summary} *{' · '.join(demo.title for demo in members)}*"


def readiness(demos: list[Demo]) -> list[list[str]]:
    """Per tab, whether the models of its default request are here, still to download, or cannot fit."""
    from models.preflight import check

    if models.model_settings.profile == "tiny":
        return [[demo.title, "tiny random models, built on first use"] for demo in demos]
    rows = []
    for demo in demos:
        checks = check(models.model_cache, list(demo.checkpoints)) if demo.checkpoints else []
        unready = [row for row in checks if not row.ready]
        if not unready:
            status = "ready"
        elif any("fit" in row.verdict for row in unready):
            status = "; ".join(f"{row.model}: {row.verdict}" for row in unready if "fit" in row.verdict)
        else:
            status = f"download {sum(row.to_download for row in unready) / 1e9:.2f} GB on first use"
        rows.append([demo.title, status])
    return rows


def start_page(topics: list[tuple[Topic, list[Demo]]]) -> None:
    gr.Markdown(INTRO, elem_id="start-intro")
    with gr.Row():
        with gr.Column(scale=3):
            for topic, members in topics:
                gr.Markdown(topic_line(topic, members), elem_classes="start-topic")
            gr.Markdown(LESSONS_TITLE)
            gr.Markdown(lesson_lines(), elem_id="start-lessons")
        with gr.Column(scale=2):
            gr.Dataframe(readiness([demo for _, members in topics for demo in members]),
                         headers=["tab", "on this machine"], interactive=False, label="Ready to run?",
                         elem_id="start-readiness", wrap=True, column_widths=["45%", "55%"])
