"""The Slurm executor against a real Slurm (the CI's single-node cluster from Debian's slurm-wlm: scripts/services.sh):
a suite as one array with one FINISHED run per cell, --detach and the rerun that submits nothing, a task killed
mid-cell resubmitted into the same run, a short time limit that checkpoints, requeues and resumes the same run,
Ctrl-C cancelling the array; the one-line refusals before anything is submitted; and, without Slurm, the options
(the settings file under the command line), the sbatch parameters (checked by submitit's own executor) and the
shared-filesystem and sqlite refusals as functions.

The cells are tiny (digits, cnn-tiny, PGD-2 on 8 points); a `--plugins-dir` hook holds a cell after its first
epoch (its checkpoint written) for as long as a flag file exists, so the tests kill, signal or interrupt it at a
known point and then let it run on quickly."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from mlflow.tracking import MlflowClient

from rkdbench.app.run import SuiteRequest, run_suite_request
from rkdbench.config import ResourcesConfig, load_suite
from rkdbench.errors import ConfigError, UserError
from rkdbench.run.cells import expand_cells
from rkdbench.run.executor import build_executor, settings_path
from rkdbench.run.options import RunOptions
from rkdbench.run.remote import check_store_for_cluster
from rkdbench_plugins.executors.slurm import (
    RECORD,
    SlurmExecutor,
    SlurmOptions,
    TaskResources,
    sbatch_extra,
    submit_parameters,
    task_resources,
)
from rkdbench_plugins.executors.slurm_cluster import Partition, check_shared, filesystem_of
from support.cli import HANG_GUARD_S, suite_file

pytestmark = pytest.mark.slow

TINY = [
    "--set",
    "train.epochs=2",
    "--set",
    "eval.n_examples=8",
    "--set",
    "train.val_pgd_steps=2",
    "--set",
    'eval.attacks={pgd={attack="pgd",steps=2,step_size=0.25}}',
    "--set",
    'eval.selections=["last"]',
]
HOLD_AFTER_FIRST_EPOCH = """
import os
import time
from pathlib import Path
from rkdbench import hookimpl

FLAG = Path({flag!r})


@hookimpl
def epoch_finished(run, epoch, metrics):
    (FLAG.parent / f"epoch-{{epoch}}-pid-{{os.getpid()}}").touch()  # the test sees the task's progress and pid
    while epoch == 0 and FLAG.exists():  # held after the epoch-0 checkpoint; short sleeps, as between batches
        time.sleep(0.1)
"""


def tiny_suite(tmp_path: Path, seeds: list[int]) -> str:
    return suite_file(tmp_path, ["pgd-at"], seeds=seeds, name="tiny")


def command(tmp_path: Path, seeds: list[int], *extra: str, plugins: Path | None = None) -> list[str]:
    head = [sys.executable, "-m", "rkdbench.cli", *(["--plugins-dir", str(plugins)] if plugins else [])]
    return [*head, "run", tiny_suite(tmp_path, seeds), *TINY, "--results", str(tmp_path / "results"), *extra]


def environment() -> dict[str, str]:
    """One torch thread, a 1-second squeue poll, and no user's Slurm settings file."""
    env = {k: v for k, v in os.environ.items() if k != "RKDBENCH_CONFIG"}
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "RKDBENCH_SLURM_POLL_SECONDS": "1",
        "XDG_CONFIG_HOME": "/nonexistent",
    }


def run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=environment(), timeout=timeout)


def cell_runs(results: Path):
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, filter_string="tags.`rkdbench.kind` = 'cell'")


def records(results: Path) -> list[dict]:
    """The submissions' records, oldest first (by array id: 9 before 10)."""
    found = [json.loads(p.read_text()) for p in (results / "slurm").glob(f"*/{RECORD}")]
    return sorted(found, key=lambda record: int(record["array"]))


def alive(job_ids: list[str]) -> list[str]:
    done = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i %T"], capture_output=True, text=True, timeout=30
    )
    return [line for line in done.stdout.splitlines() if line.split()[-1] not in ("COMPLETED", "CANCELLED", "FAILED")]


def held_cell(tmp_path: Path) -> tuple[Path, Path]:
    """A plugins dir whose hook holds each cell after its first epoch while the returned flag file exists."""
    plugins, flag = tmp_path / "plugins", tmp_path / "hold" / "flag"
    plugins.mkdir()
    flag.parent.mkdir()
    flag.touch()
    (plugins / "hold.py").write_text(HOLD_AFTER_FIRST_EPOCH.format(flag=str(flag)))
    return plugins, flag


