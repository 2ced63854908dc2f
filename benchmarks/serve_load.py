"""Concurrent clients against three OpenAI-compatible servers of the bundled SmolLM2, in one run.

    python benchmarks/serve_load.py [--clients 8] [--requests 16] [--max-tokens 64] [--peer-mode cb|plain]

The sides, each its own process on 127.0.0.1 and a free port, loaded one after another (never two at once):

* ``instructkit``: ``instructkit serve`` as shipped: continuous batching (``--max-batch`` = the client count),
  joining prompts prefilled inside decoding steps, its prefix cache, prompt-lookup drafts and drafts from
  earlier requests' replies (suffix speculation);
* ``one-at-a-time``: the same server with ``--max-batch 1 --prefix-cache-mb 0 --draft-tokens 0
  --suffix-draft-tokens 0`` (each request decoded alone, as a plain ``generate`` per request would);
* ``transformers serve`` on the same float weights (the safetensors folder ``instructkit models prepare``
  keeps), with ``--continuous-batching`` (its faster mode on this machine; ``--peer-mode plain`` turns it
  off; its paged cache shares prompt blocks between requests, its prefix caching, on by default);
* ``instructkit serve`` again with ``--prefix-cache-mb 0 --draft-tokens 0 --suffix-draft-tokens 0``, to show
  what batching alone does;
* ``instructkit serve`` with ``--suffix-draft-tokens 0`` only, to show what the drafts from earlier replies
  add. The prompts repeat (128 requests over the 40 questions, all with the same template system turn),
  as served traffic often does; a repeated question's greedy reply follows the earlier one, so those drafts
  are mostly kept. With no repeats they draft little (a match must span 8 tokens) and the shipped server
  runs like this side.

Every client sends its share of the same prompts (the user turns of ``examples/data/demo.jsonl``), greedy
(temperature 0), ``max_tokens`` new tokens, one request after another, with the official ``openai`` client.
The script prints requests/s, completion tokens/s, p50/p95 latency and the count of non-2xx answers of each
side, checks the greedy replies are identical across the sides, and ends with the ``ratio:`` line of
requests/s against ``transformers serve``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
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
THREADS: dict[str, str] = {}  # OMP/MKL thread counts given to every side alike (--threads)


def questions() -> list[str]:
    from instructkit.formats import read_records

    out = []
    for rec in read_records(ROOT / "examples" / "data" / "demo.jsonl"):
        users = [m.content for m in rec.messages if m.role == "user"]
        if users:
            out.append(users[-1])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Side:
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

    def row(self) -> str:
        if self.error:
            return f"| {self.name} | did not run: {self.error} |"
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
        bad = sum(n for s, n in self.statuses.items() if not s.startswith("2"))
        return (
            f"| {self.name} | {self.ok / self.wall:.3f} | {self.tokens / self.wall:.1f} | {p50:.1f} | {p95:.1f} "
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
    side: Side, prompts: list[str], clients: int, per_client: int, max_tokens: int, log: Path
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

        def ask(i: int) -> tuple[str, float, int, str]:
            start = time.perf_counter()
            try:
                r = client.chat.completions.create(
                    model=side.model_id, messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
                    temperature=0, max_tokens=max_tokens,
                )  # fmt: skip
            except openai.APIStatusError as e:
                return str(e.status_code), 0.0, 0, ""
            except openai.APIConnectionError:
                return "connection-error", 0.0, 0, ""
            return "200", time.perf_counter() - start, r.usage.completion_tokens, r.choices[0].message.content

        ask(0)  # warm-up, not timed

        def one_client(c: int) -> list[tuple[int, tuple[str, float, int, str]]]:
            return [(c * per_client + k, ask(c * per_client + k)) for k in range(per_client)]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=16, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
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

    from instructkit.models import prepare

    if args.threads:
        THREADS.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    folder = str(prepare(MODEL))  # the float safetensors copy both servers load
    args.log_dir.mkdir(parents=True, exist_ok=True)
    prompts = questions()
    ik = [
        sys.executable,
        "-m",
        "instructkit.cli",
        "serve",
        folder,
        "--name",
        MODEL,
        "--default-max-tokens",
        "64",
    ]
    peer_flag = "--continuous-batching" if args.peer_mode == "cb" else "--no-continuous-batching"
    transformers_cli = str(Path(sys.executable).parent / "transformers")
    sides = []
    off = ["--prefix-cache-mb", "0", "--draft-tokens", "0", "--suffix-draft-tokens", "0"]
    for name, cmd, model_id in (
        ("instructkit serve", [*ik, "--max-batch", str(args.clients)], MODEL),
        ("one-at-a-time (instructkit, --max-batch 1, no prefix cache, no drafts)", [*ik, "--max-batch", "1", *off], MODEL),
        (f"transformers serve {peer_flag}", [transformers_cli, "serve", folder, peer_flag], folder),
        ("instructkit serve, prefix cache and drafts off", [*ik, "--max-batch", str(args.clients), *off], MODEL),
        (
            "instructkit serve, drafts from earlier replies off",
            [*ik, "--max-batch", str(args.clients), "--suffix-draft-tokens", "0"],
            MODEL,
        ),
    ):  # fmt: skip
        port = free_port()
        cmd = [*cmd, "--host", "127.0.0.1", "--port", str(port)]
        sides.append(Side(name, cmd, model_id, port))

    n = args.clients * args.requests
    print(f"{args.clients} clients x {args.requests} requests = {n}, greedy, max_tokens {args.max_tokens}, "
          f"{len(prompts)} distinct prompts ({n - min(n, len(prompts))} requests repeat an earlier one), model {MODEL} (fp32, CPU, {os.cpu_count()} cores, "
          f"threads per server: {args.threads or 'torch default'})", flush=True)  # fmt: skip
    for i, side in enumerate(sides):
        print(f"running {side.name} ...", flush=True)
        run_side(side, prompts, args.clients, args.requests, args.max_tokens, args.log_dir / f"side{i}.log")
        print(f"  done in {side.wall:.0f}s" if not side.error else f"  failed: {side.error}", flush=True)

    print()
    print("| server | requests/s | tokens/s | p50 latency (s) | p95 latency (s) | non-2xx (statuses) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side in sides:
        print(side.row())
    ran = [s for s in sides if not s.error]
    ref = ran[0].replies if ran else {}
    for side in ran:
        by_prompt: dict[int, set[str]] = {}
        for i, text in side.replies.items():
            by_prompt.setdefault(i % len(prompts), set()).add(text)
        unstable = sorted(k for k, texts in by_prompt.items() if len(texts) > 1)
        print(f"{side.name}: the same prompt got the same greedy reply every time: {'yes' if not unstable else f'no (prompts {unstable})'}")  # fmt: skip
    for side in ran[1:]:
        both = [k for k in ref if k in side.replies]
        differ = [k for k in both if side.replies[k] != ref[k]]
        print(f"greedy replies of {side.name} vs {ran[0].name}: "
              f"{len(both) - len(differ)}/{len(both)} requests identical" + (f" (differ: {differ})" if differ else ""))  # fmt: skip
    five = sum(n for s in sides for k, n in s.statuses.items() if k.startswith("5"))
    print(f"5xx answers: {five}")
    ours, single, peer, uncached, no_suffix = sides
    if not ours.error and not single.error:
        print(
            f"instructkit vs one-at-a-time: {(ours.ok / ours.wall) / (single.ok / single.wall):.2f}x requests/s"
        )
    if not uncached.error and not peer.error:
        print(
            "instructkit with its prefix cache and drafts off vs transformers serve: "
            f"{(uncached.ok / uncached.wall) / (peer.ok / peer.wall):.2f}x requests/s"
        )
    if not no_suffix.error and not peer.error:
        print(
            "instructkit with drafts from earlier replies off vs transformers serve: "
            f"{(no_suffix.ok / no_suffix.wall) / (peer.ok / peer.wall):.2f}x requests/s"
        )
    if ours.error or peer.error:
        print(f"ratio: n/a requests/s vs transformers serve ({(peer.error or ours.error)})")
    else:
        print(f"ratio: {(ours.ok / ours.wall) / (peer.ok / peer.wall):.2f}x requests/s vs transformers serve")


if __name__ == "__main__":
    main()
