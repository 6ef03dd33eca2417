"""The bad-input battery over the LLM commands (issue 23): predict on BBQ and corpora, import
lm-eval, bias-score, causal-LM train-teacher / distill with top-k caches.

Each case asserts the same promise as tests/test_bad_input.py: the exit code, one `kdfair:
error:` line naming the culprit, no traceback, and the inputs untouched. The snapshot here also
lists folders, so a `.parts/` folder or an empty output folder left behind is caught, and every
`dataloss-*` case compares the sha256 of every input before and after.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.llm_fakes import bbq_items, tiny_lm, write_bbq, write_corpus
from tests.test_bad_input import kdfair, ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from tests.test_lm_eval_import import harness_choices, write_samples

    root = tmp_path_factory.mktemp("llmworld")
    w: dict[str, Path] = {"root": root}
    w["bbq"] = write_bbq(root / "BBQ", n_per_category=2, metadata=True)
    w["age"] = w["bbq"] / "data" / "Age.jsonl"
    w["csv"] = w["bbq"] / "supplemental" / "additional_metadata.csv"
    w["lm"] = tiny_lm(root / "lm", "gpt2", seed=0, hidden=16, layers=1)
    w["corpus"] = write_corpus(root / "corpus.jsonl", n=8)
    w["preds"] = root / "preds.parquet"
    ok("predict", w["lm"], "--dataset", "bbq", "--data", w["bbq"], "-o", w["preds"], "--device", "cpu")
    w["cache"] = root / "cache"
    ok("predict", w["lm"], "--dataset", "corpus", "--data", w["corpus"], "--top-k", "4", "--max-length", "64",
       "--device", "cpu", "-o", w["cache"])
    docs = bbq_items(2)
    rng = np.random.default_rng(0)
    w["samples"] = root / "lmeval" / "samples_bbq_2026.jsonl"
    w["samples"].parent.mkdir()
    write_samples(w["samples"], docs, [-rng.random(len(harness_choices(d))) * 5 for d in docs])
    w["results"] = root / "lmeval" / "results_2026.json"
    w["results"].write_text(json.dumps({"results": {"bbq": {"acc,none": 0.5}}, "configs": {"bbq": {}},
                                        "config": {"model_args": "pretrained=x", "limit": None}}))

    # broken copies, each wrong in one way
    for name, edit in (("lm_trunc", "trunc"), ("lm_empty", "empty"), ("lm_vocab", "vocab"),
                       ("lm_notok", "notok")):
        shutil.copytree(w["lm"], root / name)
        st = root / name / "model.safetensors"
        if edit == "trunc":
            st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
        elif edit == "empty":
            st.write_bytes(b"")
        elif edit == "vocab":
            cfg = json.loads((root / name / "config.json").read_text())
            cfg["vocab_size"] += 7
            (root / name / "config.json").write_text(json.dumps(cfg))
        else:
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                (root / name / f).unlink(missing_ok=True)
        w[name] = root / name
    good = w["age"].read_text().splitlines()
    item = json.loads(good[0])

    def bbq_variant(name: str, line: str | bytes, metadata: bytes | None = None) -> None:
        folder = root / name
        shutil.copytree(w["bbq"], folder)
        target = folder / "data" / "Age.jsonl"
        if isinstance(line, bytes):
            target.write_bytes(line)
        else:
            target.write_text("\n".join([*good, line]) + "\n")
        if metadata is not None:
            (folder / "supplemental" / "additional_metadata.csv").write_bytes(metadata)
        w[name] = folder

    bbq_variant("bbq_nested", "[" * 100000 + "]" * 100000)
    bbq_variant("bbq_huge", json.dumps({**item, "example_id": 99, "context": "x" * (2 << 20)}))
    bbq_variant("bbq_badcsv", good[0], metadata="category,example_id,target_loc\nAge,0,1\n\u00e9".encode("latin-1"))
    bbq_variant("bbq_missing", json.dumps({k: v for k, v in item.items() if k != "question"} | {"example_id": 98}))
    bbq_variant("bbq_label", json.dumps({**item, "example_id": 97, "label": 5}))
    bbq_variant("bbq_eid", json.dumps({**item, "example_id": "seven"}))
    bbq_variant("bbq_info", json.dumps({**item, "example_id": 96, "answer_info": {"ans0": "x"}}))
    bbq_variant("bbq_stereo", json.dumps({**item, "example_id": 95,
                                          "additional_metadata": {"stereotyped_groups": "old"}}))
    bbq_variant("bbq_latin1", "\u00e9".encode("latin-1") + b"\n")
    bbq_variant("bbq_notjson", "{not json")
    bbq_variant("bbq_dup", good[0])
    (root / "bbq_empty").mkdir()
    w["bbq_empty"] = root / "bbq_empty"

    def corpus_variant(name: str, text: str | bytes) -> None:
        path = root / f"{name}.jsonl"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        w[name] = path

    corpus_variant("corpus_one", json.dumps({"text": "one short line"}) + "\n")
    corpus_variant("corpus_empty", "")
    corpus_variant("corpus_nested", "[" * 100000 + "]" * 100000 + "\n")
    corpus_variant("corpus_huge", json.dumps({"text": "y" * (2 << 20)}) + "\n")
    corpus_variant("corpus_latin1", b"{\"text\": \"caf\xe9\"}\n")
    corpus_variant("corpus_notext", json.dumps({"body": "x"}) + "\n")
    corpus_variant("corpus_dupid", json.dumps({"text": "a", "id": 1}) + "\n" + json.dumps({"text": "b", "id": 1}) + "\n")
    corpus_variant("corpus_emptyresp", json.dumps({"prompt": "Q", "response": ""}) + "\n")

    w["cache_bad"] = root / "cache_bad"
    shutil.copytree(w["cache"], w["cache_bad"])
    shard = next(w["cache_bad"].glob("shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-10])
    w["samples_nested"] = root / "lmeval" / "samples_nested.jsonl"
    w["samples_nested"].write_text("[" * 100000 + "]" * 100000 + "\n")
    w["samples_empty"] = root / "lmeval" / "samples_empty.jsonl"
    w["samples_empty"].write_text("")
    # a user's own folder that happens to carry the chunk folder's name
    w["user_parts"] = root / "user.parquet.parts"
    w["user_parts"].mkdir()
    (w["user_parts"] / "notes.txt").write_text("mine\n")
    # an interrupted training run: its saved state must survive a --force with a missing corpus
    w["interrupted"] = root / "interrupted"
    w["interrupted"].mkdir()
    (w["interrupted"] / "train_state.pt").write_bytes(b"saved state")
    return w


@dataclass
class Case:
    id: str
    args: list[str]
    culprit: str  # must appear in the error line
    code: int = 2
    out: str | None = None  # must not exist afterwards
    extra: dict = field(default_factory=dict)


C = Case
P = ["predict", "{lm}", "--dataset", "bbq", "--device", "cpu"]
PC = ["predict", "{lm}", "--dataset", "corpus", "--device", "cpu", "--max-length", "64"]
LM = ["--arch", "causal-lm", "--dataset", "corpus", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
      "--max-length", "64", "-q"]
CASES = [
    # -- data safety: no input overwritten, nothing made where the output is refused
    C("dataloss-predict-out-is-items-file", [*P, "--data", "{bbq}", "-o", "{age}"], "Age.jsonl"),
    C("dataloss-predict-out-is-metadata-csv", [*P, "--data", "{bbq}", "-o", "{csv}"], "additional_metadata.csv"),
    C("dataloss-predict-single-file-onto-itself", [*P, "--data", "{age}", "-o", "{age}"], "Age.jsonl"),
    C("dataloss-predict-out-in-model-dir", [*P, "--data", "{bbq}", "-o", "{lm}/preds.parquet"], "lm",
      out="{lm}/preds.parquet"),
    C("dataloss-predict-out-is-weights", [*P, "--data", "{bbq}", "-o", "{lm}/model.safetensors"], "lm"),
    C("dataloss-predict-new-item-file-in-bbq", [*P, "--data", "{bbq}", "-o", "{bbq}/data/New.jsonl"], "data",
      out="{bbq}/data/New.jsonl"),
    C("dataloss-predict-out-replaces-bbq", [*P, "--data", "{bbq}/data", "-o", "{bbq}"], "BBQ"),
    C("dataloss-predict-parts-taken-over", [*P, "--data", "{bbq}", "-o", "{root}/user.parquet"],
      "user.parquet.parts", out="{root}/user.parquet"),
    C("dataloss-import-out-is-samples", ["import", "lm-eval", "{samples}", "-o", "{samples}"], "samples_bbq_2026.jsonl"),
    C("dataloss-import-out-is-results", ["import", "lm-eval", "{samples}", "-o", "{results}"], "results_2026.json"),
    C("dataloss-cache-out-in-model-dir", [*PC, "--data", "{corpus}", "-o", "{lm}/cache"], "lm", out="{lm}/cache"),
    C("dataloss-cache-out-is-corpus", [*PC, "--data", "{corpus}", "-o", "{corpus}"], "corpus.jsonl"),
    C("dataloss-cache-force-over-model", [*PC, "--data", "{corpus}", "-o", "{lm}", "--force"], "lm"),
    C("dataloss-distill-out-in-cache", ["distill", "-T", "2", "--teacher-logits", "{cache}", "--pretrained", "{lm}", *LM,
                                        "--data", "{corpus}", "-o", "{cache}/student"], "cache",
      out="{cache}/student"),
    C("dataloss-distill-out-is-cache", ["distill", "-T", "2", "--teacher-logits", "{cache}", "--pretrained", "{lm}", *LM,
                                        "--data", "{corpus}", "-o", "{cache}", "--force"], "cache"),
    C("dataloss-train-out-is-pretrained", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus}",
                                           "-o", "{lm}", "--force"], "lm"),
    C("dataloss-train-out-in-pretrained", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus}",
                                           "-o", "{lm}/sub"], "lm", out="{lm}/sub"),
    C("dataloss-train-out-is-corpus", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus}",
                                       "-o", "{corpus}"], "corpus.jsonl"),
    C("dataloss-force-keeps-state-missing-corpus", ["train-teacher", "--pretrained", "{lm}", *LM, "--data",
                                                    "{root}/nocorpus.jsonl", "-o", "{interrupted}", "--force"],
      "nocorpus.jsonl"),
    C("dataloss-bias-score-flips-onto-preds", ["bias-score", "{preds}", "--versus", "{preds}", "--bootstrap", "0",
                                               "--permutations", "10", "--flips", "{preds}"], "preds.parquet"),
    # -- models: the file at fault named, exit 2
    C("model-truncated-safetensors", [*P, "--data", "{bbq}", "-o", "{root}/o.parquet"], "model.safetensors",
      out="{root}/o.parquet", extra={"lm": "lm_trunc"}),
    C("model-empty-safetensors", [*P, "--data", "{bbq}", "-o", "{root}/o.parquet"], "model.safetensors",
      out="{root}/o.parquet", extra={"lm": "lm_empty"}),
    C("model-vocab-size-mismatch", [*P, "--data", "{bbq}", "-o", "{root}/o.parquet"], "vocab_size",
      out="{root}/o.parquet", extra={"lm": "lm_vocab"}),
    C("model-no-tokenizer", [*P, "--data", "{bbq}", "-o", "{root}/o.parquet"], "tokenizer",
      out="{root}/o.parquet", extra={"lm": "lm_notok"}),
    C("model-hub-name", ["predict", "Qwen/Qwen2.5-0.5B", "--dataset", "bbq", "--data", "{bbq}", "-o",
                         "{root}/o.parquet"], "Qwen/Qwen2.5-0.5B", out="{root}/o.parquet"),
    C("model-truncated-train", ["train-teacher", "--pretrained", "{lm_trunc}", *LM, "--data", "{corpus}",
                                "-o", "{root}/t"], "model.safetensors", out="{root}/t"),
    # -- BBQ items: file and line named
    C("bbq-nested-json", [*P, "--data", "{bbq_nested}", "-o", "{root}/o.parquet"], "Age.jsonl:3",
      out="{root}/o.parquet"),
    C("bbq-huge-line", [*P, "--data", "{bbq_huge}", "-o", "{root}/o.parquet"], "Age.jsonl:3", out="{root}/o.parquet"),
    C("bbq-metadata-not-utf8", [*P, "--data", "{bbq_badcsv}", "-o", "{root}/o.parquet"], "additional_metadata.csv",
      out="{root}/o.parquet"),
    C("bbq-missing-field", [*P, "--data", "{bbq_missing}", "-o", "{root}/o.parquet"], "question",
      out="{root}/o.parquet"),
    C("bbq-label-5", [*P, "--data", "{bbq_label}", "-o", "{root}/o.parquet"], "label 5", out="{root}/o.parquet"),
    C("bbq-example-id-string", [*P, "--data", "{bbq_eid}", "-o", "{root}/o.parquet"], "seven",
      out="{root}/o.parquet"),
    C("bbq-answer-info", [*P, "--data", "{bbq_info}", "-o", "{root}/o.parquet"], "answer_info.ans0",
      out="{root}/o.parquet"),
    C("bbq-stereotyped-groups", [*P, "--data", "{bbq_stereo}", "-o", "{root}/o.parquet"], "stereotyped_groups",
      out="{root}/o.parquet"),
    C("bbq-not-utf8", [*P, "--data", "{bbq_latin1}", "-o", "{root}/o.parquet"], "Age.jsonl", out="{root}/o.parquet"),
    C("bbq-not-json", [*P, "--data", "{bbq_notjson}", "-o", "{root}/o.parquet"], "Age.jsonl:3",
      out="{root}/o.parquet"),
    C("bbq-duplicate-item", [*P, "--data", "{bbq_dup}", "-o", "{root}/o.parquet"], "appears twice",
      out="{root}/o.parquet"),
    C("bbq-empty-folder", [*P, "--data", "{bbq_empty}", "-o", "{root}/o.parquet"], "bbq_empty",
      out="{root}/o.parquet"),
    C("bbq-split-train", [*P, "--data", "{bbq}", "--split", "train", "-o", "{root}/o.parquet"], "train",
      out="{root}/o.parquet"),
    # -- options: the value named
    C("opt-template-format-spec", [*P, "--data", "{bbq}", "--prompt-template", "{{context:>9}} {{question}}", "-o",
                                   "{root}/o.parquet"], "format spec", out="{root}/o.parquet"),
    C("opt-template-conversion", [*P, "--data", "{bbq}", "--prompt-template", "{{context!r}} {{question}}", "-o",
                                  "{root}/o.parquet"], "{{context}}", out="{root}/o.parquet"),
    C("opt-template-no-field", [*P, "--data", "{bbq}", "--prompt-template", "Answer:", "-o", "{root}/o.parquet"],
      "{{context}}", out="{root}/o.parquet"),
    C("opt-template-unknown-field", [*P, "--data", "{bbq}", "--prompt-template", "{{story}} {{context}} {{question}}",
                                     "-o", "{root}/o.parquet"], "{{story}}", out="{root}/o.parquet"),
    C("opt-template-unbalanced", [*P, "--data", "{bbq}", "--prompt-template", "{{context {{question}}", "-o",
                                  "{root}/o.parquet"], "--prompt-template", out="{root}/o.parquet"),
    C("opt-predict-batch-size-0", [*P, "--data", "{bbq}", "--batch-size", "0", "-o", "{root}/o.parquet"],
      "--batch-size", out="{root}/o.parquet"),
    C("opt-predict-batch-size-negative", [*P, "--data", "{bbq}", "--batch-size", "-4", "-o", "{root}/o.parquet"],
      "--batch-size", out="{root}/o.parquet"),
    C("opt-predict-chunk-size-0", [*P, "--data", "{bbq}", "--chunk-size", "0", "-o", "{root}/o.parquet"],
      "--chunk-size", out="{root}/o.parquet"),
    C("opt-lm-score", [*P, "--data", "{bbq}", "--lm-score", "max", "-o", "{root}/o.parquet"], "max",
      out="{root}/o.parquet"),
    C("opt-train-seed-negative", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus}", "--seed", "-1",
                                  "-o", "{root}/t"], "--seed", out="{root}/t"),
    C("opt-train-batch-size-0", ["train-teacher", "--pretrained", "{lm}", "--arch", "causal-lm", "--dataset",
                                 "corpus", "--batch-size", "0", "--data", "{corpus}", "-o", "{root}/t"],
      "--batch-size", out="{root}/t"),
    C("opt-cache-top-k-0", [*PC, "--data", "{corpus}", "--top-k", "0", "-o", "{root}/c"], "--top-k", out="{root}/c"),
    C("opt-cache-temperature", [*PC, "--data", "{corpus}", "--cache-temperatures", "2,abc", "-o", "{root}/c"],
      "abc", out="{root}/c"),
    C("opt-cache-max-length", ["predict", "{lm}", "--dataset", "corpus", "--device", "cpu", "--max-length", "2",
                               "--data", "{corpus}", "-o", "{root}/c"], "--max-length", out="{root}/c"),
    C("opt-cache-split-test", [*PC, "--data", "{corpus}", "--split", "test", "-o", "{root}/c"], "--split",
      out="{root}/c"),
    C("opt-cache-stdout", [*PC, "--data", "{corpus}", "-o", "-"], "'-'"),
    C("opt-bias-score-bootstrap-huge", ["bias-score", "{preds}", "--bootstrap", "1000000000"], "--bootstrap"),
    C("opt-bias-score-bootstrap-negative", ["bias-score", "{preds}", "--bootstrap", "-1"], "--bootstrap"),
    # -- corpora
    C("corpus-one-line", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus_one}", "-o", "{root}/t"],
      "corpus_one.jsonl", out="{root}/t"),
    C("corpus-empty", ["train-teacher", "--pretrained", "{lm}", *LM, "--data", "{corpus_empty}", "-o", "{root}/t"],
      "corpus_empty.jsonl", out="{root}/t"),
    C("corpus-nested", [*PC, "--data", "{corpus_nested}", "-o", "{root}/c"], "corpus_nested.jsonl:1",
      out="{root}/c"),
    C("corpus-huge-line", [*PC, "--data", "{corpus_huge}", "-o", "{root}/c"], "corpus_huge.jsonl:1", out="{root}/c"),
    C("corpus-not-utf8", [*PC, "--data", "{corpus_latin1}", "-o", "{root}/c"], "corpus_latin1.jsonl",
      out="{root}/c"),
    C("corpus-no-text", [*PC, "--data", "{corpus_notext}", "-o", "{root}/c"], "corpus_notext.jsonl:1",
      out="{root}/c"),
    C("corpus-duplicate-id", [*PC, "--data", "{corpus_dupid}", "-o", "{root}/c"], "id 1", out="{root}/c"),
    C("corpus-empty-response", [*PC, "--data", "{corpus_emptyresp}", "-o", "{root}/c"], "corpus_emptyresp.jsonl:1",
      out="{root}/c"),
    C("corpus-missing", [*PC, "--data", "{root}/nocorpus.jsonl", "-o", "{root}/c"], "nocorpus.jsonl",
      out="{root}/c"),
    # -- caches
    C("cache-damaged-shard", ["distill", "-T", "2", "--teacher-logits", "{cache_bad}", "--pretrained", "{lm}", *LM, "--data",
                              "{corpus}", "-o", "{root}/s"], "shard-", out="{root}/s"),
    C("cache-not-a-cache", ["distill", "-T", "2", "--teacher-logits", "{bbq}", "--pretrained", "{lm}", *LM, "--data",
                            "{corpus}", "-o", "{root}/s"], "cache.json", out="{root}/s"),
    C("cache-exists-no-force", [*PC, "--data", "{corpus}", "-o", "{cache}"], "--force"),
    # -- lm-eval import and bias-score: the wrong file gets the right message
    C("lmeval-results-file", ["import", "lm-eval", "{results}", "-o", "{root}/o.parquet"], "results file",
      out="{root}/o.parquet"),
    C("lmeval-nested", ["import", "lm-eval", "{samples_nested}", "-o", "{root}/o.parquet"], "samples_nested.jsonl:1",
      out="{root}/o.parquet"),
    C("lmeval-empty", ["import", "lm-eval", "{samples_empty}", "-o", "{root}/o.parquet"], "samples_empty.jsonl",
      out="{root}/o.parquet"),
    C("lmeval-items-not-samples", ["import", "lm-eval", "{age}", "-o", "{root}/o.parquet"], "Age.jsonl:1",
      out="{root}/o.parquet"),
    C("lmeval-unknown-mode", ["import", "lm-eval", "{samples}", "--unknown", "min", "-o", "{root}/o.parquet"], "min",
      out="{root}/o.parquet"),
    C("lmeval-filter", ["import", "lm-eval", "{samples}", "--filter", "strict", "-o", "{root}/o.parquet"], "strict",
      out="{root}/o.parquet"),
    C("lmeval-missing", ["import", "lm-eval", "{root}/nofile.jsonl", "-o", "{root}/o.parquet"], "nofile.jsonl",
      out="{root}/o.parquet"),
    C("bias-score-samples-jsonl", ["bias-score", "{samples}"], "samples_bbq_2026.jsonl"),
    C("bias-score-items-jsonl", ["bias-score", "{age}"], "Age.jsonl"),
    C("bias-score-missing", ["bias-score", "{root}/none.parquet"], "none.parquet"),
]

#: Fault class of each case (its id's first word): the counts the issue's closing note reports.
FAULT_CLASSES = sorted({c.id.split("-")[0] for c in CASES})


def _tree(root: Path) -> dict[str, str | None]:
    """Every path under root (folders included: a stray `.parts/` counts) -> sha256 of a file."""
    out: dict[str, str | None] = {}
    for p in sorted(root.rglob("*")):
        if ".lock" in p.name:
            continue
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_llm_input(case: Case, world: dict[str, Path], tmp_path: Path) -> None:
    names = {k: str(v) for k, v in world.items()} | {"tmp": str(tmp_path)}
    names |= {k: names[v] for k, v in case.extra.items()}
    args = [a.format(**names) for a in case.args]
    before = _tree(world["root"])
    run = kdfair(*args)
    after = _tree(world["root"])
    assert "Traceback" not in run.stderr, run.stderr
    assert run.code == case.code, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    assert case.culprit.format(**names) in run.error_lines[0], run.error_lines[0]
    assert run.stderr.rstrip().splitlines()[-1] == run.error_lines[0], "the error is not one line"
    if case.out is not None:
        assert not Path(case.out.format(**names)).exists()
    assert set(after) - set(before) == set(), f"new files beside the inputs: {sorted(set(after) - set(before))}"
    assert after == before, "an input changed"


def test_battery_counts() -> None:
    """At least 60 cases, spread over the fault classes of issue 23."""
    counts = {k: sum(c.id.split("-")[0] == k for c in CASES) for k in FAULT_CLASSES}
    assert len(CASES) >= 60 and counts["dataloss"] >= 15, counts


def test_stdin_given_for_both_sides_is_one_line(world: dict[str, Path], monkeypatch) -> None:
    """compare-classes -a - -b -: stdin is read once; the second '-' is refused, not a native abort."""
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(world["preds"].read_bytes())))
    run = kdfair("compare-classes", "-a", "-", "-b", "-")
    assert run.code == 2 and len(run.error_lines) == 1 and "stdin" in run.error_lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_long_output_name_is_accepted(world: dict[str, Path], tmp_path: Path) -> None:
    """A 250-character file name is legal (NAME_MAX is 255): written, not refused."""
    out = tmp_path / ("p" * 242 + ".parquet")
    assert len(out.name) == 250
    run = kdfair("import", "lm-eval", world["samples"], "-o", out)
    assert run.code == 0, run.stderr
    assert out.is_file()
