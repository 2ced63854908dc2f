"""A fake OpenAI-compatible chat-completions server for the backend tests: 127.0.0.1, a free port, a thread.

It answers ``POST /v1/chat/completions`` with ``answer: <last user message>`` and fixed usage (10 prompt,
5 completion tokens), counts requests per key (the last user message), and can be scripted per key with a
list of behaviours used one per request (then "ok"): ``429``, ``500``, ``drop`` (close without answering),
``malformed`` (invalid JSON), ``truncated`` (a JSON body cut short, its length announced honestly),
``cut`` (the connection closes mid-body), ``no_choices``, ``null_content``, ``length`` (finish_reason length),
``401``. ``answer(message) -> text`` replaces the echo (a generator's scripted model). ``hold_after=N`` answers N requests, then sets ``held`` and makes every later request wait until
``release`` is set (so a test can kill a client with requests in flight). ``delay=S`` makes every request
wait S seconds before its answer (a slow server; leaving the ``with`` block ends the waits).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5


class FakeServer:
    def __init__(
        self,
        script: dict[str, list[str]] | None = None,
        hold_after: int | None = None,
        answer: Any = None,
        delay: float = 0.0,
    ) -> None:
        self.delay = delay
        self.answer = answer  # answer(last user message) -> reply text; default "answer: <message>"
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.hold_after = hold_after
        self.counts: Counter[str] = Counter()
        self.answered: list[str] = []  # keys whose full answer was written, in order
        self.admitted = 0  # "ok" answers decided on (written or being written)
        self.bodies: list[dict[str, Any]] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["messages"][-1]["content"]
                with server.lock:
                    server.counts[key] += 1
                    server.bodies.append(body)
                    steps = server.script.get(key)
                    action = steps.pop(0) if steps else "ok"
                    # decided under the lock, counting answers admitted but not yet written: with
                    # concurrent clients, comparing len(answered) let a few more than hold_after through
                    hold = server.hold_after is not None and server.admitted >= server.hold_after
                    if not hold and action == "ok":
                        server.admitted += 1
                if hold:
                    server.held.set()
                    server.release.wait(30)
                    self.close_connection = True
                    return
                if server.delay and server.release.wait(server.delay):
                    self.close_connection = True  # the server is shutting down
                    return
                server.respond(self, key, action)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def respond(self, h: BaseHTTPRequestHandler, key: str, action: str) -> None:
        if action == "drop":
            h.close_connection = True
            return
        status, payload = 200, None
        text = self.answer(key) if self.answer else f"answer: {key}"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        if action in ("429", "500", "401"):
            status = int(action)
            payload = json.dumps({"error": {"message": f"scripted {action}", "type": "x"}}).encode()
        else:
            if action == "no_choices":
                choices: list[Any] = []
            else:
                choices = [choice]
                if action == "null_content":
                    message["content"] = None
                if action == "length":
                    choice["finish_reason"] = "length"
            data = {"id": "x", "object": "chat.completion", "created": 0, "model": "fake", "choices": choices,
                    "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}  # fmt: skip
            payload = json.dumps(data).encode()
            if action == "malformed":
                payload = b"{this is not json"
            elif action == "truncated":
                payload = payload[: len(payload) // 2]
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        if action == "cut":
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if status == 429:
            h.send_header("Retry-After", "0")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()
        if status == 200 and action == "ok":
            with self.lock:
                self.answered.append(key)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
