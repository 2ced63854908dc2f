"""The Ray engine of curate: byte-identical output to the local engine on a dirty 20,000-record input, on one
local cluster, on two nodes, with a worker killed mid-run, and the same errors.

One local Ray cluster (2 CPUs, a 400 MB object store, no dashboard) is shared by the module; the multi-node
test starts its own two raylets with ``ray start`` and drives them through the CLI in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import ray  # in the dev extra: a missing Ray fails the suite instead of skipping it

from instructkit.data.base import StepFailed
from instructkit.data.curate_config import DEFAULT_STEPS, CurateConfig
from instructkit.data.engines.ray.auth import AUTH_ENV, run_token
from instructkit.data.pipeline import curate
from instructkit.records import RecordError

from . import curate_dirty
from .conftest import REAL_HOME
from .curate_dirty import write_dirty

FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl", "card.md")
STEPS = [*DEFAULT_STEPS, "modality", {"step": "language", "languages": ["en"]}]
ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture(scope="module", autouse=True)
def test_steps():
    """The test-only steps are in the step registry for this module only (the extension suite checks that
    every registered step lives in the package)."""
    from instructkit.data.base import STEPS

    added = {cls.name: cls for cls in curate_dirty.TEST_STEPS if cls.name not in STEPS}
    STEPS.update(added)
    yield
    for name in added:
        STEPS.pop(name, None)


@pytest.fixture(scope="module")
def cluster():
    os.environ["INSTRUCTKIT_QUIET"] = "1"
    with run_token():  # the engine's own way: the cluster's token in the environment, none on disk
        ray.init(
            num_cpus=2,
            object_store_memory=400 * 2**20,
            include_dashboard=False,
            log_to_driver=False,
            address="local",
            runtime_env={"env_vars": {"PYTHONPATH": ENV["PYTHONPATH"]}},
        )
        # test-only steps travel by value: the workers need not import the tests package
        ray.cloudpickle.register_pickle_by_value(curate_dirty)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
        ray.shutdown()
    os.environ.pop("INSTRUCTKIT_QUIET", None)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> list[Path]:
    return write_dirty(tmp_path_factory.mktemp("dirty"), n=20_000, shards=3)


@pytest.fixture(scope="module")
def local_run(dirty, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    curate(dirty, out, CurateConfig(steps=STEPS))
    return out


def card_of(out: Path) -> dict:
    """The card without what may differ between engines: the engine itself, and where the inputs were."""
    card = json.loads((out / "card.json").read_text())
    card["config"].pop("engine")
    card["config"].pop("address")
    for s in card["sources"]:
        s["path"] = Path(s["path"].removeprefix("file://")).name
    return card


def assert_same(a: Path, b: Path) -> None:
    for name in FILES[:-1]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert card_of(a) == card_of(b)


@pytest.mark.slow
def test_ray_writes_byte_identical_files_and_card(cluster, dirty, local_run, tmp_path) -> None:
    card = json.loads((local_run / "card.json").read_text())
    # the fixture really is dirty: every planted kind was removed by its step
    dropped = {r: n for st in card["steps"] for r, n in st["dropped"].items()}
    assert card["accounting"]["in"] == 20_000 and card["accounting"]["balanced"]
    for reason in (
        "exact_duplicate",
        "near_duplicate",
        "contaminated",
        "malformed_json",
        "wrong_type",
        "empty_content",
        "refusal",
    ):
        assert dropped.get(reason, 0) >= 10, (reason, dropped)
    assert sum(card["splits"].values()) > 10_000 and card["splits"]["test"] > 100

    out = tmp_path / "ray"
    result = curate(dirty, out, CurateConfig(steps=STEPS, engine="ray"))
    assert_same(local_run, out)
    for name in FILES:  # card.md names the inputs the same way, so it is identical too
        assert (local_run / name).read_bytes() == (out / name).read_bytes(), name
    assert result.card["accounting"] == card["accounting"] and result.splits is None


@pytest.mark.slow
def test_ray_reads_and_writes_file_urls(cluster, dirty, local_run, tmp_path) -> None:
    out = tmp_path / "ray"
    curate([f"file://{p}" for p in dirty], f"file://{out}", CurateConfig(steps=STEPS, engine="ray"))
    # read rejects name their source as it was given (here a URL); everything else is identical
    rejects = (
        (out / "rejects.jsonl").read_text().replace(f'"file://{dirty[0].parent}/', f'"{dirty[0].parent}/')
    )
    assert rejects == (local_run / "rejects.jsonl").read_text()
    (out / "rejects.jsonl").write_text(rejects)
    assert_same(local_run, out)
    assert json.loads((out / "card.json").read_text())["sources"][0]["path"] == f"file://{dirty[0]}"


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_nothing_is_lost(cluster, dirty, tmp_path) -> None:
    victim = json.loads(dirty[1].read_text().splitlines()[3000])
    record_id = victim["meta"]["id"]
    marker = tmp_path / "killed"
    steps = [
        *STEPS[:4],
        {"step": "test_kill_once", "record_id": record_id, "marker": str(marker)},
        *STEPS[4:],
    ]
    marker.write_text("the local run must not kill itself")
    curate(dirty, tmp_path / "local", CurateConfig(steps=steps))
    marker.unlink()
    curate(dirty, tmp_path / "ray", CurateConfig(steps=steps, engine="ray"))
    pid = int(marker.read_text())
    assert pid != os.getpid()  # a worker died (SIGKILL) at that record, and the task ran again
    assert_same(tmp_path / "local", tmp_path / "ray")
    acc = card_of(tmp_path / "ray")["accounting"]
    assert acc["in"] == acc["kept"] + acc["rejected"] == 20_000


@pytest.mark.slow
def test_errors_name_the_same_place_in_both_engines(cluster, tmp_path) -> None:
    good = '{"messages": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red."}]}'
    lines = [good.replace("color", f"color number {i}") for i in range(50)]
    lines[17] = '{"messages": [{"role": "user", "content": "cut'
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # a second file, bad earlier in it: the files are read in parallel, yet the error is the first file's
    later = tmp_path / "later.jsonl"
    later.write_text("\n".join(["{oops", *lines[:17]]) + "\n")
    messages = []
    for engine in ("local", "ray"):
        with pytest.raises(RecordError) as err:
            curate([path, later], tmp_path / engine, CurateConfig(engine=engine, on_error="raise"))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and f"{path}, line 18" in messages[0]

    # a step that fails on a record: StepFailed names the step, the record and its file, in both engines
    lines[17] = good
    path.write_text("\n".join(lines) + "\n")
    steps = ["normalize", {"step": "test_fail_on", "record_id": "d4f0c0a9"}]
    from instructkit.records import Record

    bad_id = Record.from_dict(json.loads(lines[30])).id
    steps[1]["record_id"] = bad_id
    messages = []
    for engine in ("local", "ray"):
        with pytest.raises(StepFailed) as err:
            curate([path], tmp_path / f"s-{engine}", CurateConfig(steps=steps, engine=engine))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith(
        f"step 'test_fail_on' failed on record {bad_id} (from in.jsonl): ValueError"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp_dir: str, port: int) -> None:
    """Stop the test's own cluster by process id (never by name: ``ray stop`` would stop every Ray on the
    machine): the processes naming its temp dir or GCS port, or holding files in the temp dir (the
    agents rename themselves), with their children."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if not p.info["uids"] or p.info["uids"].real != os.getuid() or p.pid == os.getpid():
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if (
                temp_dir in cmd
                or f"127.0.0.1:{port}" in cmd
                or any(temp_dir in f.path for f in p.open_files())
            ):
                found[p.pid] = p
                found.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            continue
    procs = list(found.values())
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


