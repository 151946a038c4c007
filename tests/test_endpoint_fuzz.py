"""Bad input to every named endpoint, over HTTP as a script would send it.

Each call must succeed or fail with the app's own plain message (no server path, no traceback, no
pydantic dump, nothing logged as a crash), finish within a bound, and leave the server answering.
The endpoints, their inputs and each input's kind are read from the running app's config, so a tab
added later is fuzzed without editing this file.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from demos.tabs.clip_zero_shot import run_clip_zero_shot
from demos.shared.inputs import number_in_range, prompt_text, rgb_image, text_items
from models import UserError
from tests.conftest import ROOT
from tests.endpoints import GOOD_IMAGE, Endpoint, named_endpoints

# A bad request may be refused or run, but never hang past this. A harmless bad value (a checkbox sent
# 'yes') runs the whole request: the slowest, DDPM's 1000 steps beside DDIM's 50, took over 120 s on
# 2 cores with a test suite beside it.
CALL_SECONDS = 300
EXAMPLES = 3  # hypothesis rounds; each round sends one bad value to every endpoint

BAD_TEXTS = ["", "   \n\t", "x" * 10_000, "一只猫坐在草地上", "🐱🐶🚀" * 20,
             "cat: 1.5, -0.2, 2.0, 0.9", "cat: 0.9, 0.9, 0.1, 0.1", "cat: 0.5, 0.5, 0.5, 0.5"]
BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1, 1e12, 0.5]
LEAKS = [re.compile(pattern) for pattern in (
    r"Traceback", r'File "', r"/tmp/", r"site-packages", re.escape(str(ROOT)), r"validation error",
    r"pydantic", r"input_value=", r"Could not preprocess", r"Something went wrong")]
CRASH_IN_LOG = "unexpected error in"  # what demos.shared.handlers.user_errors logs for an exception it did not expect


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Files a user might upload as an image: odd modes and sizes, broken or non-image bytes."""
    rgb = Image.open(GOOD_IMAGE).convert("RGB").resize((96, 96))
    files = {
        "1x1.png": Image.new("RGB", (1, 1), "red"),
        "rgba.png": rgb.convert("RGBA"),
        "grayscale.png": rgb.convert("L"),
        "16bit.png": Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)),
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.png": rgb.convert("P"),
        "empty_mask.png": Image.new("L", (96, 96), 0),
        "full_mask.png": Image.new("L", (96, 96), 255),
        "8000x8000.png": Image.new("RGB", (8000, 8000), "gray"),
    }
    paths = {}
    for name, image in files.items():
        paths[name] = folder / name
        image.save(paths[name])
    whole_jpeg = GOOD_IMAGE.read_bytes()
    paths["truncated.jpg"] = folder / "truncated.jpg"
    paths["truncated.jpg"].write_bytes(whole_jpeg[: len(whole_jpeg) // 3])
    paths["text.png"] = folder / "text.png"
    paths["text.png"].write_text("this is not an image\n")
    paths["empty.webp"] = folder / "empty.webp"
    paths["empty.webp"].write_bytes(b"")
    return paths


def bad_values(component: dict, files: dict[str, Path]) -> list[tuple[str, Any]]:
    kind, props = component["type"], component.get("props", {})
    uploads = [(name, handle_file(str(path))) for name, path in files.items()]
    wrong_type = [("wrong type: a file", handle_file(str(files["text.png"])))]
    if kind == "image":
        return [("None", None), *uploads]
    if kind == "file":
        many = props.get("file_count") == "multiple"
        return [("None", None), *[(name, [value] if many else value) for name, value in uploads]]
    if kind == "textbox":
        return [(repr(text[:20]), text) for text in BAD_TEXTS] + [("None", None)]
    if kind in ("number", "slider"):
        return [(repr(number), number) for number in BAD_NUMBERS] + [("None", None), ("text", "many")]
    if kind in ("dropdown", "radio"):
        return [("not a choice", "no-such-choice"), ("None", None), *wrong_type]
    if kind == "checkbox":  # gradio passes any payload on as a truthy value: the request just runs
        return [("None", None), ("text", "yes")]
    if kind == "imageeditor":
        editor = {"background": uploads[0][1], "layers": [uploads[1][1]], "composite": uploads[0][1], "id": None}
        return [("None", None), ("1x1 and RGBA layers", editor), *wrong_type]
    return [("None", None), *wrong_type]  # chatbot, checkboxgroup ...: a file where data is expected


def with_bad_values(endpoints: list[Endpoint], client: Client, files: dict[str, Path]) -> list[Endpoint]:
    """Each endpoint with, for each of its inputs, the bad values of that input's kind."""
    components = {component["id"]: component for component in client.config["components"]}
    for endpoint in endpoints:
        for index, component_id in enumerate(endpoint.input_ids):
            component = components[component_id]
            label = component.get("props", {}).get("label") or f"input {index}"
            endpoint.bad += [(index, f"{label}={description}", value)
                             for description, value in bad_values(component, files)]
    return endpoints


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False)


@pytest.fixture(scope="module")
def endpoints(client, tmp_path_factory) -> list[Endpoint]:
    found = with_bad_values(named_endpoints(client), client, write_bad_files(tmp_path_factory.mktemp("bad-files")))
    assert len(found) >= 10 and all(endpoint.bad for endpoint in found if endpoint.good)
    return found


def plain_failure(error: BaseException) -> str | None:
    """What is wrong with an error a user would see, or None when it is the app's own plain message."""
    message = str(error)
    if not message.strip():
        return f"empty error message ({type(error).__name__})"
    leaked = [pattern.pattern for pattern in LEAKS if pattern.search(message)]
    return f"leaks {leaked}: {message[:300]}" if leaked else None


def call_once(client: Client, app_server, endpoint: str, args: list[Any]) -> str | None:
    """Send one request; a problem description, or None when it succeeded or failed plainly. A refusal is
    one line in the server's console naming the endpoint, not gradio's traceback of the user's mistake."""
    log_before = len(app_server.log())
    job = client.submit(*args, api_name=endpoint)
    try:
        job.result(timeout=CALL_SECONDS)
        problem, refused = None, False
    except TimeoutError:
        job.cancel()
        return f"no answer within {CALL_SECONDS}s"
    except Exception as error:  # noqa: BLE001 - every error the client raises is judged by its message
        problem, refused = plain_failure(error), isinstance(error, AppError)  # else the client refused to send
    log = app_server.log()[log_before:]
    if CRASH_IN_LOG in log:
        problem = f"{problem or ''} server logged a crash: ...{log[-600:]}"
    elif refused and ("Traceback" in log or f"{endpoint} refused a request: " not in log):
        problem = f"{problem or ''} the console shows, for a refusal: {log[-400:]!r}"
    return problem


@settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_endpoint_survives_bad_input_and_keeps_serving(data, client, endpoints, app_server):
    problems = []
    for endpoint in endpoints:
        if not endpoint.bad:
            continue
        index, description, value = data.draw(st.sampled_from(endpoint.bad), label=endpoint.name)
        problem = call_once(client, app_server, endpoint.name, endpoint.args_with(index, value))
        if problem:
            problems.append(f"{endpoint.name} {description}: {problem}")
    assert call_once(client, app_server, "/loaded_models", []) is None, "the server stopped answering"
    assert not problems, "\n".join(problems)


REFUSED_BEFORE_ANY_MODEL = ("=text.png", "=wrong type: a file")


def test_unreadable_files_and_wrong_kinds_of_value_are_refused_plainly_by_every_endpoint(client, endpoints, app_server):
    """Not left to chance: the bad values every endpoint must refuse before any model runs."""
    problems = []
    for endpoint in endpoints:
        for index, description, value in endpoint.bad:
            if description.endswith(REFUSED_BEFORE_ANY_MODEL):
                problem = call_once(client, app_server, endpoint.name, endpoint.args_with(index, value))
                if problem:
                    problems.append(f"{endpoint.name} {description}: {problem}")
    assert not problems, "\n".join(problems)


# ---- in-process: the validators every run_* starts with, and the cheapest run_* -----------------

NUMBERS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
TEXTS = st.one_of(st.none(), st.text(max_size=300), st.lists(st.text(max_size=30), max_size=70))
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]


