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
    samples: Annotated[list[Path], typer.Argument(help="samples_<bbq task>_<date>.jsonl written by lm_eval "
                                                  "--log_samples (the bbq task; or bbq_ambig and bbq_disambig: "
                                                  "give both, one predictions file is written).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Predictions Parquet to write; '-' for stdout.")],
    unknown: Annotated[str, typer.Option(help="The unknown option's log-likelihood: the item's own "
                                         "unknown text (own) or the best of the harness's ten paraphrases (max).")] = "own",
    filter_name: Annotated[str | None, typer.Option("--filter", help="lm-eval filter to read when the file "
                                                    "holds several (default: none).")] = None,
    results: Annotated[Path | None, typer.Option("--results", help="The run's results_<date>.json (default: "
                                                 "the one beside the samples): model_args, few-shot, limit and "
                                                 "task config are recorded from it.")] = None,
) -> None:
    """Import lm-evaluation-harness BBQ log-likelihoods as a BBQ predictions file.

    The logits are the three options' log-likelihoods, so bias-score, compare-classes and
    group-fairness read it like `kdfair predict --dataset bbq` output (same sample ids).

    Example:

        kdfair import lm-eval out/Qwen__Qwen2.5-1.5B/samples_bbq_2025-01-01T00-00-00.jsonl -o preds/qwen.parquet

        kdfair import lm-eval out/M/samples_bbq_ambig_D.jsonl out/M/samples_bbq_disambig_D.jsonl -o preds/m.parquet
    """
    from kdfair_cli.io.atomic import check_writable
    from kdfair_cli.llm.lm_eval import read_lm_eval_samples
    from kdfair_cli.io.predictions import write_predictions

    if out != "-":
        check_writable(out)
    res = read_lm_eval_samples(samples, unknown=unknown, filter_name=filter_name, results=results)
    write_predictions(out, sample_id=res.sample_id, label=res.label, logits=res.logits, attrs=res.attrs,
                      meta=res.meta)
    n_und = res.meta["dataset_options"]["roles"]["undetermined"]
    acc = float((res.logits.argmax(1) == res.label).mean())
    console.print(f"{', '.join(map(str, samples))}: {len(res.label)} BBQ items, accuracy {acc:.4f} "
                  f"(3 options) -> {out}")
    harness = res.meta["lm"]["lm_eval"]
    if harness.get("limit") is not None:
        console.print(f"[yellow]warning:[/] the lm-eval run used --limit {harness['limit']}: only "
                      f"{len(res.label)} items were scored, not the whole task", soft_wrap=True)
    elif harness.get("results_file") is None:
        console.print("[yellow]warning:[/] no results_*.json beside the samples: model_args, few-shot and "
                      "--limit are not recorded (give --results)", soft_wrap=True)
    if n_und:
        console.print(f"[yellow]warning:[/] {n_und} item(s) have answer roles that could not be derived")
