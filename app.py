"""Paper Playground: one tab per landmark vision-language or diffusion paper.

    python app.py                      # published checkpoints, downloaded on first use
    python app.py --models tiny        # offline: tiny random models, outputs are noise
    python app.py --check --lesson controlling-generation   # the day before class: what is still missing
    python app.py --download --lesson controlling-generation  # ... fetch it (again: only what is missing)
    python app.py --offline            # in class: only what is cached, never the network
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

log = logging.getLogger("paper_playground")

GPU_QUEUE = "gpu"  # concurrency id shared by every heavy event: one diffusion/LLM job at a time
AUTH_ENV = "PP_AUTH"  # "user:password", so the secret need not appear in the process list


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", choices=["hub", "tiny"], default=os.environ.get("PP_MODELS", "hub"),
                        help="hub: real checkpoints (default); tiny: offline random models")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for the local network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--auth", default=os.environ.get(AUTH_ENV),
                        help=f"USER:PASSWORD required to open the app (or set {AUTH_ENV})")
    parser.add_argument("--preload", nargs="*", default=[], metavar="NAME",
                        help="models to load before serving (see the Models panel for names)")
    parser.add_argument("--max-file-size", default=None,
                        help="largest upload accepted, e.g. 20mb (default: PP_MAX_FILE_SIZE or 20mb)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="load only what is in the cache and never reach for the network (PP_OFFLINE=1)")
    parser.add_argument("--safety-checker", choices=["auto", "on", "off"],
                        default=os.environ.get("PP_SAFETY_CHECKER_MODE", "auto"),
                        help="Stable Diffusion's published NSFW filter; auto: on for a public link without "
                             "--auth or on a Hugging Face Space, off otherwise")
    preflight = parser.add_argument_group("class preflight (print and exit; no model is loaded)")
    preflight.add_argument("--check", nargs="?", const="default", choices=["default", "all"],
                           help="per model: cached or not, bytes to download, licence, access, memory against "
                                "this machine, verdict (all: every registered model)")
    preflight.add_argument("--download", nargs="?", const="default", choices=["default", "all"],
                           help="fetch the files those models read on this device, with progress; a rerun "
                                "fetches only what is still missing")
    preflight.add_argument("--tab", action="append", default=[], metavar="TITLE",
                           help="only this tab's models (repeatable), e.g. --tab ControlNet")
    preflight.add_argument("--lesson", action="append", default=[], metavar="NAME",
                           help="only what this lesson loads (assets/lessons/NAME.json)")
    preflight.add_argument("--model", action="append", default=[], metavar="NAME",
                           help="only this registered model (repeatable; names in the Models panel)")
    return parser.parse_args(argv)


def safety_checker_on(mode: str, share: bool, auth: tuple[str, str] | None) -> bool:
    """A public link that anyone can open (or a Space) gets the published filter; a local run does not."""
    if mode != "auto":
        return mode == "on"
    return (share and auth is None) or bool(os.environ.get("SPACE_ID"))


def preflight_names(args: argparse.Namespace, registry: dict) -> list[tuple[str, list[str]]]:
    """(title, model names) groups for --check / --download: the tabs, lessons and models named, else every
    tab's defaults (with `all`: every registered model)."""
    from demos import DEMOS, checkpoints_of, lesson_checkpoints

    every = (args.check or args.download) == "all"
    groups = [(f"Tab: {title}", checkpoints_of([title], optional=every)) for title in args.tab]
    groups += [(f"Lesson: {name}", lesson_checkpoints(name, set(registry))) for name in args.lesson]
    groups += [("Models", [name for name in args.model if name in registry or _unknown_model(name, registry)])]
    groups = [group for group in groups if group[1]]
    if groups:
        return groups
    if every:
        return [("Every registered model", sorted(registry))]
    return [(f"Tab: {demo.title}", list(demo.checkpoints)) for demo in DEMOS if demo.checkpoints]


def _unknown_model(name: str, registry: dict) -> bool:
    raise SystemExit(f"--model {name}: no such model; registered: {', '.join(sorted(registry))}")


def run_preflight(args: argparse.Namespace) -> int:
    """--check / --download: print per model what this machine has and needs (and fetch it); exit status 1
    if anything is not ready (or failed to download)."""
    import models
    from models import preflight

    try:
        groups = preflight_names(args, models.REGISTRY)
    except KeyError as error:
        raise SystemExit(str(error.args[0])) from None
    print(preflight.machine_summary(models.model_cache))
    if args.download:
        names = list(dict.fromkeys(name for _, group in groups for name in group))
        failures = preflight.download(models.model_cache, names)
        if failures:
            print("Not downloaded:\n  " + "\n  ".join(failures))
    ready = True
    for title, names in groups:
        rows = preflight.check(models.model_cache, names)
        ready &= all(row.ready for row in rows)
        print("\n" + preflight.render(rows, title))
    print("\nAll ready." if ready else "\nNot everything is ready: see the verdicts above.")
    return 0 if ready else 1


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, separator, password = value.partition(":")
    if not separator or not user or not password:
        raise SystemExit(f"--auth / {AUTH_ENV} must look like USER:PASSWORD")
    return user, password


def _error_panel(title: str, error: BaseException) -> None:
    import gradio as gr

    gr.Markdown(
        f"### The {title} tab could not be loaded\n\nThe other tabs still work. "
        f"`{type(error).__name__}: {error}`\n\n```\n{traceback.format_exc(limit=3)}\n```"
    )


