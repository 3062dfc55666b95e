"""Scale-out with real components: the Ray executor on a Ray head with 2 logical GPUs (cells overlap; a worker
that dies mid-cell is retried into the same run from its checkpoint; a plugin's exception fails the cell once),
`rkdbench server` on a real PostgreSQL (run, leaderboard, compare, evaluate, ui, checkpoints through the
server), the protocol's `[resources]` outside every hash, and the one-line errors for bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rkdbench.config import ResourcesConfig, load_protocol, load_suite
from rkdbench.errors import ConfigError, UserError
from rkdbench.run.cells import expand_cells
from rkdbench.run.remote import check_store_for_cluster
from support.cli import HANG_GUARD_S, TINY, cli, cli_subprocess, runs_of, suite_file
from support.processes import free_port, stop_group
from support.services import start_ray_node

pytestmark = pytest.mark.slow

PGD_ONLY = ["--set", 'eval.attacks={pgd={attack="pgd",steps=2,step_size=0.25}}', "--set", 'eval.selections=["last"]']


def ray_run(
    tmp_path: Path, results: Path, address: str, *extra: str, name: str = "one", seeds: tuple[int, ...] = (0,)
) -> list[str]:
    """`run` of a tiny PGD-only suite of `pgd-at` x `seeds` into `results` on the Ray cluster at `address`, with
    `extra` options (`--set ...`, `--json`)."""
    suite = suite_file(tmp_path, name=name, seeds=seeds)
    return [
        "run",
        suite,
        *TINY,
        *PGD_ONLY,
        *extra,
        "--results",
        str(results),
        "--executor",
        "ray",
        "--address",
        address,
    ]


def json_summary(stdout: str) -> dict:
    return json.loads(stdout)  # nothing but the summary on stdout (MLflow's run URLs are suppressed)


# ---------------------------------------------------------------- [resources]: scheduling only, never hashed


def test_resources_change_neither_protocol_hash_nor_cell_key(tmp_path):
    source = Path(load_protocol("digits-linf").source).read_text()
    with_resources = tmp_path / "digits-gpu.toml"
    with_resources.write_text(source + "\n[resources]\ngpus_per_cell = 0.25\ncpus_per_cell = 3\n")
    plain, scheduled = load_protocol("digits-linf"), load_protocol(str(with_resources))
    assert scheduled.resources == ResourcesConfig(gpus_per_cell=0.25, cpus_per_cell=3)
    assert plain.resources == ResourcesConfig()  # absent: one GPU when the cluster has one, one CPU
    assert scheduled.hash == plain.hash == "2146ed1f1d9c19f7"  # pinned for every shipped protocol in test_compile.py
    assert "resources" not in scheduled.data
    overridden = load_suite(suite_file(tmp_path, name="s", seeds=[0]), {"resources.gpus_per_cell": 0.5})
    assert overridden.protocol.resources == ResourcesConfig(gpus_per_cell=0.5)
    assert overridden.protocol.experiment_name == "digits-linf"  # not an overridden protocol
    keys = [c.key for c in expand_cells(load_suite(suite_file(tmp_path, name="t", seeds=[0])))]
    assert [c.key for c in expand_cells(overridden)] == keys


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[resources]\ngpus_per_cell = -1\n", "resources.gpus_per_cell = -1 is not allowed; allowed: a number >= 0"),
        ("[resources]\ncpus_per_cell = 0.5\n", "resources.cpus_per_cell = 0.5 is not allowed"),
        ("[resources]\ngpu_per_cell = 1\n", "unknown field resources.gpu_per_cell (did you mean: gpus_per_cell"),
    ],
)
def test_bad_resources_are_one_line(tmp_path, toml, message):
    path = tmp_path / "p.toml"
    path.write_text(Path(load_protocol("digits-linf").source).read_text() + "\n" + toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_protocol(str(path))


def test_cell_resources_default_to_one_gpu_when_the_cluster_has_gpus():
    from rkdbench.run.remote import CellResources

    assert CellResources.of(ResourcesConfig(), cluster_gpus=8) == CellResources(gpus=1.0, cpus=1)
    assert CellResources.of(ResourcesConfig(), cluster_gpus=0) == CellResources(gpus=0.0, cpus=1)
    assert CellResources.of(ResourcesConfig(gpus_per_cell=0.25, cpus_per_cell=4), 8) == CellResources(gpus=0.25, cpus=4)


def test_a_worker_that_cannot_see_the_results_folder_fails_its_cell_naming_the_path(tmp_path):
    from rkdbench.run.options import RunOptions
    from rkdbench.run.remote import RemoteSetup, run_remote_cell

    cell = expand_cells(load_suite(suite_file(tmp_path, name="s", seeds=[0])))[0]
    results = tmp_path / "results-on-the-driver-only"
    setup = RemoteSetup({}, [], ".rkdbench-driver-0123")
    outcome = run_remote_cell(cell, RunOptions(results=results), "[1/1]", setup, 1)
    assert outcome.status == "failed" and outcome.run_id == ""
    assert f"results folder {results} is not visible on worker node" in outcome.error
    assert "shared by every node" in outcome.error and "\n" not in outcome.error


# ---------------------------------------------------------------- bad input, before anything is created


def test_executor_ray_without_ray_names_the_extra(tmp_path):
    stub = tmp_path / "stub" / "ray"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named ray (test stub)')\n")
    results = tmp_path / "results"
    done = cli_subprocess(
        "run",
        suite_file(tmp_path, name="s", seeds=[0]),
        *TINY,
        "--results",
        str(results),
        "--executor",
        "ray",
        env={"PYTHONPATH": str(stub.parent)},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'rkdbench[ray]'" in done.stderr
    assert not (results / "mlflow.db").exists()


def test_unreachable_address_is_one_line_before_any_run(tmp_path):
    pytest.importorskip("ray")
    port, results = free_port(), tmp_path / "results"
    done = cli_subprocess(
        "run",
        suite_file(tmp_path, name="s", seeds=[0]),
        *TINY,
        "--results",
        str(results),
        "--executor",
        "ray",
        "--address",
        f"127.0.0.1:{port}",
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in done.stderr
    assert not (results / "mlflow.db").exists()


def test_server_beyond_loopback_warns_that_nothing_authenticates(tmp_path):
    pytest.importorskip("psycopg2")
    done = cli_subprocess(
        "server",
        "--host",
        "0.0.0.0",
        "--backend-store-uri",
        f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/rkdbench",
        timeout=120,
    )
    assert done.returncode == 2  # the unreachable store: nothing was started
    assert "listens on 0.0.0.0" in done.stderr and "unless MLflow's basic-auth app is enabled" in done.stderr
    quiet = cli_subprocess(
        "server",
        "--host",
        "0.0.0.0",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/rkdbench",
        timeout=120,
    )
    assert quiet.returncode == 2 and "warning" not in quiet.stderr


def test_server_with_unreachable_postgres_names_host_and_port(tmp_path):
    pytest.importorskip("psycopg2")
    port = free_port()
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    done = cli_subprocess(
        "server",
        "--backend-store-uri",
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/rkdbench",
        "--artifacts-destination",
        str(artifacts),
        "--results",
        str(results),
        "--port",
        str(free_port()),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"PostgreSQL at 127.0.0.1:{port}" in done.stderr
    assert not artifacts.exists() and not results.exists()


# ---------------------------------------------------------------- Ray: overlap, retry into the same run, FAILED


OBSERVER = '''
"""Test observer: records each attempt; the first two cells to start wait for each other (they must overlap);
the seed-0 cell's worker dies after its first epoch on the first attempt only."""
import json, os, time
from pathlib import Path
from rkdbench import hookimpl