@pytest.mark.slow
def test_two_nodes_started_with_ray_start_give_the_same_output(dirty, local_run, tmp_path) -> None:
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    temp = f"/tmp/ik-ray-{uuid.uuid4().hex[:8]}"
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    # token authentication, the token shared by the head, the second node and the driver
    env = {**ENV, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    try:
        subprocess.run(
            [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp,
             "--object-store-memory", str(300 * 2**20), *common],
            check=True, env=env, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [ray_bin, "start", "--address", f"127.0.0.1:{port}", "--object-store-memory", str(300 * 2**20),
             *common],
            check=True, env=env, capture_output=True, timeout=120,
        )  # fmt: skip
        probe = (
            f"import ray; ray.init(address='127.0.0.1:{port}', log_to_driver=False); "
            "print(len([n for n in ray.nodes() if n['Alive']]))"
        )
        for _ in range(30):
            nodes = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
            if nodes.stdout.strip() == "2":
                break
            time.sleep(1)
        assert nodes.stdout.strip() == "2", nodes.stderr[-2000:]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({"steps": STEPS}))
        out = tmp_path / "two-nodes"
        run = subprocess.run(
            [sys.executable, "-m", "instructkit.cli", "data", "curate", *map(str, dirty), "-o", str(out),
             "-c", str(cfg), "--engine", "ray", "--address", f"127.0.0.1:{port}"],
            env={**env, "INSTRUCTKIT_QUIET": "1"}, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        for name in FILES[:-1]:
            assert (local_run / name).read_bytes() == (out / name).read_bytes(), name
        assert card_of(local_run) == card_of(out)
    finally:
        _stop_cluster(temp, port)
        shutil.rmtree(temp, ignore_errors=True)  # the cluster's session folders: nothing left in /tmp


def test_engine_and_address_are_checked_config_keys() -> None:
    from instructkit.data.base import StepConfigError

    cfg = CurateConfig.from_dict({"engine": "ray", "address": "auto"})
    assert (cfg.engine, cfg.address) == ("ray", "auto")
    with pytest.raises(StepConfigError, match="engine"):
        CurateConfig.from_dict({"engine": "spark"})
    with pytest.raises(StepConfigError, match="'address' is for engine ray"):
        CurateConfig.from_dict({"address": "auto"}).validate()
    with pytest.raises(StepConfigError, match=r"curate\.engine"):
        CurateConfig.from_dict({"engine": "dask"}, prefix="curate")


def test_cli_refuses_an_unknown_engine_and_a_missing_input(tmp_path) -> None:
    from typer.testing import CliRunner

    from instructkit.cli import app

    good = tmp_path / "in.jsonl"
    good.write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    )
    wide = {"COLUMNS": "1000", "NO_COLOR": "1"}  # Rich's error panel would wrap a long temporary path
    run = CliRunner().invoke(
        app, ["data", "curate", str(good), "-o", str(tmp_path / "o"), "--engine", "spark"], env=wide
    )
    assert run.exit_code != 0 and "'spark' is not one of: local, ray" in run.output
    missing = tmp_path / "nope.jsonl"
    run = CliRunner().invoke(app, ["data", "curate", str(missing), "-o", str(tmp_path / "o")], env=wide)
    assert run.exit_code == 2 and f"{missing}: no such file" in run.output, run.output