def wait_for(what, driver: subprocess.Popen | None = None, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}):\n{driver.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
    return found


def held_pid(flag: Path) -> int:
    names = wait_for(lambda: [p.name for p in flag.parent.glob("epoch-0-pid-*")])
    return int(names[0].rsplit("-", 1)[1])


# ---------------------------------------------------------------- against the real Slurm


def test_one_array_of_four_cells_detached_then_waited_for_then_nothing_to_submit(tmp_path, slurm_cluster):
    results = tmp_path / "results"
    args = command(tmp_path, [0, 1, 2, 3], "--executor", "slurm", "--time-limit", "5", "--array-parallelism", "2")
    detached = run([*args, "--detach", "--json"])
    assert detached.returncode == 0, detached.stderr[-3000:]
    assert {c["status"] for c in json.loads(detached.stdout)["cells"]} == {"submitted"}
    (record,) = records(results)
    assert len(record["cells"]) == 4 and record["job_ids"] == [f"{record['array']}_{i}" for i in range(4)]
    script = (results / "slurm" / record["array"] / f"{record['array']}_submission.sh").read_text()
    for line in ("--array=0-3%2", "--cpus-per-task=1", "--time=5", "--signal=USR2@90", "--hold"):
        assert f"#SBATCH {line}\n" in script

    waited = run(args)  # the same command: it finds the four cells in their array and waits for them
    assert waited.returncode == 0, waited.stderr[-3000:]
    assert len(records(results)) == 1  # nothing submitted twice
    client, runs = cell_runs(results)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    assert len({r.data.tags["rkdbench.cell"] for r in runs}) == 4  # one run per cell
    assert sorted(p.name for p in (results / "slurm" / record["array"]).glob("*_log.out")) == [
        f"{record['array']}_{i}_0_log.out" for i in range(4)
    ]

    again = run([*args, "--json"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert {c["status"] for c in json.loads(again.stdout)["cells"]} == {"skipped"}
    assert len(records(results)) == 1  # a rerun submits nothing


def test_a_task_killed_mid_cell_is_resubmitted_into_the_same_run(tmp_path, slurm_cluster):
    plugins, flag = held_cell(tmp_path)
    results = tmp_path / "results"
    args = command(tmp_path, [0], "--executor", "slurm", "--time-limit", "5", plugins=plugins)
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        os.kill(held_pid(flag), signal.SIGKILL)  # the task's Python, after its epoch-0 checkpoint
        flag.unlink()
        stdout, stderr = driver.communicate(timeout=240)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert "ended without a result" in stdout and "resubmitted" in stdout
    first, second = records(results)
    assert first["cells"] == second["cells"]  # the same cell, in a second submission
    client, runs = cell_runs(results)
    assert [r.info.status for r in runs] == ["FINISHED"]  # resumed into the same run
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "train.loss")) == [0, 1]
    resumed = (results / "slurm" / second["array"] / f"{second['job_ids'][0]}_0_log.out").read_text()
    assert f"resume pgd-at / cnn-tiny / none / seed 0 (run {runs[0].info.run_id})" in resumed


def test_a_short_time_limit_checkpoints_requeues_and_resumes_the_same_run(tmp_path, slurm_cluster):
    plugins, flag = held_cell(tmp_path)
    results = tmp_path / "results"
    args = command(tmp_path, [0], "--executor", "slurm", "--time-limit", "5", plugins=plugins)
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        held_pid(flag)
        (record,) = records(results)
        job = record["job_ids"][0]
        # a 2-minute limit now: Slurm's USR2 (90 s before it) is due at once and comes at its next check (<= 30 s)
        update = subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=2"], capture_output=True, text=True)
        if update.returncode != 0:
            pytest.skip(f"cannot change a job's time limit here (scontrol: {update.stderr.strip()})")
        wait_for(lambda: "Requeued job" in (results / "slurm" / record["array"] / f"{job}_0_log.out").read_text())
        # the requeued task gets a limit it will not reach, and the cell goes on
        subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True, capture_output=True)
        flag.unlink()
        stdout, stderr = driver.communicate(timeout=240)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    assert "requeued pgd-at / cnn-tiny / none / seed 0" in stdout
    assert len(records(results)) == 1  # requeued by Slurm, not resubmitted
    client, runs = cell_runs(results)
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "train.loss")) == [0, 1]
    log = (results / "slurm" / record["array"] / f"{job}_0_log.out").read_text()
    assert "(start 2)" in log and f"resume pgd-at / cnn-tiny / none / seed 0 (run {runs[0].info.run_id})" in log


