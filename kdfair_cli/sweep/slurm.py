"""sbatch scripts for a sweep: one array job per stage, chained with afterok dependencies.

kdfair schedules nothing itself: every array task runs `kdfair sweep run SPEC -o DIR`, which
reads SLURM_ARRAY_TASK_ID and runs that one cell (global cell index = array index). Each
training job asks for --requeue and a signal some minutes before its time limit; the script
forwards it as SIGTERM to kdfair, which saves the training state, and then requeues the task,
which resumes the cell. A preempted task (SIGTERM from SLURM) saves and is requeued alike.
Logs are opened in append mode, so a requeued task's log keeps every attempt.
Tested on a real single-node cluster (.ci/slurm-up, tests/test_slurm_integration.py).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdfair_cli.io.atomic import write_text_atomic
from kdfair_cli.sweep.cell import STAGES
from kdfair_cli.sweep.cells import build_cells, stage_ranges
from kdfair_cli.sweep.kinds import kind_of

#: The stages run as arrays (one task per cell), numbered by their place in STAGES; the analyses
#: (CPU, one job) come last, numbered after the last array: 04-analyses for classifiers,
#: 05-analyses for LLM sweeps, which have the audit array as 04.
ARRAY_STAGES = STAGES[:-1]


@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time: str = "04:00:00"
    analyses_time: str = "01:00:00"
    gpus: int = 1
    cpus: int = 8
    mem: str = "32G"
    max_parallel: int | None = None  # %N array throttle
    signal_minutes: int = 5
    kdfair: str = "kdfair"  # the command that runs kdfair on the nodes
    setup: str = ""  # lines run before kdfair (module load, venv activate)


def _header(name: str, opts: SlurmOptions, log_dir: Path, *, array: str | None, gpus: int, time: str) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
    if array is not None:
        throttle = f"%{opts.max_parallel}" if opts.max_parallel else ""
        lines.append(f"#SBATCH --array={array}{throttle}")
        lines.append(f"#SBATCH --output={log_dir}/%x-%A_%a.out")
    else:
        lines.append(f"#SBATCH --output={log_dir}/%x-%j.out")
    lines.append("#SBATCH --open-mode=append")  # a requeued attempt adds to its log, never truncates it
    lines += [f"#SBATCH --time={time}", f"#SBATCH --cpus-per-task={opts.cpus}", f"#SBATCH --mem={opts.mem}"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    lines += ["#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{opts.signal_minutes * 60}", "", "set -uo pipefail"]
    if opts.setup:
        lines += [opts.setup.rstrip()]
    return "\n".join(lines) + "\n"


_RUN = """
SPEC={spec}
SWEEP_DIR={sweep_dir}

# Near the time limit SLURM sends USR1 to this script: forward SIGTERM to kdfair (it saves the
# training state of the cell), wait for it, then requeue this task; the requeued task resumes.
echo "kdfair: attempt $(( ${{SLURM_RESTART_COUNT:-0}} + 1 )) of job ${{SLURM_JOB_ID:-none}} on $(hostname), $(date -Is)"

requeue() {{
    echo "kdfair: time limit near; saving state and requeueing"
    kill -TERM "$child" 2>/dev/null
    wait "$child"
    scontrol requeue "${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}${{SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}}"
    exit 0
}}
trap requeue USR1

{command} &
child=$!
wait "$child"
status=$?
# 143: SIGTERM (preemption) during training; the state is saved and the requeued task resumes.
exit "$status"
"""


def write_slurm(spec: Any, sweep_dir: str | Path, out_dir: str | Path, opts: SlurmOptions) -> list[Path]:
    """Write one sbatch script per stage and submit.sh; returns the paths written."""
    sweep_dir = Path(sweep_dir).resolve()
    out_dir = Path(out_dir)
    log_dir = sweep_dir / "logs"
    cells = build_cells(spec)
    ranges = stage_ranges(cells)
    q = shlex.quote
    kd = opts.kdfair
    written: list[Path] = []
    jobs: list[tuple[str, Path]] = []
    last = 0
    for num, stage in enumerate(ARRAY_STAGES, start=1):
        if stage not in ranges:
            continue
        last = num
        lo, hi = ranges[stage]
        # The array index is the global cell index: `sweep run` reads SLURM_ARRAY_TASK_ID.
        command = f'{kd} sweep run "$SPEC" -o "$SWEEP_DIR" --index "$SLURM_ARRAY_TASK_ID"'
        text = _header(f"kdfair-{stage}", opts, log_dir, array=f"{lo}-{hi}", gpus=opts.gpus, time=opts.time)
        text += f"# Stage {num} ({stage}): cells {lo}..{hi} of `kdfair sweep status {sweep_dir}`.\n"
        text += _RUN.format(spec=q(str(spec.source)), sweep_dir=q(str(sweep_dir)), command=command)
        path = out_dir / f"{num:02d}-{stage}.sbatch"
        write_text_atomic(path, text)
        written.append(path)
        jobs.append((stage, path))
    # Analyses (cheap, CPU): every remaining cell in one job, then the report.
    command = f'{kd} sweep run "$SPEC" -o "$SWEEP_DIR" --stage analyses && {kd} report "$SWEEP_DIR"'
    text = _header("kdfair-analyses", opts, log_dir, array=None, gpus=0, time=opts.analyses_time)
    what = kind_of(spec).analyses
    text += f"# Stage {last + 1} (analyses): {what}, report.\n"
    text += "unset SLURM_ARRAY_TASK_ID\n"
    text += _RUN.format(spec=q(str(spec.source)), sweep_dir=q(str(sweep_dir)), command=command)
    path = out_dir / f"{last + 1:02d}-analyses.sbatch"
    write_text_atomic(path, text)
    written.append(path)
    jobs.append(("analyses", path))

    submit = ["#!/bin/bash", "# Submit the sweep's jobs, each stage afterok the one before.", "set -euo pipefail",
              f"mkdir -p {q(str(log_dir))}", 'here="$(cd "$(dirname "$0")" && pwd)"', "prev=''"]
    for stage, p in jobs:
        var = f"job_{stage}"
        submit.append(f'{var}=$(sbatch --parsable ${{prev:+--dependency=afterok:$prev}} "$here/{p.name}")')
        submit.append(f'{var}="${{{var}%%;*}}"')
        submit.append(f'echo "{stage}: job ${var}"')
        submit.append(f'prev="${var}"')
    path = out_dir / "submit.sh"
    write_text_atomic(path, "\n".join(submit) + "\n")
    path.chmod(0o755)
    written.append(path)
    return written
