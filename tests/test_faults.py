"""Injected faults: each gives that user a named error, frees what it held, and the next request works."""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import gradio as gr
import pytest
import torch
from PIL import Image

import models
from demos.tabs.clip_zero_shot import ASSETS, run_clip_zero_shot
from demos.shared.handlers import OUT_OF_MEMORY, user_errors
from demos.tabs.vqa import LLAVA_DECODING, stream_llava
from models.cache import ModelCache
from models.errors import ModelUnavailable
from models.hub import Download
from models.registry import ModelSpec
from models.settings import Settings

CAT = Image.open(ASSETS / "chelsea.jpg").convert("RGB")


def test_a_download_that_fails_half_way_names_the_checkpoint_keeps_nothing_and_the_retry_loads(tmp_path):
    downloads = tmp_path / "downloads"

    def download_then_load(context):
        downloads.mkdir(exist_ok=True)
        (downloads / "unet.safetensors.incomplete").write_bytes(b"\0" * 1024)
        if len(list(downloads.iterdir())) == 1:  # the first attempt: the connection drops half-way
            raise ConnectionError("Connection reset by peer after 1.7 GB")
        return "pipeline"

    spec = ModelSpec(name="sd", checkpoint="org/sd", loader=download_then_load, tiny_builder=lambda folder: None,
                     files=lambda checkpoint, choice: Download("bundled", checkpoint, {"unet": 4_000_000_000}))
    cache = ModelCache({"sd": spec}, Settings(profile="hub", tiny_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match=r"'org/sd'.*4.00 GB.*Connection reset by peer"):
        cache.get("sd")
    assert not cache.is_loaded("sd") and cache.load_counts["sd"] == 0
    (downloads / "unet.safetensors.incomplete").rename(downloads / "resumed")
    assert cache.get("sd") == "pipeline" and cache.is_loaded("sd")


def test_a_tiny_build_that_fails_half_way_leaves_no_folder_that_a_later_load_would_trust(tmp_path):
    builds = []

    def build(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        builds.append(folder)
        if len(builds) == 1:
            raise OSError("No space left on device")
        (folder / "weights.txt").write_text("tiny")

    spec = ModelSpec(name="t", checkpoint="org/t", tiny_builder=build, loader=lambda context: "tiny",
                     files=lambda checkpoint, choice: Download("bundled", checkpoint))
    cache = ModelCache({"t": spec}, Settings(profile="tiny", tiny_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match="tiny t model: OSError: No space left on device"):
        cache.get("t")
    assert not cache.is_loaded("t") and not builds[0].exists()
    assert cache.get("t") == "tiny" and len(builds) == 2


def test_out_of_memory_in_a_run_fails_that_request_only_empties_the_cuda_cache_and_the_next_works(monkeypatch):
    handle = models.get("clip-vit-base-patch32")
    get_image_features = handle.model.get_image_features
    unlucky = "unlucky user"

    def allocate(*args, **kwargs):
        if threading.current_thread().name == unlucky:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return get_image_features(*args, **kwargs)

    emptied = []
    monkeypatch.setattr(handle.model, "get_image_features", allocate)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    classify = user_errors(run_clip_zero_shot)
    outcomes = {}

    def request(name: str) -> None:
        try:
            outcomes[name] = classify(CAT, "cat, dog")
        except gr.Error as error:
            outcomes[name] = error

    threads = [threading.Thread(target=request, args=(name,), name=name) for name in (unlucky, "other user")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert isinstance(outcomes[unlucky], gr.Error) and outcomes[unlucky].message == OUT_OF_MEMORY
    assert outcomes["other user"].labels == ["cat", "dog"]
    assert emptied, "the CUDA cache was not emptied after the out-of-memory error"
    assert classify(CAT, "cat, dog").labels == ["cat", "dog"]


def generation_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.endswith("(generate)")]


def test_a_dropped_llava_stream_stops_its_generation_thread():
    handle = models.get("llava-interleave-qwen-0.5b")
    tokens = []

    def slow_step(module, args):  # ~20 s for the 400 tokens asked, if nobody stops it
        tokens.append(time.monotonic())
        time.sleep(0.05)

    hook = handle.model.register_forward_pre_hook(slow_step)
    try:
        decoding = replace(LLAVA_DECODING, max_new_tokens=400, strategy="greedy")
        stream = stream_llava(CAT, [], "What animal is this?", "llava-interleave-qwen-0.5b", decoding)
        next(stream)
        stream.close()  # what gradio does when the browser tab closes or the client disconnects
        dropped_at = time.monotonic()
        while generation_threads() and time.monotonic() < dropped_at + 5:
            time.sleep(0.05)
    finally:
        hook.remove()
    assert not generation_threads() and sum(step > dropped_at for step in tokens) <= 2, \
        "generation went on after the stream was dropped"
    *_, answer = stream_llava(CAT, [], "What animal is this?", "llava-interleave-qwen-0.5b",
                              replace(decoding, max_new_tokens=8))
    assert answer.done and 0 < answer.new_tokens <= 8


@contextmanager
def listening_to_queue(blocks: gr.Blocks, api_name: str, data: list) -> Iterator[None]:
    """Join the queue and hold its event stream open, as a page does, until the block ends."""
    import httpx

    session = uuid.uuid4().hex
    fn_index = next(index for index, fn in blocks.fns.items() if fn.api_name == api_name)
    api = f"{blocks.local_url}gradio_api/queue"
    with httpx.Client(timeout=30) as http:
        http.post(f"{api}/join", json={"data": data, "fn_index": fn_index, "session_hash": session}).raise_for_status()
        with http.stream("GET", f"{api}/data", params={"session_hash": session}):
            yield


@contextmanager
def launched_page(*modules: str) -> Iterator[gr.Blocks]:
    """The real page (its queue and progress hooks) with the tabs of these modules, served on loopback."""
    import app as page
    from demos import DEMOS
    from tests.conftest import free_port

    blocks = page.build_app([demo for demo in DEMOS if demo.module in modules])
    blocks.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield blocks
    finally:
        blocks.close()


@pytest.mark.parametrize("leave", ["stop", "disconnect"])
def test_a_diffusion_run_whose_user_left_stops_at_its_next_step_and_the_next_run_works(leave, monkeypatch):
    """The real page's queue and the real sampler: a 100-step run is left after a few steps (Stop in
    the page, or the connection dropped); its thread must stop within a few steps, not run to 100."""
    from gradio_client import Client

    from demos.tabs import diffusion_basics

    unet = models.get(diffusion_basics.PIXEL_MODEL).unet
    steps, ended, outcome = [], threading.Event(), {}
    run_pixel_sampler = diffusion_basics.run_pixel_sampler

    def observed_run(*args, **kwargs):
        try:
            return run_pixel_sampler(*args, **kwargs)
        except Exception as error:
            outcome["error"] = error
            raise
        finally:
            ended.set()

    monkeypatch.setattr(diffusion_basics, "run_pixel_sampler", observed_run)
    hook = unet.register_forward_pre_hook(lambda module, args: steps.append(time.sleep(0.05)))
    try:
        with launched_page("demos.tabs.diffusion_basics") as blocks:
            request = ["DDIM", 100, 0.0, 2, 0, False]
            if leave == "stop":  # the page's Stop button, or gradio_client's cancel()
                job = Client(blocks.local_url, verbose=False).submit(*request, api_name="/pixel_sampler")
                while len(steps) < 5:
                    time.sleep(0.02)
                job.cancel()
            else:  # the browser tab closes: the page's event stream is cut mid-run
                with listening_to_queue(blocks, "pixel_sampler", request):
                    while len(steps) < 5:
                        time.sleep(0.02)
            steps_when_left = len(steps)
            assert ended.wait(timeout=300)
            assert isinstance(outcome.get("error"), models.JobDropped) and len(steps) <= steps_when_left + 10, \
                f"the run went on to step {len(steps)} of 100 after its user left at step {steps_when_left}"
            ended.clear()
            image, *_ = Client(blocks.local_url, verbose=False).predict("DDIM", 3, 0.0, 2, 0, False,
                                                                        api_name="/pixel_sampler")
            assert Path(image).exists()
    finally:
        hook.remove()


def steps_beside_a_slow_clip_request(clip_seconds: float) -> tuple[list[float], float, float]:
    """Start a 100-step DDIM run on the real page, make one CLIP request that takes `clip_seconds`
    while it runs, and return the run's step times with the CLIP request's start and end."""
    from gradio_client import Client, handle_file

    from demos.tabs import diffusion_basics

    steps, clip_window = [], []
    unet = models.get(diffusion_basics.PIXEL_MODEL).unet
    vision = models.get("clip-vit-base-patch32").model.vision_model
    hooks = [unet.register_forward_pre_hook(lambda module, args: steps.append(time.monotonic()) or time.sleep(0.05)),
             vision.register_forward_pre_hook(
                 lambda module, args: clip_window.append(time.monotonic()) or time.sleep(clip_seconds)),
             vision.register_forward_hook(lambda module, args, output: clip_window.append(time.monotonic()))]
    try:
        with launched_page("demos.tabs.diffusion_basics", "demos.tabs.clip_zero_shot") as blocks:
            run = Client(blocks.local_url, verbose=False).submit("DDIM", 100, 0.0, 2, 0, False,
                                                                 api_name="/pixel_sampler")
            while len(steps) < 3:
                time.sleep(0.02)
            Client(blocks.local_url, verbose=False).predict(handle_file(str(ASSETS / "chelsea.jpg")), "cat, dog",
                                                            "a photo of a {}.", "clip-vit-base-patch32", 2,
                                                            api_name="/clip_zero_shot")
            started, ended = clip_window
            while not [step for step in steps if step > ended] and time.monotonic() < ended + 60:
                time.sleep(0.05)
            run.cancel()
    finally:
        for hook in hooks:
            hook.remove()
    return steps, started, ended


def test_a_diffusion_run_pauses_at_its_steps_while_a_light_request_runs_then_goes_on():
    """A CLIP request made during a 100-step run: the run takes no new step while CLIP works (so on a
    2-core machine CLIP is not slowed by it; `bench/api_overhead.py` measures that), and resumes after."""
    steps, started, ended = steps_beside_a_slow_clip_request(clip_seconds=2)
    during = [step for step in steps if started < step < ended]
    assert len(during) <= 2, f"the run took {len(during)} steps during a 2-second CLIP request"
    assert [step for step in steps if step > ended], "the run did not go on after the CLIP request"


def test_a_light_request_cannot_hold_a_diffusion_run_up_longer_than_its_allowance(monkeypatch):
    """A light request that takes long (or waits on a model a heavy run is loading) gets the pause only
    up to `MAX_GIVE_WAY_SECONDS`; then the run goes on beside it."""
    from demos.page import server

    monkeypatch.setattr(server, "MAX_GIVE_WAY_SECONDS", 1.0)
    steps, started, ended = steps_beside_a_slow_clip_request(clip_seconds=4)
    # The pause starts when the CLIP job enters the queue, a little before its model runs (`started`).
    pause = max(later - earlier for earlier, later in zip(steps, steps[1:]) if started - 2 < later < ended)
    assert pause > 0.7, f"the run did not pause for the CLIP request (longest gap between steps {pause:.2f} s)"
    after_allowance = [step for step in steps if started + 1.2 < step < ended]
    assert len(after_allowance) >= 3, f"the run took {len(after_allowance)} steps in the 3 s after the allowance"