def test_ctrl_c_cancels_the_array_and_the_runs_stay_resumable(tmp_path, slurm_cluster):
    plugins, flag = held_cell(tmp_path)
    results = tmp_path / "results"
    args = command(tmp_path, [0, 1, 2], "--executor", "slurm", "--time-limit", "5", plugins=plugins)
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        held_pid(flag)  # a cell is held after its first epoch; the others run or wait
        driver.send_signal(signal.SIGINT)
        # the driver leaves once the signalled tasks have ended (they record KILLED first): no clock but the guard
        stdout, stderr = driver.communicate(timeout=HANG_GUARD_S)
    finally:
        driver.kill()
    assert driver.returncode == 130, stderr[-3000:]
    assert "interrupted: cancelling Slurm array" in stdout
    assert "waiting for the signalled Slurm tasks to record KILLED" in stdout
    (record,) = records(results)
    assert wait_for(lambda: not alive(record["job_ids"]) or None, timeout=60)
    client, runs = cell_runs(results)
    assert runs and all(r.info.status in ("KILLED", "FINISHED") for r in runs)  # nothing left RUNNING


def test_an_unknown_partition_is_sbatch_s_one_line_and_submits_nothing(tmp_path, slurm_cluster):
    done = run(command(tmp_path, [0], "--executor", "slurm", "--partition", "no-such-partition"))
    assert done.returncode == 2, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("rkdbench: error:")]
    assert len(error) == 1 and re.search(
        r"sbatch refuses the Slurm settings \(partition=no-such-partition\): .*invalid partition", error[0]
    ), done.stderr
    assert not list((tmp_path / "results").glob(f"slurm/*/{RECORD}"))


@pytest.mark.parametrize(
    "options, sets, message",
    [
        ({"sbatch": ("constraint",)}, {}, r"sbatch refuses the Slurm settings \(constraint=True\): "),
        ({"sbatch": ("output=/tmp/x",)}, {}, r"--sbatch 'output=/tmp/x': rkdbench sets --output itself"),
        ({}, {"resources.gpus_per_cell": 0.5}, r"gpus_per_cell = 0\.5: a Slurm task gets whole GPUs"),
        ({}, {"resources.cpus_per_cell": 64}, r"sbatch refuses the Slurm settings \(defaults\): .*not available"),
    ],
)
def test_bad_slurm_input_is_refused_before_anything(tmp_path, slurm_cluster, options, sets, message):
    cells = expand_cells(load_suite(tiny_suite(tmp_path, [0]), sets))
    executor = SlurmExecutor(**options)
    with pytest.raises(UserError, match=message):
        executor.check(cells, RunOptions(results=tmp_path / "results"))


def test_without_sbatch_on_path_the_extra_and_sbatch_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    cells = expand_cells(load_suite(tiny_suite(tmp_path, [0])))
    with pytest.raises(UserError, match=r"`sbatch` on PATH .*pip install 'rkdbench\[slurm\]'"):
        SlurmExecutor().check(cells, RunOptions(results=tmp_path / "results"))


def test_an_option_of_the_slurm_executor_is_refused_for_another(tmp_path):
    request = SuiteRequest(tiny_suite(tmp_path, [0]), executor_options={"partition": "gpu"})
    with pytest.raises(UserError, match="--partition is an option of --executor slurm"):
        run_suite_request(request)


