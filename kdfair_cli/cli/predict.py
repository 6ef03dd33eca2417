"""`kdfair predict`: run a model over a split and write the predictions file (logits at T = 1)."""

from __future__ import annotations

from pathlib import Path

import typer

from kdfair_cli.cli.common import console
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.topk_cache import DEFAULT_TEMPERATURES, DEFAULT_TOP_K
from kdfair_cli.train.config import DEFAULT_MAX_LENGTH


def command(
    model_dir: Path = typer.Argument(..., help="A model directory written by train-teacher or distill, "
                                     "or a local transformers causal-LM directory (with --dataset bbq)."),
    out: str = typer.Option(..., "--out", "-o", help="Predictions Parquet to write; '-' for stdout."),
    split: str = typer.Option(None, "--split", help="Split to predict (train gives the teacher-logit cache); "
                              "default test, and train for --dataset corpus (a teacher cache covers train).",
                              show_default=False),
    data: Path = typer.Option(None, "--data", help="Dataset folder (default: the one in model.json)."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name (default: the one in model.json)."),
    dataset_option: list[str] = typer.Option(None, "--dataset-option", "-O", metavar="KEY=VALUE",
                                             help="Dataset option (repeatable); default: those in model.json."),
    workers: int = typer.Option(None, "--workers", help="DataLoader workers for streaming datasets."),
    batch_size: int = typer.Option(None, "--batch-size", help="Inference batch size (default 512; "
                                   "16 items for a causal LM)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    amp: bool = typer.Option(False, "--amp/--no-amp", help="bf16 autocast on CUDA (off by default: exact logits)."),
    lm_score: str = typer.Option("sum", "--lm-score", help="Causal LM: option log-likelihood summed "
                                 "over its tokens (sum) or per token (mean).", rich_help_panel="Causal LM"),
    prompt_template: str = typer.Option(None, "--prompt-template", help="Causal LM prompt with {context} "
                                        "{question} {ans0} {ans1} {ans2} (or lm-eval's {{context}}); it must "
                                        "name {context} and {question}; default "
                                        "'{context}\\nQuestion: {question}\\nAnswer:'.",
                                        rich_help_panel="Causal LM"),
    chunk_size: int = typer.Option(1024, "--chunk-size", help="Causal LM: items per resumable chunk "
                                   "(kept in OUT.parts/ until the file is written).", rich_help_panel="Causal LM"),
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Causal LM on --dataset corpus: teacher logits "
                              "kept per token in the cache (OUT is then a cache directory for distill "
                              "--teacher-logits).", rich_help_panel="Teacher cache"),
    cache_temperatures: str = typer.Option(",".join(f"{t:g}" for t in DEFAULT_TEMPERATURES),
                                           "--cache-temperatures", help="Temperatures the cache can serve "
                                           "(the lumped tail mass is stored for each; 1 is always added).",
                                           rich_help_panel="Teacher cache"),
    max_length: int = typer.Option(DEFAULT_MAX_LENGTH, "--max-length", help="Tokens per corpus line: the "
                                   "student's --max-length.", rich_help_panel="Teacher cache"),
    force: bool = typer.Option(False, "--force", help="Overwrite a finished teacher cache.",
                               rich_help_panel="Teacher cache"),
) -> None:
    """Write the predictions file of a model on one split (sample_id, label, pred, logits, attr_*).

    Example:

        kdfair predict runs/teacher-s0 --split test -o preds/teacher-s0.parquet

        kdfair predict /models/Qwen2.5-1.5B --dataset bbq --data BBQ -o preds/qwen.parquet

        kdfair predict /models/teacher --dataset corpus --data corpus.jsonl --top-k 64 -o cache/teacher
    """
    if batch_size is not None and batch_size < 1:
        raise KdfairError(f"--batch-size must be at least 1, got {batch_size}")
    if chunk_size < 1:
        raise KdfairError(f"--chunk-size must be at least 1, got {chunk_size}")
    if dataset == "corpus":
        if split not in (None, "train"):
            raise KdfairError(f"--split {split}: a teacher cache covers the corpus's train lines (train.jsonl, "
                              "whatever holdout a student takes from it); drop --split or give train")
        return _teacher_cache(model_dir, data, out, top_k, cache_temperatures, max_length, batch_size,
                              device, force)
    from kdfair_cli.data.options import parse_dataset_options
    from kdfair_cli.inference import predict_split
    from kdfair_cli.io.atomic import check_writable
    from kdfair_cli.llm.scoring import parts_dir_for, remove_parts

    if out != "-":
        check_writable(out)
    split = split or "test"
    res = predict_split(model_dir, split=split, data=str(data) if data else None, dataset=dataset,
                        device=device, batch_size=batch_size, amp=amp,
                        dataset_options=parse_dataset_options(dataset_option), workers=workers,
                        lm_options={"lm_score": lm_score, "prompt_template": prompt_template,
                                    "chunk_size": chunk_size, "out": out,
                                    "parts_dir": None if out == "-" else str(parts_dir_for(out))})
    if res is None:  # a non-zero rank under torchrun: rank 0 writes the file
        return
    res.write(out)
    console.print(f"{model_dir} on {res.meta['dataset']}/{split}: {len(res.label)} samples, "
                  f"accuracy {res.accuracy:.4f} -> {out}")
    if res.meta.get("lm"):
        remove_parts(parts_dir_for(out))
        roles = (res.meta.get("dataset_options") or {}).get("roles") or {}
        if roles.get("undetermined"):
            console.print(f"[yellow]warning:[/] {roles['undetermined']} item(s) have answer roles that "
                          "could not be derived (role 'undetermined'; see docs/llm.md)")


def _teacher_cache(model_dir: Path, data: Path | None, out: str, top_k: int, temperatures: str,
                   max_length: int, batch_size: int | None, device: str, force: bool) -> None:
    from kdfair_cli.llm.cache import write_teacher_cache

    if data is None:
        raise KdfairError("--dataset corpus needs --data CORPUS (a .jsonl file or a folder with train.jsonl)")
    if out == "-":
        raise KdfairError("a teacher cache is a directory: give -o DIR, not '-'")
    manifest = write_teacher_cache(model_dir, data, out, top_k=top_k, temperatures=temperatures,
                                   max_length=max_length, batch_size=batch_size or 8, device=device,
                                   force=force)
    console.print(f"{model_dir} on corpus {data}: {manifest['n_sequences']} lines, {manifest['n_tokens']} "
                  f"tokens, top-{manifest['top_k']} -> {out}")
