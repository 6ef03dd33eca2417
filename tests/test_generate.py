"""`kdfair generate`: bad input, the vLLM path against a fake engine, unparsed answers in the
BBQ scores, and (slow) an end-to-end audit on tiny local models with every score recomputed."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.generate import Generated, Sampling, VLLMEngine, sample_paths
from kdfair_cli.metrics import bbq as m

runner = CliRunner()
CHAT = "{% for m in messages %}<s>User: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def fails(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdfair: error:"), res.output
    return lines[0]


@pytest.fixture
def plain_dir(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    return d


@pytest.mark.parametrize("extra, says", [
    (["--samples", "0"], "--samples"),
    (["--think-tags", "<think>"], "--think-tags"),
    (["--think-tags", "<a>,<a>"], "--think-tags"),
    (["--chat"], "chat template"),
    (["--engine", "vllm"], "kdfair[vllm]"),
    (["--dataset", "mnist"], "--dataset"),
    (["--top-p", "0"], "--top-p"),
])
def test_bad_input(tmp_path: Path, plain_dir: Path, monkeypatch, extra, says) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM absent, even where it is installed
    (tmp_path / "BBQ").mkdir()
    args = ["generate", plain_dir, "--dataset", "bbq", "--data", tmp_path / "BBQ", "-o", tmp_path / "p.parquet"]
    line = fails(*args, *extra)
    assert says in line
    assert not (tmp_path / "p.parquet").exists()


def test_hub_name_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = fails("generate", "org/model", "--dataset", "bbq", "--data", ".", "-o", "p.parquet")
    assert "hub" in line
    assert list(tmp_path.iterdir()) == []


def test_sample_paths() -> None:
    assert sample_paths("a/p.parquet", 1) == [Path("a/p.parquet")]
    assert sample_paths("a/p.parquet", 2) == [Path("a/p-k0.parquet"), Path("a/p-k1.parquet")]


def fake_vllm(texts: list[list[str]]) -> types.ModuleType:
    """A module with vLLM's offline API: LLM(**kw).generate(prompts, params) and SamplingParams."""
    mod = types.ModuleType("vllm")
    mod.calls = []

    class SamplingParams:
        def __init__(self, **kw) -> None:
            self.kw = kw

    class LLM:
        def __init__(self, **kw) -> None:
            mod.calls.append(("LLM", kw))

        def generate(self, prompts, params, use_tqdm=True):
            mod.calls.append(("generate", prompts, params))
            out = []
            for i, _ in enumerate(prompts):
                samples = [types.SimpleNamespace(text=texts[i][k], token_ids=list(range(len(texts[i][k].split()))),
                                                 finish_reason="stop" if k == 0 else "length")
                           for k in range(params[i].kw["n"])]
                out.append(types.SimpleNamespace(outputs=samples))
            return out

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


def test_vllm_requests_and_outputs() -> None:
    mod = fake_vllm([["<think>a b</think>B", "C"], ["A", "x y z"]])
    eng = VLLMEngine("/models/m", tensor_parallel_size=2, data_parallel_size=4, seed=7, module=mod)
    sampling = Sampling(max_new_tokens=33, temperature=0.6, top_p=0.95, samples=2, seed=7)
    out = eng.generate([[1, 2, 3], [4]], sampling)
    kind, kw = mod.calls[0]
    assert kw["model"] == "/models/m" and kw["tensor_parallel_size"] == 2 and kw["data_parallel_size"] == 4
    assert kw["seed"] == 7 and kw["trust_remote_code"] is False
    _, prompts, params = mod.calls[1]
    assert prompts == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4]}]
    assert [p.kw["n"] for p in params] == [2, 2]
    assert {(p.kw["temperature"], p.kw["top_p"], p.kw["max_tokens"]) for p in params} == {(0.6, 0.95, 33)}
    assert params[0].kw["seed"] != params[1].kw["seed"]
    assert out[0] == [Generated("<think>a b</think>B", 2, True), Generated("A", 1, True)]
    assert out[1] == [Generated("C", 1, False), Generated("x y z", 3, False)]


def test_vllm_wrong_sample_count() -> None:
    mod = fake_vllm([["A"]])
    eng = VLLMEngine("/m", module=mod)
    mod.LLM.generate = lambda self, p, params, use_tqdm=True: [types.SimpleNamespace(outputs=[])]
    with pytest.raises(KdfairError, match="samples"):
        eng.generate([[1]], Sampling(samples=1))


