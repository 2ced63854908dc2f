"""The OpenAI-compatible server, driven by the official ``openai`` client against a live server on 127.0.0.1
(a free port, stopped by the fixture), on a tiny random Llama with SmolLM2's tokenizer and a LoRA adapter
made here with PEFT; and the engine's batching, streaming and cancellation underneath."""

from __future__ import annotations

import concurrent.futures as cf
import http.client
import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch

from instructkit.decoding.engine.requests import Request
from instructkit.decoding.engine.sampling import Sampling
from instructkit.decoding.engine.scheduler import Engine, wait_until
from instructkit.serve.config import ServerConfig
from instructkit.serve.loading import Served, load_served
from instructkit.serve.server import ServerThread
from tests.serve_reference import greedy_ids, greedy_text

USER = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
KEY = "sekret-key-123"


@pytest.fixture(scope="module")
def model_dir(make_tiny_llama: Callable[..., str]) -> str:
    # A larger init scale than the default gives varied greedy text (the default repeats one token), and
    # as many key/value heads as heads keeps the tiny model off torch's slow CPU GQA path.
    return make_tiny_llama("serve-llama", num_key_value_heads=4, initializer_range=0.2)


@pytest.fixture(scope="module")
def adapter_dir(model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    folder = tmp_path_factory.mktemp("lora")
    get_peft_model(base, cfg).save_pretrained(folder)
    return str(folder)


class Live:
    def __init__(self, served: Served, thread: ServerThread, url: str):
        self.served, self.thread, self.url = served, thread, url
        self.engine: Engine = thread.engine

    def client(self, key: str | None = "unused", **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60, **kw)

    def reference(self, ids: list[int], max_tokens: int, lane: str | None = None) -> str:
        """One-request ``generate`` (greedy) with the same model and adapter, the engine held meanwhile."""
        with self.engine.paused(), self.served.activate(lane):
            return greedy_text(self.served.model, self.served.tokenizer, ids, max_tokens)


def _live(model: str, adapters: dict[str, str] | None, cfg: ServerConfig) -> Iterator[Live]:
    served = load_served(model, adapters, served_name="tiny")
    thread = ServerThread(served, cfg)
    with thread as url:
        assert url.startswith("http://127.0.0.1:")
        yield Live(served, thread, url)


@pytest.fixture(scope="module")
def live(model_dir: str, adapter_dir: str) -> Iterator[Live]:
    yield from _live(model_dir, {"tuned": adapter_dir}, ServerConfig(port=0, max_batch=4, max_queue=8))


@pytest.fixture(scope="module")
def guarded(model_dir: str) -> Iterator[Live]:
    """Small caps, one slot and one waiting place, an API key."""
    cfg = ServerConfig(
        port=0, api_key=KEY, max_batch=1, max_queue=1, max_body_bytes=4000, max_messages=4,
        max_prompt_tokens=120, max_tokens=450,
    )  # fmt: skip
    yield from _live(model_dir, None, cfg)


class Raw:
    """A plain HTTP exchange (stdlib), for what the openai client does not send: bad JSON, no key."""

    def __init__(
        self, method: str, url: str, body: Any = None, *, raw: bytes | None = None, key: str | None = None
    ):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        self.conn.request(method, u.path, body=data, headers=headers)
        self.response = self.conn.getresponse()
        self.status_code = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}

    @property
    def text(self) -> str:
        if not hasattr(self, "_text"):
            self._text = self.response.read().decode()
            self.conn.close()
        return self._text

    def json(self) -> Any:
        return json.loads(self.text)

    def lines(self) -> Iterator[str]:
        while line := self.response.readline():
            yield line.decode().rstrip("\r\n")

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def get(url: str, key: str | None = None) -> Raw:
    return Raw("GET", url, key=key)


def post(url: str, body: Any = None, *, raw: bytes | None = None, key: str | None = None) -> Raw:
    return Raw("POST", url, body, raw=raw, key=key)


def _error_shape(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert "Traceback" not in response.text
    return body["error"]


# ------------------------------------------------------------------------------------------ the API


def test_chat_stream_and_generate_agree(live: Live) -> None:
    client = live.client()
    reply = client.chat.completions.create(model="tiny", messages=USER, max_tokens=24, temperature=0)
    text = reply.choices[0].message.content
    ids = live.served.prompt_ids(USER)
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.usage.completion_tokens == 24 and reply.choices[0].finish_reason == "length"
    assert reply.usage.total_tokens == len(ids) + 24
    assert text == live.reference(ids, 24)  # greedy == one-request generate

    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=USER, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([d for d in deltas if d]) > 3  # really streamed, several pieces
    assert "".join(deltas) == text
    assert chunks[-1].usage.completion_tokens == 24
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_sse_ends_with_done(live: Live) -> None:
    body = {"model": "tiny", "messages": USER, "max_tokens": 5, "stream": True}
    r = post(live.url + "/v1/chat/completions", body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in r.lines() if line]
    r.close()
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_completions_plain_and_streamed(live: Live) -> None:
    client = live.client()
    prompt = "Once upon a time"
    reply = client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0)
    ids = live.served.text_ids(prompt)
    assert reply.choices[0].text == live.reference(ids, 16)
    assert reply.usage.prompt_tokens == len(ids) and reply.usage.completion_tokens == 16
    parts = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompt, max_tokens=16, temperature=0, stream=True) if c.choices]  # fmt: skip
    assert "".join(parts) == reply.choices[0].text


