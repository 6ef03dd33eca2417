"""`kdfair sweep`: init a spec, run its cells (all, or one by --index), show status, write sbatch scripts."""

from __future__ import annotations

from pathlib import Path

import typer

from kdfair_cli.cli.common import console, guarded, print_json

app = typer.Typer(help="Temperature x seed grids of teacher, NDS and distilled students, locally or as "
                  "SLURM array jobs. See docs/sweep.md.", no_args_is_help=True)

SpecArg = typer.Argument(..., help="Sweep spec (TOML); `kdfair sweep init` writes an example.")


@app.command("init")
@guarded
def init(
    out: str = typer.Option("sweep.toml", "--out", "-o", help="Spec file to write; '-' for stdout."),
    kind: str = typer.Option("classifier", "--kind", help="classifier (Trifeature: ResNet-20 teacher, LeNet-5 "
                             "students) or llm (causal LMs on the LLM toy, audited on BBQ)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented example spec.

    Examples:

        kdfair sweep init -o sweep.toml

        kdfair sweep init --kind llm -o llm.toml
    """
    from kdfair_cli.errors import require
    from kdfair_cli.io.atomic import write_text_atomic
    from kdfair_cli.sweep.kinds import KINDS, sweep_kind

    require(kind in KINDS, f"--kind '{kind}': expected {'|'.join(KINDS)}")
    text = sweep_kind(kind).example
    if out == "-":
        typer.echo(text, nl=False)
        return
    require(force or not Path(out).exists(), f"{out} exists; use --force to overwrite it")
    write_text_atomic(out, text)
    console.print(f"wrote {out}; edit it, then: kdfair sweep run {out} -o sweeps/NAME")


@app.command("run")
@guarded
def run(
    spec: Path = SpecArg,
    out: Path = typer.Option(..., "--out", "-o", help="Sweep folder (cells/, sweep.json)."),
    index: int = typer.Option(None, "--index", help="Run only cell N (see `sweep status`); defaults to "
                              "$SLURM_ARRAY_TASK_ID when that is set."),
    stage: str = typer.Option(None, "--stage", help="Run only the cells of one stage: train, cache, distill, "
                              "audit (LLM sweeps), analyses."),
    device: str = typer.Option(None, "--device", help="Override the spec's device (auto, cpu, cuda[:N], mps)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show training progress."),
) -> None:
    """Run every cell of the sweep that is not done yet (or only cell --index N).

    A cell whose configuration hash matches and whose outputs are complete is skipped; an
    interrupted cell resumes. Exit 0 when every cell asked for is done, 1 otherwise, 143 when
    interrupted by SIGTERM (state saved).

    Examples:

        kdfair sweep run sweep.toml -o sweeps/trifeature

        kdfair sweep run sweep.toml -o sweeps/trifeature --index 3
    """
    import time

    from kdfair_cli.errors import require
    from kdfair_cli.sweep.cell import STAGES
    from kdfair_cli.sweep.runner import CellInterrupted, index_from_env, run_sweep
    from kdfair_cli.sweep.spec import load_spec

    parsed = load_spec(spec)
    require(stage is None or stage in STAGES, f"--stage '{stage}': expected {'|'.join(STAGES)}")
    idx = index_from_env(index) if stage is None else index
    t0 = time.time()
    try:
        summary = run_sweep(parsed, out, index=idx, stage=stage, device=device, verbose=verbose,
                            log=lambda m: console.print(m, highlight=False))
    except CellInterrupted as exc:
        console.print(f"kdfair: {exc}; state saved; rerun the same command to resume")
        raise typer.Exit(143) from None
    console.print(f"sweep {out}: {len(summary.ran)} ran, {len(summary.skipped)} already done, "
                  f"{len(summary.busy)} running elsewhere, {len(summary.blocked)} waiting, "
                  f"{len(summary.failed)} failed ({time.time() - t0:.0f}s)", highlight=False)
    if summary.failed:
        console.print(f"failed: {', '.join(summary.failed)} (see cells/<id>/cell.json)")
    if not summary.ok:
        raise typer.Exit(1)


@app.command("status")
@guarded
def status(
    sweep_dir: Path = typer.Argument(..., help="Sweep folder written by `sweep run`."),
    spec: Path = typer.Option(None, "--spec", help="Check against this spec instead of the one last run "
                              "(shows what a changed spec would rerun)."),
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON on stdout."),
) -> None:
    """Show every cell: index, id, stage and done / running / missing / failed.

    Example:

        kdfair sweep status sweeps/trifeature
    """
    from rich.table import Table

    from kdfair_cli.sweep.runner import sweep_status
    from kdfair_cli.sweep.spec import load_spec

    rows = sweep_status(sweep_dir, load_spec(spec) if spec else None)
    if json_out:
        print_json(rows)
        return
    colors = {"done": "green", "running": "cyan", "missing": "yellow", "failed": "red"}
    table = Table("#", "cell", "stage", "status", "note")
    for r in rows:
        table.add_row(str(r["index"]), r["id"], r["stage"], f"[{colors[r['status']]}]{r['status']}[/]", r["note"])
    console.print(table)
    counts = {s: sum(r["status"] == s for r in rows) for s in colors}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


@app.command("slurm")
@guarded
def slurm(
    spec: Path = SpecArg,
    out: Path = typer.Option(..., "--out", "-o", help="Sweep folder the jobs will fill."),
    scripts: Path = typer.Option(None, "--scripts", help="Where to write the scripts (default: SWEEP_DIR/slurm)."),
    partition: str = typer.Option(None, "--partition", help="SLURM partition."),
    account: str = typer.Option(None, "--account", help="SLURM account."),
    time_limit: str = typer.Option("04:00:00", "--time", help="Time limit of a training task."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs per training task (0 for CPU)."),
    cpus: int = typer.Option(8, "--cpus", help="CPUs per task."),
    mem: str = typer.Option("32G", "--mem", help="Memory per task."),
    max_parallel: int = typer.Option(None, "--max-parallel", help="At most N tasks of an array at once."),
    signal_minutes: int = typer.Option(5, "--signal-minutes", help="Save and requeue this many minutes "
                                       "before the time limit."),
    kdfair_cmd: str = typer.Option("kdfair", "--kdfair", help="Command that runs kdfair on the nodes."),
    setup: str = typer.Option("", "--setup", help="Shell lines run first (e.g. 'source venv/bin/activate')."),
) -> None:
    """Write sbatch scripts: train array, teacher-cache array, distill array, (LLM sweeps) audit
    array, analyses job, submit.sh.

    Each array task runs one cell (array index = cell index); each stage waits (afterok) for the
    one before. kdfair itself schedules nothing.

    Example:

        kdfair sweep slurm sweep.toml -o /scratch/sweeps/trifeature --partition gpu && \\
            bash /scratch/sweeps/trifeature/slurm/submit.sh
    """
    from kdfair_cli.errors import require
    from kdfair_cli.sweep.slurm import SlurmOptions, write_slurm
    from kdfair_cli.sweep.spec import load_spec

    require(gpus >= 0 and cpus > 0, "--gpus must be >= 0 and --cpus positive")
    require(signal_minutes > 0, f"--signal-minutes must be positive, got {signal_minutes}")
    parsed = load_spec(spec)
    opts = SlurmOptions(partition=partition, account=account, time=time_limit, gpus=gpus, cpus=cpus, mem=mem,
                        max_parallel=max_parallel, signal_minutes=signal_minutes, kdfair=kdfair_cmd, setup=setup)
    paths = write_slurm(parsed, out, scripts or Path(out) / "slurm", opts)
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"submit with: bash {paths[-1]}")
