"""`kdfair group-fairness`: demographic parity and equalised odds differences per attribute."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.table import Table

from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (AttrPrefix, IdCol, JsonFlag, LabelCol, OutPath, PredCol,
                                           fmt, load, mean_std, reflow, write_records)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import check_writable
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.metrics.group import (GroupFairness, bootstrap, encode_groups, group_fairness,
                                      percentile_ci)

_SUMMARY = ("dpd", "eod", "tpr_diff", "fpr_diff")


def _attributes(files: list[Predictions], wanted: list[str] | None, prefix: str) -> list[str]:
    names = wanted or sorted(files[0].attrs)
    if not names:
        raise KdfairError(f"{files[0].path}: no attribute columns ('{prefix}<name>'); add them or "
                          "use --attr-prefix")
    for p in files:
        for name in names:
            if name not in p.attrs:
                have = ", ".join(sorted(p.attrs)) or "none"
                raise KdfairError(f"{p.path}: unknown attribute '{name}' (no column "
                                  f"'{prefix}{name}'); attributes in the file: {have}")
    return names


def _evaluate(p: Predictions, name: str, positive_class: int, eod_agg: str,
              n_boot: int, seed: int) -> tuple[GroupFairness, dict[str, np.ndarray] | None]:
    try:
        codes, groups = encode_groups(p.attrs[name], p.attribute_values(name))
    except ValueError as exc:
        raise KdfairError(f"{p.path}: attribute '{name}': {exc}") from None
    res = group_fairness(p.label, p.pred, codes, groups, p.num_classes,
                         positive_class=positive_class, eod_agg=eod_agg)
    reps = None
    if n_boot:
        reps = bootstrap(p.label, p.pred, codes, len(groups), p.num_classes, res.classes,
                         n_boot=n_boot, seed=seed, eod_agg=eod_agg)
    return res, reps


def _group_records(res: GroupFairness) -> list[dict]:
    """Per-group breakdown: scalars (positive class) for binary, per-class lists otherwise."""
    binary = res.classes.size == 1
    pick = (lambda a: a[:, res.classes[0]]) if binary else (lambda a: a)  # noqa: E731
    sr, tpr, fpr = pick(res.selection_rate), pick(res.tpr), pick(res.fpr)
    return [{"group": g, "name": res.groups[g], "n": int(res.size[g]),
                     "accuracy": res.accuracy[g], "selection_rate": sr[g], "tpr": tpr[g], "fpr": fpr[g]}
            for g in range(len(res.groups))]


def _long_rows(path: str, attr: str, res: GroupFairness) -> dict[str, np.ndarray]:
    """Rows (file, attribute, group, class) for -o: every one-vs-rest rate that was used."""
    g, c = len(res.groups), res.classes.size
    gi = np.repeat(np.arange(g), c)
    ci = np.tile(res.classes, g)
    return {"file": np.full(g * c, path, dtype=object), "attribute": np.full(g * c, attr, dtype=object),
            "group": gi, "group_name": np.asarray(res.groups, dtype=object)[gi],
            "class": ci, "n": res.size[gi], "selection_rate": res.selection_rate[gi, ci],
            "tpr": res.tpr[gi, ci], "fpr": res.fpr[gi, ci]}


def _show(name: str, results: list[GroupFairness], summary: dict, per_class: bool,
          class_names: list[str]) -> None:
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
        table = Table(title=f"attribute {name}: per class (first file)")
        for col in ("class", "DPD %", "EOD %", "TPR diff %", "FPR diff %"):
            table.add_column(col, justify="right")
        for c in first.classes:
            table.add_row(class_names[c], fmt(first.dpd_per_class[c], pct=True),
                          fmt(first.eod_per_class[c], pct=True),
                          fmt(first.tpr_diff_per_class[c], pct=True),
                          fmt(first.fpr_diff_per_class[c], pct=True))
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
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    per_class: Annotated[bool, typer.Option("--per-class", help="Show the per-class values of a "
                                            "multi-class task.")] = False,
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

    Example:

        kdfair group-fairness preds/ds-T4-s0.parquet preds/ds-T4-s1.parquet --attribute color --bootstrap 1000 --json
    """
    if n_boot < 0:
        raise KdfairError(f"--bootstrap must be >= 0, got {n_boot}")
    if not 0 < confidence < 1:
        raise KdfairError(f"--confidence must be in (0, 1), got {confidence}")
    if out is not None:
        check_writable(out)
    runs = [load(p, label_col=label_col, pred_col=pred_col, id_col=id_col,
                 attr_prefix=attr_prefix) for p in files]
    c = runs[0].num_classes
    for p in runs[1:]:
        if p.num_classes != c:
            raise KdfairError(f"{p.path} has {p.num_classes} classes but {runs[0].path} has {c}")
    if c == 2 and positive_class not in (0, 1):
        raise KdfairError(f"--positive-class must be 0 or 1 for a binary task, got {positive_class}")
    names = _attributes(runs, attribute, attr_prefix)
    output: dict[str, dict] = {}
    long_rows: list[dict[str, np.ndarray]] = []
    for name in names:
        evaluated = [_evaluate(p, name, positive_class, eod_agg, n_boot, seed + i)
                     for i, p in enumerate(runs)]
        results = [r for r, _ in evaluated]
        summary: dict = {}
        for key in _SUMMARY:
            summary[key], summary[key + "_std"] = mean_std([getattr(r, key) for r in results])
        warnings_ = sorted({f"{p.path}: {w}" for p, r in zip(runs, results) for w in r.warnings})
        for w in warnings_:
            console.print(f"[yellow]warning:[/] attribute {name}: {w}")
        first = results[0]
        summary.update({
            "n_files": len(runs), "eod_agg": eod_agg,
            "task": "binary" if first.classes.size == 1 else "multiclass",
            "positive_class": int(first.classes[0]) if first.classes.size == 1 else None,
            "groups": _group_records(first) if len(runs) == 1 else None,
            "per_class": [{"class": int(k), "name": runs[0].class_names[k],
                           "dpd": first.dpd_per_class[k], "eod": first.eod_per_class[k],
                           "tpr_diff": first.tpr_diff_per_class[k],
                           "fpr_diff": first.fpr_diff_per_class[k]} for k in first.classes],
            "files": [{"path": p.path, **{k: getattr(r, k) for k in _SUMMARY},
                       "groups": _group_records(r)} for p, r in zip(runs, results)],
            "warnings": warnings_,
        })
        if n_boot:
            reps = {k: np.mean(np.stack([rep[k] for _, rep in evaluated]), axis=0)
                    for k in _SUMMARY}
            summary["ci"] = {"confidence": confidence, "n_boot": n_boot, "seed": seed,
                             **{k: percentile_ci(reps[k], confidence) for k in _SUMMARY}}
            for f, (_, rep) in zip(summary["files"], evaluated):
                f["ci"] = {k: percentile_ci(rep[k], confidence) for k in _SUMMARY}
        if summary["groups"] is None:
            summary.pop("groups")
        output[name] = summary
        long_rows += [_long_rows(p.path, name, r) for p, r in zip(runs, results)]
        _show(name, results, summary, per_class, runs[0].class_names)
    if out is not None:
        write_records(out, {k: np.concatenate([r[k] for r in long_rows]) for k in long_rows[0]},
                      {"summary": {a: {k: output[a][k] for k in _SUMMARY} for a in output}})
    if json_out:
        print_json(output)


command.__doc__ = reflow(command.__doc__)