LOG = Path({log!r})


def _record(kind, run, **extra):
    with (LOG / "events.jsonl").open("a") as out:
        out.write(json.dumps({{"kind": kind, "seed": run.cell.seed, "run_id": run.run_id, "pid": os.getpid(),
                              "t": time.time(), **extra}}) + "\\n")


@hookimpl
def run_started(run):
    _record("start", run)
    (LOG / f"started-{{run.cell.seed}}").touch()
    if not (LOG / "barrier-done").exists():
        deadline = time.time() + 120
        while len(list(LOG.glob("started-*"))) < 2 and time.time() < deadline:
            time.sleep(0.2)
        _record("barrier", run, passed=len(list(LOG.glob("started-*"))) >= 2)
        (LOG / "barrier-done").touch()


@hookimpl
def epoch_finished(run, epoch, metrics):
    if run.cell.seed == 0 and epoch == 0 and not (LOG / "died").exists():
        (LOG / "died").write_text(run.run_id)
        _record("die", run)
        os._exit(1)


@hookimpl
def run_finished(run, result):
    _record("finish", run)
'''

BROKEN = """
import os
from pathlib import Path
from rkdbench import hookimpl


@hookimpl
def run_started(run):
    with (Path({log!r}) / "attempts").open("a") as out:
        out.write(f"{{os.getpid()}}\\n")
    raise RuntimeError("observer bug (test)")
"""


def _plugins_dir(tmp_path: Path, name: str, source: str) -> tuple[Path, Path]:
    folder, log = tmp_path / f"plugins-{name}", tmp_path / f"log-{name}"
    folder.mkdir()
    log.mkdir()
    (folder / f"{name}.py").write_text(source.format(log=str(log)))
    return folder, log


def test_ray_cells_overlap_and_a_dead_worker_resumes_in_the_same_run(tmp_path, ray_address):
    plugins, log = _plugins_dir(tmp_path, "observer", OBSERVER)
    results = tmp_path / "results"
    args = ray_run(
        tmp_path, results, ray_address, "--set", "resources.gpus_per_cell=1", "--json", name="pair", seeds=(0, 1)
    )
    done = cli_subprocess("--plugins-dir", str(plugins), *args)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json_summary(done.stdout)
    assert [c["status"] for c in summary["cells"]] == ["finished", "finished"]
    events = [json.loads(line) for line in (log / "events.jsonl").read_text().splitlines()]
    barriers = [e for e in events if e["kind"] == "barrier"]
    assert barriers and all(e["passed"] for e in barriers), events  # both cells were training at the same time
    died = [e for e in events if e["kind"] == "die"]
    assert len(died) == 1 and died[0]["seed"] == 0
    starts = [e for e in events if e["kind"] == "start" and e["seed"] == 0]
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]  # retried in a new worker process...
    assert {e["run_id"] for e in starts} == {(log / "died").read_text()}  # ...into the same MLflow run
    client, runs = runs_of(f"sqlite:///{results / 'mlflow.db'}")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    retried = next(r for r in runs if r.data.tags["rkdbench.seed"] == "0")
    assert retried.info.run_id == died[0]["run_id"]
    # resumed from the epoch-0 checkpoint, not retrained: each epoch's metrics were logged exactly once
    assert sorted(m.step for m in client.get_metric_history(retried.info.run_id, "train.loss")) == [0, 1]


def test_ray_plugin_exception_fails_the_cell_once(tmp_path, ray_address):
    plugins, log = _plugins_dir(tmp_path, "broken", BROKEN)
    results = tmp_path / "results"
    done = cli_subprocess("--plugins-dir", str(plugins), *ray_run(tmp_path, results, ray_address, "--json"))
    assert done.returncode == 1, done.stderr[-4000:]
    cell = json_summary(done.stdout)["cells"][0]
    assert cell["status"] == "failed" and "RuntimeError: observer bug (test)" in cell["error"]
    assert len((log / "attempts").read_text().splitlines()) == 1  # not retried
    _, runs = runs_of(f"sqlite:///{results / 'mlflow.db'}")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_ray_driver_prints_each_cell_start_and_end(tmp_path, ray_address):
    results = tmp_path / "results"
    done = cli_subprocess(*ray_run(tmp_path, results, ray_address))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "[1/1] start pgd-at / cnn-tiny / none / seed 0" in done.stdout
    assert "[1/1] finished pgd-at / cnn-tiny / none / seed 0" in done.stdout
    assert "suite: 1/1 cells (1 finished, 0 skipped, 0 failed)" in done.stdout
    again = cli_subprocess(*ray_run(tmp_path, results, ray_address))
    assert again.returncode == 0 and "[1/1] skipped" in again.stdout


def test_tune_runs_its_trials_and_the_selected_cells_as_ray_tasks(tmp_path, ray_address):
    import optuna
    from optuna.trial import TrialState

    results = tmp_path / "results"
    _, *rest = ray_run(tmp_path, results, ray_address)
    done = cli_subprocess("tune", *rest, "--budget", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "cells submitted to a cluster of" in done.stdout  # the Ray driver ran them
    storage = f"sqlite:///{results / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # exactly the budget, nothing retried
    _, cells = runs_of(results)
    assert [r.info.status for r in cells] == ["FINISHED"]  # the selected configuration, seed 0
    _, trial_runs = runs_of(results, "trial")
    assert len(trial_runs) == 2 and all(r.info.status == "FINISHED" for r in trial_runs)
    assert not [k for r in trial_runs for k in r.data.metrics if k.startswith("test.")]  # the test split sealed
    again = cli_subprocess("tune", *rest, "--budget", "2", "--json")
    assert again.returncode == 0 and [c["status"] for c in json.loads(again.stdout)["cells"]] == ["skipped"]


SLOW_AFTER_FIRST_EPOCH = """
import time
from pathlib import Path
from rkdbench import hookimpl

LOG = Path({log!r})


@hookimpl
def epoch_finished(run, epoch, metrics):
    if epoch == 0 and not (LOG / "slept").exists():
        (LOG / "slept").touch()
        for _ in range(3000):  # Ctrl-C arrives here, after the epoch-0 checkpoint; short sleeps, as a training
            time.sleep(0.1)    # loop between batches: Ray's cancel interrupts Python code, not one long sleep
"""


def test_ray_ctrl_c_cancels_the_tasks_and_the_cell_resumes(tmp_path, ray_address):
    plugins, log = _plugins_dir(tmp_path, "slow", SLOW_AFTER_FIRST_EPOCH)
    results = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "rkdbench.cli",
        "--plugins-dir",
        str(plugins),
        *ray_run(tmp_path, results, ray_address),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while not (log / "slept").exists():  # the task is in its cell, after the epoch-0 checkpoint
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    # the driver leaves once the cancelled task has recorded KILLED (it holds the cell's lease until then),
    # however long a loaded machine takes: no clock but the hang guard
    out, stderr = driver.communicate(timeout=HANG_GUARD_S)
    assert driver.returncode == 130, stderr[-3000:]
    assert "waiting for 1 cancelled cell(s) to record KILLED" in out
    client, runs = runs_of(f"sqlite:///{results / 'mlflow.db'}")
    assert [r.info.status for r in runs] == ["KILLED"]  # the task was cancelled inside run_cell
    again = cli_subprocess(*command[3:], "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    cell = json_summary(again.stdout)["cells"][0]
    assert cell["status"] == "finished" and cell["run_id"] == runs[0].info.run_id
    assert sorted(m.step for m in client.get_metric_history(cell["run_id"], "train.loss")) == [0, 1]


def test_a_sqlite_store_is_refused_for_several_nodes_only():
    with pytest.raises(UserError, match=r"sqlite store .* 2 nodes of Ray cluster 10\.0\.0\.1:6379; .*rkdbench server"):
        check_store_for_cluster("sqlite:////r/mlflow.db", 2, "Ray cluster 10.0.0.1:6379")
    check_store_for_cluster("sqlite:////r/mlflow.db", 1, "auto")  # a local cluster: one node
    check_store_for_cluster("http://127.0.0.1:5000", 3, "10.0.0.1:6379")  # a tracking server serves every node


@pytest.mark.skipif(
    os.environ.get("RKDBENCH_TEST_RAY_MULTINODE") != "1",
    reason="a second Ray node on this machine needs Ray's cluster mode, which binds the machine's "
    "network address; the CI keeps Ray on loopback (RKDBENCH_TEST_RAY_MULTINODE=1 runs it)",
)
def test_ray_sqlite_store_on_a_multi_node_cluster_is_refused(tmp_path, ray_address):
    """A second node (no CPUs, so it takes no task) joins the head: a sqlite store cannot serve both."""
    node = start_ray_node(["--address", ray_address, "--num-cpus", "0", "--disable-usage-stats"], tmp_path / "node.log")
    try:
        results = tmp_path / "results"
        done = cli_subprocess(*ray_run(tmp_path, results, ray_address))
    finally:
        stop_group(node, 60)
    assert done.returncode == 2, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("rkdbench: error:")]
    assert len(error) == 1 and "sqlite store" in error[0] and "rkdbench server" in error[0]
    assert not list(results.glob("**/mlflow.db"))  # refused before the store was created


# ---------------------------------------------------------------- the team server on PostgreSQL


def test_every_command_against_the_tracking_server(tmp_path, tracking_server, monkeypatch, capsys):
    env = {"MLFLOW_TRACKING_URI": tracking_server.url}
    results = tmp_path / "results"
    done = cli_subprocess(
        "run", suite_file(tmp_path, name="team", seeds=[0, 1]), *TINY, "--results", str(results), "--json", env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    cells = json_summary(done.stdout)["cells"]
    assert [c["status"] for c in cells] == ["finished", "finished"]
    assert not (results / "mlflow.db").exists() and not (results / "artifacts").exists()
    client, runs = runs_of(tracking_server.url)
    assert sorted(r.info.run_id for r in runs) == sorted(c["run_id"] for c in cells)

    # checkpoints went through the server's artifact proxy into its destination, and come back intact
    run_id, key = cells[0]["run_id"], cells[0]["key"]
    assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(tracking_server.artifacts.rglob("last.pt"))
    downloaded = Path(client.download_artifacts(run_id, "checkpoints/last.pt", str(tmp_path / "dl")))
    local = results / "cells" / key / "last.pt"
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == hashlib.sha256(local.read_bytes()).hexdigest()

    # the reading commands in this process (the run above is the one that needs a process of its own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.url)
    capsys.readouterr()
    assert cli("leaderboard", "--results", str(results), "--format", "csv", "--no-log-to-mlflow") == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["n"]) == [2]
    assert table["aa_mean"].iloc[0] == pytest.approx(
        100 * sum(r.data.metrics["test.aa_acc"] for r in runs) / 2, abs=1e-3
    )

    assert cli("compare", cells[0]["run_id"], cells[1]["run_id"], "--results", str(results), "--json") == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8

    evaluate = ["evaluate", str(downloaded), "--architecture", "cnn-tiny", "--protocol", "digits-linf"]
    assert cli(*evaluate, "--n-examples", "8", "--results", str(results)) == 0
    evaluations = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`rkdbench.kind` = 'evaluation'"
    )
    assert (
        len(evaluations) == 1
        and evaluations[0].data.metrics["test.clean_acc"]
        == runs[0 if runs[0].info.run_id == run_id else 1].data.metrics["test.clean_acc"]
    )

    capsys.readouterr()
    assert cli("ui", "--results", str(results)) == 0
    assert f"{tracking_server.url}/#/experiments/" in capsys.readouterr().out


def test_server_upgrades_the_schema_once(postgres_uri):
    from sqlalchemy import create_engine, inspect

    from rkdbench.app.server import upgrade_schema

    upgrade_schema(postgres_uri)
    engine = create_engine(postgres_uri)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
    upgrade_schema(postgres_uri)  # an up-to-date store: a no-op, not an error