def test_models_list_and_adapter_selection(live: Live) -> None:
    client = live.client()
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny", "tuned"]
    assert client.models.retrieve("tuned").id == "tuned"
    ids = live.served.prompt_ids(USER)
    base = client.chat.completions.create(model="tiny", messages=USER, max_tokens=16, temperature=0)
    tuned = client.chat.completions.create(model="tuned", messages=USER, max_tokens=16, temperature=0)
    assert tuned.model == "tuned"
    assert tuned.choices[0].message.content == live.reference(ids, 16, lane="tuned")
    assert base.choices[0].message.content == live.reference(ids, 16)
    assert tuned.choices[0].message.content != base.choices[0].message.content  # the adapter is applied


def test_concurrent_greedy_replies_equal_one_at_a_time(live: Live) -> None:
    """Six requests (two adapters, different prompts and lengths) held until all wait, then decoded
    together: each reply equals its one-request ``generate``."""
    jobs = [
        ("tiny", "Tell me a story about a lighthouse.", 20),
        ("tiny", "Hi", 7),
        ("tuned", "What is the capital of France? Answer briefly please.", 15),
        ("tiny", "List three colours.", 25),
        ("tuned", "Hi", 11),
        ("tiny", "Write a haiku about winter mornings and coffee.", 18),
    ]
    client = live.client()
    live.engine.stats["max_rows"] = 0  # the module's earlier tests share this engine
    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        with live.engine.paused():
            futures = [
                pool.submit(client.chat.completions.create, model=m, max_tokens=n, temperature=0,
                            messages=[{"role": "user", "content": q}])
                for m, q, n in jobs
            ]  # fmt: skip
            assert wait_until(lambda: live.engine.waiting == len(jobs))
        replies = [f.result().choices[0].message.content for f in futures]
    # they really shared forward passes; how many rows met at once depends on how fast drafts from the
    # module's earlier replies finish the short ones (seen: 2 or 3), so two rows in one forward is the claim
    assert live.engine.stats["max_rows"] >= 2
    for (model, question, n), reply in zip(jobs, replies, strict=True):
        ids = live.served.prompt_ids([{"role": "user", "content": question}])
        assert reply == live.reference(ids, n, lane=None if model == "tiny" else "tuned"), (model, question)


