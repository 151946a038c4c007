"""The page's own panels and assets: the tiny-profile banner, the language switch, the Models panel, the
page-wide CSS and JS."""
from __future__ import annotations

from typing import Any

import gradio as gr

import models

TINY_BANNER = (
    "**Offline `tiny` profile:** every model here is a tiny network with random weights, built on "
    "this machine. The real pipeline code runs, but the pictures, labels and answers are noise. "
    "Start with `python app.py` (the `hub` profile) for the published checkpoints."
)


# Page-wide CSS (gradio 6 takes it in `launch()`). A generated image fills its box, so a 64-px tiny
# output or a 512-px one reads at the same, projector-friendly size.
CSS = """
.pp-result img { width: 100%; height: 100%; object-fit: contain; }
"""


# Page-wide JS, run once on load: every box canvas starts in the "Create box" tool (the annotator
# component opens in "Drag boxes", where dragging on the canvas does nothing); canvases of tabs
# that render later are caught by the observer. `ppSetLocale` is the language switch: gradio's own
# `changeLocale` (gradio 6.31 has no public call for it: the module is found among the page's scripts),
# remembered in localStorage and a cookie (read by the server for error messages); `?lang=zh` in a
# link sets it. Tab buttons take their title once, when they mount, so after a switch their text is
# replaced from the page's translation table; table headers (a Dataframe's, and an Examples table's: its
# widgets' English labels) are plain strings to gradio, so they are shown in the reader's language (the
# switch's, else the browser's) the same way, whenever a table renders.
JS = """
() => {
  const tables = window.gradio_config?.i18n_translations || {};
  const keyOf = new Map();
  for (const table of Object.values(tables)) for (const [key, text] of Object.entries(table)) keyOf.set(text, key);
  const relabel = () => {
    const lang = localStorage.getItem('pp-lang') || navigator.language, table = tables[(lang || '').split('-')[0]];
    if (!table) return;
    document.querySelectorAll('[role=tab], .tab-container button, .overflow-dropdown button').forEach(button => {
      const text = table[keyOf.get(button.textContent.trim())];
      if (text && button.textContent.trim() !== text) button.textContent = text;
    });
    document.querySelectorAll('thead span.header, thead th[role=columnheader]').forEach(header => {
      const shown = header.firstChild;  // the text node: svelte keeps its own markers beside it
      const text = shown?.nodeType === Node.TEXT_NODE && table[keyOf.get(shown.nodeValue.trim())];
      if (text && shown.nodeValue !== text) shown.nodeValue = text;
    });
  };
  // 'zh' is shown as gradio's 'zh-CN' (its own strings: upload boxes, footer); ours fall back from zh-CN to zh.
  window.ppSetLocale = async (lang) => {
    lang = lang === 'zh' ? 'zh-CN' : lang;
    const core = performance.getEntriesByType('resource').map(e => e.name).find(n => /\\/core-[^/]*\\.js$/.test(n));
    if (!core) return;
    await (await import(core)).changeLocale(lang);
    localStorage.setItem('pp-lang', lang);
    document.cookie = `pp_lang=${lang}; path=/; SameSite=Lax`;
    relabel();
  };
  const asked = new URLSearchParams(window.location.search).get('lang') || localStorage.getItem('pp-lang');
  if (asked) window.ppSetLocale(asked);
  const createMode = () => document.querySelectorAll('.box-canvas button[aria-label="Create box"]').forEach(button => {
    if (!button.dataset.ppCreate) { button.dataset.ppCreate = "1"; button.click(); }
  });
  // The open paper tab in the address (`?tab=<title>`): a setup link copied from here reopens it.
  const keepTabInAddress = () => {
    const top = document.querySelector('#topics > .tab-wrapper [role=tab][aria-selected=true]');
    let id = top?.dataset.tabId;
    if (id?.startsWith('topic-')) {
      const papers = [...document.querySelectorAll('.paper-tabs > .tab-wrapper')].find(bar => bar.offsetParent);
      id = papers?.querySelector('[role=tab][aria-selected=true]')?.dataset.tabId;
    }
    if (!id || id === 'start') return;
    const url = new URL(window.location.href);
    url.searchParams.set('tab', id);
    history.replaceState(null, '', url);
  };
  document.addEventListener('click', event => {
    if (event.target.closest('[role=tab]')) setTimeout(keepTabInAddress, 50);
  });
  new MutationObserver(() => { createMode(); relabel(); }).observe(document.body, {childList: true, subtree: true, characterData: true});
  createMode();
}
"""


def language_switch() -> None:
    """English / 中文 buttons: gradio's i18n follows the browser's language until one is pressed."""
    with gr.Row(elem_id="language-switch"):
        for language, name in (("en", "English"), ("zh", "中文")):
            gr.Button(name, size="sm", scale=0, min_width=70, elem_id=f"language-{language}").click(
                None, js=f"() => window.ppSetLocale('{language}')", api_visibility="private")


def loaded_models_table() -> list[list[Any]]:
    return [
        [m.name, m.checkpoint, m.device, round(m.nbytes / 2**20, 1), round(m.load_seconds, 2),
         models.model_cache.load_counts[m.name]]
        for m in models.model_cache.loaded()
    ]


def free_models() -> list[list[Any]]:
    models.model_cache.clear()
    return loaded_models_table()


def available_models_table() -> list[list[Any]]:
    """Every registered model with its published checkpoint and what it costs on a CPU and on a GPU."""
    rows = []
    for spec in models.REGISTRY.values():
        cpu, gpu = (models.model_cache.published_figures(spec, device) for device in ("cpu", "cuda"))
        rows.append([spec.name, spec.checkpoint, round(cpu[0] / 1e9, 2), round(cpu[1] / 2**30, 1),
                     round(gpu[0] / 1e9, 2), round(gpu[1] / 2**30, 1), spec.description])
    return rows


def models_panel() -> None:
    """An accordion listing every model (download and memory on a CPU and a GPU) and the resident ones
    (device, memory, load time), with a button to free them."""
    settings = models.model_settings
    with gr.Accordion(f"Models (profile: {settings.profile})", open=False):
        gr.Markdown(
            "Models load on first use and stay shared between tabs; the least recently used are "
            f"unloaded above {settings.max_loaded_models or 'unlimited'} models or when a new one needs the "
            "room, and a model that cannot fit is refused with its size. Figures are for the published "
            "checkpoints: a CPU reads fp32 files (3-8B language models and unCLIP run in bfloat16 there), a "
            "GPU the `fp16` files where published; memory includes a run's margin. "
            "`python app.py --check` says what this machine still needs."
        )
        gr.Dataframe(
            value=available_models_table(),
            headers=["model", "checkpoint", "CPU download GB", "CPU memory GiB", "GPU download GB",
                     "GPU memory GiB", "about"],
            interactive=False, label="Available models",
        )
        table = gr.Dataframe(
            headers=["model", "checkpoint", "device", "memory MiB", "load s", "loads"],
            interactive=False, label="Loaded now",
        )
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm")
            free = gr.Button("Free all models", size="sm", variant="stop")
        refresh.click(loaded_models_table, outputs=table, api_name="loaded_models")
        free.click(free_models, outputs=table, api_name="free_models")
