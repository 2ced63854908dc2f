"""``instructkit data curate`` at scale: the local engine and the Ray engine on the same cores, same input.

    python benchmarks/curate_scale.py [--sizes 250000,500000,1000000] [--quick] [--cpus 2]

For each size, synthetic instructions (templates filled from word lists, seeded) with planted duplicates
(12% exact copies recased and re-spaced, 12% near copies: a typo, punctuation, a dropped word) are
written as JSONL shards of 50,000 records. The default curate pipeline (normalize ... near_dedup,
decontaminate) then runs twice, each in a fresh process:

* local: ``CurateConfig(num_proc=CPUS)`` (``datasets.map`` with that many processes);
* ray: ``CurateConfig(engine="ray")`` on a local Ray cluster started with ``num_cpus=CPUS`` before the
  timed call (the cluster's start is printed apart: a cluster usually runs already).

Printed per size and engine: docs/s of the ``curate`` call, peak memory of the driver and of the largest
worker (Ray workers; for the local engine its ``num_proc`` children), sampled from /proc/PID/smaps every
0.5 s, as own / USS / RSS: *own* is the process's private memory outside Ray's object store, USS adds the
object-store pages only it has touched (a worker writing a task's result), RSS every page it maps (see
``memory_of``); each is the peak over the run of that figure, taken separately. Then near-duplicate
recall/precision
against the planted truth: recall = planted near copies removed (near_duplicate or exact_duplicate) with
a representative from their own group, precision = near_duplicate rejects whose representative is of the
same group. The two engines' split and reject files are compared byte for byte (``identical``). The last
line is the ratio of the Ray engine's docs/s to the local engine's at the largest size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = {
    "verb": "Write Explain Summarize Describe List Compare Outline Draft Rewrite Translate Review Plan".split(),
    "adj": "short formal friendly detailed simple funny clear brief vivid careful gentle bold".split(),
    "noun": "poem email story summary guide review letter plan speech recipe essay report".split(),
    "topic": (
        "ocean tides|rainy mornings|compound interest|the water cycle|lost umbrellas|volcanic islands|bread "
        "baking|the night sky|train timetables|urban gardens|chess openings|migrating birds|solar panels|city "
        "libraries|mountain hiking|coffee roasting|old maps|winter storms|honey bees|paper airplanes"
    ).split("|"),
}
SHARD = 50_000


def make(n: int, seed: int = 0) -> tuple[list[str], dict[str, str], set[str]]:
    """``n`` JSONL lines; the planted group of every id; the ids of planted near copies."""
    rng = random.Random(seed)
    lines, group, near = [], {}, set()
    bases: list[tuple[str, str]] = []
    for k in range(n):
        rid, r = f"r{k}", rng.random()
        if r < 0.12 and bases:
            g, text = rng.choice(bases)
            text = "  " + text.upper() + " "
        elif r < 0.24 and bases:
            g, text = rng.choice(bases)
            kind = rng.randrange(3)
            if kind == 0:
                i = rng.randrange(5, len(text) - 5)
                text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            elif kind == 1:
                text = text.replace(",", "").replace(".", "!")
            else:
                words = text.split()
                del words[rng.randrange(1, len(words) - 1)]
                text = " ".join(words)
            near.add(rid)
        else:
            w = {k2: rng.choice(v) for k2, v in WORDS.items()}
            text = (
                f"{w['verb']} a {w['adj']} {w['noun']} about {w['topic']} for reader {k}, "
                f"in {rng.randint(20, 900)} words, citing source {rng.randint(0, 10**7)}."
            )
            g = rid
            bases.append((g, text))
        group[rid] = g
        row = {
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": f"Answer {k}."}],
            "meta": {"id": rid},
        }
        lines.append(json.dumps(row))
    return lines, group, near


def write_shards(lines: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, len(lines), SHARD):
        p = folder / f"part-{s // SHARD:04d}.jsonl"
        p.write_text("\n".join(lines[s : s + SHARD]) + "\n")
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------------------
# one engine, in a fresh process


def memory_of(pid: int) -> tuple[int, int, int]:
    """(USS, own, RSS) of a process, in bytes, from /proc/PID/smaps. USS: the pages only this process
    maps. Own: USS less the pages of Ray's object store (the /dev/shm/plasma* mapping) that only this
    process touched: a worker that writes a task's result into the store, or the driver reading one
    zero-copy, is the only mapper of those pages until another process reads them, so USS counts Ray's
    shared store as the process's own. RSS counts every mapped page, shared ones once per process."""
    uss = own = rss = 0
    store = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                store = "/dev/shm/plasma" in line
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb = int(line.split()[1]) * 1024
                uss += kb
                own += 0 if store else kb
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return uss, own, rss