@pytest.mark.parametrize("mode", ["packed", "packed-no-drafts", "separate-prefill"])
def test_rows_joining_and_leaving_mid_decode_keep_greedy_replies(
    model_dir: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Requests of different prompt lengths join while others decode (a longer prompt joining shifts every
    row's cache), rows leave at different steps, and the in-place cache buffers grow every 2 steps: each
    reply still equals its one-request ``generate`` -- with prompts prefilled inside decoding steps and
    draft tokens checked there (the default), without drafts, and with each prompt prefilled in a pass of
    its own (what a model whose attention is not ``sdpa`` gets)."""
    import instructkit.decoding.engine.kv_buffers as kv_buffers

    monkeypatch.setattr(kv_buffers, "_HEADROOM", 2)
    served = load_served(model_dir, served_name="tiny")
    if mode == "separate-prefill":
        served.model.set_attn_implementation("eager")
    engine = Engine(
        served.model,
        served.tokenizer,
        max_batch=4,
        max_queue=8,
        draft_tokens=0 if mode == "packed-no-drafts" else 2,
        suffix_draft_tokens=0 if mode == "packed-no-drafts" else 16,
    ).start()
    try:
        assert engine._packed == (mode != "separate-prefill")
        jobs = [("Hi", 30), ("Tell me a story about a lighthouse and its keeper.", 9), ("List colours.", 21),
                ("Write a long haiku about winter mornings, coffee, snow and quiet.", 14), ("Why?", 12)]  # fmt: skip
        ids = [served.prompt_ids([{"role": "user", "content": q}]) for q, _ in jobs]
        requests = []
        for (_, n), prompt in zip(jobs, ids, strict=True):
            requests.append(engine.submit(prompt, Sampling(max_tokens=n)))
            assert wait_until(lambda: engine.stats["steps"] >= 3 * len(requests), timeout=30)  # join mid-run
        results = [next(v for k, v in r.events() if k == "done") for r in requests]
        assert engine.stats["max_rows"] >= 3
        # every prompt after the first starts with the template's system turn: prefilled from the cache
        assert engine.prefix_cache is not None and engine.prefix_cache.stats["hits"] == len(jobs) - 1
        stats = engine.stats
        if mode == "separate-prefill":
            assert stats["packed_prompts"] == 0 and stats["draft_tokens"] == 0
        else:  # prompts joined running rows' steps
            assert stats["packed_prompts"] >= 3
        if mode == "packed":  # drafts were checked, some kept and some not
            assert 0 < stats["accepted_tokens"] < stats["draft_tokens"]
    finally:
        engine.stop()
    # the model gets its own attention back (the packed one only differs when a step passes its plan)
    assert served.model.config._attn_implementation == ("eager" if mode == "separate-prefill" else "sdpa")
    for (_, n), prompt, result in zip(jobs, ids, results, strict=True):
        assert result.token_ids == greedy_ids(served.model, served.tokenizer, prompt, n)


def test_packed_path_that_disagrees_with_the_plain_forward_is_not_used(
    model_dir: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up probe compares the packed pass's logits with the model's own forward; a packed pass
    that is wrong (here: attention output scaled) is refused, the model gets its attention back, and
    replies are still right."""
    from instructkit.decoding.engine.attention import Plan

    real = Plan.attend
    monkeypatch.setattr(Plan, "attend", lambda self, *a: real(self, *a) * 1.5)
    served = load_served(model_dir)
    engine = Engine(served.model, served.tokenizer)
    with caplog.at_level("WARNING", logger="instructkit.serve"):
        engine.start()
    try:
        assert not engine._packed and "differs from the plain forward" in caplog.text
        assert served.model.config._attn_implementation == "sdpa"
        prompt = served.prompt_ids(USER)
        result = engine.generate(prompt, Sampling(max_tokens=6))
    finally:
        engine.stop()
    assert result.token_ids == greedy_ids(served.model, served.tokenizer, prompt, 6)


def test_lookup_draft_takes_what_followed_the_latest_earlier_ngram() -> None:
    from instructkit.decoding.engine.drafts import lookup_draft

    #          0  1  2  3  4  5  6  7  8  9
    context = [5, 6, 7, 8, 1, 5, 6, 9, 2, 5, 6]
    assert lookup_draft(context, 2) == [9, 2]  # "5 6" last seen at 5-6, followed by 9 2 (not 7 8)
    assert lookup_draft(context + [9], 3) == [2, 5, 6]  # the 3-gram "5 6 9" wins over shorter ones
    assert lookup_draft([1, 2, 3, 4], 2) == []  # nothing repeats
    assert lookup_draft([4, 4], 2) == []  # one-token repeats are not enough (shortest n-gram is 2)
    assert lookup_draft([1, 2, 3, 1, 2], 5) == [3, 1, 2]  # as many as there are, up to k


def test_prompt_lookup_drafts_in_a_step_of_many_rows_only_where_they_are_kept() -> None:
    """A draft token is nearly free only while a step holds few tokens: past LOOKUP_DRAFT_ROWS rows a row gets
    prompt-lookup drafts while it probes (its first PROBE_DRAFTS) or most of its drafts were kept; drafts
    from earlier replies come at any batch size."""
    from instructkit.decoding.engine.drafts import (
        KEEP_RATE,
        LOOKUP_DRAFT_ROWS,
        PROBE_DRAFTS,
        SuffixDrafts,
        propose_drafts,
    )

    def row(context: list[int], drafted: int = 0, kept: int = 0) -> Request:
        req = Request(context, Sampling(max_tokens=50), None, set(), deltas=False)
        req.drafted, req.kept = drafted, kept
        return req

    repeats = [5, 6, 7, 8, 1, 5, 6]  # "5 6" seen before: prompt lookup drafts 7 8
    kw = {"draft_tokens": 2, "suffix_draft_tokens": 4, "context_length": None}
    few = [row(repeats, drafted=40, kept=0) for _ in range(LOOKUP_DRAFT_ROWS)]
    assert propose_drafts(few, suffix_drafts=None, **kw) == {i: [7, 8] for i in range(LOOKUP_DRAFT_ROWS)}
    assert [r.drafted for r in few] == [42] * LOOKUP_DRAFT_ROWS and all(r.looked_up for r in few)
    good = round(40 * KEEP_RATE) + 1
    many = [row(repeats, 40, 0), row(repeats, 40, good), row(repeats, PROBE_DRAFTS - 1, 0)]
    many += [row(repeats, 40, 0) for _ in range(LOOKUP_DRAFT_ROWS)]
    assert propose_drafts(many, suffix_drafts=None, **kw) == {1: [7, 8], 2: [7, 8]}
    earlier = SuffixDrafts()
    earlier.add(None, list(range(100, 120)))
    many[0] = row(list(range(100, 110)), 40, 0)
    drafts = propose_drafts(many, suffix_drafts=earlier, **kw)
    assert drafts[0] == [110, 111, 112, 113] and not many[0].looked_up


def test_lone_rows_get_longer_lookup_drafts_and_suffix_drafts_shrink_after_a_miss() -> None:
    """A step of few rows fills up to FREE_STEP_TOKENS with prompt-lookup drafts (nearly free while the
    weights' reads dominate); a row whose draft from earlier replies was cut short drafts at most one more
    than it kept next time, and doubles back (up to ``suffix_draft_tokens``) while its drafts are kept whole."""
    from instructkit.decoding.engine import drafts as d

    def row(context: list[int]) -> Request:
        return Request(context, Sampling(max_tokens=50), None, set(), deltas=False)

    ctx = [*range(1, 21), 1, 2, 3]  # "1 2 3" seen before: lookup drafts 4 5 6 ...
    kw = {"draft_tokens": 2, "suffix_draft_tokens": 16, "context_length": None, "suffix_drafts": None}
    assert d.FREE_STEP_TOKENS == 8
    assert d.propose_drafts([row(ctx)], **kw) == {0: [4, 5, 6, 7, 8, 9, 10]}  # 1 row + 7 drafts
    assert d.propose_drafts([row(ctx), row(ctx)], **kw) == {0: [4, 5, 6], 1: [4, 5, 6]}
    assert d.propose_drafts([row(ctx)] * 3, **kw)[0] == [4, 5]  # past 8 // rows - 1 < 2: draft_tokens
    assert d.propose_drafts([row(ctx)], **{**kw, "draft_tokens": 0}) == {}  # lookup off stays off

    earlier = d.SuffixDrafts()
    earlier.add(None, list(range(100, 140)))
    req = row(list(range(100, 110)))
    assert len(d.propose_drafts([req], **{**kw, "suffix_drafts": earlier})[0]) == 10  # the match length
    d.after_check(req, 10, 1, 16)  # one of ten kept
    assert req.suffix_cap == 2
    req.generated = list(range(110, 112))
    assert d.propose_drafts([req], **{**kw, "suffix_drafts": earlier})[0] == [112, 113]
    d.after_check(req, 2, 2, 16)
    d.after_check(req, 4, 4, 16)
    assert req.suffix_cap == 8
    d.after_check(req, 8, 8, 16)
    d.after_check(req, 16, 16, 16)
    assert req.suffix_cap == 16  # never past suffix_draft_tokens
    req.looked_up = True
    d.after_check(req, 2, 0, 16)  # a prompt-lookup draft leaves the limit alone
    assert req.suffix_cap == 16


def test_suffix_drafts_follow_the_longest_earlier_match_within_lane_and_bound() -> None:
    from instructkit.decoding.engine.drafts import SuffixDrafts

    store = SuffixDrafts(max_tokens=60)
    a = list(range(100, 120))  # 20 tokens
    b = [1, 2, 3] + list(range(105, 113)) + [7, 7, 7, 7]  # shares 105..112 (8 tokens) with a
    store.add(None, a)
    store.add(None, b)
    store.add("tuned", list(range(300, 320)))
    # the context's last 8 tokens are 105..112: in a (preceded by 104, like the context) and in b (by 3)
    ctx = [104, *range(105, 113)]
    assert store.lookup(None, ctx, 4) == [113, 114, 115, 116]  # a's match reaches further back
    assert store.lookup(None, [3, *range(105, 113)], 4) == [7, 7, 7, 7]  # now b's does
    assert store.lookup(None, ctx, 2) == [113, 114]  # at most k
    assert store.lookup(None, list(range(100, 119)), 50) == [119]  # what is there, up to the sequence end
    assert store.lookup(None, list(range(106, 114)), 50) == list(range(114, 120))  # at most the match length
    assert store.lookup(None, ctx[-7:], 4) == []  # a match must span 8 tokens
    assert store.lookup("tuned", ctx, 4) == []  # another adapter's sequences are not used
    assert store.lookup("tuned", list(range(302, 310)), 3) == [310, 311, 312]
    store.add(None, list(range(500, 520)))  # over 60 tokens: the oldest sequence (a) goes
    assert store.tokens <= 60 and store.lookup(None, list(range(100, 110)), 3) == []
    assert store.lookup(None, ctx, 4) == [7, 7, 7, 7]  # only b holds 105..112 now


def test_repeated_prompts_decode_from_earlier_replies_with_the_same_tokens(model_dir: str) -> None:
    """A prompt asked again (alone, and among other rows) is drafted from its earlier reply, most drafts
    are kept, and every reply still equals its one-request ``generate``; a longer ``max_tokens`` the
    second time decodes past the end of the stored reply."""
    served = load_served(model_dir, served_name="tiny")
    engine = Engine(
        served.model, served.tokenizer, max_batch=4, draft_tokens=0, suffix_draft_tokens=16
    ).start()
    try:
        first = [("Tell me a story about a lighthouse.", 24), ("List three colours.", 20)]
        again = [*first[:1], ("List three colours.", 30), ("Why is the sky blue?", 12)]
        ids = {q: served.prompt_ids([{"role": "user", "content": q}]) for q, _ in first + again}
        for q, n in first:
            engine.generate(ids[q], Sampling(max_tokens=n))
        assert engine.stats["accepted_tokens"] == 0  # nothing to draft from yet
        steps = engine.stats["steps"]
        with engine.paused():
            requests = [engine.submit(ids[q], Sampling(max_tokens=n)) for q, n in again]
        results = [next(v for k, v in r.events() if k == "done") for r in requests]
        stats = engine.stats
        assert stats["accepted_tokens"] >= 30  # most of the two repeated replies came as kept drafts
        assert stats["steps"] - steps < 30  # fewer steps than the longest reply has tokens
    finally:
        engine.stop()
    for (q, n), result in zip(again, results, strict=True):
        assert result.token_ids == greedy_ids(served.model, served.tokenizer, ids[q], n), q


def test_prompts_sharing_a_long_start_in_one_step_prefill_it_once(model_dir: str) -> None:
    """Four few-shot prompts with the same long system turn, admitted together into an empty cache: the first
    is prefilled whole, the others wait a step and take the shared tokens from the prefix cache (without the
    wait every one would prefill them); every reply still equals its one-request ``generate``."""
    from instructkit.decoding.engine.runner import SHARED_PREFIX_WAIT

    served = load_served(model_dir, served_name="tiny")
    system = {
        "role": "system",
        "content": "Examples: " + " ".join(f"word{i} means thing{i}." for i in range(40)),
    }
    ids = [
        served.prompt_ids([system, {"role": "user", "content": f"What does word{i} mean?"}]) for i in range(4)
    ]
    shared = min(len(p) for p in ids) - 12
    assert shared > SHARED_PREFIX_WAIT and all(p[:shared] == ids[0][:shared] for p in ids)
    engine = Engine(
        served.model, served.tokenizer, max_batch=4, draft_tokens=0, suffix_draft_tokens=0
    ).start()
    try:
        assert engine.batching == "packed"
        with engine.paused():
            requests = [engine.submit(p, Sampling(max_tokens=8)) for p in ids]
        results = [next(v for k, v in r.events() if k == "done") for r in requests]
        cache = dict(engine.prefix_cache.stats)
    finally:
        engine.stop()
    assert cache["reused_tokens"] >= 3 * shared  # three prompts took the shared start from the cache
    for p, result in zip(ids, results, strict=True):
        assert result.token_ids == greedy_ids(served.model, served.tokenizer, p, 8)


def test_prefix_cache_reuses_the_longest_prefix_within_its_lane_and_bound() -> None:
    from instructkit.decoding.engine.prefix_cache import PrefixCache

    def kv(n: int, fill: float) -> list[list[torch.Tensor]]:  # 2 layers, [1, heads, n, dim]
        return [[torch.full((1, 2, n, 4), fill), torch.full((1, 2, n, 4), -fill)] for _ in range(2)]

    per_token = 2 * 2 * 2 * 4 * 4  # layers x (k, v) x heads x dim x bytes
    cache = PrefixCache(max_bytes=10 * per_token)
    cache.store(None, [1, 2, 3, 4], kv(4, 1.0))
    cache.store(None, [1, 2, 9, 9, 9], kv(5, 2.0))
    cache.store("tuned", [1, 2, 3, 4, 5], kv(5, 3.0))  # over the bound: the oldest entry goes
    assert cache.bytes <= 10 * per_token
    m, past = cache.lookup(None, [1, 2, 3, 4, 7])
    assert m == 2 and past is not None and float(past[0][0][0, 0, 0, 0]) == 2.0  # the survivor's prefix
    m, past = cache.lookup("tuned", [1, 2, 3, 4, 5])  # an identical prompt reuses all but its last token
    assert (
        m == 4 and past is not None and past[1][1].shape == (1, 2, 4, 4) and float(past[1][1].max()) == -3.0
    )
    assert cache.lookup("other", [1, 2, 3]) == (0, None)  # another adapter's keys are never reused
    assert cache.stats["hits"] == 2 and cache.stats["reused_tokens"] == 6


def test_stop_strings_and_seeded_sampling(live: Live) -> None:
    client = live.client()
    full = client.chat.completions.create(model="tiny", messages=USER, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=24, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=24, temperature=0, stop=stop, stream=True
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text[: text.index(stop)]
    )

    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model="tiny", messages=USER, max_tokens=12, temperature=1.0, seed=seed
        )
        return r.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_unknown_model_is_404(live: Live) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        live.client().chat.completions.create(model="nope", messages=USER)
    err = _error_shape(e.value.response)
    assert err["code"] == "model_not_found" and err["param"] == "model" and "tiny" in err["message"]
    r = get(live.url + "/v1/nothing-here")
    assert r.status_code == 404 and _error_shape(r)


def test_malformed_requests_are_422_or_400(live: Live) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as e:
        live.client().chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "x"}])
    assert _error_shape(e.value.response)["param"].startswith("messages")
    r = post(live.url + "/v1/chat/completions", raw=b"{not json")
    assert r.status_code == 422 and _error_shape(r)["code"] == "invalid_json"
    r = post(live.url + "/v1/chat/completions", {"model": "tiny", "messages": USER, "temperature": "hot"})
    assert r.status_code == 422 and _error_shape(r)["param"] == "temperature"
    r = post(live.url + "/v1/chat/completions", {"model": "tiny", "messages": USER, "n": 2})
    assert r.status_code == 400 and _error_shape(r)["param"] == "n"


