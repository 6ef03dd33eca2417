"""`kdfair individual-fairness`: the Lipschitz-style score I(f) over a fixed pair set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.table import Table

from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (IdCol, JsonFlag, LabelCol, LogitsCol, OutPath, PredCol,
                                           fmt, load, mean_std, reflow, write_records)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import check_writable
from kdfair_cli.io.pairs_file import PairSet, read_pairs
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.metrics.individual import individual_fairness, onehot, softmax

_FIELDS = ("score", "median", "p95", "max", "n_pairs", "n_zero_distance", "mean_output_distance")


def _split_of(meta: dict) -> str | None:
    value = meta.get("split")
    return value if isinstance(value, str) else None


def _fingerprint_of(meta: dict) -> str | None:
    value = meta.get("dataset_fingerprint") or meta.get("fingerprint")
    if value is None and isinstance(meta.get("dataset"), dict):
        value = meta["dataset"].get("fingerprint")
    return value if isinstance(value, str) else None


def _rows(p: Predictions, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the pair ids in p; refuse pairs made on another split or sample set."""
    for what, get in (("split", _split_of), ("dataset fingerprint", _fingerprint_of)):
        a, b = get(pairs.meta), get(p.meta)
        if a is not None and b is not None and a != b:
            raise KdfairError(f"{p.path} is from {what} '{b}' but pair file {pairs.path} was "
                              f"made on {what} '{a}'")
    order = np.argsort(p.sample_id, kind="stable")
    ids = p.sample_id[order]
    out = []
    for col, sid in (("sample_id_a", pairs.sample_id_a), ("sample_id_b", pairs.sample_id_b)):
        pos = np.clip(np.searchsorted(ids, sid), 0, ids.size - 1)
        missing = ids[pos] != sid
        if missing.any():
            raise KdfairError(f"{pairs.path}: {int(missing.sum())} values of '{col}' (e.g. "
                              f"{sid[missing][0]}) are not sample ids of {p.path}; make the pairs "
                              "on the same split as the predictions")
        out.append(order[pos])
    return out[0], out[1]


def command(
    files: Annotated[list[Path], typer.Argument(help="Predictions files (several = one row "
                                                "each, plus mean and std).")],
    pairs: Annotated[Path, typer.Option("--pairs", help="Pair file made by `kdfair pairs`.")],
    temperature: Annotated[float, typer.Option(help="f = softmax(logits / T).")] = 1.0,
    output_distance: Annotated[
        Literal["tv", "l1", "l2"],
        typer.Option(help="|f(x) - f(x')|: total variation (L1 / 2), L1 or L2.")] = "tv",
    model_output: Annotated[
        Literal["probs", "onehot"],
        typer.Option(help="f: softmax probabilities, or one-hot predictions (files without "
                     "logits).")] = "probs",
    out: OutPath = None,
    json_out: JsonFlag = False,
    label_col: LabelCol = "label",
    pred_col: PredCol = "pred",
    logits_col: LogitsCol = "logits",
    id_col: IdCol = "sample_id",
) -> None:
    """Individual fairness I(f) = mean over pairs of |f(x) - f(x')| / d(x, x') (lower is fairer).

    f is the softmax at T = 1 by default and |.| the total variation; d comes from the pair
    file, so every model is judged on the same pairs. Reports the mean (the paper's score),
    median, p95 and max ratio (an empirical Lipschitz constant) and the pairs used; pairs at
    distance 0 are excluded and counted.

    Example:

        kdfair pairs --dataset trifeature --data data/trifeature --split test -o pairs/test.parquet
        kdfair individual-fairness preds/ds-T4-s*.parquet --pairs pairs/test.parquet --json
    """
    if temperature <= 0:
        raise KdfairError(f"--temperature must be > 0, got {temperature}")
    if out is not None:
        check_writable(out)
    pair_set = read_pairs(pairs)
    if len(pair_set) == 0:
        raise KdfairError(f"{pairs}: the pair file holds no pairs")
    rows = []
    for path in files:
        p = load(path, label_col=label_col, pred_col=pred_col, id_col=id_col,
                 logits_col=logits_col, with_logits=model_output == "probs", need_label=False)
        if model_output == "probs" and p.logits is None:
            raise KdfairError(f"{p.path}: no '{logits_col}' or logit_<k> columns, so no "
                              "probabilities; use --model-output onehot to score hard predictions")
        a, b = _rows(p, pair_set)
        used = np.union1d(a, b)  # f only for the rows in some pair
        f = (softmax(p.logits[used], temperature) if model_output == "probs"
             else onehot(p.pred[used], p.num_classes))
        res = individual_fairness(f, np.searchsorted(used, a), np.searchsorted(used, b),
                                  pair_set.distance, output_distance)
        rows.append({"file": p.path, **{k: getattr(res, k) for k in _FIELDS}})
    n_zero = rows[0]["n_zero_distance"]
    if n_zero:
        console.print(f"[yellow]warning:[/] {n_zero} pair(s) at distance 0 excluded (ratio "
                      "undefined)")
    table = Table(title=f"individual fairness (f={model_output}, T={temperature}, "
                  f"output distance={output_distance}, pairs={pairs})")
    for col in ("file", "I(f) mean", "median", "p95", "max", "pairs"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in rows:
        table.add_row(r["file"], fmt(r["score"]), fmt(r["median"]), fmt(r["p95"]), fmt(r["max"]),
                      str(r["n_pairs"]))
    score, score_std = mean_std([r["score"] for r in rows])
    if len(rows) > 1:
        table.add_row("mean ± std", f"{fmt(score)} ± {fmt(score_std)}", "", "", "", "")
    console.print(table)
    if out is not None:
        write_records(out, {k: [r[k] for r in rows] for k in rows[0]},
                      {"pairs": str(pairs), "pairs_meta": pair_set.meta, "temperature": temperature,
                       "output_distance": output_distance, "model_output": model_output})
    if json_out:
        print_json({"score": score, "score_std": score_std, "n_pairs": rows[0]["n_pairs"],
                    "n_zero_distance": n_zero, "temperature": temperature,
                    "output_distance": output_distance, "model_output": model_output,
                    "pairs": str(pairs), "pair_source": pair_set.meta.get("source"),
                    "distance": pair_set.meta.get("distance"), "files": rows})


command.__doc__ = reflow(command.__doc__)
