"""`kdfair import`: predictions files from other tools' outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdfair_cli.cli.common import console, guarded

app = typer.Typer(help="Turn other tools' per-item outputs into kdfair predictions files.",
                  no_args_is_help=True)


@app.command("lm-eval")
@guarded
def lm_eval(
    samples: Annotated[Path, typer.Argument(help="samples_<bbq task>_<date>.jsonl written by lm_eval "
                                            "--log_samples (a multiple-choice bbq task).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Predictions Parquet to write; '-' for stdout.")],
    unknown: Annotated[str, typer.Option(help="The unknown option's log-likelihood: the item's own "
                                         "unknown text (own) or the best of the harness's ten paraphrases (max).")] = "own",
    filter_name: Annotated[str | None, typer.Option("--filter", help="lm-eval filter to read when the file "
                                                    "holds several (default: none).")] = None,
) -> None:
    """Import lm-evaluation-harness BBQ log-likelihoods as a BBQ predictions file.

    The logits are the three options' log-likelihoods, so bias-score, compare-classes and
    group-fairness read it like `kdfair predict --dataset bbq` output (same sample ids).

    Example:

        kdfair import lm-eval out/Qwen__Qwen2.5-1.5B/samples_bbq_multiple_choice_2025.jsonl -o preds/qwen.parquet
    """
    from kdfair_cli.io.atomic import check_writable
    from kdfair_cli.llm.lm_eval import read_lm_eval_samples
    from kdfair_cli.io.predictions import write_predictions

    if out != "-":
        check_writable(out)
    res = read_lm_eval_samples(samples, unknown=unknown, filter_name=filter_name)
    write_predictions(out, sample_id=res.sample_id, label=res.label, logits=res.logits, attrs=res.attrs,
                      meta=res.meta)
    n_und = res.meta["dataset_options"]["roles"]["undetermined"]
    acc = float((res.logits.argmax(1) == res.label).mean())
    console.print(f"{samples}: {len(res.label)} BBQ items, accuracy {acc:.4f} (3 options) -> {out}")
    if n_und:
        console.print(f"[yellow]warning:[/] {n_und} item(s) have answer roles that could not be derived")
