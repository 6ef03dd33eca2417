"""Aggregate a sweep folder into results.parquet, a paper-style table (Markdown, CSV) and plots.

Everything is computed from the per-cell outputs (cells/<id>/metrics.json), so the report can be
rebuilt at any time, also while cells still run (missing cells are left out and counted).
Metrics in percent: accuracy, EOD, DPD; individual fairness as the raw score (lower is fairer).
Each EOD and DPD comes with its noise floor (null mean, null 95th percentile, p) and its excess
(the value minus the floor mean of a group-blind model with the same confusion, metrics.excess)
per model and seed. Per temperature, DS minus NDS is tested across seeds (Welch's t-test) on
the excess EOD and DPD and on IF, Holm-adjusted over those tests: the headline, since the raw
EOD/DPD also differ when only the accuracy does. The raw differences follow in their own table.
A sweep whose fair- cells predate the excess shows none: `kdfair sweep run SPEC -o DIR` redoes
exactly those cells (their hash covers the statistics' settings). See docs/sweep.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdfair_cli.io.atomic import write_text_atomic
from kdfair_cli.metrics.multiple_testing import adjust_pvalues
from kdfair_cli.metrics.paired import welch_seeds
from kdfair_cli.sweep.report_frame import (
    ALPHA, LABELS, Report, delta_cell, in_model_order, missing_cells, open_report, save_figure, write_frames,
)
from kdfair_cli.sweep.runner import cells_from_json, read_sweep_json

#: Suffixes of the columns that qualify a metric (its floor, p, interval) rather than being one.
TEST_SUFFIXES = ("_null_mean", "_null_q95", "_p", "_ci_low", "_ci_high")
FLOOR_MARK = "°"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """results: one row per finished model (role, temperature, seed) with every metric."""
    sweep_dir = Path(sweep_dir)
    doc = read_sweep_json(sweep_dir)
    cells = cells_from_json(doc)
    cells_dir = sweep_dir / "cells"
    missing = missing_cells(cells, sweep_dir)
    classes = {}
    for c in cells:
        if c.kind == "classes" and c.id not in missing:
            m = _load(cells_dir / c.id / "metrics.json")
            if m:
                classes[float(m["temperature"])] = m
    rows = []
    for c in cells:
        if c.kind != "train" or c.id in missing:
            continue
        m = _load(cells_dir / c.id / "metrics.json") or {}
        role = c.config["role"]
        t = c.config.get("temperature")
        row: dict[str, Any] = {"model": role, "cell": c.id, "arch": m.get("arch"),
                               "temperature": float(t) if t is not None else math.nan,
                               "seed": int(c.config["seed"]), "accuracy": 100.0 * m.get("accuracy", math.nan),
                               "val_accuracy": 100.0 * m.get("val_acc", math.nan)}
        fair_id = f"fair-{c.id}"
        fair = _load(cells_dir / fair_id / "metrics.json") if fair_id not in missing else None
        for attr in doc.get("group_attributes", []):
            g = (fair or {}).get("group", {}).get(attr, {})
            row[f"eod_{attr}"] = 100.0 * g["eod"] if "eod" in g else math.nan
            row[f"dpd_{attr}"] = 100.0 * g["dpd"] if "dpd" in g else math.nan
            for kind in ("eod", "dpd"):
                v = g.get(f"{kind}_excess")
                row[f"{kind}_{attr}_excess"] = 100.0 * v if v is not None else math.nan
                for key in ("null_mean", "null_q95"):
                    v = g.get(f"{kind}_{key}")
                    row[f"{kind}_{attr}_{key}"] = 100.0 * v if v is not None else math.nan
                v = g.get(f"{kind}_p")
                row[f"{kind}_{attr}_p"] = float(v) if v is not None else math.nan
        if doc.get("pairs", "none") != "none":
            ind = (fair or {}).get("individual", {})
            row["individual_fairness"] = float(ind.get("score", math.nan))
            ci = ind.get("ci") or (math.nan, math.nan)
            row["individual_fairness_ci_low"], row["individual_fairness_ci_high"] = map(float, ci)
        if role == "ds" and t is not None and float(t) in classes:
            k = classes[float(t)]
            row.update({"n_tc": k["n_tc"], "n_sc": k["n_sc"], "n_classes": k["n_classes"]})
        rows.append(row)
    return in_model_order(pd.DataFrame(rows), ("temperature", "seed")), missing, doc


def metric_columns(results: pd.DataFrame) -> list[str]:
    skip = {"model", "cell", "arch", "temperature", "seed"}
    return [c for c in results.columns if c not in skip]


def is_test_column(column: str) -> bool:
    """A floor, p-value or interval bound of a metric (not shown as a table column)."""
    return column.endswith(TEST_SUFFIXES)


def within_floor(row: pd.Series, metric: str) -> bool:
    """The seed-mean value is not above the seed-mean 95th percentile of its null."""
    q95 = row.get(f"{metric}_null_q95_mean", math.nan)
    return not pd.isna(q95) and not pd.isna(row[f"{metric}_mean"]) and row[f"{metric}_mean"] <= q95


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """mean and std over seeds per (model, temperature): columns <metric>_mean, <metric>_std."""
    if results.empty:
        return pd.DataFrame()
    metrics = metric_columns(results)
    key = results["temperature"].fillna(-1.0)
    grouped = results.assign(_t=key).groupby(["model", "_t"], sort=False)
    out = []
    for (model, t), g in grouped:
        row: dict[str, Any] = {"model": model, "temperature": (np.nan if t == -1.0 else t), "n_seeds": len(g)}
        for m in metrics:
            vals = pd.to_numeric(g[m], errors="coerce").dropna()
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else np.nan)
        out.append(row)
    return in_model_order(pd.DataFrame(out), ("temperature",))


def _heading(metric: str) -> str:
    if metric == "accuracy":
        return "acc"
    if metric == "val_accuracy":
        return "val acc"
    if metric.startswith(("eod_", "dpd_")) and metric.endswith("_excess"):
        return f"{metric[:3].upper()} {metric[4:].removesuffix('_excess')} excess"
    if metric.startswith(("eod_", "dpd_")):
        return f"{metric[:3].upper()} {metric[4:]}"
    return {"individual_fairness": "IF", "n_tc": "#TC", "n_sc": "#SC", "n_classes": "classes"}.get(metric, metric)


def to_markdown(table: pd.DataFrame, metrics: list[str]) -> str:
    shown = [m for m in metrics if m not in ("val_accuracy", "n_classes") and not is_test_column(m)]
    head = ["model", "T", "seeds"] + [_heading(m) for m in shown]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        t = "-" if pd.isna(r["temperature"]) else f"{r['temperature']:g}"
        cells = [LABELS.get(r["model"], r["model"]), t, str(int(r["n_seeds"]))]
        for m in shown:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            if pd.isna(mean):
                cells.append("-")
            elif m in ("n_tc", "n_sc"):
                cells.append(f"{mean:.0f}")
            elif m == "individual_fairness":
                cells.append(f"{mean:.4f} ± {std:.4f}")
            elif m.endswith("_excess"):
                cells.append(f"{mean:+.2f} ± {std:.2f}")
            else:
                mark = f" {FLOOR_MARK}" if within_floor(r, m) else ""
                cells.append(f"{mean:.2f} ± {std:.2f}{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- DS - NDS tests

def delta_metrics(results: pd.DataFrame, attributes: list[str], family: str = "excess") -> list[str]:
    """The metrics whose DS - NDS difference is tested. "excess" (the headline): excess EOD and
    DPD per attribute, then IF; "raw": the raw EOD and DPD per attribute."""
    if family == "excess":
        wanted = [f"{k}_{a}_excess" for a in attributes for k in ("eod", "dpd")] + ["individual_fairness"]
    else:
        wanted = [f"{k}_{a}" for a in attributes for k in ("eod", "dpd")]
    return [m for m in wanted if m in results and results[m].notna().any()]


def deltas(results: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """Per temperature and metric: mean(DS) - mean(NDS) over seeds, Welch's t-test over the
    per-seed values (two-sided), and the p-value Holm-adjusted within its family (the headline
    "excess" tests, the "raw" ones)."""
    parts = [_family_deltas(results, delta_metrics(results, attributes, f), f) for f in ("excess", "raw")]
    return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)


def _family_deltas(results: pd.DataFrame, metrics: list[str], family: str) -> pd.DataFrame:
    nds = results[results["model"] == "nds"]
    rows = []
    for t, ds in results[results["model"] == "ds"].groupby("temperature", sort=True):
        for m in metrics:
            a, b = ds[m].dropna().to_numpy(), nds[m].dropna().to_numpy()
            p = welch_seeds(a, b).p if a.size >= 2 and b.size >= 2 else math.nan
            rows.append({"family": family, "temperature": float(t), "metric": m,
                         "ds_mean": float(a.mean()) if a.size else math.nan,
                         "nds_mean": float(b.mean()) if b.size else math.nan,
                         "delta": float(a.mean() - b.mean()) if a.size and b.size else math.nan,
                         "p": p, "n_ds": int(a.size), "n_nds": int(b.size)})
    out = pd.DataFrame(rows, columns=["family", "temperature", "metric", "ds_mean", "nds_mean", "delta",
                                      "p", "n_ds", "n_nds"])
    out["p_holm"] = adjust_pvalues(out["p"].to_numpy(), "holm") if len(out) else []
    return out


def _delta_heading(metric: str) -> str:
    return "Δ" + _heading(metric)


def deltas_markdown(d: pd.DataFrame) -> str:
    """One row per temperature: Δ (p) per metric; * marks Holm-adjusted p < ALPHA."""
    if d.empty:
        return ""
    metrics = list(dict.fromkeys(d["metric"]))
    head = ["T"] + [_delta_heading(m) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t, g in d.groupby("temperature", sort=True):
        by = g.set_index("metric")
        cells = [f"{t:g}"]
        for m in metrics:
            cells.append(delta_cell(by.loc[m], 4 if m == "individual_fairness" else 2, ".3f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def conclusions(table: pd.DataFrame, d: pd.DataFrame) -> list[str]:
    """The report's findings in words: which DS - NDS differences are significant, and how many
    values are within their noise floor."""
    out = []
    group = [c.removesuffix("_mean") for c in table.columns
             if c.startswith(("eod_", "dpd_")) and c.endswith("_mean")
             and not is_test_column(c.removesuffix("_mean"))]
    n_floor = sum(within_floor(r, m) for _, r in table.iterrows() for m in group)
    n_vals = sum(not pd.isna(r[f"{m}_mean"]) and not pd.isna(r.get(f"{m}_null_q95_mean", math.nan))
                 for _, r in table.iterrows() for m in group)
    if n_vals:
        out.append(f"{n_floor} of {n_vals} EOD/DPD values (model, T, attribute) are within their noise "
                   f"floor ({FLOOR_MARK} in the table): no evidence of disparity there.")
    if d.empty:
        return out
    head = d[d["family"] == "excess"]
    if not any(m.endswith("_excess") for m in head["metric"]) and (d["family"] == "raw").any():
        out.append("No excess EOD/DPD in this sweep (its fair- cells predate it): `kdfair sweep run "
                   "SPEC -o DIR` redoes those cells; until then the raw values, which also differ "
                   "when only the accuracy does, are what is compared.")
        head = d
    tested = head.dropna(subset=["p"])
    if tested.empty:
        out.append("DS vs NDS: fewer than 2 seeds a side, so no test across seeds.")
        return out
    sig = tested[tested["p_holm"] < ALPHA]
    what = f"Welch's t-test over seeds, Holm-adjusted over {len(tested)} tests, p < {ALPHA:g}"
    for _, r in sig.iterrows():
        unit = "" if r["metric"] == "individual_fairness" else " pp"
        digits = 4 if r["metric"] == "individual_fairness" else 1
        direction = "lower" if r["delta"] < 0 else "higher"
        fairer = "fairer" if r["delta"] < 0 else "less fair"
        out.append(f"Significant: DS at T = {r['temperature']:g} has {direction} {_heading(r['metric'])} than "
                   f"NDS ({r['delta']:+.{digits}f}{unit}, p = {r['p']:.3g}, Holm {r['p_holm']:.3g}): "
                   f"{fairer} beyond what its accuracy implies." if r["metric"].endswith("_excess") else
                   f"Significant: DS at T = {r['temperature']:g} has {direction} {_heading(r['metric'])} than "
                   f"NDS ({r['delta']:+.{digits}f}{unit}, p = {r['p']:.3g}, Holm {r['p_holm']:.3g}).")
    rest = len(tested) - len(sig)
    if rest:
        best = tested.loc[tested["p"].idxmin()]
        prefix = "The other" if len(sig) else "None of the"
        out.append(f"{prefix} {rest} DS - NDS difference(s) are significant ({what}); smallest "
                   f"unadjusted p = {best['p']:.3g} ({_heading(best['metric'])} at T = "
                   f"{best['temperature']:g}).")
    return out


# ------------------------------------------------------------------------------------ plots

def _ref_lines(ax, table: pd.DataFrame, metric: str) -> None:
    for model, color in (("teacher", "tab:green"), ("nds", "tab:red")):
        r = table[table["model"] == model]
        if r.empty or pd.isna(r.iloc[0][f"{metric}_mean"]):
            continue
        mean, std = r.iloc[0][f"{metric}_mean"], r.iloc[0][f"{metric}_std"]
        ax.axhline(mean, color=color, linestyle="--", label=LABELS[model])
        if std and not pd.isna(std):
            ax.axhspan(mean - std, mean + std, color=color, alpha=0.12)


def _floor_band(ax, table: pd.DataFrame, metric: str) -> None:
    """Shade each model's noise band: from its null mean to its null 95th percentile (seed means)."""
    lo, hi = f"{metric}_null_mean_mean", f"{metric}_null_q95_mean"
    if lo not in table or table[hi].isna().all():
        return
    ds = table[table["model"] == "ds"].sort_values("temperature")
    if not ds.empty:
        ax.fill_between(ds["temperature"], ds[lo], ds[hi], color="tab:blue", alpha=0.15, linewidth=0,
                        label="DS noise band (null mean to q95)")
    for model, color in (("teacher", "tab:green"), ("nds", "tab:red")):
        r = table[table["model"] == model]
        if not r.empty and not pd.isna(r.iloc[0][hi]):
            ax.axhspan(r.iloc[0][lo], r.iloc[0][hi], color=color, alpha=0.08, hatch="//", linewidth=0,
                       label=f"{LABELS[model]} noise band")