class Sampler:
    """Peak RSS per process: this one, its children, and (ray) every process of the Ray session."""

    def __init__(self, session_dir: str | None = None) -> None:
        import psutil

        self.psutil = psutil
        self.session_dir = session_dir
        self.peak: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def procs(self):
        me = self.psutil.Process()
        out = [me, *me.children(recursive=True)]
        if self.session_dir:
            for p in self.psutil.process_iter(["cmdline"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if cmd.startswith("ray::") or self.session_dir in cmd:
                        out.append(p)
                except self.psutil.Error:
                    continue
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            for p in self.procs():
                try:
                    uss, own, rss = memory_of(p.pid)
                    name = " ".join(p.cmdline()[:1])[:40]
                except (OSError, self.psutil.Error):
                    continue
                old = self.peak.get(p.pid, ("", 0, 0, 0))
                self.peak[p.pid] = (name, max(old[1], uss), max(old[2], rss), max(old[3], own))
            time.sleep(0.5)

    def result(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        me = os.getpid()
        driver = self.peak.get(me, ("", 0, 0, 0))
        workers = [v for pid, v in self.peak.items() if pid != me and v[0].startswith("ray::")]
        others = [v for pid, v in self.peak.items() if pid != me and not v[0].startswith("ray::")]
        mib = 2**20
        return {
            "driver_mib": driver[1] / mib,
            "driver_own_mib": driver[3] / mib,
            "max_worker_own_mib": max((v[3] for v in workers), default=0) / mib,
            "max_child_own_mib": max((v[3] for v in others), default=0) / mib,
            "driver_rss_mib": driver[2] / mib,
            "max_worker_mib": max((v[1] for v in workers), default=0) / mib,
            "max_worker_rss_mib": max((v[2] for v in workers), default=0) / mib,
            "workers": len(workers),
            "max_child_mib": max((v[1] for v in others), default=0) / mib,
            "max_child_rss_mib": max((v[2] for v in others), default=0) / mib,
        }


def child(engine: str, inputs: list[str], out: str, cpus: int) -> None:
    from instructkit.data.curate_config import CurateConfig
    from instructkit.data.pipeline import curate

    start = 0.0
    session = None
    if engine == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, address="local")
        ray.data.DataContext.get_current().enable_progress_bars = False
        start = time.perf_counter() - t
        session = ray.get_runtime_context().gcs_address  # in every worker's command line
        cfg = CurateConfig(engine="ray")
    else:
        cfg = CurateConfig(num_proc=cpus)
    sampler = Sampler(session)
    t = time.perf_counter()
    curate([Path(p) for p in inputs], Path(out), cfg)
    wall = time.perf_counter() - t
    print(json.dumps({"wall": wall, "start": start, **sampler.result()}))


def run_child(engine: str, inputs: list[Path], out: Path, cpus: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--out",
        str(out),
        "--cpus",
        str(cpus),
        *map(str, inputs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{proc.stderr[-4000:]}")
    for line in proc.stderr.splitlines():  # the Ray engine's per-stage times
        if line.startswith("[ray]"):
            print("          " + line)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# truth


def near_scores(out: Path, group: dict[str, str], near: set[str]) -> tuple[float, float]:
    found, claimed, right = 0, 0, 0
    with open(out / "rejects.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["reason"] not in ("near_duplicate", "exact_duplicate"):
                continue
            rep = r["detail"].rsplit(" ", 1)[-1]
            same = group.get(r["id"]) == group.get(rep)
            if r["id"] in near and same:
                found += 1
            if r["reason"] == "near_duplicate":
                claimed += 1
                right += same
    return found / max(len(near), 1), right / max(claimed, 1)


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl"):
        h.update((out / name).read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250000,500000,1000000")
    ap.add_argument("--quick", action="store_true", help="sizes 20000,40000: a few minutes")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--child", choices=("local", "ray"))
    ap.add_argument("--out")
    ap.add_argument("inputs", nargs="*")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.inputs, args.out, args.cpus)
        return
    sizes = [20_000, 40_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; engines get {args.cpus}"
    )
    header = (
        f"{'size':>9} {'engine':>6} {'docs/s':>8} {'driver own/USS/RSS MiB':>22} {'worker own/USS/RSS MiB':>22} "
        f"{'recall':>7} {'prec':>7}"
    )
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="curate-scale-") as tmp:
        for n in sizes:
            lines, group, near = make(n)
            inputs = write_shards(lines, Path(tmp) / f"in-{n}")
            del lines
            print(header)
            digests = {}
            for engine in ("local", "ray"):
                out = Path(tmp) / f"out-{engine}-{n}"
                r = run_child(engine, inputs, out, args.cpus)
                recall, precision = near_scores(out, group, near)
                rates[engine] = n / r["wall"]
                digests[engine] = digest(out)
                w = "max_worker" if engine == "ray" else "max_child"
                driver = f"{r['driver_own_mib']:.0f} / {r['driver_mib']:.0f} / {r['driver_rss_mib']:.0f}"
                worker = f"{r[w + '_own_mib']:.0f} / {r[w + '_mib']:.0f} / {r[w + '_rss_mib']:.0f}"
                print(
                    f"{n:>9} {engine:>6} {n / r['wall']:>8.0f} {driver:>22} {worker:>22} "
                    f"{recall:>7.4f} {precision:>7.4f}"
                    + (
                        f"   (cluster start {r['start']:.1f} s, {r['workers']} worker processes)"
                        if engine == "ray"
                        else ""
                    )
                )
            same = digests["local"] == digests["ray"]
            print(f"{n:>9} identical split and reject files: {same}  (load {os.getloadavg()[0]:.2f})")
            if not same:
                raise SystemExit("the engines' outputs differ")
    print(f"ratio: {rates['ray'] / rates['local']:.2f}x docs/s, ray engine vs local engine")


if __name__ == "__main__":
    main()
