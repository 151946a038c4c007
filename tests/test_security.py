"""The README's security claims, checked: auth on API and file routes, the upload limit, safe weights."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from gradio_client import Client, handle_file

from tests.conftest import ROOT, AppServer

CODE = [*ROOT.glob("*.py"), *ROOT.glob("demos/**/*.py"), *ROOT.glob("models/**/*.py")]


def anonymous_status(url: str | urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def server_with_auth():
    server = AppServer("--max-file-size", "1mb", env={"PP_AUTH": "teacher:s3cret"})
    yield server
    server.stop()


def test_under_auth_generated_files_uploads_and_the_api_are_refused_to_anonymous_requests(server_with_auth):
    client = Client(server_with_auth.url, auth=("teacher", "s3cret"), verbose=False, download_files=False)
    chat = [{"role": "user", "content": [{"type": "text", "text": "What animal is this?"}]}]
    saved = client.predict(chat, "a cat", "Question: What animal is this? Answer:",
                           api_name="/vqa_save")
    generated_url = saved["url"]
    assert "/gradio_api/file=" in generated_url
    assert anonymous_status(generated_url) in (401, 403)
    anonymous_upload = urllib.request.Request(server_with_auth.url + "gradio_api/upload", method="POST",
                                              data=b"--x--\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert anonymous_status(anonymous_upload) in (401, 403)
    assert anonymous_status(server_with_auth.url + "gradio_api/info") in (401, 403)
    assert anonymous_status(server_with_auth.url + "config") in (401, 403)


def test_uploads_over_the_size_limit_are_refused(server_with_auth, tmp_path):
    client = Client(server_with_auth.url, auth=("teacher", "s3cret"), verbose=False)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (2 * 2**20))
    with pytest.raises(Exception, match="(?i)too large|413|exceed"):
        client.predict(handle_file(str(big)), "cat", "{}", "clip-vit-base-patch32", 2, api_name="/clip_zero_shot")


def test_no_remote_code_and_no_unsafe_pickles_in_the_code():
    for path in CODE:
        text = path.read_text()
        assert "trust_remote_code" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