# ------------------------------------------------------------------------------------------ safety and load


def test_api_key_required(guarded: Live) -> None:
    r = get(guarded.url + "/v1/models")
    assert r.status_code == 401 and _error_shape(r)["code"] == "invalid_api_key"
    assert get(guarded.url + "/health").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        guarded.client("wrong-key").models.list()
    with pytest.raises(openai.AuthenticationError):
        guarded.client(KEY[:-1]).chat.completions.create(model="tiny", messages=USER, max_tokens=2)
    assert [m.id for m in guarded.client(KEY).models.list().data] == ["tiny"]
    assert get(guarded.url + "/").status_code == 200  # the static page holds no data


def test_caps(guarded: Live) -> None:
    client = guarded.client(KEY)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 5000}])
    assert e.value.status_code == 413 and _error_shape(e.value.response)["code"] == "request_too_large"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER * 5, max_tokens=2)
    assert _error_shape(e.value.response)["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 150}])
    assert _error_shape(e.value.response)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=451)
    assert _error_shape(e.value.response)["param"] == "max_tokens"


def test_queue_full_is_429_with_retry_after(guarded: Live) -> None:
    client = guarded.client(KEY)
    engine = guarded.engine
    with cf.ThreadPoolExecutor(2) as pool:
        with engine.paused():  # one slot + one waiting place: two requests fit, the third does not
            futures = [
                pool.submit(client.chat.completions.create, model="tiny", messages=USER, max_tokens=4)
                for _ in range(2)
            ]
            assert wait_until(lambda: engine.waiting == 2)
            r = post(
                guarded.url + "/v1/chat/completions",
                {"model": "tiny", "messages": USER, "max_tokens": 4},
                key=KEY,
            )
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert _error_shape(r)["code"] == "queue_full"
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="tiny", messages=USER, max_tokens=4)
        assert [f.result().usage.completion_tokens for f in futures] == [4, 4]


