"""A Hugging Face Hub on localhost that serves a hub-shaped cache's snapshots, for download tests.

It answers the four requests a pinned download makes — the repository's info (the app's probe), the tree
listing at a commit (`snapshot_download`), and HEAD and GET (with `Range`, to resume) of a file under
`/<repo>/resolve/<commit>/<path>` — from the files of a local cache, as `huggingface_hub` expects them
(`X-Repo-Commit`, `ETag`, `Content-Length`). While `cut_after` names a file, every GET of it drops the
connection after that many bytes, as a flaky school network does; `requests` records what was asked.
"""
from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeHub:
    def __init__(self, hub_cache: Path, cut_after: dict[str, int] | None = None) -> None:
        self.hub_cache = Path(hub_cache)
        self.cut_after = dict(cut_after or {})
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hub.answer(self, head=False)

            def do_HEAD(self) -> None:
                hub.answer(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- the repository as served ---------------------------------------------------------------
    def _snapshot(self, repo: str) -> tuple[str, Path]:
        storage = self.hub_cache / ("models--" + repo.replace("/", "--"))
        commit = (storage / "refs" / "main").read_text().strip()
        return commit, storage / "snapshots" / commit

    def _files(self, repo: str) -> dict[str, Path]:
        _, snapshot = self._snapshot(repo)
        return {str(p.relative_to(snapshot)): p for p in sorted(snapshot.rglob("*")) if p.is_file()}

    @staticmethod
    def _blob_id(data: bytes) -> str:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    # ---- requests -------------------------------------------------------------------------------------
    def answer(self, request: BaseHTTPRequestHandler, head: bool) -> None:
        path = urllib.parse.urlparse(request.path).path
        self.requests.append((request.command, path, request.headers.get("Range", "")))
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        try:
            if parts[:2] == ["api", "models"] and "revision" in parts:
                repo = "/".join(parts[2:parts.index("revision")])
                commit, _ = self._snapshot(repo)
                siblings = [{"rfilename": name} for name in self._files(repo)]
                return self._json(request, {"id": repo, "modelId": repo, "sha": commit, "siblings": siblings})
            if parts[:2] == ["api", "models"] and "tree" in parts:
                repo = "/".join(parts[2:parts.index("tree")])
                entries = [{"type": "file", "path": name, "size": file.stat().st_size,
                            "oid": self._blob_id(file.read_bytes())} for name, file in self._files(repo).items()]
                return self._json(request, entries)
            if "resolve" in parts:
                at = parts.index("resolve")
                return self._file(request, "/".join(parts[:at]), "/".join(parts[at + 2:]), head)
        except FileNotFoundError:
            pass
        request.send_response(404)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _json(self, request: BaseHTTPRequestHandler, payload: object) -> None:
        body = json.dumps(payload).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _file(self, request: BaseHTTPRequestHandler, repo: str, name: str, head: bool) -> None:
        commit, _ = self._snapshot(repo)
        file = self._files(repo).get(name)
        if file is None:
            raise FileNotFoundError(name)
        data = file.read_bytes()
        start = int(request.headers.get("Range", "bytes=0-").split("=")[1].split("-")[0] or 0)
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", commit)
        request.send_header("ETag", f'"{self._blob_id(data)}"')
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("Content-Length", str(len(data) - start))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        if head:
            return
        cut = self.cut_after.get(name)
        request.wfile.write(data[start:start + cut] if cut is not None else data[start:])
        if cut is not None:
            request.wfile.flush()
            request.close_connection = True
            request.connection.shutdown(2)
