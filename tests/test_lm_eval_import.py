"""`kdfair import lm-eval`: samples files in lm-evaluation-harness's --log_samples layout."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm, score_pairs
from tests.llm_fakes import bbq_items, tiny_lm, write_bbq

runner = CliRunner()
#: The harness's bbq task: the item's two people, then these ten (its own unknown among them).
HARNESS_UNKNOWNS = ["Unknown", "Cannot answer", "Can't be determined", "Cannot be determined", "Can't answer",
                    "Not known", "Not enough info", "Not enough information", "Not answerable", "Undetermined"]
HARNESS_PROMPT = "{context}\n\nQ: {question}\nA:"


def harness_choices(doc: dict) -> list[str]:
    choices = [doc[f"ans{k}"] for k in range(3)]
    choices.remove(next(c for c in choices if c in HARNESS_UNKNOWNS))
    return choices + HARNESS_UNKNOWNS


def write_samples(path, docs, lls_per_doc, sanitised: bool = True) -> None:
    """One line per doc as lm-eval's EvaluationTracker writes it (arguments as gen_args_i, resps as str)."""
    lines = []
    for i, (doc, lls) in enumerate(zip(docs, lls_per_doc)):
        prompt = HARNESS_PROMPT.format(**doc)
        choices = harness_choices(doc)
        pairs = [[prompt, " " + c] for c in choices]
        resps = [[[str(ll), "False"]] for ll in lls] if sanitised else [[[ll, False]] for ll in lls]
        sample = {"doc_id": i, "doc": {**doc, "biased_answers": []}, "target": "2",
                  "arguments": ({f"gen_args_{j}": {"arg_0": p, "arg_1": c} for j, (p, c) in enumerate(pairs)}
                                if sanitised else pairs),
                  "resps": resps, "filtered_resps": [r[0] for r in resps], "filter": "none",
                  "metrics": ["acc", "accuracy_amb"], "doc_hash": "x", "prompt_hash": "y", "target_hash": "z",
                  "acc": 0.0}
        lines.append(json.dumps(sample))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    model = tiny_lm(root / "qwen2", "qwen2", seed=3)
    bbq = write_bbq(root / "bbq")
    docs = bbq_items()
    lm = load_causal_lm(model, torch.device("cpu"))
    prompts, conts = [], []
    for doc in docs:
        for c in harness_choices(doc):
            prompts.append(HARNESS_PROMPT.format(**doc))
            conts.append(" " + c)
    sums, _ = score_pairs(lm, encode_pairs(lm, prompts, conts), 48)
    lls = sums.reshape(len(docs), 12)
    samples = root / "samples_bbq_multiple_choice_2025-01-01T00-00-00.jsonl"
    write_samples(samples, docs, lls)
    return {"root": root, "model": model, "bbq": bbq, "docs": docs, "lls": lls, "samples": samples}


def test_import_matches_kdfair_scoring(setup, tmp_path):
    out = tmp_path / "imported.parquet"
    res = runner.invoke(app, ["import", "lm-eval", str(setup["samples"]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    mine = tmp_path / "mine.parquet"
    res = runner.invoke(app, ["predict", str(setup["model"]), "--dataset", "bbq", "--data", str(setup["bbq"]),
                              "--prompt-template", "{context}\\n\\nQ: {question}\\nA:", "-o", str(mine)])
    assert res.exit_code == 0, res.output
    a, b = pd.read_parquet(out), pd.read_parquet(mine)
    np.testing.assert_array_equal(a["sample_id"], b["sample_id"])
    np.testing.assert_allclose(np.stack(a["logits"]), np.stack(b["logits"]), atol=1e-4)
    for col in ("attr_category", "attr_example_id", "attr_role_0", "attr_label_role", "label"):
        np.testing.assert_array_equal(a[col], b[col])
    res = runner.invoke(app, ["bias-score", str(out), "--versus", str(mine), "--json", "--permutations", "50"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["overall"]["versus"]["bias_ambig"]["difference"] == pytest.approx(0, abs=1e-9)


def test_unknown_max_and_old_layout(setup, tmp_path):
    docs, lls = setup["docs"][:8], setup["lls"][:8]
    old = tmp_path / "old.jsonl"
    write_samples(old, docs, lls, sanitised=False)  # list arguments, numeric resps
    out = tmp_path / "max.parquet"
    res = runner.invoke(app, ["import", "lm-eval", str(old), "-o", str(out), "--unknown", "max"])
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(out).sort_values("attr_example_id")
    for i, doc in enumerate(docs):
        unk = next(k for k in range(3) if doc["answer_info"][f"ans{k}"][1] == "unknown")
        row = got[got["attr_example_id"] == doc["example_id"]].iloc[0]
        assert row["logits"][unk] == pytest.approx(lls[i][2:].max(), abs=1e-5)
        person = next(k for k in range(3) if k != unk)
        assert row["logits"][person] == pytest.approx(lls[i][harness_choices(doc).index(doc[f"ans{person}"])], abs=1e-5)


@pytest.mark.parametrize("broken, needle", [
    (lambda s: s.pop("doc"), "needs 'doc'"),
    (lambda s: s["doc"].pop("context_condition"), "context_condition"),
    (lambda s: s.update(filtered_resps=[["The fat guy"]] * 12, resps=[[["The fat guy"]]] * 12), "generate_until"),
])
def test_bad_samples(setup, tmp_path, broken, needle):
    path = tmp_path / "bad.jsonl"
    write_samples(path, setup["docs"][:3], setup["lls"][:3])
    lines = path.read_text().splitlines()
    sample = json.loads(lines[1])
    broken(sample)
    lines[1] = json.dumps(sample)
    path.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["import", "lm-eval", str(path), "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2, res.output
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0] and "bad.jsonl:2" in err[0]
    assert not (tmp_path / "x.parquet").exists()


def test_harness_docs_are_bbq_items():
    # The fakes' unknown answers are all in the harness's list, as in BBQ.
    assert all(any(d[f"ans{k}"] in HARNESS_UNKNOWNS for k in range(3)) for d in bbq_items())
