"""The app shell: tab isolation, error handling, the CLI, and the live server through its API."""
from __future__ import annotations

import time

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from app import build_app, parse_args, parse_auth
from demos import ASSETS, DEMOS, Demo
from demos.shared.handlers import user_errors
from models import UserError

CLIP_TAB = next(demo for demo in DEMOS if demo.title == "CLIP zero-shot")  # a light tab
from tests.conftest import AppServer


def test_a_tab_that_fails_to_import_shows_an_error_panel_and_the_rest_still_build():
    broken = Demo("Broken paper", "nobody, 2099", "demos.does_not_exist", topic="seeing")
    app = build_app([broken, *DEMOS])
    texts = [block.value for block in app.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("Broken paper tab could not be loaded" in str(text) for text in texts)
    names = {dependency.get("api_name") for dependency in app.config["dependencies"]}
    assert "clip_zero_shot" in names  # the CLIP tab still wired its events


def test_heavy_tabs_share_one_gpu_queue_and_light_ones_do_not():
    heavy_clip = Demo("CLIP as if heavy", "test", "demos.tabs.clip_zero_shot", heavy=True, topic="seeing")
    app = build_app([heavy_clip, CLIP_TAB])
    by_api = {fn.api_name: fn for fn in app.fns.values() if fn.api_name}
    heavy = [fn for name, fn in by_api.items() if name in ("clip_zero_shot", "clip_similarity")]
    private = [fn for fn in app.fns.values() if fn.api_visibility != "public"]
    assert private and all(fn.concurrency_id != "gpu" for fn in private)
    light = [fn for name, fn in by_api.items() if name in ("clip_zero_shot_1", "clip_similarity_1")]
    assert heavy and all(fn.concurrency_id == "gpu" and fn.concurrency_limit == 1 for fn in heavy)
    assert light and all(fn.concurrency_id != "gpu" for fn in light)


def test_zero_gpu_wraps_heavy_handlers_only(monkeypatch):
    import sys
    import types

    wrapped = []

    def gpu(function):
        wrapped.append(function)
        return function

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    build_app([Demo("CLIP as if heavy", "test", "demos.tabs.clip_zero_shot", heavy=True, topic="seeing"), CLIP_TAB])
    assert sorted(fn.__name__ for fn in wrapped) == ["classify_for_ui", "similarity_for_ui", "swap_for_ui"]
    monkeypatch.delenv("SPACES_ZERO_GPU")
    wrapped.clear()
    build_app([Demo("CLIP as if heavy", "test", "demos.tabs.clip_zero_shot", heavy=True, topic="seeing")])
    assert wrapped == []


def test_preload_of_an_unknown_model_exits_with_a_message():
    import app

    with pytest.raises(SystemExit, match="--preload nope: Unknown model 'nope'"):
        app.main(["--models", "tiny", "--preload", "nope"])


def test_user_errors_become_gr_errors_and_crashes_become_one_line():
    @user_errors
    def bad_input():
        raise UserError("Please provide an image.")

    @user_errors
    def crash():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(gr.Error, match="Please provide an image."):
        bad_input()
    with pytest.raises(gr.Error, match="Something went wrong \\(ZeroDivisionError"):
        crash()


def test_cli_defaults_and_auth_parsing(monkeypatch):
    monkeypatch.delenv("PP_MODELS", raising=False)
    monkeypatch.delenv("PP_AUTH", raising=False)
    args = parse_args([])
    assert args.models == "hub" and args.host == "127.0.0.1" and not args.share
    assert parse_auth("teacher:s3cret:x") == ("teacher", "s3cret:x")
    assert parse_auth(None) is None
    with pytest.raises(SystemExit):
        parse_auth("no-colon")


def test_clip_endpoint_answers_through_gradio_client(app_server):
    client = Client(app_server.url, verbose=False)
    started = time.perf_counter()
    top, chart, summary, prompts = client.predict(
        handle_file(str(ASSETS / "chelsea.jpg")), "cat, dog, fox", "a photo of a {}.",
        "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    print(f"first CLIP call (includes tiny load): {time.perf_counter() - started:.2f}s; "
          f"server up in {app_server.startup_seconds:.1f}s")
    assert len(top["confidences"]) == 2
    assert {row[0] for row in chart["data"]} == {"cat", "dog", "fox"}
    assert sum(row[1] for row in chart["data"]) == pytest.approx(1.0, abs=1e-4)
    assert prompts["data"][0] == ["cat", "a photo of a cat."]


def test_bad_request_gets_a_clear_error_and_the_server_keeps_serving(app_server):
    client = Client(app_server.url, verbose=False)
    with pytest.raises(Exception, match="Please provide an image to classify"):
        client.predict(None, "cat, dog", "a photo of a {}.", "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    top, *_ = client.predict(handle_file(str(ASSETS / "coffee.jpg")), "cup, bowl", "{}",
                             "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    assert {c["label"] for c in top["confidences"]} == {"cup", "bowl"}


def test_a_chinese_reader_gets_errors_and_summaries_in_chinese_and_an_api_client_english(app_server):
    """The language of the page (its switch's cookie, else the browser's) reaches errors, warnings and the
    summaries handlers write; a client that asks for no language gets the English the API documents."""
    chinese = Client(app_server.url, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    with pytest.raises(Exception, match="请提供要分类的图像") as refused:
        chinese.predict(None, "cat, dog", "a photo of a {}.", "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    assert "Please" not in str(refused.value)
    with pytest.raises(Exception, match="步数: 这个值不在可接受范围内"):  # refused before the handler runs
        chinese.predict(handle_file(str(ASSETS / "astronaut.jpg")), steps=999, api_name="/controlnet")
    with pytest.raises(Exception, match=r"种子 必须是整数（收到 1.5）"):  # refused by the handler's check
        chinese.predict(handle_file(str(ASSETS / "astronaut.jpg")), steps=2, seed=1.5, api_name="/controlnet")
    *_, summary, _ = chinese.predict(handle_file(str(ASSETS / "chelsea.jpg")), "cat, dog", "{}",
                                     "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    assert "（不含加载）" in summary and "after loading" not in summary
    *_, summary, _ = Client(app_server.url, verbose=False).predict(
        handle_file(str(ASSETS / "chelsea.jpg")), "cat, dog", "{}", "clip-vit-base-patch32", 2,
        api_name="/clip_zero_shot")
    assert "(after loading)" in summary


def test_space_settings_with_auth_refuse_anonymous_clients_and_env_limits_hold_on_the_api():
    space_env = {"SYSTEM": "spaces", "SPACE_ID": "teacher/paper-playground", "GRADIO_SERVER_NAME": "0.0.0.0"}
    server = AppServer(env={**space_env, "PP_AUTH": "teacher:s3cret", "PP_MAX_LABELS": "3"})
    try:
        with pytest.raises(Exception):
            Client(server.url, verbose=False)
        client = Client(server.url, auth=("teacher", "s3cret"), verbose=False)
        top, *_ = client.predict(handle_file(str(ASSETS / "rocket.jpg")), "rocket, tree", "{}",
                                 "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
        assert len(top["confidences"]) == 2
        with pytest.raises(Exception, match="At most 3 labels"):
            client.predict(handle_file(str(ASSETS / "rocket.jpg")), "a, b, c, d", "{}",
                           "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")
    finally:
        server.stop()


def test_share_without_auth_warns_and_turns_the_safety_checker_on(monkeypatch, capsys):
    import app
    import models

    monkeypatch.delenv("PP_AUTH", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(models.model_settings, "safety_checker", False)  # main() sets it; put back after
    launched = {}

    class FakeBlocks:
        local_url, share_url = "http://127.0.0.1:7860/", "https://x.gradio.live"

        def launch(self, **kwargs):
            launched.update(kwargs)

        def block_thread(self):
            pass

    monkeypatch.setattr(app, "build_app", lambda: FakeBlocks())
    app.main(["--models", "tiny", "--share"])
    assert "WARNING: --share creates a public link" in capsys.readouterr().err
    assert launched["share"] is True and launched["auth"] is None and launched["max_file_size"] == "20mb"
    assert models.model_settings.safety_checker  # a public link without a password gets the published filter
    assert not app.safety_checker_on("auto", share=True, auth=("teacher", "secret"))
    assert not app.safety_checker_on("auto", share=False, auth=None) and app.safety_checker_on("on", False, None)


def test_the_launch_message_names_the_apps_own_share_flag(app_server):
    deadline = time.monotonic() + 30
    while "running at" not in app_server.log() and time.monotonic() < deadline:
        time.sleep(0.2)  # printed right after the server answers
    log = app_server.log()
    assert "--share" in log and "running at http://" in log
    assert "share=True" not in log


def test_optional_inputs_have_api_defaults():
    """Only what a run cannot do without is required from an API client."""
    required = {name: [p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]]
                for name, endpoint in build_app().get_api_info()["named_endpoints"].items()}
    assert required["/controlnet"] == ["image"]
    assert required["/gligen"] == []
    assert required["/paint_by_example"] == ["scene", "reference"]
    assert required["/compare"] == []  # the task radio and the method ticks have values


def test_controlnet_api_with_only_an_image_runs_and_a_fractional_seed_is_refused(app_server):
    client = Client(app_server.url, verbose=False)
    image = handle_file(str(ASSETS / "astronaut.jpg"))
    maps, images, info, seed = client.predict(image, steps=2, api_name="/controlnet")
    assert images and seed == 0
    with pytest.raises(Exception, match="The seed must be a whole number"):
        client.predict(image, steps=2, seed=1.5, api_name="/controlnet")
