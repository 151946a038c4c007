"""What the app adds around a model call, on the tiny CLIP (ratios; the machine is stated by the reader).

    python bench/api_overhead.py               # 50 requests of each kind
    python bench/api_overhead.py --requests 100

- the app's /clip_zero_shot round trip vs a bare Gradio image -> label endpoint doing the same CLIP
  call (target <= 1.05x), and vs calling run_clip_zero_shot in-process;
- model loads per 100 warm requests (target 0), read from the app's own Models panel endpoint;
- CLIP p50 while a diffusion job runs vs idle (target <= 1.5x on CPU).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from serving import AppServer, p50_p95
from gradio_client import Client, handle_file
from PIL import Image

from tests.conftest import ROOT, free_port
from tests.endpoints import GOOD_IMAGE, named_endpoints

LABELS, TEMPLATE, MODEL = "cat, dog, astronaut, rocket", "a photo of a {}.", "clip-vit-base-patch32"
BARE_APP = f"""
import sys
import gradio as gr
from demos.tabs.clip_zero_shot import run_clip_zero_shot

def classify(image):
    result = run_clip_zero_shot(image, {LABELS!r}, {TEMPLATE!r}, {MODEL!r})
    return dict(zip(result.labels, result.probabilities))

gr.Interface(classify, gr.Image(type="pil"), gr.Label(), api_name="classify").launch(server_port=int(sys.argv[1]))
"""


def round_trips(call, count: int) -> list[float]:
    call()  # warm: model loaded, connection open
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def interleaved(calls: dict[str, Callable], count: int) -> dict[str, list[float]]:
    """Round trips of each call taken in turn, so a change in machine load hits them all alike."""
    for call in calls.values():
        call()  # warm: model loaded, connection open
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return times


def total_loads(client: Client) -> int:
    table = client.predict(api_name="/loaded_models")
    return sum(int(row[-1]) for row in table["data"])


@contextmanager
def bare_endpoint() -> Iterator[Client]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare Gradio app did not come up") from None
                time.sleep(0.3)
        yield client
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50)
    count = parser.parse_args().requests

    from demos.tabs.clip_zero_shot import run_clip_zero_shot

    picture, image = Image.open(GOOD_IMAGE), handle_file(str(GOOD_IMAGE))
    server = AppServer()
    try:
        with bare_endpoint() as bare:
            client = Client(server.url, verbose=False)

            def classify():
                return client.predict(image, LABELS, TEMPLATE, MODEL, 4, api_name="/clip_zero_shot")

            times = interleaved({
                "in-process run_clip_zero_shot": lambda: run_clip_zero_shot(picture, LABELS, TEMPLATE, MODEL),
                "bare Gradio endpoint": lambda: bare.predict(image, api_name="/classify"),
                "app /clip_zero_shot": classify}, count)
        loads_before = total_loads(client)
        round_trips(classify, 100)
        loads_per_100 = total_loads(client) - loads_before
        times["app /clip_zero_shot during a ControlNet job"] = clip_under_diffusion(server.url, classify, count)
    finally:
        server.stop()

    p50 = {name: p50_p95(seconds)[0] for name, seconds in times.items()}
    print("| measurement | p50 ms |\n|---|---|")
    for name, seconds in p50.items():
        print(f"| {name} | {1000 * seconds:.0f} |")
    app_p50 = p50["app /clip_zero_shot"]
    print(f"API overhead: app / bare Gradio {app_p50 / p50['bare Gradio endpoint']:.2f}x (target <= 1.05x); "
          f"app / in-process {app_p50 / p50['in-process run_clip_zero_shot']:.2f}x")
    print(f"model loads per 100 warm requests: {loads_per_100} (target 0)")
    print(f"CLIP p50 during a diffusion job / idle: {p50['app /clip_zero_shot during a ControlNet job'] / app_p50:.2f}x "
          f"(target <= 1.5x on CPU)")


def clip_under_diffusion(url: str, classify, count: int) -> list[float]:
    """CLIP round trips while another user's ControlNet jobs keep the heavy queue busy."""
    heavy = Client(url, verbose=False)
    done = threading.Event()

    # The request the app's own widgets would send (read from the app, so it follows the tab's inputs).
    controlnet = next(endpoint for endpoint in named_endpoints(heavy) if endpoint.name == "/controlnet")

    failures: list[Exception] = []

    def keep_diffusing() -> None:
        try:
            while not done.is_set():
                heavy.predict(*controlnet.good, api_name="/controlnet")
        except Exception as error:  # a job that fails would leave CLIP measured on an idle server
            failures.append(error)

    worker = threading.Thread(target=keep_diffusing, daemon=True)
    worker.start()
    time.sleep(3)  # the first job has loaded its models and is denoising
    try:
        times = round_trips(classify, count)
    finally:
        done.set()
        worker.join(timeout=300)
    if failures:
        raise RuntimeError(f"the ControlNet job failed, so CLIP did not run beside one: {failures[0]}")
    return times


if __name__ == "__main__":
    main()
