"""`kdfair report`: paper-style tables and plots from a sweep folder."""

from __future__ import annotations

from pathlib import Path

import typer

from kdfair_cli import api
from kdfair_cli.cli.common import console, print_json


def command(
    sweep_dir: Path = typer.Argument(..., help="Sweep folder written by `kdfair sweep run`."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder (default: SWEEP_DIR/report)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary table as JSON on stdout "
                                  "instead of Markdown."),
) -> None:
    """Write results.parquet (one row per model and seed), table.md and table.csv (mean ± std over
    seeds, like the paper's tables) and PNG plots (temperature vs EOD/DPD, #SC/#TC with accuracy,
    individual fairness). table.md tests DS - NDS per temperature on the excess EOD/DPD (each
    model's value minus its own noise-floor mean) and IF with Welch's t-test over seeds
    (deltas.csv), the raw EOD/DPD in a second table. An LLM sweep's report has BBQ accuracy and bias scores with intervals,
    DS - NDS paired tests per temperature (deltas.csv) and llm-bias.png. Prints the Markdown table
    on stdout and the file paths on stderr.

    Examples:

        kdfair report sweeps/trifeature

        kdfair report sweeps/llm-bbq
    """
    rep = api.report(sweep_dir, out)
    if json_out:
        print_json(rep.to_dict())
    else:
        typer.echo(rep.markdown, nl=False)
    if rep.missing:
        console.print(f"[yellow]{len(rep.missing)} cells not done yet[/] (left out): "
                      f"{', '.join(rep.missing[:8])}{' ...' if len(rep.missing) > 8 else ''}")
    for name, path in rep.paths.items():
        console.print(f"{name}: {path}", highlight=False)
