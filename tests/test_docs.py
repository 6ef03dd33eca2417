"""Generated docs and declarations do not drift: docs/cli.md, the sweep key table, the training
options and spec keys; docs/api.md's example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdfair_cli import docs_gen
from kdfair_cli.cli.train_options import TRAIN_OPTIONS
from kdfair_cli.classifier.spec import TRAIN_KEYS

ROOT = Path(__file__).resolve().parents[1]

#: The options of train-teacher and distill as they were before TrainConfig generated them
#: (40b965a): parameter name, declarations, default. Existing scripts rely on these.
OPTIONS_BEFORE = [
    ("dataset", ["--dataset"], "trifeature"), ("data", ["--data"], ...),
    ("dataset_option", ["--dataset-option", "-O"], None), ("workers", ["--workers"], 4),
    ("pretrained", ["--pretrained"], None), ("epochs", ["--epochs"], 30),
    ("batch_size", ["--batch-size"], 128), ("optimizer", ["--optimizer"], "sgd"), ("lr", ["--lr"], 0.1),
    ("momentum", ["--momentum"], 0.9), ("weight_decay", ["--weight-decay"], 5e-4),
    ("schedule", ["--schedule"], "cosine"), ("warmup_epochs", ["--warmup-epochs"], 0),
    ("label_smoothing", ["--label-smoothing"], 0.0), ("grad_clip", ["--grad-clip"], 5.0),
    ("augment", ["--augment/--no-augment"], True), ("seed", ["--seed"], 0), ("select", ["--select"], "last"),
    ("val_fraction", ["--val-fraction"], 0.1), ("tokenizer", ["--tokenizer"], None),
    ("max_length", ["--max-length"], 128), ("model_config", ["--model-config"], None),
    ("vocab_size", ["--vocab-size"], 8000), ("device", ["--device"], "auto"),
    ("amp", ["--amp/--no-amp"], True), ("channels_last", ["--channels-last/--no-channels-last"], False),
    ("compile", ["--compile/--no-compile"], False), ("resume", ["--resume"], False),
    ("force", ["--force"], False), ("quiet", ["--quiet", "-q"], False), ("json_out", ["--json"], False),
]
#: Options added since, after them in TRAIN_OPTIONS' panel order (issue 24: LLMs at real scale).
OPTIONS_ADDED = [
    ("lora_rank", ["--lora-rank"], 0), ("lora_alpha", ["--lora-alpha"], 0.0), ("grad_accum", ["--grad-accum"], 1),
    ("grad_checkpointing", ["--grad-checkpointing/--no-grad-checkpointing"], False),
    ("save_every", ["--save-every"], 0), ("parallel", ["--parallel"], "ddp"),
]
SPEC_KEYS_BEFORE = {
    "arch": str, "epochs": int, "batch_size": int, "optimizer": str, "lr": float, "momentum": float,
    "weight_decay": float, "schedule": str, "warmup_epochs": int, "label_smoothing": float,
    "augment": bool, "select": str, "val_fraction": float, "amp": bool, "grad_clip": float,
}


def test_training_options_keep_their_names_and_defaults():
    got = [(name, list(opt.param_decls), opt.default) for name, _, opt in TRAIN_OPTIONS]
    added = {name for name, _, _ in OPTIONS_ADDED}
    assert [o for o in got if o[0] not in added] == OPTIONS_BEFORE
    assert [o for o in got if o[0] in added] == OPTIONS_ADDED


def test_spec_keys_keep_their_names_and_types():
    assert TRAIN_KEYS == {**SPEC_KEYS_BEFORE, "grad_accum": int}


def test_sweep_doc_table_lists_every_spec_key():
    text = (ROOT / "docs" / "sweep.md").read_text()
    assert docs_gen.sweep_doc(text) == text, "run `python -m kdfair_cli.docs_gen`"
    table = text[text.index(docs_gen.BEGIN):text.index(docs_gen.END)]
    assert re.findall(r"^\| `(\w+)` \|", table, re.M) == list(TRAIN_KEYS)


def test_cli_reference_is_up_to_date():
    assert (ROOT / "docs" / "cli.md").read_text() == docs_gen.cli_reference(), \
        "docs/cli.md is out of date: run `python -m kdfair_cli.docs_gen`"


def test_api_doc_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "student: DPD" in out and "I(f) = " in out
    assert namespace["welch"].comparison.test != namespace["changed"].comparison.test  # Welch vs McNemar