def _ds_line(ax, table: pd.DataFrame, metric: str, label: str = "DS", color: str = "tab:blue", marker="o"):
    ds = table[table["model"] == "ds"].sort_values("temperature")
    if ds.empty or ds[f"{metric}_mean"].isna().all():
        return None
    return ax.errorbar(ds["temperature"], ds[f"{metric}_mean"], yerr=ds[f"{metric}_std"].fillna(0), marker=marker,
                       capsize=3, label=label, color=color)


def plot_group(table: pd.DataFrame, attributes: list[str], path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if not attributes:
        return None
    fig, axes = plt.subplots(len(attributes), 2, figsize=(9, 3.2 * len(attributes)), squeeze=False,
                             layout="constrained")
    for i, attr in enumerate(attributes):
        for j, kind in enumerate(("eod", "dpd")):
            ax = axes[i][j]
            metric = f"{kind}_{attr}"
            if f"{metric}_mean" not in table:
                continue
            _ds_line(ax, table, metric)
            _ref_lines(ax, table, metric)
            _floor_band(ax, table, metric)
            ax.set_xlabel("temperature T")
            ax.set_ylabel(f"{kind.upper()} (%)")
            ax.set_title(f"{kind.upper()}, attribute {attr}")
            ax.legend(fontsize=8)
    fig.suptitle("Group fairness of the distilled student vs temperature")
    save_figure(fig, path)
    return path


def plot_excess(table: pd.DataFrame, attributes: list[str], path: Path) -> Path | None:
    """T vs the excess EOD and DPD per attribute (the headline comparison's quantity), with the
    teacher's and the NDS's as reference lines and 0 (a group-blind model) marked."""
    import matplotlib.pyplot as plt

    shown = [a for a in attributes if f"eod_{a}_excess_mean" in table and table[f"eod_{a}_excess_mean"].notna().any()]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 2, figsize=(9, 3.2 * len(shown)), squeeze=False,
                             layout="constrained")
    for i, attr in enumerate(shown):
        for j, kind in enumerate(("eod", "dpd")):
            ax, metric = axes[i][j], f"{kind}_{attr}_excess"
            ax.axhline(0, color="black", linewidth=0.8)
            _ds_line(ax, table, metric)
            _ref_lines(ax, table, metric)
            ax.set_xlabel("temperature T")
            ax.set_ylabel(f"{kind.upper()} minus its floor (pp)")
            ax.set_title(f"excess {kind.upper()}, attribute {attr}")
            ax.legend(fontsize=8)
    fig.suptitle("Disparity beyond what each model's accuracy implies")
    save_figure(fig, path)
    return path


