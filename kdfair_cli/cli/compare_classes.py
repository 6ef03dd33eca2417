"""`kdfair compare-classes`: which classes differ significantly between two models."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich import box
from rich.table import Table

from kdfair_cli import api
from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (IdCol, JsonFlag, LabelCol, OutPath, PredCol, fmt, reflow,
                                           write_records)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import check_writable

#: Above this many classes the terminal table lists only significant or flagged classes.
_SHOW_ALL_UP_TO = 50


def _expand(paths: list[Path]) -> list[Path]:
    """Expand quoted glob patterns (-a 'preds/teacher-s*.parquet'), sorted; plain paths as is."""
    out: list[Path] = []
    for path in paths:
        text = str(path)
        if not path.exists() and any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise KdfairError(f"{text}: no file matches this pattern")
            out += [Path(m) for m in matches]
        else:
            out.append(path)
    return out


def _show(result: api.ClassComparisonResult, show_all: bool) -> None:
    rec, res = result.records(), result.comparison
    c = res.n.size
    rows = np.arange(c)
    if not show_all and c > _SHOW_ALL_UP_TO:
        rows = np.flatnonzero(res.significant | (np.asarray(rec["note"]) != ""))
    title = (f"compare-classes: {res.test} test, normalize={res.normalize}, alpha={res.alpha}, "
             f"correction={res.correction}")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["class", "n", "acc A %", "acc B %", "stat", "p", "p adj", "sig", "dis %", "note"]
    if res.correction == "none":
        cols.remove("p adj")
    for col in cols:
        table.add_column(col, justify="left" if col in ("class", "note") else "right")
    pm = lambda m, s: f"{100 * m:.1f}" + ("" if np.isnan(s) else f"±{100 * s:.1f}")  # noqa: E731
    for i in rows:
        cells = [f"{i} {rec['class_name'][i]}" if rec["class_name"][i] != str(i) else str(i),
                 str(rec["n"][i]), pm(rec["acc_a_mean"][i], rec["acc_a_std"][i]),
                 pm(rec["acc_b_mean"][i], rec["acc_b_std"][i]),
                 fmt(rec["statistic"][i], digits=3), fmt(rec["p_value"][i], digits=2),
                 fmt(rec["p_adjusted"][i], digits=2),
                 "[bold red]yes[/]" if rec["significant"][i] else "no",
                 fmt(rec["disagreement"][i], pct=True), rec["note"][i]]
        if res.correction == "none":
            del cells[6]
        table.add_row(*cells)
    console.print(table)
    if len(rows) < c:
        console.print(f"({c - len(rows)} classes neither significant nor flagged not shown; "
                      "--show-all lists every class)")


def command(
    a: Annotated[list[Path], typer.Option("-a", "--a", help="Predictions of model A; repeat "
                                          "once per seed.")],
    b: Annotated[list[Path], typer.Option("-b", "--b", help="Predictions of model B; repeat "
                                          "once per seed.")],
    normalize: Annotated[
        Literal["ratio", "difference", "none"],
        typer.Option(help="Class accuracy relative to the run's overall accuracy: acc_c/acc, "
                     "acc_c-acc, or raw.")] = "ratio",
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    correction: Annotated[
        Literal["none", "holm", "bh"],
        typer.Option(help="Multiple-comparison correction over classes (default none, as in the "
                     "paper).")] = "none",
    out: OutPath = None,
    disagreement_out: Annotated[Path | None, typer.Option(
        "--disagreement", help="Write the off-diagonal (pred A, pred B) count matrix as "
        "Parquet (long format: pred_a, pred_b, count).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Heat map PNG of the disagreement "
                                              "matrix.")] = None,
    show_all: Annotated[bool, typer.Option("--show-all", help="List every class in the "
                                           "terminal table.")] = False,
    json_out: JsonFlag = False,
    label_col: LabelCol = "label",
    pred_col: PredCol = "pred",
    id_col: IdCol = "sample_id",
) -> None:
    """Test which classes' accuracy differs between model A and model B.

    With >= 2 files a side (seeds) each class's normalised accuracy is compared with Welch's
    t-test over seeds (the paper's method); with one file a side, an exact McNemar test per
    class paired on sample_id. Also reports the per-class disagreement rate (pairing seed i of
    A with seed i of B) and the count of significant classes, printed last. A quoted glob
    pattern (-a 'preds/teacher-s*.parquet') expands to its files, sorted.

    Example:

        kdfair compare-classes -a preds/teacher-s0.parquet -a preds/teacher-s1.parquet -b preds/ds-T4-s0.parquet -b preds/ds-T4-s1.parquet --correction holm -o classes.csv
    """
    a, b = _expand(a), _expand(b)
    for path in (out, disagreement_out, plot):
        if path is not None:
            check_writable(path)
    res = api.compare_classes([str(p) for p in a], [str(p) for p in b], normalize=normalize,
                              alpha=alpha, correction=correction, label_col=label_col,
                              pred_col=pred_col, id_col=id_col)
    for path in (out, disagreement_out, plot):  # the inputs are known now: refuse before any table
        if path is not None:
            check_writable(path)
    notes = np.asarray(res.comparison.note, dtype=str)
    for note in sorted(set(notes) - {""}):
        console.print(f"[yellow]warning:[/] {int((notes == note).sum())} class(es) flagged "
                      f"'{note}' (see the note column and docs/metrics.md)")
    if out is not None:
        write_records(out, res.records(), res.meta())
    if disagreement_out is not None:
        write_records(disagreement_out, res.disagreement_records(), res.disagreement_meta())
    if plot is not None:
        res.plot_disagreement(plot, (a[0].name, b[0].name))
        console.print(f"wrote {plot}")
    _show(res, show_all)
    if json_out:
        print_json(res.to_dict())
    console.print(f"[bold]{res.n_significant}[/] of {res.num_classes} classes significantly "
                  f"different ({res.comparison.test}, alpha={alpha}, correction={correction}; "
                  f"{res.comparison.n_tested} tested)", soft_wrap=True)


command.__doc__ = reflow(command.__doc__)