def _zero_gpu_decorator():
    """`spaces.GPU` on a Hugging Face ZeroGPU Space (which sets SPACES_ZERO_GPU), else None."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return None
    try:
        import spaces
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing; running without it")
        return None
    return spaces.GPU


def _share_gpu_queue(events: list) -> None:
    """Heavy events wait in one queue, so a single GPU never runs two of them at once, while
    light events (CLIP, UI updates) keep their own queues and are not stuck behind them.
    On ZeroGPU each heavy handler also asks the Space for a GPU while it runs. Non-public events
    (widget updates such as filling a template box) do no model work and are left alone."""
    request_gpu = _zero_gpu_decorator()
    for event in events:
        if event.api_visibility != "public":
            continue
        event.concurrency_id = GPU_QUEUE
        event.concurrency_limit = 1
        if request_gpu is not None:
            event.fn = request_gpu(event.fn)


def build_app(demo_list=None):
    """The whole page with its request queue: banner, one tab per demo (an error panel where one
    fails), Lessons and Models panels. At most `PP_MAX_QUEUE` requests wait; a run whose user has
    gone stops at its next step, and heavy runs pause at their steps while light requests run."""
    import gradio as gr

    import models
    from demos import DEMOS
    from demos.page.i18n import translate_page
    from demos.page.lessons import lessons_panel, wire_lessons
    from demos.page.navigation import tab_bar, topics_with
    from demos.page.panels import TINY_BANNER, language_switch, models_panel
    from demos.page.server import plain_input_errors, watch_running_jobs
    from demos.page.start import start_page
    from demos.shared.limits import LIMITS

    # Uploads and results live in gradio's cache only for an hour (and never past a restart).
    app = gr.Blocks(title="Paper Playground", delete_cache=(3600, 3600))
    # The queue before the widgets: gradio rebuilds its server app on `queue()`, and on every
    # `with app:` exit, at a cost that grows with the number of widgets (the page's cold start).
    app.queue(default_concurrency_limit=1, max_size=LIMITS.max_queue)
    watch_running_jobs(app, GPU_QUEUE)
    with app:
        with gr.Row():
            gr.Markdown("# Paper Playground\nTry landmark vision-language and diffusion papers hands-on.")
            language_switch()
            gr.DeepLinkButton("Copy a link to this exact setup", size="sm", scale=0, min_width=240)
        if models.model_settings.profile == "tiny":
            gr.Markdown(TINY_BANNER, elem_id="tiny-banner")
        lessons = lessons_panel()
        demos = demo_list if demo_list is not None else DEMOS
        tab_bar(app, demos, lambda: start_page(topics_with(demos)), lambda demo: _build_tab(app, demo))
        models_panel()
        wire_lessons(app, lessons)  # last: the lessons read the page's endpoints and tabs
    plain_input_errors(app)  # before the translation: its messages name the English labels
    translate_page(app)
    return app


def _build_tab(app, demo) -> None:
    """One paper's tab: its citation and its module's `build_ui()` (an error panel if that fails), its heavy
    events put in the one GPU queue."""
    import gradio as gr

    gr.Markdown(f"*{demo.paper}*")
    events_before = set(app.fns)
    try:
        importlib.import_module(demo.module).build_ui()
    except Exception as error:  # one broken tab must not take the page down
        log.exception("tab %s failed to build", demo.title)
        _error_panel(demo.title, error)
    if demo.heavy:
        _share_gpu_queue([app.fns[key] for key in set(app.fns) - events_before])


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    os.environ["PP_MODELS"] = args.models
    if args.offline:  # before huggingface_hub is imported: its libraries read it once
        os.environ["PP_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"

    import models

    models.model_settings.profile = args.models
    models.model_settings.offline = models.model_settings.offline or bool(args.offline)
    models.model_settings.safety_checker = safety_checker_on(args.safety_checker, args.share, auth)
    if args.check or args.download:
        raise SystemExit(run_preflight(args))
    for name in args.preload:
        print(f"preloading {name} …", flush=True)
        try:
            models.get(name)
        except models.ModelUnavailable as error:
            raise SystemExit(f"--preload {name}: {error}") from None
    if args.share and auth is None:
        print("WARNING: --share creates a public link that anyone can open and use your machine "
              f"through. Protect it with --auth USER:PASSWORD (or {AUTH_ENV}).", file=sys.stderr, flush=True)
    from demos.page.i18n import page_i18n
    from demos.shared.limits import LIMITS
    from demos.page.panels import CSS, JS

    app = build_app()
    # quiet: gradio's own hint ("set `share=True` in `launch()`") means nothing to someone who typed
    # `python app.py`; the app prints where it runs and its own `--share` instead.
    app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
               max_file_size=args.max_file_size or LIMITS.max_file_size, show_error=True, quiet=True, css=CSS, js=JS,
               i18n=page_i18n(), prevent_thread_lock=True,
               # gradio's "is localhost reachable" probe gives the page 3 s to render; on a busy
               # 2-core machine the first render of this many tabs takes longer and launch() aborted
               _frontend=False)
    print(launch_message(app.local_url, app.share_url), flush=True)
    app.block_thread()


def launch_message(local_url: str, share_url: str | None) -> str:
    """Where the page is, and how to share it with this app's own flags."""
    lines = [f"Paper Playground is running at {local_url}"]
    if share_url:
        lines.append(f"Public link (for your class): {share_url}")
    else:
        lines.append("For a public link, start it with --share (and --auth USER:PASSWORD to require a login).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
