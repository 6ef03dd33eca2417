"""`kdfair sweep slurm` on a real SLURM cluster (a single node started by .ci/slurm-up).

1. A tiny Trifeature sweep goes through `sweep slurm` + submit.sh: four jobs chained with
   afterok; every cell ends done and the report is written.
2. The requeue path on a longer training cell: `scancel --signal=USR1 --batch` on the running
   task (what SLURM sends near the time limit) makes the script stop kdfair (state saved) and
   requeue the task; the requeued attempt resumes the cell to the same weights, byte for byte,
   as an uninterrupted run of the same cell; the log (append mode) keeps both attempts.

Skipped, with the reason, where no cluster answers; with KDFAIR_REQUIRE_SLURM=1 (CI) a missing
cluster is a failure. The jobs run this interpreter with this checkout first on PYTHONPATH, one
thread each, so the reference run computes the same floating-point sums.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("KDFAIR_REQUIRE_SLURM") == "1"
TOOLS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
cli = CliRunner()

SPEC = """
[sweep]
seeds = [0]
temperatures = {temps}
device = "cpu"
[data]
dataset = "trifeature"
path = "data"
[data.generate]
image_size = 16
train_per_combination = 2
val_per_combination = 1
test_per_combination = 1
[train]
epochs = {epochs}
batch_size = 128
lr = 0.05
[teacher]
arch = "lenet5"
[nds]
arch = "lenet5"
[analyses]
group_attributes = ["color"]
pairs = "none"
compare_classes = false
"""


def _no_cluster() -> str | None:
    """Why no SLURM cluster is usable here, or None."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if res.returncode != 0:
        return f"sinfo failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}"
    if not any(s.strip().startswith(("idle", "mix", "alloc")) for s in res.stdout.splitlines()):
        return f"no node is up (sinfo: {res.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    reason = _no_cluster()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"KDFAIR_REQUIRE_SLURM=1 but no SLURM cluster: {reason} (start one with .ci/slurm-up)")
    pytest.skip(f"no SLURM cluster: {reason} (start one with .ci/slurm-up)")


def _job_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write_scripts(spec: Path, sweep: Path) -> None:
    setup = f"export PYTHONPATH={shlex.quote(str(ROOT))} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"
    res = cli.invoke(app, ["sweep", "slurm", str(spec), "-o", str(sweep), "--gpus", "0", "--cpus", "1",
                           "--mem", "1500M", "--time", "00:15:00", "--kdfair", f"{shlex.quote(sys.executable)} -m kdfair_cli",
                           "--setup", setup])
    assert res.exit_code == 0, res.output


def _job_state(job: str) -> str:
    res = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30)
    states = re.findall(r"JobState=(\w+)", res.stdout)
    return ",".join(sorted(set(states))) if states else "GONE"


def _wait_gone(jobs: list[str], timeout: float) -> None:
    """Until no job of `jobs` is pending or running; fails (cancelling them) after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        res = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(jobs)], capture_output=True,
                             text=True, timeout=30)
        if res.returncode == 0 and not res.stdout.strip():
            return
        time.sleep(2)
    subprocess.run(["scancel", *jobs], timeout=30)
    pytest.fail(f"SLURM jobs {jobs} still queued or running after {timeout:.0f} s")


def _logs(sweep: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted((sweep / "logs").glob("*.out")))


@pytest.mark.slow
def test_sweep_runs_to_the_report_on_slurm(cluster, tmp_path) -> None:
    spec = tmp_path / "sweep.toml"
    spec.write_text(SPEC.format(temps="[1, 4]", epochs=1))
    sweep = tmp_path / "sw"
    _write_scripts(spec, sweep)
    res = subprocess.run(["bash", str(sweep / "slurm" / "submit.sh")], capture_output=True, text=True,
                         env=_job_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    jobs = dict(re.findall(r"^(\w+): job (\d+)$", res.stdout, flags=re.M))
    assert list(jobs) == ["train", "cache", "distill", "analyses"], res.stdout
    _wait_gone(list(jobs.values()), timeout=360)
    for stage, job in jobs.items():
        assert _job_state(job) in ("COMPLETED", "GONE"), f"{stage} job {job}: {_job_state(job)}\n{_logs(sweep)}"
    status = cli.invoke(app, ["sweep", "status", str(sweep), "--json"])
    rows = json.loads(status.stdout)
    assert rows and all(r["status"] == "done" for r in rows), f"{rows}\n{_logs(sweep)}"
    assert {r["id"] for r in rows} >= {"teacher-s0", "nds-s0", "cache-teacher-s0", "ds-T1-s0", "ds-T4-s0"}
    results = pd.read_parquet(sweep / "report" / "results.parquet")
    assert sorted(zip(results["model"], results["temperature"].fillna(0))) == [
        ("ds", 1.0), ("ds", 4.0), ("nds", 0.0), ("teacher", 0.0)]
    assert (sweep / "report" / "table.md").is_file()


@pytest.mark.slow
def test_usr1_saves_requeues_and_resumes_to_the_same_weights(cluster, tmp_path) -> None:
    from kdfair_cli.sweep.cells import build_cells
    from kdfair_cli.sweep.spec import load_spec

    spec = tmp_path / "sweep.toml"
    spec.write_text(SPEC.format(temps="[1]", epochs=25))
    index = next(c.index for c in build_cells(load_spec(spec)) if c.id == "teacher-s0")
    sweep = tmp_path / "sw"
    _write_scripts(spec, sweep)
    (sweep / "logs").mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["sbatch", "--parsable", f"--array={index}", str(sweep / "slurm" / "01-train.sbatch")],
                         capture_output=True, text=True, env=_job_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().split(";")[0]
    task = f"{job}_{index}"
    model = sweep / "cells" / "teacher-s0" / "model"

    deadline = time.time() + 180
    while not (model / "train_state.pt").exists():  # epoch 1 is done
        assert time.time() < deadline, f"no training state after 180 s\n{_logs(sweep)}"
        assert not (model / "model.json").exists(), "the cell finished before it could be signalled"
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", task], check=True, timeout=30)

    # The uninterrupted reference: the same cell, run here, one thread, in another sweep folder.
    reference = subprocess.Popen([sys.executable, "-m", "kdfair_cli", "sweep", "run", str(spec), "-o",
                                  str(tmp_path / "ref"), "--index", str(index)], env=_job_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    deadline = time.time() + 120
    while "PENDING" not in _job_state(task):  # requeued, waiting to start again
        state = _job_state(task)
        assert time.time() < deadline and state != "COMPLETED", f"task {task} not requeued: {state}\n{_logs(sweep)}"
        time.sleep(0.5)
    assert (model / "train_state.pt").exists() and not (model / "model.json").exists()

    _wait_gone([job], timeout=240)
    assert _job_state(task) in ("COMPLETED", "GONE"), _logs(sweep)
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()
    log = _logs(sweep)
    assert "saving state and requeueing" in log and "attempt 1 of job" in log and "attempt 2 of job" in log, log
    cell = json.loads((sweep / "cells" / "teacher-s0" / "cell.json").read_text())
    assert cell["status"] == "done" and not (model / "train_state.pt").exists()
    assert pd.read_parquet(model / "history.parquet")["epoch"].tolist() == list(range(25))
    ref_model = tmp_path / "ref" / "cells" / "teacher-s0" / "model"
    assert (model / "model.safetensors").read_bytes() == (ref_model / "model.safetensors").read_bytes()
