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


@pytest.mark.slow  # two CLI imports end to end; the first lm-eval import of a run pays the module loads
def test_ambig_and_disambig_files_import_as_one_with_provenance(setup, tmp_path):
    """lm-eval's bbq_ambig and bbq_disambig tasks write one samples file each: imported together they
    give the file the single `bbq` samples give; the sibling results file's settings are recorded and
    its --limit warned about."""
    docs, lls = setup["docs"], setup["lls"]
    run = tmp_path / "run"
    run.mkdir()
    stamp = "2026-01-01T00-00-00.000000"
    for cond in ("ambig", "disambig"):
        keep = [i for i, d in enumerate(docs) if d["context_condition"] == cond]
        write_samples(run / f"samples_bbq_{cond}_{stamp}.jsonl", [docs[i] for i in keep], lls[keep])
    (run / f"results_{stamp}.json").write_text(json.dumps({
        "results": {}, "n-shot": {"bbq_ambig": 0, "bbq_disambig": 0}, "lm_eval_version": "0.4.13",
        "config": {"model": "hf", "model_args": "pretrained=/models/x", "limit": 64},
        "configs": {t: {"task": t, "doc_to_text": "{{context}}\n\nQ: {{question}}\nA:", "target_delimiter": " "}
                    for t in ("bbq_ambig", "bbq_disambig")}}))
    both = tmp_path / "both.parquet"
    res = runner.invoke(app, ["import", "lm-eval", str(run / f"samples_bbq_ambig_{stamp}.jsonl"),
                              str(run / f"samples_bbq_disambig_{stamp}.jsonl"), "-o", str(both)])
    assert res.exit_code == 0, res.output
    assert "--limit 64" in res.output
    single = tmp_path / "single.parquet"
    assert runner.invoke(app, ["import", "lm-eval", str(setup["samples"]), "-o", str(single)]).exit_code == 0
    a, b = pd.read_parquet(both), pd.read_parquet(single)
    np.testing.assert_array_equal(a["sample_id"], b["sample_id"])
    np.testing.assert_array_equal(np.stack(a["logits"]), np.stack(b["logits"]))
    import pyarrow.parquet as pq
    meta = json.loads(pq.read_schema(both).metadata[b"kdfair"])
    harness = meta["lm"]["lm_eval"]
    assert harness["model_args"] == "pretrained=/models/x" and harness["limit"] == 64
    assert harness["num_fewshot"] == 0 and harness["tasks"] == ["bbq_ambig", "bbq_disambig"]
    assert harness["doc_to_text"] == "{{context}}\n\nQ: {{question}}\nA:"
    # a kdfair file scored with lm-eval's prompt (in either syntax) compares without a warning ...
    mine = tmp_path / "mine.parquet"
    assert runner.invoke(app, ["predict", str(setup["model"]), "--dataset", "bbq", "--data", str(setup["bbq"]),
                               "--prompt-template", "{{context}}\\n\\nQ: {{question}}\\nA:", "-o",
                               str(mine)]).exit_code == 0
    res = runner.invoke(app, ["bias-score", str(both), "--versus", str(mine), "--permutations", "20",
                              "--bootstrap", "0"])
    assert res.exit_code == 0 and "scored differently" not in res.output, res.output
    # ... one scored with kdfair's default prompt gets one warning line naming the template
    default = tmp_path / "default.parquet"
    assert runner.invoke(app, ["predict", str(setup["model"]), "--dataset", "bbq", "--data", str(setup["bbq"]),
                               "-o", str(default)]).exit_code == 0
    res = runner.invoke(app, ["bias-score", str(both), "--versus", str(default), "--permutations", "20",
                              "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if "scored differently" in line]
    assert len(warned) == 1 and "template" in warned[0]


def test_jinja_template_reads_the_item(setup, tmp_path):
    """lm-eval's {{field}} syntax gives exactly the scores of kdfair's {field}."""
    outs = []
    for i, template in enumerate(("{{context}}\\n\\nQ: {{ question }}\\nA:", "{context}\\n\\nQ: {question}\\nA:")):
        outs.append(tmp_path / f"t{i}.parquet")
        res = runner.invoke(app, ["predict", str(setup["model"]), "--dataset", "bbq", "--data", str(setup["bbq"]),
                                  "--prompt-template", template, "-o", str(outs[-1])])
        assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.stack(pd.read_parquet(outs[0])["logits"]),
                                  np.stack(pd.read_parquet(outs[1])["logits"]))
