"""Cold start: seconds until the app's page answers, as a ratio to the floor any Gradio app on torch
pays (`import torch, gradio` and a bare `launch()`) on the same machine. Target: within 1.1x.

    python bench/cold_start.py             # 3 runs of each, medians
    python bench/cold_start.py --runs 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from serving import AppServer
from tests.conftest import ROOT, free_port

BARE_APP = """
import sys, torch, gradio as gr
with gr.Blocks() as demo:
    gr.Textbox()
demo.launch(server_port=int(sys.argv[1]))
"""


def bare_launch_seconds() -> float:
    """A one-textbox Blocks on torch + gradio, timed like the app: until /gradio_api/info answers."""
    import urllib.request

    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=2)
                return time.perf_counter() - started
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > 120:
                    raise RuntimeError("the bare Gradio app did not come up")
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait()


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, gradio"], check=True)
    return time.perf_counter() - started


def app_seconds() -> float:
    server = AppServer()
    server.stop()
    return server.startup_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    imports = statistics.median(import_seconds() for _ in range(runs))
    bare = statistics.median(bare_launch_seconds() for _ in range(runs))
    app = statistics.median(app_seconds() for _ in range(runs))
    print(f"medians of {runs}: import torch, gradio {imports:.1f} s; bare launch {bare:.1f} s; "
          f"app page up {app:.1f} s")
    print(f"cold start ratio app / bare launch: {app / bare:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