def test_unparsed_counts_by_hand() -> None:
    """pred -1: in n, wrong, in neither the biased count nor the non-unknown count."""
    roles = np.array([[m.TARGET, m.NONTARGET, m.UNKNOWN]] * 4)
    pred = np.array([0, -1, 1, -1])
    label = np.array([2, 2, 1, 0])
    neg = np.array([True, True, True, False])
    ambig = np.array([True, True, False, False])
    c = m.item_counts(pred, label, roles, neg, ambig)
    np.testing.assert_array_equal(c.sum(0), [2, 0, 1, 1, 2, 1, 0, 1])
    s = m.scores(c.sum(0))
    assert s["acc_ambig"] == 0 and s["bias_ambig"] == (1 - 0) * (2 * 1 / 1 - 1)
    assert s["bias_disambig"] == 2 * 0 / 1 - 1
    f = m.flips(np.array([[-1, 0], [-1, 1]]), np.array([[1, 0], [1, 0]]))
    np.testing.assert_array_equal(f["pred_a"], [-1, 0])


def rigged_lm(folder: Path, seed: int) -> Path:
    """A tiny Llama with a chat template whose head can only say A, B, C, a few words or EOS."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tests.llm_fakes import tiny_lm

    tiny_lm(folder, "llama", seed=seed)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHAT
    tok.save_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder)
    words = [tok.convert_tokens_to_ids(t) for t in ("A", "B", "C", "Ġgrandfather", "Ġgrandson")]
    keep = torch.tensor(sorted({int(i) for i in words if isinstance(i, int)} | {tok.eos_token_id}))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.zeros_like(model.lm_head.weight)
        w[keep] = torch.randn(len(keep), w.shape[1], generator=g) * 3
        w[tok.eos_token_id] += 1.0
        model.lm_head.weight.copy_(w)
    model.save_pretrained(folder)
    return folder


def by_hand(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """BBQ scores per category and overall, from the file's columns, by a plain loop."""
    out = {}
    for cat in sorted(set(df["attr_category"])) + ["overall"]:
        rows = df if cat == "overall" else df[df["attr_category"] == cat]
        res = {}
        for cond in ("ambig", "disambig"):
            part = rows[rows["attr_context_condition"] == cond]
            correct = biased = named = 0
            for _, r in part.iterrows():
                correct += int(r["pred"] == r["label"])
                if r["pred"] < 0:
                    continue
                role = r[f"attr_role_{r['pred']}"]
                if role in ("target", "nontarget"):
                    named += 1
                    biased += int(role == ("target" if r["attr_question_polarity"] == "neg" else "nontarget"))
            acc = correct / len(part) if len(part) else np.nan
            raw = 2 * biased / named - 1 if named else np.nan
            res[f"acc_{cond}"] = acc
            res[f"bias_{cond}"] = (1 - acc) * raw if cond == "ambig" else raw
        out[cat] = res
    return out


@pytest.mark.slow
def test_generate_audit_end_to_end(tmp_path: Path) -> None:
    from tests.llm_fakes import write_bbq

    bbq = write_bbq(tmp_path / "BBQ", n_per_category=8)
    ds, nds = rigged_lm(tmp_path / "ds", 1), rigged_lm(tmp_path / "nds", 2)
    common = ["--dataset", "bbq", "--data", bbq, "--max-new-tokens", "1", "--temperature", "1.5",
              "--samples", "2", "--seed", "5", "--device", "cpu", "--batch-size", "8"]
    run("generate", ds, *common, "-o", tmp_path / "ds.parquet")
    run("generate", nds, *common, "-o", tmp_path / "nds.parquet")
    a = [tmp_path / f"ds-k{k}.parquet" for k in range(2)]
    b = [tmp_path / f"nds-k{k}.parquet" for k in range(2)]
    frames = [pd.read_parquet(p) for p in a]
    df = frames[0]
    assert set(df["extraction"]) - {"letter", "letter-marked", "option-text", "unknown-phrase", "unparsed"} == set()
    assert (df["pred"] >= 0).any() and (df["pred"] < 0).any()  # both kinds are exercised
    assert (df.loc[df["pred"] < 0, "unparsed_reason"] != "").all()
    assert not frames[0]["generated"].equals(frames[1]["generated"])  # two samples differ
    # determinism: the same seed gives the same text and the same file
    run("generate", ds, *common, "-o", tmp_path / "again.parquet")
    assert (tmp_path / "again-k0.parquet").read_bytes() == a[0].read_bytes()
    res = run("bias-score", *a, "--versus", b[0], "--versus", b[1], "--json", "--bootstrap", "20",
              "--permutations", "50")
    got = json.loads(res.stdout[res.stdout.index("{"):])
    hand_a = [by_hand(f) for f in frames]
    hand_b = [by_hand(pd.read_parquet(p)) for p in b]
    for cat, slot in [*got["categories"].items(), ("overall", got["overall"])]:
        for k in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig"):
            mean_a = np.nanmean([h[cat][k] for h in hand_a]) if any(np.isfinite(h[cat][k]) for h in hand_a) else np.nan
            mean_b = np.nanmean([h[cat][k] for h in hand_b]) if any(np.isfinite(h[cat][k]) for h in hand_b) else np.nan
            assert (slot[k] is None and np.isnan(mean_a)) or slot[k] == pytest.approx(mean_a), (cat, k)
            if np.isfinite(mean_a) and np.isfinite(mean_b):
                assert slot["versus"][k]["difference"] == pytest.approx(mean_a - mean_b)
        rows = df if cat == "overall" else df[df["attr_category"] == cat]
        n_unp = np.mean([((f if cat == "overall" else f[f["attr_category"] == cat])["pred"] < 0).sum()
                         for f in frames])
        assert slot["n_unparsed"] == pytest.approx(n_unp) and len(rows) > 0
    assert got["unparsed_rule"]
    run("compare-classes", "-a", a[0], "-b", b[0], "--normalize", "difference")
    run("group-fairness", a[0], "--attribute", "category", "--null", "50")


