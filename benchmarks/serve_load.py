"""Concurrent clients against OpenAI-compatible servers of the bundled SmolLM2, in one run.

    python benchmarks/serve_load.py [--prompts distinct|repeated|both] [--sides main|all] [--clients 8]
        [--requests 16] [--max-tokens 64] [--peer-mode cb|plain] [--threads N]

The prompts (``--prompts``):

* ``distinct`` (the default): traffic that does not repeat. The first ``clients * requests`` prompts of
  ``benchmarks/data/user-instructions.jsonl``, every request a different one: 252 distinct user-oriented
  instructions (the instruction, then a blank line and its input when it has one) from Self-Instruct's
  ``human_eval/user_oriented_instructions.jsonl`` (github.com/yizhongw/self-instruct, commit 0b26cca,
  Apache-2.0; ``benchmarks/data/SOURCE.md`` says how it was built, ``make_user_instructions.py`` beside it
  re-creates it). Asking for more requests than the file holds is an error. The untimed warm-up request
  asks a prompt outside the timed ones, so no timed prompt was seen before.
* ``repeated``: the user turns of ``examples/data/demo.jsonl``, 40 questions that all share the template's
  system turn, asked round-robin (the default 128 requests ask each question three or four times), as
  served traffic sometimes does: a repeated question finds its prompt in a prefix cache, and its greedy
  reply follows the earlier one, so drafts from earlier replies are mostly kept.
* ``both``: the repeated mode, then the distinct mode, each with its own table and its own ``ratio:`` line
  labelled with its mode; the distinct mode's is the last line printed.

The sides (``--sides``), each its own process on 127.0.0.1 and a free port, loaded one after another (never
two at once), started afresh for every mode:

* ``instructkit``: ``instructkit serve`` as shipped: continuous batching (``--max-batch`` = the client count),
  joining prompts prefilled inside decoding steps, its prefix cache, prompt-lookup drafts and drafts from
  earlier requests' replies (suffix speculation);
* ``transformers serve`` on the same float weights (the safetensors folder ``instructkit models prepare``
  keeps), with ``--continuous-batching`` (its faster mode on this machine; ``--peer-mode plain`` turns it
  off; its paged cache shares prompt blocks between requests, its prefix caching, on by default).

Those two are ``--sides main`` (the default), the two the ratio needs. ``--sides all`` adds three more:

* ``one-at-a-time``: instructkit with ``--max-batch 1 --prefix-cache-mb 0 --draft-tokens 0
  --suffix-draft-tokens 0`` (each request decoded alone, as a plain ``generate`` per request would);
* instructkit with ``--prefix-cache-mb 0 --draft-tokens 0 --suffix-draft-tokens 0``, to show what batching
  alone does;
* instructkit with ``--suffix-draft-tokens 0`` only, to show what the drafts from earlier replies add (with
  distinct prompts they draft little: a match must span 8 tokens).

Every client sends its share of the prompts, greedy (temperature 0), ``max_tokens`` new tokens, one request
after another, with the official ``openai`` client. For each mode the script prints requests/s, completion
tokens/s, p50/p95 latency and the count of non-2xx answers of each side, how many greedy replies are
identical to the first side's, the count of 5xx answers, and the ``ratio:`` line of requests/s of
``instructkit serve`` against ``transformers serve``. Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parent.parent
MODEL = "smollm2-135m-instruct"
DISTINCT = Path(__file__).parent / "data" / "user-instructions.jsonl"
WARM_UP = "Say hello in one short sentence."  # the warm-up when no prompt outside the timed ones is left
THREADS: dict[str, str] = {}  # OMP/MKL thread counts given to every side alike (--threads)


def questions() -> list[str]:
    from instructkit.formats import read_records

    out = []
    for rec in read_records(ROOT / "examples" / "data" / "demo.jsonl"):
        users = [m.content for m in rec.messages if m.role == "user"]
        if users:
            out.append(users[-1])
    return out


def distinct_prompts() -> list[str]:
    """The prompts of ``user-instructions.jsonl`` in file order, exact repeats kept once."""
    out: list[str] = []
    seen: set[str] = set()
    for line in DISTINCT.read_text(encoding="utf-8").splitlines():
        if line.strip() and (prompt := json.loads(line)["prompt"]) not in seen:
            seen.add(prompt)
            out.append(prompt)
    return out


def mode_prompts(mode: str, n: int) -> tuple[list[str], str]:
    """The prompts request i asks (``prompts[i % len(prompts)]``) and the untimed warm-up prompt."""
    if mode == "repeated":
        prompts = questions()
        return prompts, prompts[0]
    pool = distinct_prompts()
    if n > len(pool):
        raise SystemExit(
            f"--prompts distinct: {n} requests asked, but {DISTINCT.relative_to(ROOT)} holds {len(pool)} "
            "distinct prompts; lower --clients or --requests, or use --prompts repeated"
        )
    return pool[:n], pool[n] if n < len(pool) else WARM_UP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Side:
    key: str
    name: str
    command: list[str]
    model_id: str
    port: int
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    replies: dict[int, str] = field(default_factory=dict)
    wall: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.wall

    def row(self) -> str:
        if self.error:
            return f"| {self.name} | did not run: {self.error} |"
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
        bad = sum(n for s, n in self.statuses.items() if not s.startswith("2"))
        return (
            f"| {self.name} | {self.rps:.3f} | {self.tokens / self.wall:.1f} | {p50:.1f} | {p95:.1f} "
            f"| {bad} ({', '.join(f'{k}: {v}' for k, v in sorted(self.statuses.items()))}) |"
        )


def wait_ready(side: Side, proc: subprocess.Popen, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{side.port}/v1/models", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"not ready after {timeout:.0f}s")


def run_side(
    side: Side, prompts: list[str], warm_up: str, clients: int, per_client: int, max_tokens: int, log: Path
) -> None:
    import openai

    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"} | THREADS
    with open(log, "w") as out:
        proc = subprocess.Popen(side.command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(side, proc)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{side.port}/v1", api_key="none", max_retries=0, timeout=1800
        )

        def ask(prompt: str) -> tuple[str, float, int, str]:
            start = time.perf_counter()
            try:
                r = client.chat.completions.create(
                    model=side.model_id, messages=[{"role": "user", "content": prompt}],
                    temperature=0, max_tokens=max_tokens,
                )  # fmt: skip
            except openai.APIStatusError as e:
                return str(e.status_code), 0.0, 0, ""
            except openai.APIConnectionError:
                return "connection-error", 0.0, 0, ""
            return "200", time.perf_counter() - start, r.usage.completion_tokens, r.choices[0].message.content

        ask(warm_up)  # not timed

        def one_client(c: int) -> list[tuple[int, tuple[str, float, int, str]]]:
            ids = range(c * per_client, (c + 1) * per_client)
            return [(i, ask(prompts[i % len(prompts)])) for i in ids]

        start = time.perf_counter()
        with cf.ThreadPoolExecutor(clients) as pool:
            results = [x for batch in pool.map(one_client, range(clients)) for x in batch]
        side.wall = time.perf_counter() - start
        for i, (status, latency, tokens, text) in results:
            side.statuses[status] = side.statuses.get(status, 0) + 1
            if status == "200":
                side.latencies.append(latency)
                side.tokens += tokens
                side.replies[i] = text  # request i asks prompt i % len(prompts) on every side
    except Exception as e:  # the table says why a side did not run
        side.error = f"{type(e).__name__}: {e} (log: {log})"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_sides(which: str, clients: int, peer_mode: str, folder: str) -> list[Side]:
    """The servers to run, in order, each on its own free port; ``main`` keeps the two the ratio needs."""
    cli = [sys.executable, "-m", "instructkit.cli", "serve", folder]
    ik = [*cli, "--name", MODEL, "--default-max-tokens", "64"]
    peer_flag = "--continuous-batching" if peer_mode == "cb" else "--no-continuous-batching"
    transformers_cli = str(Path(sys.executable).parent / "transformers")
    off = ["--prefix-cache-mb", "0", "--draft-tokens", "0", "--suffix-draft-tokens", "0"]
    batch = ["--max-batch", str(clients)]
    every = (
        ("ours", "instructkit serve", [*ik, *batch], MODEL),
        ("single", "one-at-a-time (instructkit, --max-batch 1, no prefix cache, no drafts)", [*ik, "--max-batch", "1", *off], MODEL),
        ("peer", f"transformers serve {peer_flag}", [transformers_cli, "serve", folder, peer_flag], folder),
        ("uncached", "instructkit serve, prefix cache and drafts off", [*ik, *batch, *off], MODEL),
        ("no_suffix", "instructkit serve, drafts from earlier replies off", [*ik, *batch, "--suffix-draft-tokens", "0"], MODEL),
    )  # fmt: skip
    sides = []
    for key, name, cmd, model_id in every:
        if which == "all" or key in ("ours", "peer"):
            port = free_port()
            sides.append(Side(key, name, [*cmd, "--host", "127.0.0.1", "--port", str(port)], model_id, port))
    return sides


def report(sides: list[Side], n_prompts: int, mode: str) -> None:
    """The table, the reply checks, the 5xx count and the ratios of one mode, its ``ratio:`` line last."""
    print()
    print(f"{mode} prompts:")
    print("| server | requests/s | tokens/s | p50 latency (s) | p95 latency (s) | non-2xx (statuses) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side in sides:
        print(side.row())
    ran = [s for s in sides if not s.error]
    for side in ran:
        by_prompt: dict[int, set[str]] = {}
        asked: dict[int, int] = {}
        for i, text in side.replies.items():
            by_prompt.setdefault(i % n_prompts, set()).add(text)
            asked[i % n_prompts] = asked.get(i % n_prompts, 0) + 1
        if any(k > 1 for k in asked.values()):  # with no repeats there is nothing to compare
            unstable = sorted(k for k, texts in by_prompt.items() if len(texts) > 1)
            print(f"{side.name}: the same prompt got the same greedy reply every time: {'yes' if not unstable else f'no (prompts {unstable})'}")  # fmt: skip
    for side in ran[1:]:
        ref = ran[0].replies
        both = [k for k in ref if k in side.replies]
        differ = [k for k in both if side.replies[k] != ref[k]]
        print(f"greedy replies of {side.name} vs {ran[0].name}: "
              f"{len(both) - len(differ)}/{len(both)} requests identical" + (f" (differ: {differ})" if differ else ""))  # fmt: skip
    five = sum(n for s in sides for k, n in s.statuses.items() if k.startswith("5"))
    print(f"5xx answers: {five}")
    by_key = {s.key: s for s in ran}
    for a, b, what in (
        ("ours", "single", "instructkit vs one-at-a-time"),
        ("uncached", "peer", "instructkit with its prefix cache and drafts off vs transformers serve"),
        ("no_suffix", "peer", "instructkit with drafts from earlier replies off vs transformers serve"),
    ):
        if a in by_key and b in by_key:
            print(f"{what}: {by_key[a].rps / by_key[b].rps:.2f}x requests/s")
    if "ours" in by_key and "peer" in by_key:
        print(f"ratio: {by_key['ours'].rps / by_key['peer'].rps:.2f}x requests/s vs transformers serve ({mode} prompts)")  # fmt: skip
    else:
        why = "; ".join(f"{s.name}: {s.error}" for s in sides if s.key in ("ours", "peer") and s.error)
        print(f"ratio: n/a requests/s vs transformers serve ({mode} prompts; {why})")


def run_mode(mode: str, args: argparse.Namespace, folder: str) -> None:
    n = args.clients * args.requests
    prompts, warm_up = mode_prompts(mode, n)
    sides = make_sides(args.sides, args.clients, args.peer_mode, folder)
    repeats = n - min(n, len(prompts))
    print(f"{mode} prompts: {args.clients} clients x {args.requests} requests = {n}, greedy, max_tokens "
          f"{args.max_tokens}, {len(prompts)} distinct prompts ({repeats} requests repeat an earlier one), model "
          f"{MODEL} (fp32, CPU, {os.cpu_count()} cores, threads per server: {args.threads or 'torch default'})", flush=True)  # fmt: skip
    for i, side in enumerate(sides):
        print(f"running {side.name} ...", flush=True)
        log = args.log_dir / f"{mode}-side{i}.log"
        run_side(side, prompts, warm_up, args.clients, args.requests, args.max_tokens, log)
        print(f"  done in {side.wall:.0f}s" if not side.error else f"  failed: {side.error}", flush=True)
    report(sides, len(prompts), mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=16, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--prompts", choices=("distinct", "repeated", "both"), default="distinct",
        help="distinct: every request a different prompt of benchmarks/data/user-instructions.jsonl; repeated: "
        "the 40 questions of examples/data/demo.jsonl round-robin; both: repeated, then distinct (last)",
    )  # fmt: skip
    ap.add_argument(
        "--sides", choices=("main", "all"), default="main",
        help="main: instructkit serve and transformers serve (the ratio's two); all: the five sides",
    )  # fmt: skip
    ap.add_argument(
        "--peer-mode",
        choices=("cb", "plain"),
        default="cb",
        help="transformers serve --continuous-batching or not",
    )
    ap.add_argument(
        "--threads", type=int, default=None,
        help="torch threads of every server (OMP_NUM_THREADS); on a machine other jobs share, 1 avoids threads "
        "waiting on each other at every op (measured here: a decoding step 0.22 s with 1 thread, 1.5 s with 2)",
    )  # fmt: skip
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/serve_load"))
    args = ap.parse_args()
    modes = ("repeated", "distinct") if args.prompts == "both" else (args.prompts,)
    if "distinct" in modes:
        mode_prompts("distinct", args.clients * args.requests)  # too many requests: say so before loading

    from instructkit.models import prepare

    if args.threads:
        THREADS.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    folder = str(prepare(MODEL))  # the float safetensors copy both servers load
    args.log_dir.mkdir(parents=True, exist_ok=True)
    for k, mode in enumerate(modes):
        if k:
            print()
        run_mode(mode, args, folder)


if __name__ == "__main__":
    main()
