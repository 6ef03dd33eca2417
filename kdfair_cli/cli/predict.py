"""`kdfair predict`: run a model over a split and write the predictions file (logits at T = 1)."""

from __future__ import annotations

from pathlib import Path

import typer

from kdfair_cli.cli.common import console


def command(
    model_dir: Path = typer.Argument(..., help="A model directory written by train-teacher or distill."),
    out: str = typer.Option(..., "--out", "-o", help="Predictions Parquet to write; '-' for stdout."),
    split: str = typer.Option("test", "--split", help="Split to predict (train gives the teacher-logit cache)."),
    data: Path = typer.Option(None, "--data", help="Dataset folder (default: the one in model.json)."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name (default: the one in model.json)."),
    dataset_option: list[str] = typer.Option(None, "--dataset-option", "-O", metavar="KEY=VALUE",
                                             help="Dataset option (repeatable); default: those in model.json."),
    workers: int = typer.Option(None, "--workers", help="DataLoader workers for streaming datasets."),
    batch_size: int = typer.Option(512, "--batch-size", help="Inference batch size."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    amp: bool = typer.Option(False, "--amp/--no-amp", help="bf16 autocast on CUDA (off by default: exact logits)."),
) -> None:
    """Write the predictions file of a model on one split (sample_id, label, pred, logits, attr_*).

    Example:

        kdfair predict runs/teacher-s0 --split test -o preds/teacher-s0.parquet
    """
    from kdfair_cli.data.options import parse_dataset_options
    from kdfair_cli.inference import predict_split
    from kdfair_cli.io.atomic import check_writable

    if out != "-":
        check_writable(out)
    res = predict_split(model_dir, split=split, data=str(data) if data else None, dataset=dataset,
                        device=device, batch_size=batch_size, amp=amp,
                        dataset_options=parse_dataset_options(dataset_option), workers=workers)
    if res is None:  # a non-zero rank under torchrun: rank 0 writes the file
        return
    res.write(out)
    console.print(f"{model_dir} on {res.meta['dataset']}/{split}: {len(res.label)} samples, "
                  f"accuracy {res.accuracy:.4f} -> {out}")
