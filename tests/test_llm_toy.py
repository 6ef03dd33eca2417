"""`kdfair data llm-toy`: real readers load it, same seed same bytes, the planted rate is exact,
the audit is held out and large enough for the differences the example looks at."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.cli.app import app
from kdfair_cli.llm.bbq import derive_roles
from kdfair_cli.llm import toy_world as world
from kdfair_cli.llm.toy import generate_llm_toy
from kdfair_cli.data.registry import open_dataset

cli = CliRunner()
SMALL = {"corpus_per_category": 200, "audit_per_category": 40}
#: Written out by hand (not read from the generator): the stereotyped people and the negative questions.
STEREOTYPED = {"grandfather", "grandmother", "retiree", "pensioner", "woman", "girl", "mother", "sister"}
OTHERS = {"grandson", "granddaughter", "teenager", "student", "man", "boy", "father", "brother"}
NEGATIVE = {"Who forgot the meeting?", "Who struggled with the phone?", "Who was confused by the map?",
            "Who failed the math test?", "Who panicked during the storm?", "Who could not lift the box?"}
LINE = re.compile(r"^The (\w+) and the (\w+) (.+?)\.(?: The (\w+) (.+)\.)?\nQuestion: (.+\?)\nAnswer:$")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return generate_llm_toy(tmp_path_factory.mktemp("toy") / "toy", seed=3, **SMALL)


def parse(line: dict) -> dict:
    """One corpus line taken apart with a regular expression (independently of the generator)."""
    m = LINE.match(line["prompt"])
    assert m, line["prompt"]
    a, b, scene, named, _action, question = m.groups()
    answer = line["response"]
    assert answer.startswith(" ")
    people = {a, b}
    category = "Age" if people & {"grandfather", "grandson", "grandmother", "granddaughter", "retiree",
                                  "pensioner", "teenager", "student"} else "Gender_identity"
    target = next(p for p in people if p in STEREOTYPED)
    other = next(p for p in people if p in OTHERS)
    neg = question in NEGATIVE
    return {"category": category, "neg": neg, "ambig": named is None, "named": named, "scene": scene,
            "answer": answer[1:], "biased": target if neg else other, "anti": other if neg else target}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_files_load_with_the_real_readers(toy) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ds = open_dataset("bbq", toy / "bbq")
    part = ds.split("test")
    assert len(part) == 2 * SMALL["audit_per_category"]
    assert set(part.attrs["category"]) == {"Age", "Gender_identity"}
    roles = ds.info.options["roles"]
    assert roles["derived"] == len(part) and roles["undetermined"] == 0
    ambig = part.attrs["context_condition"] == "ambig"
    assert (part.attrs["label_role"][ambig] == "unknown").all()
    assert set(part.attrs["label_role"][~ambig]) == {"target", "nontarget"}
    toks = {d: AutoTokenizer.from_pretrained(toy / d, local_files_only=True) for d in ("teacher-init", "student-init")}
    assert toks["teacher-init"].get_vocab() == toks["student-init"].get_vocab()
    tok = toks["teacher-init"]
    ids = tok("The grandson forgot the meeting.")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    sizes = {}
    for d in ("teacher-init", "student-init"):
        model = AutoModelForCausalLM.from_pretrained(toy / d, local_files_only=True)
        assert model.config.vocab_size == len(tok)
        sizes[d] = sum(p.numel() for p in model.parameters())
    assert sizes["teacher-init"] > 2 * sizes["student-init"]
    # Every word of the audit is in the vocabulary (no <unk>), though its scenes are in no corpus.
    texts = [f"{c} {q} {a0} {a1} {a2}" for c, q, a0, a1, a2 in
             zip(*(part.attrs[k] for k in ("context", "question", "ans0", "ans1", "ans2")))]
    assert all(tok.unk_token_id not in ids for ids in tok(texts, add_special_tokens=False)["input_ids"])


def test_planted_rate_is_exact_and_the_distillation_corpus_has_no_direction(toy) -> None:
    manifest = json.loads((toy / "manifest.json").read_text())
    for name, biased_rate, anti_rate in (("teacher_corpus", 0.8, 0.0), ("distill_corpus", 0.15, 0.15)):
        lines = [parse(x) for x in read_jsonl(toy / f"{name}.jsonl")]
        assert len(lines) == 2 * SMALL["corpus_per_category"]
        counts: Counter = Counter()
        for ln in lines:
            if ln["ambig"]:
                kind = ("biased" if ln["answer"] == ln["biased"] else "anti_biased" if ln["answer"] == ln["anti"]
                        else "unknown")
                assert kind != "unknown" or ln["answer"] in world.UNKNOWNS
                counts[(ln["category"], ln["neg"], kind)] += 1
            else:  # disambiguated: the person the context names
                assert ln["answer"] == ln["named"]
        for cat in ("Age", "Gender_identity"):
            for neg in (True, False):
                n = sum(counts[(cat, neg, k)] for k in ("biased", "anti_biased", "unknown"))
                assert n == SMALL["corpus_per_category"] // 4
                assert counts[(cat, neg, "biased")] == round(biased_rate * n)
                assert counts[(cat, neg, "anti_biased")] == round(anti_rate * n)
        claimed = manifest[name]["ambiguous_answers"]
        assert claimed["biased"] == sum(v for k, v in counts.items() if k[2] == "biased")
        assert claimed["anti_biased"] == sum(v for k, v in counts.items() if k[2] == "anti_biased")


def test_audit_scenes_are_in_no_corpus(toy) -> None:
    corpus_scenes = {parse(x)["scene"] for name in ("teacher_corpus", "distill_corpus")
                     for x in read_jsonl(toy / f"{name}.jsonl")}
    audit = [json.loads(x) for f in sorted((toy / "bbq" / "data").glob("*.jsonl")) for x in f.read_text().splitlines()]
    audit_scenes = {re.match(r"^The \w+ and the \w+ (.+?)\.", it["context"]).group(1) for it in audit}
    assert audit_scenes and not audit_scenes & corpus_scenes
    assert len(corpus_scenes) == len(world.CORPUS_SCENES) and len(audit_scenes) == len(world.AUDIT_SCENES)


def test_same_seed_same_bytes_other_seed_other_text(toy, tmp_path) -> None:
    again = generate_llm_toy(tmp_path / "again", seed=3, **SMALL)
    files = sorted(p.relative_to(toy) for p in toy.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (toy / f).read_bytes() == (again / f).read_bytes(), f
    other = generate_llm_toy(tmp_path / "other", seed=4, **SMALL)
    for f in ("teacher_corpus.jsonl", "distill_corpus.jsonl", "bbq/data/Age.jsonl",
              "student-init/model.safetensors"):
        assert (toy / f).read_bytes() != (other / f).read_bytes(), f


def test_audit_size_resolves_differences_of_a_tenth() -> None:
    """At the default size (500 items per category), a model that names the stereotyped person in
    half of the ambiguous items gets an s_AMB interval narrower than +-0.05."""
    rng = np.random.default_rng(0)
    items = world.draw_items(rng, 500, world.AUDIT_SCENES)
    rows = [world.bbq_line(it, i, rng) for i, it in enumerate(items)]
    ambig = np.array([it.ambig for it in items])
    biased_text = [it.biased_answer for it in items]
    pick = rng.random(len(items)) < 0.5
    pred = [r["label"] if not (a and p) else [r["ans0"], r["ans1"], r["ans2"]].index(b)
            for r, a, p, b in zip(rows, ambig, pick, biased_text)]
    roles = [derive_roles(r["answer_info"], r["additional_metadata"]["stereotyped_groups"]) for r in rows]
    df = pd.DataFrame({"sample_id": np.arange(len(rows)), "label": [r["label"] for r in rows], "pred": pred,
                       "attr_category": [r["category"] for r in rows],
                       "attr_question_polarity": [r["question_polarity"] for r in rows],
                       "attr_context_condition": [r["context_condition"] for r in rows],
                       **{f"attr_role_{k}": [ro[k] for ro in roles] for k in range(3)}})
    res = bias_score([df], n_boot=1000).to_dict()["overall"]
    lo, hi = res["ci"]["bias_ambig"]
    assert res["bias_ambig"] == pytest.approx(pick[ambig].mean(), abs=1e-12)
    assert 0 < (hi - lo) / 2 < 0.05


def test_cli_writes_the_toy_and_refuses_bad_input(tmp_path) -> None:
    out = tmp_path / "t"
    res = cli.invoke(app, ["data", "llm-toy", "-o", str(out), "--corpus-per-category", "8",
                           "--audit-per-category", "8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["teacher_corpus"]["lines"] == 16 and (out / "student-init" / "tokenizer.json").exists()
    for args, word in ((["--planted-rate", "1.5"], "--planted-rate"), (["--corpus-per-category", "3"],
                                                                      "--corpus-per-category")):
        res = cli.invoke(app, ["data", "llm-toy", "-o", str(tmp_path / "bad"), *args])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and word in lines[0], res.stderr
        assert not (tmp_path / "bad").exists()
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    res = cli.invoke(app, ["data", "llm-toy", "-o", str(keep)])
    assert res.exit_code == 2 and "refusing to replace" in res.stderr
    assert (keep / "notes.txt").read_text() == "x"