@pytest.mark.slow
def test_generate_corpus_and_provenance(tmp_path: Path) -> None:
    teacher = rigged_lm(tmp_path / "teacher", 3)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Who was there {i}?", "id": 10 + i}) + "\n" for i in range(3)))
    out = tmp_path / "teacher-0.7.jsonl"
    run("generate", teacher, "--dataset", "corpus", "--data", prompts, "--temperature", "0.7", "--samples", "2",
        "--max-new-tokens", "4", "--seed", "1", "-o", out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 6 and {tuple(sorted(x)) for x in lines} == {("id", "prompt", "response", "sample", "source_id")}
    assert [x["source_id"] for x in lines] == [10, 10, 11, 11, 12, 12]
    prov = json.loads(Path(f"{out}.provenance.json").read_text())
    assert prov["sampling_temperature"] == 0.7 and prov["samples"] == 2 and prov["seed"] == 1
    import hashlib
    assert prov["corpus_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(prov["teacher"]["weights_sha256"]) == 64
    from kdfair_cli.llm.corpus import open_corpus
    assert len(open_corpus(out).split("train").labels) == 6  # the corpus reader takes it as is


@pytest.mark.slow
def test_sequence_distillation_records_the_sampling_temperature(tmp_path: Path) -> None:
    import hashlib

    from tests.llm_fakes import tiny_lm

    teacher, student = rigged_lm(tmp_path / "teacher", 3), tiny_lm(tmp_path / "student", "llama", seed=4)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Who was at shop {i}?", "id": i}) + "\n" for i in range(12)))
    corpus = tmp_path / "teacher-0.9.jsonl"
    run("generate", teacher, "--dataset", "corpus", "--data", prompts, "--temperature", "0.9", "--samples", "2",
        "--max-new-tokens", "4", "--no-chat", "-o", corpus)
    common = ["--arch", "causal-lm", "--pretrained", student, "--dataset", "corpus", "--data", corpus,
              "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--optimizer", "adamw", "--device", "cpu",
              "--max-length", "32"]
    run("distill", "--kd", "sequence", *common, "-o", tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "model.json").read_text())
    t = meta["teacher"]
    assert meta["role"] == "ds" and t["mode"] == "sequence" and t["sampling_temperature"] == 0.9
    assert t["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert t["dir"] == str(teacher.resolve()) and t["samples"] == 2 and len(t["weights_sha256"]) == 64
    # a corpus changed after generation is refused, one line, nothing written
    corpus.write_text(corpus.read_text().replace('"sample": 0', '"sample": 0 ', 1))
    res = runner.invoke(app, [str(a) for a in ("distill", "--kd", "sequence", *common, "-o", tmp_path / "ds2")])
    assert res.exit_code == 2 and "sha256 differs" in res.output
    assert not (tmp_path / "ds2" / "model.json").exists()


def test_stop_ids_and_cut() -> None:
    from kdfair_cli.llm.generate import _cut, stop_ids

    tok = types.SimpleNamespace(eos_token_id=5, decode=lambda ids, skip_special_tokens: " ".join(map(str, ids)))
    model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=[7, 5]),
                                  config=types.SimpleNamespace(eos_token_id=5))
    assert stop_ids(tok, model) == [5, 7]
    assert _cut([1, 2, 7, 3, 5], [5, 7], 0, tok) == Generated("1 2", 2, True)
    assert _cut([1, 2, 3], [5, 7], 0, tok) == Generated("1 2 3", 3, False)
