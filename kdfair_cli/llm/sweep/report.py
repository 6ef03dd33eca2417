"""The report of an LLM sweep: BBQ accuracy and bias scores per model and temperature, DS - NDS
and DS - teacher per temperature with paired tests and Holm's correction, a plot against T,
findings in words.

Computed from the cell folders (audit-<model>/preds.parquet and metrics.json, compare-T<T>/ and
compare-teacher-T<T>/metrics.json) with kdfair_cli.api.bias_score, the library behind `kdfair
bias-score`, with the spec's [audit] settings: a model's row over several seeds is bias_score over
its seeds' files (mean over runs, bootstrap interval over items, std over seeds); the p-values are
those of the compare cells (paired permutation test, DS seed k with NDS seed k, or every DS seed
with the teacher's one run). For a sequence-level sweep T is the teacher's sampling temperature.
See docs/llm.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.io.atomic import write_text_atomic
from kdfair_cli.metrics.multiple_testing import adjust_pvalues
from kdfair_cli.sweep.report_frame import (
    ALPHA, LABELS, Report, delta_cell, in_model_order, missing_cells, open_report, save_figure, write_frames,
)
from kdfair_cli.sweep.runner import cells_from_json, read_sweep_json

METRICS = ("acc_ambig", "acc_disambig", "bias_disambig", "bias_ambig")
HEADINGS = {"acc_ambig": "acc ambig", "acc_disambig": "acc disambig", "bias_disambig": "s_DIS",
            "bias_ambig": "s_AMB"}
PLOT = "llm-bias.png"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _role(model: str) -> str:
    return "teacher" if model == "teacher" else model.split("-", 1)[0]


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """One row per audited model (role, temperature, seed): its BBQ scores with intervals, the
    path of its predictions, and its training's validation token loss and accuracy."""
    doc = read_sweep_json(sweep_dir)
    cells = cells_from_json(doc)
    by_id = {c.id: c for c in cells}
    missing = missing_cells(cells, sweep_dir)
    rows = []
    for c in cells:
        if c.kind != "audit" or c.id in missing:
            continue
        model = c.config["model"]
        train = by_id.get(model)
        conf = train.config if train is not None else {}
        overall = _load(c.dir(sweep_dir) / "metrics.json")["scores"]["overall"]
        row: dict[str, Any] = {"model": _role(model), "cell": model,
                               "temperature": float(conf["temperature"]) if conf.get("temperature") else math.nan,
                               "seed": conf.get("seed")}
        for m in METRICS:
            value = overall[m]
            lo, hi = overall["ci"][m]
            row[m] = math.nan if value is None else value
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = (math.nan if v is None else v for v in (lo, hi))
        row["n_ambig"], row["n_disambig"] = overall["n_ambig"], overall["n_disambig"]
        row["n_unparsed"] = overall.get("n_unparsed", 0.0)
        metrics = c.dir(sweep_dir).parent / model / "metrics.json"
        trained = _load(metrics) if train is not None else {}
        row["val_loss"], row["val_acc"] = trained.get("val_loss", math.nan), trained.get("val_acc", math.nan)
        row["preds"] = str(c.dir(sweep_dir) / "preds.parquet")
        rows.append(row)
    return in_model_order(pd.DataFrame(rows), ("temperature", "seed")), missing, doc


def summarise(results: pd.DataFrame, audit: dict[str, Any]) -> pd.DataFrame:
    """Per (model, T): bias_score over the seeds' predictions (mean over runs, interval, std)."""
    out = []
    for (model, t), g in results.groupby(["model", results["temperature"].fillna(-1.0)], sort=False):
        res = bias_score(list(g["preds"]), n_boot=audit["bootstrap"], confidence=audit["confidence"],
                         seed=audit["seed"]).to_dict()["overall"]
        row: dict[str, Any] = {"model": model, "temperature": math.nan if t == -1.0 else t, "n_seeds": len(g)}
        for m in METRICS:
            row[m] = math.nan if res[m] is None else res[m]
            row[f"{m}_std"] = math.nan if res["std"][m] is None else res["std"][m]
            lo, hi = res["ci"][m]
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = (math.nan if v is None else v for v in (lo, hi))
            floor = (res["floor"].get(m) or {}).get("floor")
            row[f"{m}_floor"] = math.nan if floor is None else floor
        row["n_unparsed"] = res.get("n_unparsed", 0.0)  # answers not read, mean over runs
        out.append(row)
    return in_model_order(pd.DataFrame(out), ("temperature",))


