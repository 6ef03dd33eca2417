"""`kdfair group-fairness`: demographic parity and equalised odds differences per attribute."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.table import Table

from kdfair_cli import api
from kdfair_cli.api.group import TESTED, UNCONDITIONAL_EOD_NOTE, AttributeFairness
from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (AttrPrefix, IdCol, JsonFlag, LabelCol, OutPath, PredCol,
                                           fmt, reflow, write_records)
from kdfair_cli.io.atomic import check_writable


def _show(attr: AttributeFairness, per_class: bool) -> None:
    name, results, class_names = attr.name, attr.results, attr.class_names
    summary = {**attr.summary, **({"ci": attr.ci()} if attr.boot is not None else {})}
    first = results[0]
    binary = first.classes.size == 1
    task = (f"binary, positive class {class_names[first.classes[0]]}" if binary
            else f"{first.classes.size} classes, one-vs-rest average")
    same_groups = all(r.groups == first.groups for r in results)
    if same_groups:
        table = Table(title=f"attribute {name} ({task}){'' if len(results) == 1 else ', mean over files'}")
        for col in ("group", "n", "accuracy %", "selection %" if binary else "mean TPR %",
                    "TPR %" if binary else "mean FPR %", "FPR %" if binary else ""):
            if col:
                table.add_column(col, justify="left" if col == "group" else "right")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups stay NaN
            stack = lambda f: np.nanmean(np.stack([f(r) for r in results]), axis=0)  # noqa: E731
            acc = stack(lambda r: r.accuracy)
            size = np.mean([r.size for r in results], axis=0)
            k = first.classes[0]
            cols = ([stack(lambda r: r.selection_rate[:, k]), stack(lambda r: r.tpr[:, k]),
                     stack(lambda r: r.fpr[:, k])] if binary else
                    [stack(lambda r: np.nanmean(r.tpr, axis=1)),
                     stack(lambda r: np.nanmean(r.fpr, axis=1))])
        for g, gname in enumerate(first.groups):
            table.add_row(gname, f"{size[g]:.0f}", fmt(acc[g], pct=True),
                          *(fmt(col[g], pct=True) for col in cols))
        console.print(table)
    if per_class and not binary:
        floors = {key: attr.class_floor(key) for key in TESTED}
        table = Table(title=f"attribute {name}: per class (first file)")
        cols = ["class", "DPD %", "EOD %", "TPR diff %", "FPR diff %"]
        if attr.null is not None:
            cols += ["DPD floor %", "DPD p", "EOD floor %", "EOD p"]
        for col in cols:
            table.add_column(col, justify="right")
        for j, c in enumerate(first.classes):
            extra = [] if attr.null is None else [
                v for key in TESTED for v in (fmt(floors[key].null_mean[j], pct=True),
                                              f"{floors[key].p[j]:.3f}" if attr.p_valid(key) else "n/a")]
            table.add_row(class_names[c], fmt(first.dpd_per_class[c], pct=True),
                          fmt(first.eod_per_class[c], pct=True),
                          fmt(first.tpr_diff_per_class[c], pct=True),
                          fmt(first.fpr_diff_per_class[c], pct=True), *extra)
        console.print(table)
    line = []
    for key, label in (("dpd", "DPD"), ("eod", "EOD")):
        text = f"{label} {fmt(summary[key], pct=True)}%"
        if len(results) > 1:
            text += f" ± {fmt(summary[key + '_std'], pct=True)}"
        if "ci" in summary:
            lo, hi = summary["ci"][key]
            text += f" [{fmt(lo, pct=True)}, {fmt(hi, pct=True)}]"
        line.append(text)
    console.print(f"[bold]{name}[/]: " + ", ".join(line)
                  + (f" (CI {summary['ci']['confidence']:.0%} bootstrap)" if "ci" in summary else ""))
    if attr.floors:
        console.print("  excess over the floor (value minus a group-blind model's expected value): "
                      + ", ".join(f"{key.upper()} {fmt(summary[key + '_excess'], pct=True)} pp (floor "
                                  f"{fmt(summary[key + '_floor'], pct=True)}%)" for key in TESTED),
                      highlight=False)
    if attr.null is not None:
        parts = []
        for key in TESTED:
            t = attr.floor(key)
            p = f"p = {t.p:.3f}" if attr.p_valid(key) else "p n/a, see below"
            parts.append(f"{key.upper()} {fmt(t.null_mean, pct=True)}% (q95 {fmt(t.null_q95, pct=True)}%, {p})")
        console.print(f"  noise floor ({attr.null[0].dpd.size} {attr.null_permutation} permutations): "
                      + ", ".join(parts), highlight=False)
        if not attr.p_valid("eod"):
            console.print(f"  note: {UNCONDITIONAL_EOD_NOTE}", highlight=False)
    if attr.versus is not None:
        _show_versus(attr)


def _deltas(attr: AttributeFairness, keys: tuple[str, ...]) -> str:
    parts = []
    for key in keys:
        c = attr.versus[key]
        ci = "" if c.ci is None else f" [{fmt(c.ci[0], pct=True)}, {fmt(c.ci[1], pct=True)}]"
        parts.append(f"Δ{key.removeprefix('excess_').upper()} {fmt(c.delta, pct=True)}{ci} pp, p = {c.p:.3f}")
    return ", ".join(parts)


def _show_versus(attr: AttributeFairness) -> None:
    """The excess comparison as the headline; the raw one after it, with what it mixes in."""
    c = attr.versus["excess_dpd"]
    paired = c.test == "paired"
    how = (f"paired bootstrap recomputing both floors, {c.n_a} matched seed(s)" if paired
           else f"Welch's t-test over {c.n_a} vs {c.n_b} files")
    console.print(f"  A - B (B = {', '.join(attr.versus_paths)}), excess over each model's floor: "
                  + _deltas(attr, ("excess_dpd", "excess_eod")) + f" ({how})", highlight=False)
    how = (f"paired permutation test, {c.n_a} matched seed(s)" if paired
           else f"Welch's t-test over {c.n_a} vs {c.n_b} files")
    console.print("    raw: " + _deltas(attr, TESTED) + f" ({how}; includes the difference of the two "
                  "floors, i.e. of accuracy, not only of fairness)", highlight=False)


def command(
    files: Annotated[list[Path], typer.Argument(help="Predictions files (several = seeds).")],
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", help="Protected attribute (column attr_<name>); repeat for several. "
        "Default: every attr_* column.")] = None,
    positive_class: Annotated[int, typer.Option(help="Positive class of a binary task.")] = 1,
    eod_agg: Annotated[
        Literal["worst", "mean"],
        typer.Option(help="EOD from the TPR and FPR differences: worst = max (paper, fairlearn), "
                     "mean = their mean.")] = "worst",
    n_boot: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates for "
                                        "percentile confidence intervals (0 = none).")] = 0,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, the null draws and the "
                                      "paired test (file i uses seed + i).")] = 0,
    null: Annotated[int, typer.Option("--null", help="Null draws for each value's noise floor "
                                      "and p-value (0 = off).")] = 1000,
    null_permutation: Annotated[
        Literal["within-label", "unconditional"],
        typer.Option(help="within-label: the design's base rates per group are not disparity "
                     "(EOD; DPD on a fixed test split). unconditional: any difference in "
                     "selection rates counts, base rates included (DPD in its own sense).")
    ] = "within-label",
    versus: Annotated[list[Path] | None, typer.Option(
        "--versus", help="Model B's predictions of the same samples: adds the difference of the "
        "excess DPD and EOD (A minus B) and of the raw values, with paired tests. Repeat for "
        "several seeds.")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Show the per-class values of a "
                                            "multi-class task, with their noise floors.")] = False,
    out: OutPath = None,
    json_out: JsonFlag = False,
    label_col: LabelCol = "label",
    pred_col: PredCol = "pred",
    id_col: IdCol = "sample_id",
    attr_prefix: AttrPrefix = "attr_",
) -> None:
    """Demographic parity difference (DPD) and equalised odds difference (EOD) per attribute.

    DPD = max - min over groups of P(pred = 1 | group); EOD = max(TPR difference, FPR
    difference). Binary tasks use --positive-class; multi-class tasks average the one-vs-rest
    values over classes (the paper's Algorithm 1). Tables show percent; --json gives fractions.
    Undefined rates (group without samples, positives or negatives) are NaN, left out of the
    max/min, and warned about.

    Every DPD and EOD gets a noise floor: its mean and 95th percentile over --null draws of a
    model whose outputs ignore the group (the attribute permuted within each true label), and
    the one-sided p-value; a value within its floor is warned about. Each also gets its excess:
    the value minus the expected value of a model with the same per-label confusion that ignores
    the group. --versus compares model A (the files) with model B on the same samples: the
    headline is the difference of the two excesses (paired bootstrap, valid when the models
    differ in accuracy), then the raw ΔDPD and ΔEOD (paired permutation test), which also
    reflect the accuracy gap (see docs/metrics.md).

    Example:

        kdfair group-fairness preds/ds-T4-s0.parquet preds/ds-T4-s1.parquet --attribute color --bootstrap 1000 --json
        kdfair group-fairness preds/ds-T4-s0.parquet --versus preds/nds-s0.parquet --attribute color
    """
    if out is not None:
        check_writable(out)
    res = api.group_fairness([str(f) for f in files], attribute, positive_class=positive_class,
                             eod_agg=eod_agg, n_boot=n_boot, confidence=confidence, seed=seed,
                             null=null, null_permutation=null_permutation,
                             versus=[str(v) for v in versus] if versus else None, label_col=label_col, pred_col=pred_col, id_col=id_col,
                             attr_prefix=attr_prefix)
    if out is not None:  # the inputs are known now: refuse before any table is printed
        check_writable(out)
    for attr in res.attributes.values():
        for w in attr.warnings:
            console.print(f"[yellow]warning:[/] attribute {attr.name}: {w}")
        _show(attr, per_class)
        for line in attr.within_floor():
            console.print(f"[yellow]warning:[/] attribute {attr.name}: {line}", highlight=False)
    if out is not None:
        write_records(out, res.rows(), {"summary": res.summary()})
    if json_out:
        print_json(res.to_dict())


command.__doc__ = reflow(command.__doc__)
