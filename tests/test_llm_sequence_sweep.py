"""Sequence-level LLM sweeps (`distillation = "sequence"`): the spec, the cell grid and its hashes,
bad specs, and (slow) a reduced examples/llm_sequence.toml end to end, its report checked against
kdfair_cli.api.bias_score on the audit files and its students' provenance against the corpora."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.cli.app import app
from kdfair_cli.llm.generate import GENERATION_TEMPLATE
from kdfair_cli.sweep.cells import build_cells
from kdfair_cli.sweep.spec import load_spec
from tests.test_llm_sweep import assert_refused, example_text as llm_example_text, near, write
from tests.test_llm_sweep import one_thread  # noqa: F401  (a fixture: one torch thread)

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llm_sequence.toml"
TOKEN_EXAMPLE = ROOT / "examples" / "llm_bbq.toml"


def example_text(path: Path = EXAMPLE, /, **edits: str) -> str:
    """examples/llm_sequence.toml (unless `path`) as test_llm_sweep.example_text gives it."""
    return llm_example_text(path, **edits)


def test_sequence_example_parses_into_its_grid(tmp_path) -> None:
    spec = load_spec(EXAMPLE)
    assert spec.sequence and spec.generation == {"samples": 1, "top_p": 1.0, "max_new_tokens": 8}
    cells = build_cells(spec)
    by = {c.id: c for c in cells}
    temps, seeds = ["0.5", "1", "2"], [0, 1]
    assert [c.id for c in cells if c.stage == "cache"] == [f"gen-T{t}-s{s}" for t in temps for s in seeds]
    assert "cache-teacher" not in by
    assert by["gen-T2-s1"].deps == ["teacher"] and by["gen-T2-s1"].config["temperature"] == 2.0
    assert by["ds-T2-s1"].deps == ["gen-T2-s1"] and by["audit-ds-T2-s1"].deps == ["ds-T2-s1"]
    assert by["compare-teacher-T1"].deps == ["audit-ds-T1-s0", "audit-ds-T1-s1", "audit-teacher"]
    assert by["compare-teacher-T1"].config["against"] == "teacher"
    assert spec.audit["method"] == "generate" and spec.audit["max_new_tokens"] == 8
    assert "lm_score" not in spec.audit
    sampling = spec.sampling(2.0, 1)
    assert (sampling.temperature, sampling.seed, sampling.samples, sampling.max_new_tokens) == (2.0, 1, 1, 8)
    cfg = spec.train_config("ds", 1, str(tmp_path / "m"), temperature=2.0, generated="/c/corpus.jsonl")
    assert (cfg.kd, cfg.data, cfg.temperature, cfg.teacher, cfg.teacher_logits) == \
        ("sequence", "/c/corpus.jsonl", None, None, None)
    nds = spec.train_config("nds", 1, str(tmp_path / "n"))
    assert nds.kd == "token" and nds.data == str(spec.corpus)


def test_a_generation_audit_defaults_to_the_lettered_template(tmp_path) -> None:
    text = example_text(**{'prompt_template = "{context}\\nQuestion: {question}\\nAnswer:"  # the corpus\'s own prompt form\n': ""})
    spec = load_spec(write(tmp_path, text))
    assert spec.audit["prompt_template"] == GENERATION_TEMPLATE and spec.audit["chat"] is None
    scored = load_spec(write(tmp_path, example_text(**{'method = "generate"': 'method = "score"',
                                                      "max_new_tokens = 8\ntemperature = 0.0": ""}),
                                    "score.toml"))
    token = load_spec(TOKEN_EXAMPLE)
    assert set(scored.audit) == set(token.audit)  # a scoring audit's dict (and so its hash) is as before


def test_sampling_settings_rerun_the_corpora_and_what_follows_only(tmp_path) -> None:
    base = {c.id: c.hash for c in build_cells(load_spec(write(tmp_path, example_text())))}
    top_p = {c.id: c.hash for c in build_cells(load_spec(write(
        tmp_path, example_text(**{"top_p = 1.0": "top_p = 0.9"}), "p.toml")))}
    changed = {k for k in base if base[k] != top_p[k]}
    assert changed == {k for k in base if k.startswith(("gen-", "ds-", "audit-ds-", "compare-"))}
    audit = {c.id: c.hash for c in build_cells(load_spec(write(
        tmp_path, example_text(**{"temperature = 0.0": "temperature = 0.7"}), "a.toml")))}
    assert {k for k in base if base[k] != audit[k]} == {k for k in base if k.startswith(("audit-", "compare-"))}


@pytest.mark.parametrize("edits, key", [
    ({'distillation = "sequence"': 'distillation = "sequence"\nalpha = 0.5'}, "sweep.alpha"),
    ({'distillation = "sequence"': 'distillation = "sequence"\ntop_k = 8'}, "sweep.top_k"),
    ({"samples = 1 ": "samples = 0 "}, "generation.samples"),
    ({"top_p = 1.0": "top_p = 0.0"}, "generation.top_p"),
    ({"top_p = 1.0": "top_k = 5"}, "generation.top_k"),
    ({'method = "generate"': 'method = "beam"'}, "audit.method"),
    ({"max_new_tokens = 8          # the toy": "max_new_tokens = 0 #"}, "generation.max_new_tokens"),
    ({"temperature = 0.0": "temperature = -1.0"}, "audit.temperature"),
    ({"temperature = 0.0": 'think_tags = "<think>"'}, "audit.think_tags"),
    ({"temperature = 0.0": 'lm_score = "sum"'}, "audit.lm_score"),
    ({'method = "generate"': 'method = "score"'}, "audit.max_new_tokens"),
    ({"max_new_tokens = 8\ntemperature": "max_new_tokens = 0\ntemperature"}, "audit.max_new_tokens"),
    ({'distillation = "sequence"': 'distillation = "offline"'}, "generation"),
])
def test_bad_sequence_spec_is_refused_with_one_line(tmp_path, edits, key) -> None:
    assert_refused(tmp_path, example_text(**edits), key)


def test_prompts_need_a_sequence_sweep_and_classifiers_have_no_sequence_mode(tmp_path) -> None:
    text = example_text(TOKEN_EXAMPLE, **{'bbq = "toy/bbq"': 'bbq = "toy/bbq"\nprompts = "p.jsonl"'})
    res = cli.invoke(app, ["sweep", "run", str(write(tmp_path, text)), "-o", str(tmp_path / "sw")])
    assert res.exit_code == 2 and "data.prompts" in res.stderr
    text = (ROOT / "examples" / "trifeature.toml").read_text().replace('distillation = "offline"',
                                                                        'distillation = "sequence"')
    res = cli.invoke(app, ["sweep", "run", str(write(tmp_path, text, "tf.toml")), "-o", str(tmp_path / "sw")])
    assert res.exit_code == 2 and "sweep.distillation" in res.stderr and "offline|online" in res.stderr


@pytest.mark.slow
def test_reduced_sequence_example_end_to_end(tmp_path, one_thread) -> None:
    """A small toy, two temperatures, two seeds: every cell runs; each DS learned the corpus its
    teacher wrote at T (provenance and sha256), the corpus asks the NDS corpus's prompts, and the
    report's numbers are bias_score's on the audit files (DS - NDS and DS - teacher)."""
    text = example_text(**{"temperatures = [0.5, 1, 2]": "temperatures = [0.5, 2]",
                           "corpus_per_category = 1500": "corpus_per_category = 200",
                           "audit_per_category = 500": "audit_per_category = 60",
                           "epochs = 6": "epochs = 2", "permutations = 10000": "permutations = 500",
                           'device = "auto"': 'device = "cpu"'})
    spec = write(tmp_path, text)
    out = tmp_path / "sweep"
    res = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    cells = out / "cells"
    source = [json.loads(x) for x in (tmp_path / "toy" / "distill_corpus.jsonl").read_text().splitlines()]
    for t in ("0.5", "2"):
        for s in (0, 1):
            corpus = cells / f"gen-T{t}-s{s}" / "corpus.jsonl"
            lines = [json.loads(x) for x in corpus.read_text().splitlines()]
            assert [x["prompt"] for x in lines] == [x["prompt"] for x in source]
            meta = json.loads((cells / f"ds-T{t}-s{s}" / "model" / "model.json").read_text())
            teacher = meta["teacher"]
            assert teacher["mode"] == "sequence" and teacher["sampling_temperature"] == float(t)
            assert teacher["seed"] == s and teacher["dir"] == str((cells / "teacher" / "model").resolve())
            assert teacher["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    # the two seeds' corpora at T = 2 are different draws
    assert (cells / "gen-T2-s0" / "corpus.jsonl").read_bytes() != (cells / "gen-T2-s1" / "corpus.jsonl").read_bytes()
    audit = pd.read_parquet(cells / "audit-teacher" / "preds.parquet")
    assert {"generated", "extraction", "unparsed_reason"} <= set(audit.columns)
    rep = cli.invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    deltas = pd.read_csv(out / "report" / "deltas.csv")
    teacher_file = [cells / "audit-teacher" / "preds.parquet"]
    nds_files = [cells / f"audit-nds-s{s}" / "preds.parquet" for s in (0, 1)]
    for t in (0.5, 2.0):
        ds_files = [cells / f"audit-ds-T{t:g}-s{s}" / "preds.parquet" for s in (0, 1)]
        for against, other in (("nds", nds_files), ("teacher", teacher_file)):
            vs = bias_score(ds_files, versus=other, n_boot=1000, n_perm=500, seed=0).to_dict()["overall"]["versus"]
            rows = deltas[(deltas["temperature"] == t) & (deltas["against"] == against)].set_index("metric")
            assert len(rows) == 4
            for metric, row in rows.iterrows():
                want = vs[metric]
                if want["difference"] is None:
                    assert np.isnan(row["delta"])
                    continue
                assert row["delta"] == near(want["difference"]) and row["p"] == near(want["p_value"])
    table = pd.read_csv(out / "report" / "table.csv")
    ds2 = table[(table["model"] == "ds") & (table["temperature"] == 2.0)].iloc[0]
    direct = bias_score([cells / f"audit-ds-T2-s{s}" / "preds.parquet" for s in (0, 1)], n_boot=1000,
                        seed=0).to_dict()["overall"]
    assert ds2["n_unparsed"] == near(direct["n_unparsed"])
    assert ds2["acc_disambig"] == near(direct["acc_disambig"])
    md = (out / "report" / "table.md").read_text()
    assert "## DS - teacher per temperature" in md and "sampling temperature" in md


def test_docs_spec_table_names_every_llm_spec_key() -> None:
    """docs/llm.md's spec table against the declarations the parser checks (a key added to one
    and not the other fails here)."""
    from kdfair_cli.llm.sweep import spec as llm_spec

    doc = (ROOT / "docs" / "llm.md").read_text()
    table = doc[doc.index("### Spec"):doc.index("### Cells")]
    rows = {line.split("|")[1].strip().strip("`[]"): line for line in table.splitlines() if line.startswith("| `[")}
    declared = {"sweep": llm_spec.SWEEP_KEYS, "data": llm_spec.DATA_KEYS, "generation": llm_spec.GENERATION_KEYS,
                "audit": llm_spec.AUDIT_KEYS, "teacher": {"pretrained": str, "corpus": str, "seed": int}}
    for name, keys in declared.items():
        row = next(line for key, line in rows.items() if key.startswith(name))
        missing = [k for k in keys if k != "generate" and f"`{k}`" not in row and f"`{k} " not in row
                   and f"`{k} =" not in row]
        assert not missing, (name, missing)