def test_a_results_folder_the_nodes_do_not_see_is_one_line_from_the_first_task(tmp_path, slurm_cluster):
    """A tmpfs mounted in this command's own mount namespace: the driver sees --results, Slurm's node does not."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to hide a folder from slurmd in a private mount namespace")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    args = command(tmp_path, [0], "--executor", "slurm", "--time-limit", "5")
    args[args.index("--results") + 1] = str(hidden / "results")
    script = f"mount -t tmpfs none {shlex.quote(str(hidden))} && exec {shlex.join(args)}"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("rkdbench: error:")]
    assert len(error) == 1 and re.search(
        rf"--results {hidden}/results is not visible on node \S+ of partition {slurm_cluster} \(task \d+: "
        r"JobLaunchFailure\): put --results on a filesystem every node mounts",
        error[0],
    ), done.stderr


# ---------------------------------------------------------------- without Slurm


def test_options_come_from_the_settings_file_under_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("RKDBENCH_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert settings_path() is None
    settings = tmp_path / "xdg" / "rkdbench" / "config.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text(
        '[executor.slurm]\npartition = "gpu"\ntime_limit = 240\naccount = "lab"\nsbatch = ["constraint=a100"]\n'
    )
    assert settings_path() == settings
    options = build_executor("slurm", {"time_limit": 60, "sbatch": ("exclude=n001",)}).options
    assert (options.partition, options.time_limit, options.account) == ("gpu", 60, "lab")
    assert options.sbatch == ("constraint=a100", "exclude=n001") and options.detach is False
    monkeypatch.setenv("RKDBENCH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"\$RKDBENCH_CONFIG .*missing\.toml: no such file"):
        settings_path()
    monkeypatch.delenv("RKDBENCH_CONFIG")
    settings.write_text("[executor.slurm]\ntime_limt = 10\n")
    with pytest.raises(ConfigError, match=r"config\.toml: \[executor\.slurm\] time_limt: no such option.*time_limit"):
        build_executor("slurm")
    settings.write_text("")
    with pytest.raises(ConfigError, match=r"--time-limit = 0 is not allowed; allowed: an integer >= 1"):
        build_executor("slurm", {"time_limit": 0})


def test_the_last_time_limit_stops_the_cell_as_an_interruption_not_a_failure():
    from submitit.core.utils import UncompletedJobError

    from rkdbench_plugins.executors.slurm_task import OutOfRequeues, _on_last_timeout

    def submitit_handler(signum, frame):
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    with pytest.raises(OutOfRequeues, match="timed-out too many times"):
        _on_last_timeout(submitit_handler)(signal.SIGUSR2, None)
    assert issubclass(OutOfRequeues, SystemExit) and not issubclass(OutOfRequeues, Exception)  # run_cell: KILLED


def test_the_command_line_has_every_slurm_option():
    import click

    from rkdbench.cli.run import run as run_command

    names = {p.name for p in run_command.get_params(click.Context(run_command))}
    assert {f.name for f in dataclasses.fields(SlurmOptions)} <= names


def test_sbatch_parameters_from_options_and_resources_are_submitit_s(tmp_path):
    options = SlurmOptions(
        partition="gpu",
        account="lab",
        qos="high",
        mem_gb=16.0,
        array_parallelism=8,
        sbatch=("constraint=a100", "exclusive"),
        setup=("module load cuda",),
    )
    need = task_resources(ResourcesConfig(gpus_per_cell=None, cpus_per_cell=4), partition_gpus=True)
    assert need == TaskResources(gpus=1, cpus=4)
    assert task_resources(ResourcesConfig(), partition_gpus=False) == TaskResources(gpus=0, cpus=1)
    parameters = submit_parameters(options, need, 240, "rkdbench-x", ["test -e marker"])
    assert parameters == {
        "name": "rkdbench-x",
        "timeout_min": 240,
        "cpus_per_task": 4,
        "gpus_per_node": 1,
        "mem_gb": 16.0,
        "slurm_partition": "gpu",
        "slurm_account": "lab",
        "slurm_qos": "high",
        "slurm_array_parallelism": 8,
        "slurm_signal_delay_s": 90,
        "slurm_setup": ["module load cuda", "test -e marker"],
        "slurm_additional_parameters": {"constraint": "a100", "exclusive": True, "hold": True},
    }
    # submitit's own parameter check (its local executor validates every slurm_ name against its Slurm executor)
    submitit.AutoExecutor(folder=tmp_path, cluster="local").update_parameters(**parameters)
    with pytest.raises(UserError, match=r"--sbatch 'a b': expected KEY=VALUE"):
        sbatch_extra(("a b",))


def test_a_results_folder_on_a_local_disk_is_refused_for_other_nodes(tmp_path):
    mount, fstype = filesystem_of(tmp_path)
    assert mount and fstype
    alone = Partition("ci", ("thishost",), gpus=False, time_limit_min=60)
    check_shared(tmp_path, alone, this_host="thishost")  # only this machine: any filesystem
    others = Partition("gpu", ("n001", "n002"), gpus=True, time_limit_min=60)
    if fstype in ("ext4", "xfs", "btrfs", "tmpfs", "overlay"):
        with pytest.raises(UserError, match=rf"--results {tmp_path} is on this machine's own {fstype} filesystem"):
            check_shared(tmp_path, others, this_host="thishost")


def test_a_sqlite_store_is_refused_for_a_partition_of_several_nodes():
    with pytest.raises(UserError, match=r"2 nodes of Slurm partition gpu; .*rkdbench server"):
        check_store_for_cluster("sqlite:////r/mlflow.db", 2, "Slurm partition gpu")
    check_store_for_cluster("sqlite:////r/mlflow.db", 1, "Slurm partition ci")
