"""The Ray engine's run: read, the steps in order, the split, the write (see the package docstring)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from instructkit.data.base import DatasetStep, Step, StepConfigError
from instructkit.data.curate_config import CurateConfig
from instructkit.data.engines.accounting import CurateResult, StepReport, build_card, write_card
from instructkit.data.engines.folder import check_output_folder
from instructkit.data.engines.ray.auth import run_token
from instructkit.data.engines.ray.blocks import FILE_SHIFT, PARTITION_ROWS, local_path, read_errors, remote
from instructkit.data.engines.ray.engine import Engine
from instructkit.data.engines.ray.split import split_stage
from instructkit.data.engines.ray.write import write_rejects, write_splits
from instructkit.data.split import SPLITS
from instructkit.files import OutputError, recover_folder, replaced_folder
from instructkit.records import RecordError


def curate_ray(inputs: list[str | Path], out_dir: str | Path, cfg: CurateConfig) -> CurateResult:
    """Curate on Ray (see the package docstring); ``cfg.address`` joins a cluster, None starts one."""
    try:
        import ray
    except ImportError:
        raise StepConfigError("{key} ray needs Ray: pip install 'instructkit[ray]'", key="engine") from None
    local_out = local_path(out_dir)
    if local_out is None:
        raise OutputError(
            f"the output {out_dir}: engine ray writes to a local or shared (mounted) folder, or a file:// URL; "
            "copy the folder to object storage after (it has no atomic rename)"
        )
    out_dir = local_out
    recover_folder(out_dir)
    check_output_folder([p for p in inputs if local_path(p) is not None], out_dir)
    for p in inputs:
        lp = local_path(p)
        if lp is not None and not lp.exists():
            raise FileNotFoundError(f"{lp}: no such file")
    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            if cfg.address is None:
                stack.enter_context(run_token())
            ray.init(address=cfg.address or "local", include_dashboard=False, log_to_driver=False)
            stack.callback(ray.shutdown)  # before run_token restores the environment
        try:
            return run(ray, [str(p) for p in inputs], out_dir, cfg)
        except Exception as e:
            orig = original(e)
            if orig is not e:
                raise orig from None
            raise


def original(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError, Ray Data's UserCodeException), so a bad
    record raises here what it raises in the local engine; ``e`` itself when there is none."""
    from ray.exceptions import RayTaskError

    queue, seen = [e], set()
    while queue:
        x = queue.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, RayTaskError):
            queue.append(x.cause)
        elif not type(x).__module__.startswith("ray"):
            # Ray Data appends its retry advice to the message; the local engine's message is the one
            if x.args and isinstance(x.args[0], str) and "\nFailed to apply UDF" in x.args[0]:
                x.args = (x.args[0].split("\nFailed to apply UDF", 1)[0], *x.args[1:])
            return x
        queue.append(x.__cause__)
    return e


def run(ray: Any, inputs: list[str], out_dir: Path, cfg: CurateConfig) -> CurateResult:
    steps = cfg.build_steps()
    if len(inputs) >= 1 << (58 - FILE_SHIFT) or len(steps) > 28:  # what the int64 order keys can hold
        raise StepConfigError(
            f"{{key}} ray takes up to {(1 << (58 - FILE_SHIFT)) - 1} input files and 28 steps", key="engine"
        )
    # a step's own exception (a RecordError naming file and line, StepFailed naming step and record)
    # reaches the driver as itself, not as Ray Data's UserCodeException text
    ray.data.DataContext.get_current().raise_original_map_exception = True
    parts = max(2, int(ray.cluster_resources().get("CPU", 1)))
    eng = Engine(cfg, parts, progress=os.environ.get("INSTRUCTKIT_QUIET") != "1")
    t0 = time.perf_counter()
    with eng.stage("read", 0):
        alive = eng.read(inputs)
        if cfg.on_error == "raise":
            errors = [e for got in ray.get([remote(read_errors).remote(d) for d in eng.done]) for e in got]
            if errors:
                raise RecordError(**json.loads(min(errors)[1]))
        n = eng.count(alive)
    eng.log("read", n, t0)
    eng.settle()
    # shuffle partitions: at least one per CPU, and more as the input grows, so a reduce task holds about
    # PARTITION_ROWS records whatever the input's size (memory per worker stays flat)
    eng.parts = max(parts, -(-n // PARTITION_ROWS))
    alive, n = run_steps(eng, steps, alive, n)
    t0 = time.perf_counter()
    with eng.stage("split", n):
        assignment_ref, n_kept = split_stage(eng, alive, cfg.split)
    eng.log("split", n_kept, t0)
    return write(eng, steps, alive, assignment_ref, n_kept, out_dir)


def run_steps(eng: Engine, steps: list[Step], alive: list[Any], n: int) -> tuple[list[Any], int]:
    """The steps in order: consecutive per-record steps as one map, a dataset step as its own Ray form
    (``DatasetStep.ray_stage``). Returns the blocks of records kept and their number."""
    k = 0
    while k < len(steps) and n:  # with no record left the steps see nothing and drop nothing, as locally
        t0 = time.perf_counter()
        step, end = steps[k], k + 1
        if not isinstance(step, DatasetStep):  # consecutive per-record steps run as one map
            while end < len(steps) and not isinstance(steps[end], DatasetStep):
                end += 1
        name = "+".join(s.name for s in steps[k:end])
        with eng.stage(name, n):
            if isinstance(step, DatasetStep):
                alive = step.ray_stage(eng, alive, k + 1)
            else:
                alive = eng.per_record(alive, steps[k:end], list(range(k + 1, end + 1)))
            n_in, n = n, eng.count(alive)  # the count waits for the stage's tasks: the time is the stage's
        k = end
        eng.log(name, n_in, t0)
        eng.settle()
    if not n:
        alive = []  # (Ray Data gives empty blocks without a schema back from a map over no rows)
    return alive, n


def write(
    eng: Engine, steps: list[Step], alive: list[Any], assignment_ref: Any, n_kept: int, out_dir: Path
) -> CurateResult:
    """The end: rejects by (step, idx), records by idx, streamed through here into the files; the card."""
    cfg = eng.cfg
    t0 = time.perf_counter()
    reports = [StepReport(s.name, s.params()) for s in steps]
    with eng.stage("write", n_kept), replaced_folder(out_dir) as stage:
        sources, read_dropped, by_reason = write_rejects(eng, stage, reports)
        summaries = write_splits(eng, alive, assignment_ref, stage, cfg)
        read_total = sum(s["read"] for s in sources)
        reports_in = read_total - sum(read_dropped.values())
        for r in reports:
            r.n_in = reports_in
            r.kept = reports_in - sum(r.dropped.values())
            reports_in = r.kept
        card = build_card(
            cfg,
            sources,
            read_kept=read_total - sum(read_dropped.values()),
            read_dropped=read_dropped,
            reports=reports,
            stats={s: summaries[s].to_dict() for s in SPLITS},
            rejected_by_reason=by_reason,
        )
        write_card(card, stage)
    eng.log("write", n_kept + sum(by_reason.values()), t0)
    return CurateResult(out_dir, card, None, None)
