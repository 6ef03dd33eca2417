"""`kdfair individual-fairness`: the Lipschitz-style score I(f) over a fixed pair set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from kdfair_cli import api
from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import (IdCol, JsonFlag, LabelCol, LogitsCol, OutPath, PredCol,
                                           fmt, reflow, write_records)
from kdfair_cli.io.atomic import check_writable

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
    n_boot: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates over pairs for "
                                        "the interval of each score (0 = none).")] = 1000,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the paired test (file i "
                                      "uses seed + i).")] = 0,
    versus: Annotated[list[Path] | None, typer.Option(
        "--versus", help="Model B's predictions: adds I(A) - I(B) on the same pairs with a paired "
        "test. Repeat for several seeds.")] = None,
    n_perm: Annotated[int, typer.Option("--permutations", help="Per-sample swaps of the "
                                        "--versus test.")] = 1000,
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
    distance 0 are excluded and counted. Each score gets a bootstrap-over-pairs interval;
    --versus compares model A (the files) with model B on the same pairs: a permutation test
    that swaps the two models' outputs per sample (in every pair the sample is in) and a
    bootstrap interval clustered by sample, both valid when pairs share samples (see
    docs/metrics.md).

    Example:

        kdfair pairs --dataset trifeature --data data/trifeature --split test -o pairs/test.parquet
        kdfair individual-fairness preds/ds-T4-s*.parquet --pairs pairs/test.parquet --json
        kdfair individual-fairness preds/ds-T4-s0.parquet --versus preds/nds-s0.parquet --pairs pairs/test.parquet
    """
    if out is not None:
        check_writable(out)
    res = api.individual_fairness([str(f) for f in files], str(pairs), temperature=temperature,
                                  output_distance=output_distance, model_output=model_output,
                                  label_col=label_col, pred_col=pred_col, logits_col=logits_col,
                                  id_col=id_col, n_boot=n_boot, confidence=confidence, seed=seed,
                                  versus=[str(v) for v in versus] if versus else None, n_perm=n_perm)
    if out is not None:  # the inputs are known now: refuse before any table is printed
        check_writable(out)
    rows = res.rows()
    n_zero = rows[0]["n_zero_distance"]
    if n_zero:
        console.print(f"[yellow]warning:[/] {n_zero} pair(s) at distance 0 excluded (ratio "
                      "undefined)")
    table = Table(title=f"individual fairness (f={model_output}, T={temperature}, "
                  f"output distance={output_distance}, pairs={pairs})")
    boot = res.intervals is not None
    cols = ["file", "I(f) mean"] + ([f"{confidence:.0%} CI"] if boot else []) + ["median", "p95", "max",
                                                                                 "pairs"]
    for col in cols:
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in rows:
        ci = [f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"] if boot else []
        table.add_row(r["file"], fmt(r["score"]), *ci, fmt(r["median"]), fmt(r["p95"]), fmt(r["max"]),
                      str(r["n_pairs"]))
    summary = res.to_dict()
    if len(rows) > 1:
        ci = [f"[{fmt(summary['score_ci'][0])}, {fmt(summary['score_ci'][1])}]"] if boot else []
        table.add_row("mean ± std", f"{fmt(summary['score'])} ± {fmt(summary['score_std'])}", *ci,
                      "", "", "", "")
    console.print(table)
    if res.versus is not None:
        c = res.versus
        ci = "" if c.ci is None else f" [{fmt(c.ci[0])}, {fmt(c.ci[1])}]"
        how = (f"outputs swapped per sample, bootstrap clustered by sample, {c.n_a} matched seed(s)"
               if c.test == "paired"
               else f"Welch's t-test over {c.n_a} vs {c.n_b} files")
        console.print(f"A - B (B = {', '.join(res.versus_paths)}): ΔI(f) {fmt(c.delta)}{ci}, "
                      f"p = {c.p:.3f} ({how})", highlight=False)
    if out is not None:
        write_records(out, {k: [r[k] for r in rows] for k in rows[0]}, res.meta())
    if json_out:
        print_json(summary)


command.__doc__ = reflow(command.__doc__)