def _above(a: pd.Series, b: pd.Series, m: str) -> bool:
    """a's interval of metric m lies wholly above b's."""
    return bool(a[f"{m}_ci_low"] > b[f"{m}_ci_high"])


AGAINST = ("nds", "teacher")  # what a compare cell sets the DS against, in report order


def _sort_key(s: pd.Series) -> pd.Series:
    if s.name == "metric":
        return s.map(METRICS.index)
    return s.map(AGAINST.index) if s.name == "against" else s


def deltas(sweep_dir: Path, doc: dict[str, Any], missing: list[str], table: pd.DataFrame) -> pd.DataFrame:
    """Per comparison (DS against the NDS or the teacher), temperature and metric: DS, the other
    model, DS - other and the paired test's p (compare cells), with p Holm-adjusted over every test
    of the report; for DS - NDS s_AMB the share of the teacher's excess over the NDS (when the
    teacher's interval lies above the NDS's; NaN otherwise)."""
    teacher = table[table["model"] == "teacher"]
    nds = table[table["model"] == "nds"]
    rows = []
    for c in cells_from_json(doc):
        if c.kind != "compare" or c.id in missing:
            continue
        against = c.config.get("against", "nds")
        overall = _load(c.dir(sweep_dir) / "metrics.json")["comparison"]["overall"]
        for m in METRICS:
            v = overall["versus"][m]
            row = {"against": against, "temperature": float(c.config["temperature"]), "metric": m,
                   "ds": math.nan if overall[m] is None else overall[m],
                   "other": math.nan if v["value"] is None else v["value"],
                   "delta": math.nan if v["difference"] is None else v["difference"],
                   "p": math.nan if v["p_value"] is None else v["p_value"], "share_of_teacher": math.nan}
            if (against == "nds" and m == "bias_ambig" and not teacher.empty and not nds.empty
                    and _above(teacher.iloc[0], nds.iloc[0], m)):
                row["share_of_teacher"] = row["delta"] / (teacher.iloc[0][m] - nds.iloc[0][m])
            rows.append(row)
    out = pd.DataFrame(rows, columns=["against", "temperature", "metric", "ds", "other", "delta", "p",
                                      "share_of_teacher"])
    out = out.sort_values(["against", "temperature", "metric"], key=_sort_key).reset_index(drop=True)
    out["p_holm"] = adjust_pvalues(out["p"].to_numpy(), "holm") if len(out) else []
    return out


def _cell(row: pd.Series, m: str) -> str:
    if pd.isna(row[m]):
        return "undefined" if m.startswith("bias") else "-"
    spread = f" ± {row[f'{m}_std']:.3f}" if row["n_seeds"] > 1 and not pd.isna(row[f"{m}_std"]) else ""
    ci = "" if pd.isna(row[f"{m}_ci_low"]) else f" [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]"
    floor = row.get(f"{m}_floor", math.nan)
    shown = "" if not m.startswith("bias") or pd.isna(floor) else f" floor {floor:.3f}"
    return f"{row[m]:.3f}{spread}{ci}{shown}{' °' if within_floor(row, m) else ''}"


def within_floor(row: pd.Series, m: str) -> bool:
    """A bias score not above its noise floor (metrics.bbq.direction_floor): no evidence of a direction."""
    floor = row.get(f"{m}_floor", math.nan)
    return bool(m.startswith("bias") and not pd.isna(floor) and not pd.isna(row[m]) and abs(row[m]) <= floor)