def plot_classes(table: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if "n_sc_mean" not in table or table["n_sc_mean"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ds = table[table["model"] == "ds"].sort_values("temperature")
    ax.plot(ds["temperature"], ds["n_sc_mean"], marker="o", color="tab:purple", label="#SC (NDS vs DS)")
    ax.plot(ds["temperature"], ds["n_tc_mean"], marker="s", color="tab:orange", label="#TC (Teacher vs DS)")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("significantly different classes")
    acc = ax.twinx()
    _ds_line(acc, table, "accuracy", label="DS accuracy", color="tab:blue", marker="^")
    _ref_lines(acc, table, "accuracy")
    acc.set_ylabel("test accuracy (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = acc.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    ax.set_title("Class-wise bias vs temperature")
    save_figure(fig, path)
    return path


def plot_individual(table: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if "individual_fairness_mean" not in table or table["individual_fairness_mean"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _ds_line(ax, table, "individual_fairness")
    _ref_lines(ax, table, "individual_fairness")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("individual fairness score (lower is fairer)")
    ax.set_title("Individual fairness vs temperature")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return path


def build_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    out, results, missing, doc = open_report(sweep_dir, out_dir, collect, "finished model cells")
    table = summarise(results)
    markdown = to_markdown(table, metric_columns(results))
    attributes = doc.get("group_attributes", [])
    delta = deltas(results, attributes)
    said = conclusions(table, delta)
    head, raw = (delta[delta["family"] == f] for f in ("excess", "raw"))
    if not head.empty:
        markdown += ("\n## DS - NDS per temperature: excess disparity\n\nΔ = mean over seeds of DS minus "
                     "NDS of the excess EOD and DPD (each model's value minus its own floor mean: what a "
                     "group-blind model with its confusion would show; percentage points) and of IF; "
                     "p: Welch's t-test over the per-seed values; * = significant after Holm's "
                     f"correction over the {int(head['p'].notna().sum())} tests (p < {ALPHA:g}).\n\n"
                     + deltas_markdown(head))
    if not raw.empty:
        markdown += ("\n### Raw EOD and DPD, for reference\n\nThe same test on the raw values. A less "
                     "accurate model has a higher floor, so these differ also when only the accuracy "
                     "does; they are not a fairness comparison on their own. * = Holm over these "
                     f"{int(raw['p'].notna().sum())} tests.\n\n" + deltas_markdown(raw))
    if said:
        markdown += "\n" + "\n".join(f"- {line}" for line in said) + "\n"
    paths = write_frames(out, results, table, delta)
    title = f"# {doc.get('name', 'sweep')}\n\nMean ± std over seeds; accuracy, EOD and DPD in percent; " \
            f"IF lower is fairer. {FLOOR_MARK}: not above its noise floor (the mean over seeds is at " \
            f"or below the mean 95th percentile of its null).\n\n"
    write_text_atomic(out / "table.md", title + markdown)
    paths["markdown"] = out / "table.md"
    for name, fn in (("group_fairness_plot", lambda p: plot_group(table, doc.get("group_attributes", []), p)),
                     ("excess_plot", lambda p: plot_excess(table, doc.get("group_attributes", []), p)),
                     ("class_bias_plot", lambda p: plot_classes(table, p)),
                     ("individual_fairness_plot", lambda p: plot_individual(table, p))):
        p = fn(out / f"{name.replace('_plot', '').replace('_', '-')}.png")
        if p is not None:
            paths[name] = p
    return Report(results, table, markdown, paths, missing, delta, said)
