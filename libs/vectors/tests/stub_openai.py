"""A tiny local OpenAI-compatible `/v1/embeddings` server for the OpenAI adapter's tests (no network).

It answers with the hashing embedder's vectors scaled by 3 (so the adapter must normalise) and in
reverse order (so the adapter must sort by `index`), and records every request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragbus.vectors.testing import HashingEmbedder


@dataclass
class Stub:
    base_url: str
    embedder: HashingEmbedder
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_status: int | None = None


@contextmanager
def stub_server(dim: int = 32) -> Iterator[Stub]:
    stub = Stub(base_url="", embedder=HashingEmbedder(dim))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep the test output clean
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path != "/v1/embeddings":
                return self._send(404, {"error": {"message": "not found"}})
            if stub.fail_status is not None:
                return self._send(stub.fail_status, {"error": {"message": "stub says no", "type": "x"}})
            size = body.get("dimensions") or dim
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": [3 * x for x in stub.embedder.vector(t)][:size],
                }
                for i, t in enumerate(body["input"])
            ]
            data.reverse()
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return self._send(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
