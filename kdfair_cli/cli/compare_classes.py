"""`kdfair compare-classes`: which classes differ significantly between two models."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich import box
from rich.table import Table

from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (IdCol, JsonFlag, LabelCol, OutPath, PredCol, fmt, load,
                                           reflow, write_records)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_path, check_writable
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.metrics.class_bias import ClassComparison, compare_classes

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


def _meta_str(p: Predictions, key: str) -> str | None:
    value = p.meta.get(key)
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


def _align(files: list[Predictions]) -> None:
    """Refuse files that are not predictions on the same samples of the same split."""
    ref = files[0]
    for p in files[1:]:
        if p.num_classes != ref.num_classes:
            raise KdfairError(f"{p.path} has {p.num_classes} classes but {ref.path} has "
                              f"{ref.num_classes}; compare models of the same task")
        for key in ("dataset", "split"):
            a, b = _meta_str(ref, key), _meta_str(p, key)
            if a is not None and b is not None and a != b:
                raise KdfairError(f"{p.path} is from {key} '{b}' but {ref.path} is from "
                                  f"{key} '{a}'; compare predictions of the same split")
        if len(p) != len(ref) or not np.array_equal(p.sample_id, ref.sample_id):
            raise KdfairError(f"{p.path} and {ref.path} hold different sample sets "
                              f"({len(p)} vs {len(ref)} rows); compare predictions of the same "
                              "split")
        if not np.array_equal(p.label, ref.label):
            n_bad = int((p.label != ref.label).sum())
            raise KdfairError(f"{p.path} and {ref.path} disagree on the true label of {n_bad} "
                              "samples; they are not predictions of the same split")


def _records(res: ClassComparison, names: list[str]) -> dict[str, np.ndarray | list]:
    mean_std = lambda x: (x.mean(axis=0), x.std(axis=0, ddof=1) if x.shape[0] > 1  # noqa: E731
                          else np.full(x.shape[1], np.nan))
    (acc_a, acc_a_sd), (acc_b, acc_b_sd) = mean_std(res.acc_a), mean_std(res.acc_b)
    (nrm_a, nrm_a_sd), (nrm_b, nrm_b_sd) = mean_std(res.norm_a), mean_std(res.norm_b)
    rec: dict[str, np.ndarray | list] = {
        "class": np.arange(res.n.size), "class_name": names, "n": res.n,
        "acc_a_mean": acc_a, "acc_a_std": acc_a_sd, "acc_b_mean": acc_b, "acc_b_std": acc_b_sd,
        "norm_a_mean": nrm_a, "norm_a_std": nrm_a_sd, "norm_b_mean": nrm_b, "norm_b_std": nrm_b_sd,
        "statistic": res.statistic, "p_value": res.p_value, "p_adjusted": res.p_adjusted,
        "significant": res.significant, "disagreement": res.disagreement,
        "note": [str(x) for x in res.note],
    }
    if res.a_only is not None:
        rec["a_only"], rec["b_only"] = res.a_only, res.b_only
    return rec


def _show(rec: dict, res: ClassComparison, show_all: bool) -> None:
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


def _plot(path: Path, matrix: np.ndarray, names: list[str], labels: tuple[str, str]) -> None:
    """Heat map of the off-diagonal disagreement matrix (matplotlib, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(min(12, 3 + 0.4 * c), min(10, 2.5 + 0.35 * c)) if c <= 25
                           else (9, 8))
    image = ax.imshow(np.log1p(matrix), cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    if c <= 25:
        ax.set_xticks(range(c), names, rotation=90)
        ax.set_yticks(range(c), names)
    ax.set_xlabel(f"prediction of B ({labels[1]})")
    ax.set_ylabel(f"prediction of A ({labels[0]})")
    ax.set_title("samples where A and B disagree (diagonal = agreement, left out)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    console.print(f"wrote {path}")


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
    if not 0 < alpha < 1:
        raise KdfairError(f"--alpha must be in (0, 1), got {alpha}")
    a, b = _expand(a), _expand(b)
    if not ((len(a) >= 2 and len(b) >= 2) or (len(a) == 1 and len(b) == 1)):
        raise KdfairError(f"got {len(a)} file(s) for A and {len(b)} for B: give one file a side "
                          "(McNemar test) or at least two a side (Welch's t-test over seeds)")
    for path in (out, disagreement_out, plot):
        if path is not None:
            check_writable(path)
    kw = dict(label_col=label_col, pred_col=pred_col, id_col=id_col)
    runs_a = [load(p, **kw).sorted_by_id() for p in a]
    runs_b = [load(p, **kw).sorted_by_id() for p in b]
    _align(runs_a + runs_b)
    ref = runs_a[0]
    if normalize == "ratio":
        for p in runs_a + runs_b:
            if not np.any(p.pred == p.label):
                raise KdfairError(f"{p.path}: overall accuracy is 0, so --normalize ratio is "
                                  "undefined; use --normalize difference or none")
    res = compare_classes(ref.label, [p.pred for p in runs_a], [p.pred for p in runs_b],
                          ref.num_classes, normalize=normalize, alpha=alpha,
                          correction=correction)
    rec = _records(res, ref.class_names)
    notes = np.asarray(rec["note"])
    for note in sorted(set(notes) - {""}):
        console.print(f"[yellow]warning:[/] {int((notes == note).sum())} class(es) flagged "
                      f"'{note}' (see the note column and docs/metrics.md)")
    meta = {"test": res.test, "normalize": normalize, "alpha": alpha, "correction": correction,
            "files_a": [str(p) for p in a], "files_b": [str(p) for p in b]}
    if out is not None:
        write_records(out, rec, meta)
    if disagreement_out is not None:
        pa_, pb_ = np.nonzero(res.matrix)
        write_records(disagreement_out, {"pred_a": pa_, "pred_b": pb_,
                                         "count": res.matrix[pa_, pb_]},
                      {**meta, "num_classes": ref.num_classes,
                       "paired_runs": res.n_disagreement_pairs,
                       "count_is": "mean over paired runs (seed i of A with seed i of B)"})
    if plot is not None:
        _plot(plot, res.matrix, ref.class_names, (a[0].name, b[0].name))
    _show(rec, res, show_all)
    if json_out:
        keys = list(rec)
        print_json({**meta, "n_classes": int(ref.num_classes), "n_tested": res.n_tested,
                    "n_significant": res.n_significant,
                    "overall_acc_a": res.overall_a, "overall_acc_b": res.overall_b,
                    "disagreement_pairs": res.n_disagreement_pairs,
                    "classes": [{k: _scalar(rec[k][i]) for k in keys} for i in range(ref.num_classes)]})
    console.print(f"[bold]{res.n_significant}[/] of {ref.num_classes} classes significantly "
                  f"different ({res.test}, alpha={alpha}, correction={correction}; "
                  f"{res.n_tested} tested)", soft_wrap=True)


def _scalar(x: object) -> object:
    return x.item() if hasattr(x, "item") else x


command.__doc__ = reflow(command.__doc__)
