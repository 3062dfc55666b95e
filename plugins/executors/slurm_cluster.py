"""What the Slurm executor asks Slurm, through its own commands: a partition's nodes, GPUs and time limit
(`sinfo`), whether sbatch accepts a batch script (`sbatch --test-only`), the states of array tasks (`squeue`:
ended tasks stay listed for the cluster's MinJobAge, 300 s by default, so no accounting database is needed), a
task's exit code (`scontrol show job`), releasing and cancelling arrays (`scontrol release`, `scancel`); and
whether a results folder on this machine's own disk can be seen by a partition's other nodes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rkdbench import UserError

__all__ = [
    "Partition",
    "TaskRow",
    "ALIVE",
    "LOCAL_FILESYSTEMS",
    "partition",
    "hostnames",
    "one_line",
    "test_submission",
    "task_rows",
    "exit_code",
    "release",
    "cancel",
    "filesystem_of",
    "check_shared",
]

COMMAND_TIMEOUT_S = 60
# task states that may still run the cell (a requeued task is PENDING again; held tasks may be released)
ALIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
# filesystems that live on one machine: a results folder there is invisible to every other node
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs", "ramfs", "overlay", "vfat"})
DEFAULT_TIME_LIMIT_MIN = 1440  # when the partition has none


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    gpus: bool  # its nodes have `gpu` generic resources
    time_limit_min: int  # its limit, or DEFAULT_TIME_LIMIT_MIN when it has none


@dataclass(frozen=True)
class TaskRow:
    """One array task as squeue lists it."""

    array: str
    index: int
    state: str
    reason: str
    node: str
    name: str


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(command)}` did not answer in {COMMAND_TIMEOUT_S}s: is slurmctld up?") from None


def one_line(text: str) -> str:
    """Slurm's error lines, without their `sbatch: error:` prefixes, on one line."""
    lines = [re.sub(r"^\w+: (error: )?", "", line).strip() for line in text.splitlines()]
    return "; ".join(dict.fromkeys(line for line in lines if line))


def _minutes(limit: str) -> int:
    """sinfo's time limit ([days-]hours:minutes:seconds, minutes:seconds, infinite) in whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", limit.strip())
    if not match:
        return DEFAULT_TIME_LIMIT_MIN
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return max(1, days * 1440 + hours * 60 + minutes + (seconds > 0))


def hostnames(nodelist: str) -> tuple[str, ...]:
    """Slurm's compressed node list (`n[001-004],gpu7`) as names, by `scontrol show hostnames`."""
    if not nodelist:
        return ()
    done = _run(["scontrol", "show", "hostnames", nodelist])
    return tuple(done.stdout.split()) if done.returncode == 0 else (nodelist,)


def partition(name: str | None) -> Partition:
    """The partition `name` (None: the cluster's default one), as sinfo describes it."""
    done = _run(["sinfo", "-h", "-o", "%P|%N|%G|%l"])
    if done.returncode != 0:
        raise UserError(f"sinfo failed: {one_line(done.stderr) or done.returncode}")
    rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 3]
    wanted = [r for r in rows if (r[0].rstrip("*") == name if name else r[0].endswith("*"))]
    if not wanted:
        known = ", ".join(sorted({r[0].rstrip("*") for r in rows}))
        raise UserError(
            f"--partition {name}: no such Slurm partition; partitions: {known}"
            if name
            else f"this Slurm cluster has no default partition: give --partition (one of {known})"
        )
    nodes = tuple(dict.fromkeys(n for r in wanted for n in hostnames(r[1])))
    return Partition(
        name=wanted[0][0].rstrip("*"),
        nodes=nodes,
        gpus=any("gpu" in r[2] for r in wanted),
        time_limit_min=_minutes(wanted[0][3]),
    )


def test_submission(script: str, what: str) -> None:
    """`sbatch --test-only` of a batch script: sbatch's refusal (an unknown partition, account or QOS, resources
    no node has) as one line naming `what` was asked; nothing is submitted."""
    done = _run(["sbatch", "--test-only"], stdin=script)
    if done.returncode != 0:
        raise UserError(f"sbatch refuses {what}: {one_line(done.stderr + done.stdout)}")


def task_rows(arrays: list[str]) -> list[TaskRow] | None:
    """Every task of these arrays that squeue still lists (any state); None when squeue does not answer."""
    if not arrays:
        return []
    command = ["squeue", "-h", "-r", "--states=all", "-j", ",".join(arrays), "-o", "%F|%K|%T|%r|%N|%j"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return [] if "Invalid job id" in done.stderr else None  # every array is gone (older than MinJobAge)
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split("|", 5)
        if len(parts) == 6 and (parts[1].isdigit() or parts[1] == "N/A"):  # N/A: a single job (one cell), task 0
            index = int(parts[1]) if parts[1].isdigit() else 0
            rows.append(TaskRow(parts[0], index, parts[2], parts[3], parts[4], parts[5]))
    return rows


def exit_code(job_id: str) -> int | None:
    """The exit code of an ended task (`scontrol show job`), None when Slurm no longer knows it."""
    done = _run(["scontrol", "show", "job", job_id])
    match = re.search(r"\bExitCode=(\d+):\d+", done.stdout)
    return int(match[1]) if done.returncode == 0 and match else None


def release(array: str) -> None:
    done = _run(["scontrol", "release", array])
    if done.returncode != 0:
        raise UserError(f"scontrol release {array} failed: {one_line(done.stderr)}")


def cancel(targets: list[str], signal: str | None = None, pending_only: bool = False) -> None:
    """scancel the arrays or tasks `targets` (or send them `signal`; or only their pending tasks); best effort."""
    if not targets:
        return
    command = ["scancel", *(["--signal", signal] if signal else []), *(["--state=PENDING"] if pending_only else [])]
    _run([*command, *targets])


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount that holds `path`, from /proc/self/mountinfo."""
    target, best = str(path.resolve()), ("/", "")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount = fields[4].replace("\\040", " ")
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype)
    return best


def check_shared(results: Path, part: Partition, this_host: str | None = None) -> None:
    """Refuse a results folder on this machine's own disk when the partition has other nodes (they would not
    see it); a shared filesystem (NFS, Lustre, GPFS, ...) or a partition of this machine alone passes."""
    host = (this_host or socket.gethostname()).split(".")[0]
    others = [n for n in part.nodes if n.split(".")[0] != host]
    if not others:
        return
    mount, fstype = filesystem_of(results)
    if fstype in LOCAL_FILESYSTEMS:
        raise UserError(
            f"--results {os.fspath(results)} is on this machine's own {fstype} filesystem (mounted at {mount}), "
            f"which node {others[0]} of partition {part.name} cannot see: put --results (and --model-dir, "
            f"--data-dir) on a filesystem every node mounts at the same path (NFS, Lustre, ...)"
        )
