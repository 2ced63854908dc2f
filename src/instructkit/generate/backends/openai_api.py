"""``openai``: any OpenAI-compatible chat-completions server (vLLM, llama.cpp's server, ``transformers
serve``, the OpenAI API) through the official ``openai`` client.

What the client does not do for a generator, done here:

* **Concurrency**: a thread pool of ``concurrency`` workers shares one client (its HTTP pool is thread-safe);
  replies come back in request order whatever order they finish in.
* **Retries with exponential backoff** on 429, 5xx, timeouts and dropped connections, ``max_retries`` times,
  waiting ``backoff_base * 2**attempt`` seconds (halved at random, capped at ``backoff_max``; a server's
  ``Retry-After`` wins when it is shorter than the cap). The client's own retries are turned off: their
  delays are module constants (0.5 s up to 8 s), which a test cannot shorten and a user cannot tune.
* **Failing fast when nothing listens**: a connection that cannot be made (refused, an unknown host) is
  retried too, but each wait is at most ``CONNECT_RETRY_MAX`` seconds (a server that is down is not coming
  back within a backoff; one blinking is). When the first ``concurrency`` requests of a batch (or all of a
  smaller batch) all fail to connect and none reached the server, the batch stops with
  :class:`ServerUnreachable` — one line naming the URL and the count — instead of turning every request of
  every round into an error reply for minutes. What was answered before is in the cache; rerun once the
  server is up.
* **A requests-per-minute limit** shared by the workers (request starts spaced ``60 / rpm`` seconds apart).
* **Token accounting** from each reply's ``usage`` (0 when a server omits it), and cost when
  ``price_per_1k_prompt``/``price_per_1k_completion`` are set (``self.usage``).
* **Malformed replies are replies**: no choices, empty or missing content, invalid JSON, a reply the client
  cannot parse, a 4xx for one request (say a prompt longer than the context) — each comes back as a ``Reply``
  with ``error`` set, so a batch always has one reply per request and a generator can count the reason.
  Only what no request can survive stops the batch with a BackendError: a refused API key (401/403) or an
  unknown model or URL (404).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from instructkit.config import checked
from instructkit.generate.backends.base import Backend, BackendError, OnReply, Reply, Request, register

FATAL_STATUS = {401: "the server refused the API key", 403: "the server refused the API key",
                404: "the server does not know this model or URL"}  # fmt: skip
CONNECT_RETRY_MAX = 0.5
"""The longest wait before retrying a request whose connection could not be made (module docstring)."""


class ServerUnreachable(BackendError):
    """No request of a batch could connect to the server (module docstring): the message names the URL, how
    many requests were refused and why."""


class RateLimiter:
    """Spaces request starts ``60 / rpm`` seconds apart across threads (no bursts: a server's per-minute
    window never sees more than rpm + 1 starts). ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(self, rpm: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.interval = 60.0 / rpm if rpm else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:  # reserve the next slot, then sleep outside the lock
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


@register
@dataclass
class OpenAIBackend(Backend):
    name = "openai"
    model: str = "gpt-4o-mini"
    """The model name the server knows (``--model`` of vLLM, the OpenAI model id)."""
    base_url: str | None = None
    """The server's API root, such as http://127.0.0.1:8000/v1; None: the OpenAI API (or $OPENAI_BASE_URL)."""
    api_key: str | None = field(default=None, repr=False)  # a secret: kept out of logs and reprs
    """None: $OPENAI_API_KEY, else "EMPTY" (local servers accept any key)."""
    concurrency: int = checked(8, ge=1)
    """Requests in flight at once."""
    max_retries: int = checked(5, ge=0)
    """Retries of one request on 429, 5xx, timeouts and dropped connections before it becomes an error reply."""
    backoff_base: float = checked(1.0, ge=0, finite=True)
    """Seconds before the first retry; doubled at each next one."""
    backoff_max: float = checked(60.0, ge=0, finite=True)
    """The longest wait between two tries."""
    timeout: float = checked(600.0, gt=0, finite=True)
    """Seconds one request may take."""
    requests_per_minute: float | None = checked(None, gt=0, finite=True)
    """At most this many request starts per minute (all workers together); None: no limit."""
    price_per_1k_prompt: float | None = checked(None, ge=0, finite=True)
    """Price of 1,000 prompt tokens; with the completion price, ``usage.cost`` adds up what the run spent."""
    price_per_1k_completion: float | None = checked(None, ge=0, finite=True)
    """Price of 1,000 completion tokens."""
    max_tokens_param: str = checked("max_tokens", choices=("max_tokens", "max_completion_tokens"))
    """The request field that carries Sampling.max_tokens (OpenAI's newer models take max_completion_tokens)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._client: Any = None
        self._limiter = RateLimiter(self.requests_per_minute)
        self._rng = random.Random(0)

    def key(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    @property
    def client(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                base_url=self.base_url,
                api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                max_retries=0,  # retried here, with a configurable backoff (module docstring)
                timeout=self.timeout,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def url(self) -> str:
        """Where requests go, for messages."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")

    def complete(self, requests: Sequence[Request], on_reply: OnReply | None = None) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(requests)
        if not requests:
            return []
        self.client  # noqa: B018 — made once here, not raced by the workers
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)))
        unreachable: list[str] = []  # why each request that could not connect failed
        reached = 0  # requests that got any answer from the server (an error status included)
        try:
            futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
            for fut in as_completed(futures):
                i = futures[fut]
                replies[i], cause = fut.result()  # _one raises only a BackendError no request can survive
                if on_reply:
                    on_reply(i, replies[i])
                if cause is None:
                    reached += 1
                else:
                    unreachable.append(cause)
                if not reached and len(unreachable) >= min(self.concurrency, len(requests)):
                    raise self.unreachable(unreachable)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [r for r in replies if r is not None]

    def unreachable(self, causes: list[str]) -> ServerUnreachable:
        n, cause = len(causes), causes[0]
        if cause == "connection refused":
            return ServerUnreachable(
                f"{self.url} refused {n} of {n} requests ({cause}); is the server running?"
            )
        return ServerUnreachable(
            f"could not connect to {self.url} for {n} of {n} requests ({cause}); is the URL right and the "
            "server running?"
        )

    # ------------------------------------------------------------------ one request
    def _params(self, req: Request) -> dict[str, Any]:
        s = req.sampling
        kw: dict[str, Any] = {"model": self.model, "messages": req.messages, "temperature": s.temperature,
                              "top_p": s.top_p, self.max_tokens_param: s.max_tokens}  # fmt: skip
        if s.stop:
            kw["stop"] = list(s.stop)
        if s.seed is not None:
            kw["seed"] = s.seed
        return kw

    def _one(self, req: Request) -> tuple[Reply, str | None]:
        """The reply to ``req``, and why its connection could not be made when that is how it ended (None
        when the server answered, even with an error)."""
        import openai

        attempt = 0
        cause: str | None = None
        while True:
            self._limiter.wait()
            try:
                completion = self.client.chat.completions.create(**self._params(req))
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as e:
                # APITimeoutError is an APIConnectionError; InternalServerError is any 5xx
                cause = connect_failure(e)
                if attempt >= self.max_retries:
                    reply = Reply.failed(f"{cause or _describe(e)} (gave up after {attempt} retries)")
                    break
                self.sleep_before_retry(attempt, getattr(e, "response", None),
                                        cap=CONNECT_RETRY_MAX if cause else None)  # fmt: skip
                attempt += 1
                continue
            except openai.APIStatusError as e:
                cause = None
                if e.status_code in FATAL_STATUS:
                    raise BackendError(
                        f"{FATAL_STATUS[e.status_code]} (HTTP {e.status_code} from "
                        f"{self.base_url or 'the OpenAI API'}, model {self.model!r}): {_body(e)}"
                    ) from None
                reply = Reply.failed(f"HTTP {e.status_code}: {_body(e)}")
                break
            except Exception as e:  # invalid JSON, a body the client cannot parse: this request's error
                cause = None
                reply = Reply.failed(f"malformed reply: {type(e).__name__}: {e}"[:500])
                break
            cause = None
            reply = parse_completion(completion)
            break
        self.usage.add(reply, self.cost(reply), retries=attempt)
        return reply, cause

    def sleep_before_retry(self, attempt: int, response: Any = None, cap: float | None = None) -> None:
        delay = min(self.backoff_max, self.backoff_base * 2**attempt) * (0.5 + self._rng.random() / 2)
        retry_after = _retry_after(response)
        if retry_after is not None and retry_after <= self.backoff_max:
            delay = retry_after
        time.sleep(delay if cap is None else min(delay, cap))

    def cost(self, reply: Reply) -> float | None:
        if self.price_per_1k_prompt is None and self.price_per_1k_completion is None:
            return None
        return (reply.prompt_tokens * (self.price_per_1k_prompt or 0.0)
                + reply.completion_tokens * (self.price_per_1k_completion or 0.0)) / 1000  # fmt: skip