def test_disconnect_mid_stream_frees_the_slot(guarded: Live) -> None:
    engine = guarded.engine
    cancelled = engine.stats["cancelled"]
    body = {"model": "tiny", "messages": USER, "max_tokens": 400, "stream": True}
    r = post(guarded.url + "/v1/chat/completions", body, key=KEY)
    assert r.status_code == 200
    next(line for line in r.lines() if '"content"' in line and '"content": ""' not in line)
    engine_hold = engine.paused()
    engine_hold.__enter__()  # hold decoding while the client hangs up, so the reply cannot finish first
    r.close()
    try:  # the response is closed: the server notices and cancels the request
        assert wait_until(lambda: any(row["cancelled"] for row in engine.snapshot()), timeout=20)
        assert max(row["generated"] for row in engine.snapshot()) < 400
    finally:
        engine_hold.__exit__(None, None, None)
    assert wait_until(lambda: engine.active == 0, timeout=20)
    assert engine.stats["cancelled"] == cancelled + 1
    reply = guarded.client(KEY).chat.completions.create(model="tiny", messages=USER, max_tokens=3)
    assert reply.usage.completion_tokens == 3  # the one slot serves the next request


def test_health_and_page(live: Live) -> None:
    health = get(live.url + "/health").json()
    assert health["status"] == "ok" and health["batching"] == "packed"
    assert {"packed_prompts", "draft_tokens", "accepted_tokens"} <= set(health["engine"])
    drafts = health["suffix_drafts"]  # drafts from earlier replies are on by default (None when off)
    assert drafts is not None and isinstance(drafts["tokens"], int)
    page = get(live.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (
        "v1/chat/completions" in page.text and "<script src" not in page.text and "https://" not in page.text
    )


# ------------------------------------------------------------------------------------------ the engine


def test_stream_holds_back_partial_characters_and_stop_prefixes(model_dir: str) -> None:
    """Token by token, deltas never hold half a UTF-8 character or the start of a stop string that may
    still complete; together they are the final text."""
    served = load_served(model_dir)
    tok = served.tokenizer
    engine = Engine(served.model, tok)
    text = "Grüße 😀 from Zürich! END of text"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.split())  # some characters take several byte-level tokens
    req = Request([1], Sampling(max_tokens=100, stop=("END",)), None, engine.eos)
    for t in ids:
        if engine._take(req, t):
            break
    events = list(req._q.get() for _ in range(req._q.qsize()))
    deltas = [v for k, v in events if k == "delta"]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == "Grüße 😀 from Zürich! "
    assert events[-1][0] == "done" and events[-1][1].finish_reason == "stop"