@pytest.mark.slow
def test_split_per_stratum_and_clusters_across_strata_match_local(cluster, tmp_path) -> None:
    """The split's per-stratum bounds, a zero val share, and units whose records are in several strata
    (near_dedup's ``action: mark`` keeps a cluster together under its first record's stratum)."""
    data = write_dirty(tmp_path / "in", n=4000, shards=2, seed=1)
    steps = [
        {**s, "action": "mark"} if isinstance(s, dict) and s["step"] == "near_dedup" else s for s in STEPS
    ]
    splits = ({"stratify": "task", "val": 0.1, "test": 0.2}, {"by_cluster": False, "val": 0.0, "test": 0.3})
    first = tmp_path / "local-0"
    for k, split in enumerate(splits):
        outs = {}
        for engine in ("local", "ray"):
            outs[engine] = tmp_path / f"{engine}-{k}"
            curate(
                data, outs[engine], CurateConfig.from_dict({"steps": steps, "split": split, "engine": engine})
            )
        assert_same(outs["local"], outs["ray"])
        card = json.loads((outs["local"] / "card.json").read_text())
        assert card["splits"]["test"] > 500 and (card["splits"]["val"] > 100) == (k == 0)
    # the case the per-stratum bounds cannot decide was there: a cluster holding records of two tasks
    tasks: dict[str, set] = {}
    for name in ("train", "val", "test"):
        for line in (first / f"{name}.jsonl").read_text().splitlines():
            meta = json.loads(line)["meta"]
            tasks.setdefault(meta["cluster"], set()).add(meta.get("task"))
    assert any(len(t) > 1 for t in tasks.values())


@pytest.mark.slow
def test_a_run_recipe_with_engine_ray_curates_generated_and_given_data_on_ray(
    cluster, tmp_path, tiny_llama, monkeypatch
) -> None:
    """``instructkit run``: a recipe whose curate section says ``engine: ray`` runs its data stage on the
    Ray engine, the generate stage's records among its inputs, and writes what the local engine writes."""
    import yaml

    from instructkit.data.engines.ray import curate as ray_curate
    from instructkit.recipe import Recipe, run_recipe
    from tests.fake_openai_server import FakeServer
    from tests.test_run_faults import DEMO, write_recipe
    from tests.test_self_instruct_generator import answer_text

    calls = []
    real = ray_curate.run
    monkeypatch.setattr(ray_curate, "run", lambda *a: calls.append(a[1]) or real(*a))
    with FakeServer(answer=answer_text) as server:
        backend = {"name": "openai", "base_url": server.url, "api_key": "k", "model": "fake"}
        gen = {"generator": "self-instruct", "n": 4, "requests_per_round": 2, "backend": backend}
        path = write_recipe(tmp_path, tiny_llama, DEMO, generate=gen)
        recipe = yaml.safe_load(path.read_text())
        recipe["curate"] = {"engine": "ray", "split": {"val": 0.1, "test": 0.2}}
        path.write_text(yaml.safe_dump(recipe))
        result = run_recipe(Recipe.from_yaml(path), recipe_path=path, progress=False, log=lambda _: None)
    assert result.ran[:3] == ["generate", "data", "before"], result.ran
    data = result.run_dir / "data"
    assert len(calls) == 1 and calls[0][-1] == str(result.run_dir / "generate" / "records.jsonl")
    card = json.loads((data / "card.json").read_text())
    assert card["config"]["engine"] == "ray" and card["accounting"]["balanced"]
    assert [Path(s["path"]).name for s in card["sources"]] == ["demo.jsonl", "records.jsonl"]
    local = tmp_path / "local"
    curate(calls[0], local, CurateConfig.from_dict(recipe["curate"] | {"engine": "local"}))
    assert_same(local, data)