def parse_completion(completion: Any) -> Reply:
    """A chat completion as a Reply; anything unusable (no choices, no text, a refusal by the content filter)
    is a Reply with its error, its token counts kept (they were spent)."""
    usage = getattr(completion, "usage", None)
    pt = int(getattr(usage, "prompt_tokens", 0) or 0)
    ct = int(getattr(usage, "completion_tokens", 0) or 0)
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return Reply.failed("malformed reply: no choices", pt, ct)
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    finish = getattr(choice, "finish_reason", None)
    if finish not in (None, "stop", "length"):
        return Reply.failed(f"finish_reason {finish!r} (no text reply)", pt, ct)
    if not isinstance(text, str) or not text.strip():
        return Reply.failed(f"malformed reply: {'empty' if isinstance(text, str) else 'no'} content", pt, ct)
    return Reply(text, "length" if finish == "length" else "stop", pt, ct)


def connect_failure(e: BaseException) -> str | None:
    """Why no connection could be made, when that is what ``e`` (the client's error) says: "connection
    refused" (nothing listens at the port) or the reason of another failed connect (an unknown host, a
    network that cannot be reached). None for anything else — a timeout, a connection dropped after it was
    made, an HTTP status — which the server may recover from."""
    chain: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and x not in chain:
        chain.append(x)
        x = x.__cause__ or x.__context__
    if any(isinstance(x, TimeoutError) or "Timeout" in type(x).__name__ for x in chain):
        return None
    if any(isinstance(x, ConnectionRefusedError) for x in chain):
        return "connection refused"
    # the HTTP client's ConnectError (httpx and its forks name it so) wraps a connect that failed
    if any(type(x).__name__ == "ConnectError" for x in chain):
        return f"cannot connect: {chain[-1]}"[:200]
    return None


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _body(e: Any) -> str:
    return str(getattr(e, "body", None) or getattr(e, "message", "") or e)[:300]


def _describe(e: Exception) -> str:
    status = getattr(e, "status_code", None)
    return f"HTTP {status}" if status else f"{type(e).__name__}: {e}"