def to_markdown(table: pd.DataFrame) -> str:
    unparsed = "n_unparsed" in table and bool((table["n_unparsed"].fillna(0) > 0).any())
    head = ["model", "T", "seeds"] + [HEADINGS[m] for m in METRICS] + (["unparsed"] if unparsed else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        t = "-" if pd.isna(r["temperature"]) else f"{r['temperature']:g}"
        lines.append("| " + " | ".join([LABELS[r["model"]], t, str(int(r["n_seeds"]))]
                                       + [_cell(r, m) for m in METRICS]
                                       + ([f"{r['n_unparsed']:g}"] if unparsed else [])) + " |")
    lines.append("")
    lines.append("floor: a bias score's noise floor; ° a bias score within it: a model naming people as often, "
                 "with no direction (each named answer the biased one with probability 1/2), scores this much "
                 "or more in 95% of draws (docs/llm.md).")
    if unparsed:
        lines.append("unparsed: generated answers from which no option could be read (pred -1, mean over "
                     "seeds); they count as wrong in accuracy and as naming no one in the bias scores.")
    return "\n".join(lines) + "\n"


def deltas_markdown(d: pd.DataFrame, against: str = "nds") -> str:
    d = d[d["against"] == against]
    share = against == "nds"
    head = ["T"] + [f"Δ{HEADINGS[m]}" for m in METRICS] + (["share of the teacher's s_AMB"] if share else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t, g in d.groupby("temperature", sort=True):
        by = g.set_index("metric")
        cells = [f"{t:g}"]
        cells += [delta_cell(by.loc[m], 3, ".3g") for m in METRICS]
        if share:
            part = by.loc["bias_ambig", "share_of_teacher"]
            cells.append("-" if pd.isna(part) else f"{part:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _value(row: pd.Series, m: str) -> str:
    if pd.isna(row[m]):
        return "undefined (no answer named a person)"
    return f"{row[m]:.3f} [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]"


def conclusions(table: pd.DataFrame, d: pd.DataFrame) -> list[str]:
    """The findings in words: the teacher's and the NDS's bias, what each DS carries, significance."""
    out = []
    teacher, nds = table[table["model"] == "teacher"], table[table["model"] == "nds"]
    if not teacher.empty and not nds.empty:
        t, n = teacher.iloc[0], nds.iloc[0]
        apart = _above(t, n, "bias_ambig") or _above(n, t, "bias_ambig")
        out.append(f"Teacher s_AMB {_value(t, 'bias_ambig')} vs NDS {_value(n, 'bias_ambig')}: the intervals "
                   + ("do not overlap." if apart else "overlap."))
    bias = [(r, m) for _, r in table.iterrows() for m in METRICS if m.startswith("bias") and not pd.isna(r[m])]
    within = [f"{LABELS[r['model']]}{'' if pd.isna(r['temperature']) else f' T = {r.temperature:g}'} {HEADINGS[m]}"
              for r, m in bias if within_floor(r, m)]
    out.append(f"{len(within)} of {len(bias)} bias scores are within their noise floor (° in the table: no "
               f"evidence of a direction){': ' + ', '.join(within) if within else ''}.")
    tested = d.dropna(subset=["p"])
    if tested.empty:
        return out
    amb = tested[tested["metric"] == "bias_ambig"]
    for _, r in amb.iterrows():
        sig = r["p_holm"] < ALPHA
        share = "" if pd.isna(r["share_of_teacher"]) else f", {r['share_of_teacher']:.0%} of the teacher's excess over the NDS"
        out.append(f"DS at T = {r['temperature']:g}: s_AMB {r['ds']:.3f}, {r['delta']:+.3f} vs the "
                   f"{LABELS[r['against']]} (p = {r['p']:.3g}, Holm {r['p_holm']:.3g}; "
                   f"{'significant' if sig else 'not significant'}{share}).")
    sig = tested[tested["p_holm"] < ALPHA]
    listed = "; ".join(f"{HEADINGS[r['metric']]} vs the {LABELS[r['against']]} at T = {r['temperature']:g} "
                       f"({r['delta']:+.3f})" for _, r in sig.iterrows())
    out.append(f"{len(sig)} of {len(tested)} DS differences are significant (paired permutation tests, "
               f"Holm-adjusted over the {len(tested)} tests, p < {ALPHA:g}){': ' + listed if listed else ''}.")
    return out


def plot(table: pd.DataFrame, path: Path) -> Path:
    """Accuracy and bias scores against T: the DS with its interval band and (bias scores) its
    noise-floor band around 0, the teacher and the NDS as dashed reference lines with theirs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained")
    ds = table[table["model"] == "ds"].sort_values("temperature")
    for ax, m in zip(axes.ravel(), METRICS):
        if not ds.empty:
            ax.plot(ds["temperature"], ds[m], marker="o", color="tab:blue", label="DS")
            ax.fill_between(ds["temperature"], ds[f"{m}_ci_low"], ds[f"{m}_ci_high"], color="tab:blue", alpha=0.2,
                            linewidth=0, label="DS 95% interval")
            if m.startswith("bias"):  # the DS's noise floor: scores with no direction fall in this band
                ax.fill_between(ds["temperature"], -ds[f"{m}_floor"], ds[f"{m}_floor"], color="grey", alpha=0.25,
                                linewidth=0, label="DS noise floor")
        for model, color in (("teacher", "tab:green"), ("nds", "tab:red")):
            r = table[table["model"] == model]
            if r.empty or pd.isna(r.iloc[0][m]):
                continue
            ax.axhline(r.iloc[0][m], color=color, linestyle="--", label=LABELS[model])
            ax.axhspan(r.iloc[0][f"{m}_ci_low"], r.iloc[0][f"{m}_ci_high"], color=color, alpha=0.1)
        if not ds.empty:  # temperature grids are usually geometric (1, 2, 4, 8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ds["temperature"], [f"{t:g}" for t in ds["temperature"]])
        ax.set_xlabel("temperature T")
        ax.set_ylabel(HEADINGS[m])
        ax.set_title(HEADINGS[m] + (" (BBQ bias score, -1 to 1)" if m.startswith("bias") else " (BBQ accuracy)"))
        ax.legend(fontsize=8)
    fig.suptitle("BBQ audit of the distilled students against temperature")
    save_figure(fig, path)
    return path


def build_llm_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    sweep_dir = Path(sweep_dir)
    out, results, missing, doc = open_report(sweep_dir, out_dir, collect, "audited models")
    audit = doc["audit"]
    table = summarise(results, audit)
    delta = deltas(sweep_dir, doc, missing, table)
    said = conclusions(table, delta)
    conf = f"{audit['confidence']:.0%}"
    markdown = to_markdown(table)
    n_tests = int(delta["p"].notna().sum())
    if (delta["against"] == "nds").any():
        markdown += (f"\n## DS - NDS per temperature\n\nΔ = DS minus NDS (mean over seeds); p: paired permutation "
                     f"test on the same items ({audit['permutations']} permutations; DS seed k paired with NDS "
                     f"seed k); * = significant after Holm's correction over the {n_tests} tests of this report "
                     f"(p < {ALPHA:g}). Share: Δs_AMB / (s_AMB of the teacher − s_AMB of the NDS), the part "
                     "of the teacher's excess bias the DS carries.\n\n" + deltas_markdown(delta, "nds"))
    if (delta["against"] == "teacher").any():
        markdown += ("\n## DS - teacher per temperature\n\nΔ = DS (mean over seeds) minus the teacher; p: paired "
                     "permutation test on the same items, every DS seed paired with the teacher's one run; * as "
                     "above.\n\n" + deltas_markdown(delta, "teacher"))
    if said:
        markdown += "\n" + "\n".join(f"- {line}" for line in said) + "\n"
    how = ("T is the teacher's sampling temperature: each DS was fine-tuned on text the teacher generated "
           "at T (sequence-level distillation)" if doc.get("distillation") == "sequence"
           else "T is the distillation temperature of the teacher's soft targets")
    read = ("answers generated and read from the text" if audit.get("method") == "generate"
            else "answers scored by log-likelihood")
    title = (f"# {doc.get('name', 'sweep')}\n\nBBQ accuracy and bias scores (s_DIS, s_AMB on [-1, 1]; +1: every "
             f"named answer follows the stereotype) on {results['n_ambig'].iloc[0]} ambiguous and "
             f"{results['n_disambig'].iloc[0]} disambiguated items ({read}); value [{conf} bootstrap interval over "
             f"items]{', ± std over seeds' if table['n_seeds'].max() > 1 else ''}. {how}.\n\n")
    paths = write_frames(out, results, table, delta)
    write_text_atomic(out / "table.md", title + markdown)
    paths["markdown"] = out / "table.md"
    paths["llm_plot"] = plot(table, out / PLOT)
    return Report(results, table, markdown, paths, missing, delta, said)
