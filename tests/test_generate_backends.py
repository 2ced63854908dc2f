"""Generation backends and the request cache (issue #11): a fake OpenAI-compatible server on 127.0.0.1
(tests/fake_openai_server.py) scripted with 429s, 500s, dropped connections and malformed bodies; a run
killed with SIGKILL and rerun; the token budget; the local backend on a tiny random Llama."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from instructkit.generate.backends import BACKENDS, BackendError, Reply, Request, Sampling, build_backend
from instructkit.generate.backends.openai_api import RateLimiter
from instructkit.generate.cache import BudgetExhausted, CachedBackend, request_key
from tests.fake_openai_server import COMPLETION_TOKENS, PROMPT_TOKENS, FakeServer

SRC = Path(__file__).parent.parent / "src"
ROOT = Path(__file__).parent.parent


def user(text: str, sampling: Sampling | None = None) -> Request:
    return Request([{"role": "user", "content": text}], sampling or Sampling())


def openai_backend(server: FakeServer, **kw):
    params = dict(model="fake", base_url=server.url, api_key="k", concurrency=4, max_retries=3,
                  backoff_base=0.01, backoff_max=0.05, timeout=20)  # fmt: skip
    return build_backend("openai", **(params | kw))


def test_registry_builds_by_name_and_names_bad_parameters() -> None:
    assert {"local", "openai"} <= set(BACKENDS)
    assert build_backend("openai", concurrency=2).concurrency == 2
    with pytest.raises(BackendError, match="unknown parameter 'concurency'.*concurrency"):
        build_backend("openai", concurency=2)
    with pytest.raises(BackendError, match="'max_retries' must be at least 0"):
        build_backend("openai", max_retries=-1)
    with pytest.raises(BackendError, match="unknown backend 'vllm'; choose one of local, openai"):
        build_backend("vllm")
    assert "secret" not in repr(build_backend("openai", api_key="secret"))


def test_cache_key_changes_with_every_sampling_field_the_model_and_the_messages() -> None:
    base = Sampling(temperature=0.7, top_p=0.9, max_tokens=64, stop=["\n\n"], seed=1)
    key = {"backend": "openai", "model": "m"}
    k0 = request_key(key, user("hi", base))
    variants = [
        request_key(key, user("hi", dataclasses.replace(base, **{f: v})))
        for f, v in [
            ("temperature", 0.8),
            ("top_p", 0.95),
            ("max_tokens", 65),
            ("stop", ["\n"]),
            ("seed", 2),
            ("seed", None),
        ]  # fmt: skip
    ]
    variants.append(request_key({"backend": "openai", "model": "m2"}, user("hi", base)))
    variants.append(request_key({"backend": "local", "model": "m"}, user("hi", base)))
    variants.append(request_key(key, user("hi!", base)))
    variants.append(request_key(key, Request([{"role": "system", "content": "hi"}], base)))
    assert len({k0, *variants}) == len(variants) + 1
    # equal settings written differently are one request: 1 == 1.0, a list and a tuple of stops
    same = Sampling(temperature=1, top_p=1, max_tokens=64, stop=("\n\n",), seed=1)
    assert request_key(key, user("x", same)) == request_key(
        key, user("x", dataclasses.replace(same, temperature=1.0, stop=["\n\n"]))
    )


def test_bad_requests_and_sampling_say_what_is_wrong() -> None:
    with pytest.raises(BackendError, match="top_p"):
        Sampling(top_p=0)
    with pytest.raises(BackendError, match="list of strings"):
        Sampling(stop="\n")
    with pytest.raises(BackendError, match=r"messages\[0\]: role is one of"):
        Request([{"role": "bot", "content": "x"}])


def test_replies_come_back_in_request_order_with_token_accounting_and_cost() -> None:
    with FakeServer() as server:
        b = openai_backend(server, price_per_1k_prompt=1.0, price_per_1k_completion=2.0)
        got: list[int] = []
        replies = b.complete([user(f"t{i}") for i in range(12)], on_reply=lambda i, r: got.append(i))
    assert [r.text for r in replies] == [f"answer: t{i}" for i in range(12)]
    assert sorted(got) == list(range(12))
    assert all(r.ok and r.finish_reason == "stop" and r.prompt_tokens == PROMPT_TOKENS for r in replies)
    assert b.usage.prompt_tokens == 12 * PROMPT_TOKENS and b.usage.completion_tokens == 12 * COMPLETION_TOKENS
    assert b.usage.cost == pytest.approx(12 * (PROMPT_TOKENS * 1.0 + COMPLETION_TOKENS * 2.0) / 1000)
    sent = server.bodies[0]
    assert sent["model"] == "fake" and sent["max_tokens"] == 256 and "seed" not in sent and "stop" not in sent


def test_transient_429_500_and_dropped_connections_are_retried() -> None:
    script = {"a": ["429", "500", "ok"], "b": ["drop", "ok"], "c": ["cut", "500", "ok"], "d": ["500"] * 9}
    with FakeServer(script) as server:
        b = openai_backend(server, max_retries=3)
        replies = b.complete([user(k) for k in "abcde"])
    assert [r.text for r in replies[:3]] == ["answer: a", "answer: b", "answer: c"]
    assert all(r.ok for r in replies[:3]) and replies[4].ok
    assert dict(server.counts) == {"a": 3, "b": 2, "c": 3, "d": 4, "e": 1}
    assert replies[3].error == "HTTP 500 (gave up after 3 retries)" and replies[3].text == ""
    assert b.usage.retries == 2 + 1 + 2 + 3 and b.usage.errors == 1


def test_malformed_and_truncated_replies_are_error_replies_never_dropped(tmp_path: Path) -> None:
    bad = ["malformed", "truncated", "no_choices", "null_content"]
    script = {k: [k] for k in bad}
    with FakeServer(script) as server:
        cached = CachedBackend(openai_backend(server), tmp_path / "cache.sqlite")
        requests = [user(k) for k in ["fine", *bad, "long"]]
        server.script["long"] = ["length"]
        replies = cached.complete(requests)
        assert len(replies) == len(requests)
        assert replies[0].ok and replies[0].text == "answer: fine"
        reasons = {k: r.error for k, r in zip(bad, replies[1:5], strict=True)}
        assert all(reasons.values()), reasons
        assert "no choices" in reasons["no_choices"] and "no content" in reasons["null_content"]
        assert "malformed reply" in reasons["malformed"] and "malformed reply" in reasons["truncated"]
        assert replies[5].ok and replies[5].finish_reason == "length"
        assert cached.stats.errors == 4 and len(cached.cache) == 2  # errors are not stored
        # a rerun sends only the requests that failed (now answered), never the stored ones
        again = cached.complete(requests)
    assert all(r.ok for r in again)
    assert [r.cached for r in again] == [True, False, False, False, False, True]
    assert server.counts["fine"] == 1 and server.counts["malformed"] == 2


def test_a_refused_key_stops_the_batch_with_a_clear_error() -> None:
    with FakeServer({"x": ["401"]}) as server, pytest.raises(BackendError, match="refused the API key"):
        openai_backend(server).complete([user("x")])


def test_repeated_requests_in_a_batch_are_sent_once(tmp_path: Path) -> None:
    with FakeServer() as server:
        cached = CachedBackend(openai_backend(server), tmp_path / "c.sqlite")
        replies = cached.complete([user("same"), user("other"), user("same")])
    assert [r.text for r in replies] == ["answer: same", "answer: other", "answer: same"]
    assert server.counts["same"] == 1 and cached.stats.misses == 2


@pytest.mark.parametrize("concurrency", [1, 4])
def test_budget_stops_within_one_request_and_a_rerun_continues(tmp_path: Path, concurrency: int) -> None:
    per_request = PROMPT_TOKENS + COMPLETION_TOKENS
    requests = [user(f"t{i}") for i in range(20)]
    with FakeServer() as server:
        cached = CachedBackend(openai_backend(server, concurrency=concurrency), tmp_path / "c.sqlite", 100)
        with pytest.raises(BudgetExhausted, match="token budget of 100 spent") as info:
            cached.complete(requests)
        e = info.value
        assert 100 <= e.spent < 100 + per_request
        assert sum(server.counts.values()) == e.sent == sum(r is not None for r in e.replies) < 20
        # spending nothing more, the same run answers what it has from the cache and refuses the rest
        with pytest.raises(BudgetExhausted):
            cached.complete(requests)
        assert sum(server.counts.values()) == e.sent
        # the next run (a new budget) sends only what was not answered; stored answers do not count
        rerun = CachedBackend(openai_backend(server), tmp_path / "c.sqlite", budget_tokens=1000)
        replies = rerun.complete(requests)
    assert all(r.ok for r in replies) and sum(r.cached for r in replies) == e.sent
    assert set(server.counts.values()) == {1} and len(server.counts) == 20
    assert rerun.stats.tokens == (20 - e.sent) * per_request


CHILD = """
import sys
from instructkit.generate.backends import Request, build_backend
from instructkit.generate.cache import CachedBackend
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = build_backend("openai", model="fake", base_url=url, api_key="k", concurrency=3, max_retries=0)
cached = CachedBackend(backend, path)
cached.complete([Request([{"role": "user", "content": f"task {i}"}]) for i in range(n)])
print("finished")
"""


def test_a_run_killed_mid_way_resends_nothing_already_answered(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    n, answered_before_hold = 30, 11
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with FakeServer(hold_after=answered_before_hold) as server:
        child = subprocess.Popen([sys.executable, "-c", CHILD, server.url, str(db), str(n)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            assert server.held.wait(120), child.communicate(timeout=5)
            # every answer the server wrote is stored before the kill (the child commits each on arrival)
            deadline = time.monotonic() + 60
            while _rows(db) < answered_before_hold and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        answered = set(server.answered)
        assert len(answered) == answered_before_hold == _rows(db)
        before = server.counts.copy()
        server.hold_after = None
        server.release.set()  # the held requests end unanswered (their client is dead)
        cached = CachedBackend(openai_backend(server), db)
        replies = cached.complete([user(f"task {i}") for i in range(n)])
    resent = server.counts - before
    assert not answered & set(resent), "a request answered before the kill was sent again"
    assert set(resent) == {f"task {i}" for i in range(n)} - answered and set(resent.values()) == {1}
    assert [r.text for r in replies] == [f"answer: task {i}" for i in range(n)]
    assert sum(r.cached for r in replies) == len(answered) == cached.stats.hits


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        con.close()


def test_rate_limiter_spaces_request_starts() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one start per 0.5 s
    for _ in range(4):
        limiter.wait()
    assert slept == [0.5, 1.0, 1.5]
    now[0] += 10  # idle for a while: the next start is immediate
    limiter.wait()
    assert slept == [0.5, 1.0, 1.5]


# ------------------------------------------------------------------------------------------ local


@pytest.fixture(scope="module")
def varied_llama(make_tiny_llama: Callable[..., str]) -> str:
    """Replies that depend on the prompt (see tests/test_eval.py's fixture of the same name)."""
    return make_tiny_llama("varied-llama-gen", initializer_range=0.3)


def test_local_greedy_equals_one_request_generate_and_respects_max_tokens(varied_llama: str) -> None:
    """The engine's replies (7 requests, 3 rows at a time) equal a plain ``generate`` per prompt."""
    from instructkit.decoding import Decoding, generate_one_by_one, render_prompts
    from instructkit.models import load_model, load_tokenizer

    b = build_backend("local", model=varied_llama, batch_size=3)
    requests = [user(f"question {i}: " + "word " * i, Sampling(max_tokens=8)) for i in range(7)]
    replies = b.complete(requests)
    model, tok = load_model(varied_llama), load_tokenizer(varied_llama)  # untouched by the backend's engine
    expected = generate_one_by_one(
        model, tok, render_prompts(tok, [r.messages for r in requests]), Decoding(max_new_tokens=8)
    )
    assert [r.text for r in replies] == expected
    engine = b.engine()
    assert engine is b.engine() and engine.stats["requests"] == 7  # one engine for the backend's life
    again = b.complete(requests[:2])
    assert [r.text for r in again] == expected[:2] and engine.stats["requests"] == 9
    b.close()
    assert not any("forward" in vars(m) for m in engine.model.modules())  # given back as it came
    assert len({r.text for r in replies}) > 3, (
        "replies do not depend on the prompt; the check would be vacuous"
    )
    prompts = render_prompts(tok, [r.messages for r in requests])
    assert [r.prompt_tokens for r in replies] == [len(p) for p in prompts]
    assert all(1 <= r.completion_tokens <= 8 for r in replies)
    assert all(r.finish_reason == ("length" if r.completion_tokens == 8 else "stop") for r in replies)
    assert b.key()["weights"] and b.usage.requests == 9


def test_local_stop_strings_and_seeded_sampling(varied_llama: str) -> None:
    b = build_backend("local", model=varied_llama)
    greedy = b.complete([user("tell me", Sampling(max_tokens=12))])[0]
    assert len(greedy.text) > 6
    stop = greedy.text[4:6]
    cut = b.complete([user("tell me", Sampling(max_tokens=12, stop=[stop]))])[0]
    assert greedy.text.startswith(cut.text) and len(cut.text) < len(greedy.text)
    assert stop not in cut.text and cut.finish_reason == "stop"
    assert cut.completion_tokens < greedy.completion_tokens
    sampled = [user(f"q{i}", Sampling(temperature=1.0, top_p=0.9, max_tokens=10, seed=3)) for i in range(4)]
    first, again = b.complete(sampled), b.complete(sampled)
    assert [r.text for r in first] == [r.text for r in again]
    other = b.complete(
        [dataclasses.replace(r, sampling=dataclasses.replace(r.sampling, seed=4)) for r in sampled]
    )
    assert [r.text for r in other] != [r.text for r in first]


@pytest.mark.slow
def test_local_backend_takes_a_trained_run_folder(tmp_path: Path, varied_llama: str) -> None:
    """A LoRA run just trained is a teacher as it is: the backend loads the run folder (adapter and all) and
    answers like a plain ``generate`` of the trained model, not like the base model."""
    from instructkit.decoding import Decoding, generate_one_by_one, render_prompts
    from instructkit.train.config import TrainConfig
    from instructkit.train.saved_model import load_trained
    from instructkit.train.training import train

    demo = Path(__file__).parent.parent / "examples" / "data" / "demo.jsonl"
    cfg = TrainConfig.from_dict({
        "model": varied_llama, "task": "causal-lm", "method": {"name": "lora", "r": 4, "alpha": 16},
        "name": "teacher", "output_dir": str(tmp_path), "bf16": "false",
        "data": {"train": str(demo), "val_share": 0.2, "max_length": 96},
        "optim": {"lr": 0.1, "batch_size": 4, "max_steps": 4},
    })  # fmt: skip
    run = train(cfg, progress=False).run_dir
    requests = [user(f"question {i}: " + "word " * i, Sampling(max_tokens=8)) for i in range(4)]
    b = build_backend("local", model=str(run))
    replies = [r.text for r in b.complete(requests)]
    trained, tok, _ = load_trained(run)
    prompts = render_prompts(tok, [r.messages for r in requests])
    assert replies == generate_one_by_one(trained, tok, prompts, Decoding(max_new_tokens=8))
    base, base_tok = build_backend("local", model=varied_llama).loaded()
    assert replies != generate_one_by_one(base, base_tok, prompts, Decoding(max_new_tokens=8)), (
        "the trained run answers like the base model; the check would be vacuous"
    )
    assert b.key()["weights"], "a run folder's weights are fingerprinted (retrained in place: a new key)"


def test_local_backend_behind_the_cache(tmp_path: Path, varied_llama: str) -> None:
    b = CachedBackend(build_backend("local", model=varied_llama), tmp_path / "c.sqlite")
    requests = [user(f"q{i}", Sampling(max_tokens=5)) for i in range(3)]
    first = b.complete(requests)
    second = b.complete(requests)
    assert [r.text for r in first] == [r.text for r in second] and all(r.cached for r in second)
    assert b.stats.hits == 3 and b.stats.misses == 3 and b.backend.usage.requests == 3
    assert isinstance(second[0], Reply)