@pytest.mark.slow
def test_stage_bar_counts_the_stage_tasks_and_records_per_second(cluster) -> None:
    """A hand-written stage's bar: tasks done out of those submitted (a task with several results counts
    once), and records/s estimated from the stage's input records."""
    from instructkit.data.engines.ray.bar import StageBar

    @ray.remote
    def work(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    @ray.remote(num_returns=2)
    def pair() -> tuple[int, int]:
        return 1, 2

    def wait_for(predicate, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    bar = StageBar(ray, "near_dedup", n_in=6000)
    try:
        slow = work.remote(30.0)
        bar.add([work.remote(0.0), work.remote(0.0), pair.remote(), slow])
        task = bar.bar.tasks[0]
        assert wait_for(lambda: task.total == 4 and task.completed == 3)  # the slow one is still running
        assert task.fields["rate"].startswith("~") and task.fields["rate"].endswith("records/s")
        ray.cancel(slow, force=True)
    finally:
        bar.close()
    assert not bar.thread.is_alive()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty", "binary", "utf16"])
def test_ray_keeps_no_record_as_local_does(cluster, tmp_path, kind) -> None:
    """An input no record survives: the Ray engine writes what the local engine writes (the card, the
    rejects, empty splits) instead of failing on Ray Data's schema-less empty blocks."""
    from .test_data_edges import write_input

    path = write_input(kind, tmp_path)
    for engine in ("local", "ray"):
        result = curate([path], tmp_path / engine, CurateConfig(steps=STEPS, engine=engine))
        assert result.card["accounting"]["kept"] == 0
    assert_same(tmp_path / "local", tmp_path / "ray")
    for name in FILES:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name


def test_run_token_lives_in_the_environment_and_is_restored(monkeypatch) -> None:
    """The local cluster's token: in the environment while the cluster runs (Ray then finds a token and
    writes none to ~/.ray/auth_token), the user's settings back after; ``RAY_AUTH_MODE=disabled`` kept."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nonexistent/token")
    with run_token():
        assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
        assert "RAY_AUTH_TOKEN_PATH" not in os.environ
        first = os.environ["RAY_AUTH_TOKEN"]
    with run_token():
        assert os.environ["RAY_AUTH_TOKEN"] != first  # a fresh token per run
    assert {k: os.environ.get(k) for k in AUTH_ENV} == {
        "RAY_AUTH_MODE": None,
        "RAY_AUTH_TOKEN": None,
        "RAY_AUTH_TOKEN_PATH": "/nonexistent/token",
    }
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with run_token():
        assert os.environ["RAY_AUTH_MODE"] == "disabled" and "RAY_AUTH_TOKEN" not in os.environ


def _tree(folder: Path) -> dict[str, str] | None:
    """A folder's listing with each file's sha256 (None when the folder does not exist)."""
    import hashlib

    if not folder.exists():
        return None
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.slow
def test_a_local_ray_run_leaves_the_real_home_alone(tmp_path) -> None:
    """``--engine ray`` without an address, run as the user runs it (their real HOME, no RAY_AUTH_*):
    nothing in ``~/.ray`` changes. Ray used to write ``~/.ray/auth_token`` there, after which the user's own
    ``ray start --head`` required that token and ``ray start --address`` could not join (InvalidAuthToken).
    If the run does write there, the test removes what it wrote before failing."""
    ray_home = REAL_HOME / ".ray"
    before = _tree(ray_home)
    data = ROOT / "examples" / "data" / "demo.jsonl"
    env = {k: v for k, v in ENV.items() if k not in AUTH_ENV and k != "RAY_ADDRESS"}
    env |= {"HOME": str(REAL_HOME), "INSTRUCTKIT_QUIET": "1"}
    try:
        run = subprocess.run(
            [sys.executable, "-m", "instructkit.cli", "data", "curate", str(data), "-o", str(tmp_path / "out"),
             "--engine", "ray"],
            env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        after = _tree(ray_home)
    finally:
        now = _tree(ray_home)
        if before is None and now is not None:
            import shutil

            shutil.rmtree(ray_home)
        elif before is not None and now is not None and "auth_token" in now and "auth_token" not in before:
            (ray_home / "auth_token").unlink()
    assert after == before, f"the run changed {ray_home}: {before} -> {after}"
    assert json.loads((tmp_path / "out" / "card.json").read_text())["accounting"]["kept"] == 40
