"""Forgetting on the three-task sequence, one run per continual strategy, side by side.

    python benchmarks/continual.py [--strategies naive,replay,ewc,lwf,adapters] [--jobs 2] [--out DIR] [--keep]

Runs ``instructkit continual recipes/continual/three-tasks.yaml`` once per strategy (sentiment, then
NER-as-text, then code, on the bundled SmolLM2-135M-Instruct with LoRA), each in its own process with
``--set strategy=...`` and its own run name, reads each run's score matrix R (``R[i][j]``: task j after round
i, 0-100) and prints the metrics table in Markdown:

- ACC = mean_j R[T-1][j] over the three tasks after the last round;
- BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]), the change on earlier tasks since each was learned;
- FWT = mean_{j>0} (R[j-1][j] - untouched[j]), what earlier rounds did for a task before it was trained;
- retained = mean_{j<T-1} R[T-1][j], the score left on the earlier tasks at the end.

The peer is ``naive`` (sequential fine-tuning, what a user does today with ``instructkit train`` round after
round); the last line is ``ratio: X.XXx retained score on earlier tasks, replay vs naive``. The numbers are
computed here from R with the library's metric functions (``continual/metrics.py``), so the table
does not depend on how a report formats them; a runner summary that disagrees is named on stderr.

Each strategy takes about as long as three short LoRA rounds plus four scorings of the three test sets
(README, "The three-task benchmark", has the measured times: 12-28 minutes per strategy on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "recipes" / "continual" / "three-tasks.yaml"
STRATEGIES = {
    "naive": {"name": "naive"},
    "replay": {"name": "replay", "ratio": 0.1},
    "ewc": {"name": "ewc"},
    "lwf": {"name": "lwf"},
    "adapters": {"name": "adapters"},
}


def read_matrix(run_dir: Path) -> dict:
    """``{"tasks", "untouched", "rounds", "summary"}`` of a finished run.

    The runner writes ``<output_dir>/<name>/matrix.json`` as
    ``{"matrix": {"tasks", "untouched", "rounds", ...}, "summary": {"ACC", "BWT", ...}}``; this is the one
    place that knows that layout."""
    path = run_dir / "matrix.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no matrix.json (the run did not finish)")
    doc = json.loads(path.read_text())
    m = doc["matrix"]
    return {
        "tasks": m["tasks"],
        "untouched": m["untouched"],
        "rounds": m["rounds"],
        "summary": doc.get("summary", {}),
    }


def metrics(m: dict) -> dict[str, float]:
    """ACC, BWT, FWT from the library's definitions (``continual/metrics.py``, the ones the runner
    reports) and retained, the mean final score on the earlier tasks, which the ratio line compares."""
    from instructkit.continual.metrics import (
        ScoreMatrix,
        average_accuracy,
        backward_transfer,
        forward_transfer,
    )

    r = ScoreMatrix(tasks=m["tasks"], untouched=m["untouched"], rounds=m["rounds"])
    n = len(m["tasks"])
    if r.n_rounds != n:
        raise ValueError(f"{r.n_rounds} rounds for {n} tasks: the run is not finished")
    return {
        "ACC": average_accuracy(r),
        "BWT": backward_transfer(r),
        "FWT": forward_transfer(r),
        "retained": sum(r.at(n - 1, j) for j in range(n - 1)) / (n - 1),
    }


def run_strategy(
    name: str, out: Path, extra_sets: list[str], threads: int | None = None
) -> tuple[Path, float]:
    """One ``instructkit continual`` run of the recipe with ``name``'s strategy; its folder and wall time."""
    strategy = STRATEGIES[name]
    sets = [f"strategy={json.dumps(strategy)}", f"name=three-tasks-{name}", f"output_dir={out}", *extra_sets]
    cmd = [sys.executable, "-m", "instructkit.cli", "continual", str(RECIPE)]
    for s in sets:
        cmd += ["--set", s]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{name}: instructkit continual failed (exit {proc.returncode})")
    return out / f"three-tasks-{name}", wall


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1f}" if v < 0 else f"{v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="comma-separated, from: " + ", ".join(STRATEGIES)
    )
    ap.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    ap.add_argument(
        "--jobs", type=int, default=1,
        help="strategies run at once, each with cores/jobs torch threads (on 2 cores, 2 jobs of 1 thread "
        "each finish sooner than one after another with 2: small models scale poorly across threads)",
    )  # fmt: skip
    ap.add_argument(
        "--set", dest="sets", action="append", default=[], help="extra recipe override for every run"
    )
    args = ap.parse_args()
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        ap.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if "naive" not in names or "replay" not in names:
        ap.error("the ratio line compares replay with naive: keep both in --strategies")
    out = args.out or Path(tempfile.mkdtemp(prefix="continual-bench-"))
    out = out.resolve()
    rows = []
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None

    def one(name: str) -> tuple[str, dict, dict, float]:
        run_dir, wall = run_strategy(name, out, args.sets, threads)
        m = read_matrix(run_dir)
        print(f"{name}: {wall / 60:.1f} min", file=sys.stderr, flush=True)
        return name, m, metrics(m), wall

    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(one, names))
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    tasks = rows[0][1]["tasks"]
    print(f"R after the last round (0-100), ACC/BWT/FWT in points; {RECIPE.relative_to(ROOT)}\n")
    head = ["strategy", *tasks, "ACC", "BWT", "FWT", "retained", "minutes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for name, m, k, wall in rows:
        cells = [name, *(fmt(v) for v in m["rounds"][-1])]
        cells += [fmt(k["ACC"]), fmt(k["BWT"]), fmt(k["FWT"]), fmt(k["retained"]), f"{wall / 60:.1f}"]
        print("| " + " | ".join(cells) + " |")
        runner = m["summary"]
        if runner.get("BWT") is not None and abs(runner["BWT"] - k["BWT"]) > 1e-6:
            print(f"(note: the runner's own BWT for {name} is {runner['BWT']:.2f})", file=sys.stderr)
    by = {name: k for name, _m, k, _w in rows}
    naive, replay = by["naive"]["retained"], by["replay"]["retained"]
    ratio = replay / naive if naive > 0 else float("inf")
    print(f"\nratio: {ratio:.2f}x retained score on earlier tasks, replay vs naive")


if __name__ == "__main__":
    main()