def test_cancelled_waiting_request_never_runs(model_dir: str) -> None:
    served = load_served(model_dir)
    engine = Engine(served.model, served.tokenizer, max_batch=1, max_queue=2).start()
    try:
        ids = served.prompt_ids(USER)
        with engine.paused():
            a = engine.submit(ids, Sampling(max_tokens=3))
            b = engine.submit(ids, Sampling(max_tokens=3))
            b.cancel()
        results = [next(v for k, v in r.events() if k == "done") for r in (a, b)]
        assert [r.finish_reason for r in results] == ["length", "cancelled"]
        assert results[1].completion_tokens == 0
    finally:
        engine.stop()


# ------------------------------------------------------------------------------------------ the browser


@pytest.mark.slow
@pytest.mark.requires_browser
def test_chat_page_streams_in_chromium(live: Live, tmp_path: Path) -> None:
    """Headless Chromium (driven by Playwright over the system chromium) types a message on the page and
    reads the streamed reply from it; it equals the API's greedy reply."""
    from playwright import sync_api  # the [dev] extra; it drives the system chromium, no browser download

    from tests.conftest import browser

    expected = (
        live.client()
        .chat.completions.create(
            model="tuned", messages=[{"role": "user", "content": "Hello page"}], max_tokens=40, temperature=0
        )
        .choices[0]
        .message.content
    )
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser(), args=["--no-sandbox", "--headless=new"])
        try:
            page = chromium.new_page()
            page.goto(live.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length === 2")
            page.select_option("#model", "tuned")
            page.fill("#max_tokens", "40")
            page.fill("#input", "Hello page")
            page.click("#send")
            page.wait_for_selector(".assistant[data-state=done]", timeout=60_000)
            shown = page.inner_text(".assistant[data-state=done] .text")
        finally:
            chromium.close()
    assert shown.strip() == expected.strip() and shown.strip()


# ------------------------------------------------------------------------------------------ the terminal chat


def test_terminal_chat_commands_and_history(model_dir: str, adapter_dir: str) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    lines = ["Hi there", "/system You are terse.", "Hi there", "/reset", "/bogus", "/exit", "never read"]
    result = CliRunner().invoke(
        app, ["chat", model_dir, "--adapter", adapter_dir, "--max-new-tokens", "8"], input="\n".join(lines) + "\n",
        env={"COLUMNS": "200", "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert "system prompt set; conversation cleared" in out and "conversation cleared" in out
    assert "unknown command /bogus" in out and "bye" in out
    # the adapter's greedy reply to the first line, streamed to the terminal
    served = load_served(model_dir, {"adapter": adapter_dir})
    with served.activate("adapter"):
        ids = served.prompt_ids([{"role": "user", "content": "Hi there"}])
        reply = greedy_text(served.model, served.tokenizer, ids, 8)
    assert reply.strip() in out


def test_chat_one_shot_prompt(model_dir: str) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    for args in (["chat", model_dir], ["chat", "--model", model_dir]):
        result = CliRunner().invoke(
            app, [*args, "--prompt", "Hello", "--max-new-tokens", "5"], env={"COLUMNS": "200"}
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("user: Hello\n") and f"{model_dir}:" in result.output
    bad = CliRunner().invoke(
        app,
        ["chat", model_dir, "--adapter", str(Path(model_dir) / "nothing"), "-p", "x"],
        env={"COLUMNS": "300"},
    )
    assert bad.exit_code == 1 and "no such folder" in bad.output


def test_chat_session_keeps_history_until_reset(model_dir: str) -> None:
    from instructkit.serve.chat import ChatSession

    served = load_served(model_dir)
    engine = Engine(served.model, served.tokenizer, max_batch=1).start()
    try:
        session = ChatSession(served, engine, sampling=Sampling(max_tokens=6))
        first = "".join(session.send("Hi"))
        assert session.history == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": first}]
        assert session.messages("Again")[:2] == session.history  # the next prompt carries the exchange
        assert session.command("/system Be brief.") == (True, "system prompt set; conversation cleared")
        assert session.history == [] and session.messages("x")[0] == {
            "role": "system",
            "content": "Be brief.",
        }
        assert session.command("/exit")[0] is False
    finally:
        engine.stop()


@pytest.mark.slow
def test_trained_lora_run_is_served_as_trained(tmp_path: Path, model_dir: str, adapter_dir: str) -> None:
    """A trained LoRA run as MODEL (rebuilt by load_trained, its chat template kept), with one more adapter
    beside it: each model id answers like its own one-request ``generate``."""
    from instructkit.train.config import TrainConfig
    from instructkit.train.saved_model import load_trained
    from instructkit.train.training import train

    demo = Path(__file__).parent.parent / "examples" / "data" / "demo.jsonl"
    cfg = TrainConfig.from_dict({
        "model": model_dir, "task": "causal-lm", "method": {"name": "lora", "r": 4, "alpha": 8}, "name": "run",
        "output_dir": str(tmp_path), "data": {"train": str(demo), "val_share": 0.2, "max_length": 96},
        "optim": {"lr": 5e-2, "batch_size": 4, "max_steps": 3}, "bf16": "false",
    })  # fmt: skip
    run = train(cfg, progress=False).run_dir
    trained, tok, _ = load_trained(run)
    ids = load_served(model_dir).prompt_ids(USER)
    want = greedy_text(trained, tok, ids, 12)
    for live in _live(str(run), {"other": adapter_dir}, ServerConfig(port=0)):
        client = live.client()
        assert [m.id for m in client.models.list().data] == ["tiny", "other"]
        got = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0)
        assert got.choices[0].message.content == want
        other = client.chat.completions.create(model="other", messages=USER, max_tokens=12, temperature=0)
        assert other.choices[0].message.content == live.reference(ids, 12, lane="other")


def test_generation_failure_is_500_without_trace(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __call__(self, **kwargs: Any) -> Any:
            raise RuntimeError("secret internal detail")

    with live.engine.paused():
        monkeypatch.setattr(live.engine, "model", Broken())
    with pytest.raises(openai.InternalServerError) as e:
        live.client().chat.completions.create(model="tiny", messages=USER, max_tokens=3)
    err = _error_shape(e.value.response)
    assert err["type"] == "server_error" and "secret internal detail" not in e.value.response.text
    with live.engine.paused():
        monkeypatch.undo()
    assert (
        live.client()
        .chat.completions.create(model="tiny", messages=USER, max_tokens=3)
        .usage.completion_tokens
        == 3
    )


def test_one_log_line_per_request_without_prompt_text(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    secret = "my password is hunter2"
    messages = [{"role": "user", "content": secret}]
    mine = f"prompt_tokens={len(live.served.prompt_ids(messages))} "  # a line of an earlier test may land too
    with caplog.at_level("INFO", logger="instructkit.serve"):
        live.client().chat.completions.create(model="tiny", messages=messages, max_tokens=2)  # type: ignore[arg-type]
        assert wait_until(lambda: any(mine in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if "/v1/chat/completions" in r.getMessage()]
    lines = [line for line in lines if mine in line]
    assert (
        len(lines) == 1
        and " 200 " in lines[0]
        and "model=tiny" in lines[0]
        and "completion_tokens=2" in lines[0]
    )
    assert all("hunter2" not in r.getMessage() for r in caplog.records)


def test_template_that_breaks_train_serve_parity_is_refused(model_dir: str, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoTokenizer

    from instructkit.templates import TemplateError

    folder = tmp_path / "bad-template"
    shutil.copytree(model_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    # replies are trained after "<|im_start|>bot", yet the served prompt would end "<|im_start|>assistant"
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ 'bot' if m['role'] == 'assistant' else m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.save_pretrained(folder)
    with pytest.raises(TemplateError, match="train/serve template mismatch"):
        load_served(str(folder))


def test_client_gone_while_waiting_never_runs(guarded: Live) -> None:
    """A non-streaming request whose client hangs up while it waits for a slot is dropped unrun."""
    engine = guarded.engine
    cancelled, finished = engine.stats["cancelled"], engine.stats["finished"]
    u = urllib.parse.urlsplit(guarded.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    body = json.dumps({"model": "tiny", "messages": USER, "max_tokens": 5}).encode()
    with engine.paused():
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})  # fmt: skip
        assert wait_until(lambda: engine.waiting == 1)
        conn.close()  # hang up without reading the answer
        # the server notices within its polling interval and marks the waiting request cancelled
        assert wait_until(lambda: engine.waiting_cancelled() == 1, timeout=20)
    assert wait_until(lambda: engine.stats["cancelled"] == cancelled + 1 and engine.waiting == 0, timeout=20)
    assert engine.stats["finished"] == finished  # it never ran