@settings(max_examples=300, deadline=2000, database=None)
@given(number=NUMBERS, text=TEXTS, side=st.integers(1, 64), mode=st.sampled_from(MODES))
def test_input_validators_return_a_clean_value_or_a_user_error(number, text, side, mode):
    checks = [lambda: number_in_range(number, "The steps", 1, 50, whole=True),
              lambda: number_in_range(number, "The scale", 0, 20),
              lambda: text_items(text, "label", 64),
              lambda: prompt_text(text if not isinstance(text, list) else None, "the picture"),
              lambda: rgb_image(Image.new(mode, (side, 2 * side)))]
    for check in checks:
        try:
            check()
        except UserError:
            pass


@pytest.fixture(scope="module")
def tiny_clip_built():
    """Build and load the tiny CLIP before the timed examples."""
    run_clip_zero_shot(Image.open(GOOD_IMAGE), "cat, dog")


@settings(max_examples=25, deadline=10_000, database=None)
@given(labels=TEXTS, templates=st.one_of(st.none(), st.text(max_size=200)))
def test_clip_zero_shot_answers_or_refuses_any_text(tiny_clip_built, labels, templates):
    try:
        result = run_clip_zero_shot(Image.open(GOOD_IMAGE), labels, templates)
    except UserError:
        return
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-4)
