"""BBQ reader and causal-LM option scoring: layout, role rules, transformers parity, resume, errors."""

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
from kdfair_cli.llm.bbq import derive_roles, open_bbq
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm import shared_prompt
from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm, score_batch
from tests.llm_fakes import bbq_items, tiny_lm, write_bbq

runner = CliRunner()
FAMILIES = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    return {"root": root, "bbq": write_bbq(root / "bbq"),
            **{f: tiny_lm(root / f, f, seed=i) for i, f in enumerate(FAMILIES)}}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdfair: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- BBQ reader -----------------------------------------------------------------------------

def test_bbq_layout_roles_and_columns(env, tmp_path):
    ds = open_bbq(env["bbq"])
    part = ds.split("test")
    items = sorted(bbq_items(), key=lambda it: (it["category"], it["example_id"]))
    assert len(part) == len(items) and list(part.labels) == [it["label"] for it in items]
    for name in ("category", "example_id", "question_polarity", "context_condition", "subcategory",
                 "role_0", "role_1", "role_2", "label_role"):
        assert name in part.attrs
    # The fakes put the stereotyped person's text after "The " and the group in answer_info.
    for i, it in enumerate(items):
        for k in range(3):
            group = it["answer_info"][f"ans{k}"][1]
            want = ("unknown" if group == "unknown" else
                    "target" if group in ("old", "obese", "F", "F-Black") else "nontarget")
            assert part.attrs[f"role_{k}"][i] == want
    assert ds.info.options["roles"]["undetermined"] == 0
    # Sample ids: category block * 1e6 + example_id, the same for any folder.
    assert part.sample_id[0] == 0 and part.sample_id[-1] == 7 * 1_000_000 + 15
    with_meta = open_bbq(write_bbq(tmp_path / "m", metadata=True))
    assert with_meta.info.options["roles"]["from_metadata"] == len(items)
    assert with_meta.info.options["roles"]["metadata_disagrees"] == 0
    assert set(with_meta.split("test").attrs["label_type"]) == {"label"}


def test_role_rules_by_hand():
    info = lambda *pairs: {f"ans{k}": list(p) for k, p in enumerate(pairs)}  # noqa: E731
    # 'old' must not match 'nonOld' (a substring test would).
    assert derive_roles(info(["grandson", "nonOld"], ["grandfather", "old"], ["Unknown", "unknown"]),
                        ["old"]) == ("nontarget", "target", "unknown")
    # Gender words map to F / M; the text may carry the group (Nationality).
    assert derive_roles(info(["Unknown", "unknown"], ["Margaret", "F"], ["Robert", "M"]), ["F"]) == \
        ("unknown", "target", "nontarget")
    assert derive_roles(info(["Nigerian", "Africa"], ["Can't answer", "unknown"], ["British", "Europe"]),
                        ["Nigerian", "Ethiopian"]) == ("target", "unknown", "nontarget")
    # Intersectional: 'F-Black' answers to F and Black.
    assert derive_roles(info(["Black woman", "F-Black"], ["White man", "M-White"], ["Unknown", "unknown"]),
                        ["Black"]) == ("target", "nontarget", "unknown")
    # Both people match, or neither: undetermined, never guessed.
    assert derive_roles(info(["Black woman", "F-Black"], ["Black man", "M-Black"], ["Unknown", "unknown"]),
                        ["Black"]) == ("undetermined", "undetermined", "unknown")
    assert derive_roles(info(["a", "x"], ["b", "y"], ["Unknown", "unknown"]), ["z"])[:2] == \
        ("undetermined", "undetermined")


def test_undetermined_items_are_counted(tmp_path):
    items = bbq_items(4)
    items[0]["additional_metadata"]["stereotyped_groups"] = ["nobody"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Age.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    ds = open_bbq(tmp_path)
    assert ds.info.options["roles"]["undetermined"] == 1
    assert list(ds.split("test").attrs["label_role"]).count("undetermined") <= 1


def test_bbq_line_missing_field(env, tmp_path):
    items = bbq_items(2)
    del items[1]["answer_info"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Age.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    with pytest.raises(KdfairError, match="Age.jsonl:2: missing field"):
        open_bbq(tmp_path)
    res = invoke("predict", env["gpt2"], "--dataset", "bbq", "--data", tmp_path, "-o", tmp_path / "p.parquet")
    one_line_error(res, "Age.jsonl:2", "answer_info")
    assert not (tmp_path / "p.parquet").exists()


# --- scoring against transformers itself ------------------------------------------------------

def direct_loglik(model, prompt_ids, cont_ids) -> float:
    """Unbatched, unpadded: sum of log p(continuation token | everything before) from logits."""
    with torch.no_grad():
        logp = model(torch.tensor([prompt_ids + cont_ids])).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(prompt_ids) - 1 + j, t] for j, t in enumerate(cont_ids)))


@pytest.mark.parametrize("family", FAMILIES)
def test_option_loglik_matches_transformers(env, family):
    lm = load_causal_lm(env[family], torch.device("cpu"))
    assert lm.provenance["dtype"] == "float32"
    assert (lm.prefix_ids == [0]) == (family == "llama")  # Llama's BOS
    prompts = ["I saw the grandfather and the grandson.\nQuestion: Who was rude?\nAnswer:", "Who",
               "The fat guy and the slim guy near the shop number 3. The slim guy was the one"]
    conts = [" The grandson", " Cannot be determined", " guy"]
    pairs = encode_pairs(lm, prompts, conts)
    assert len({len(p) + len(c) for p, c in pairs}) == 3  # padding is really exercised
    want = np.array([direct_loglik(lm.model, p, c) for p, c in pairs])
    for side in ("left", "right"):
        sums, counts = score_batch(lm, pairs, side)
        np.testing.assert_allclose(sums, want, atol=1e-4, rtol=0)
        assert list(counts) == [len(c) for _, c in pairs]


def test_left_padding_needs_position_ids(env, monkeypatch):
    """GPT-2's learned positions: without position ids from the mask, left padding changes scores."""
    lm = load_causal_lm(env["gpt2"], torch.device("cpu"))
    pairs = encode_pairs(lm, ["Who", "I saw the grandfather and the grandson near the shop."], [" Unknown"] * 2)
    want = direct_loglik(lm.model, *pairs[0])
    base = lm.model.base_model
    real_forward = base.forward
    monkeypatch.setattr(base, "forward", lambda **kw: real_forward(**{**kw, "position_ids": None}))
    sums, _ = score_batch(lm, pairs, "left")
    assert abs(sums[0] - want) > 1e-3


def test_loads_are_local_only(env, monkeypatch):
    import transformers

    seen = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoConfig):
        real = cls.from_pretrained

        def spy(*args, _real=real, **kwargs):
            seen.append(kwargs.get("local_files_only"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    load_causal_lm(env["qwen2"], torch.device("cpu"))
    assert len(seen) >= 3 and all(v is True for v in seen)  # nested loads pass it on too


# --- predict: file, mean scoring, resume, errors -----------------------------------------------

def test_predict_file_mean_scoring_and_analyses(env, tmp_path):
    out_sum, out_mean = tmp_path / "sum.parquet", tmp_path / "mean.parquet"
    for out, score in ((out_sum, "sum"), (out_mean, "mean")):
        res = invoke("predict", env["llama"], "--dataset", "bbq", "--data", env["bbq"], "--lm-score", score,
                     "--batch-size", "5", "-o", out)
        assert res.exit_code == 0, res.output
        assert not (tmp_path / f"{out.name}.parts").exists()
    a, b = pd.read_parquet(out_sum), pd.read_parquet(out_mean)
    la, lb = np.stack(a["logits"]), np.stack(b["logits"])
    assert la.shape == (64, 3) and (la < 0).all()
    # mean = sum / number of the option's tokens, recomputed with the tokenizer.
    lm = load_causal_lm(env["llama"], torch.device("cpu"))
    n_tok = np.array([[len(lm.tokenizer(" " + a[f"attr_ans{k}"][i], add_special_tokens=False)["input_ids"])
                       for k in range(3)] for i in range(len(a))])
    np.testing.assert_allclose(lb, la / n_tok, rtol=1e-5)
    # Item 0 by hand from transformers.
    from kdfair_cli.llm.scoring import PROMPT_TEMPLATE
    row = a.iloc[0]
    prompt = PROMPT_TEMPLATE.format(context=row["attr_context"], question=row["attr_question"])
    p_ids = [0] + lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = lm.tokenizer(" " + row["attr_ans1"], add_special_tokens=False)["input_ids"]
    assert abs(la[0, 1] - direct_loglik(lm.model, p_ids, c_ids)) < 1e-4
    import pyarrow.parquet as pq
    meta = json.loads(pq.read_schema(out_sum).metadata[b"kdfair"])
    assert meta["dataset"] == "bbq" and meta["lm"]["scoring"] == "sum" and meta["lm"]["template"] == PROMPT_TEMPLATE
    for key in ("dir", "config_sha256", "tokenizer_sha256"):
        assert meta["model"][key]
    # Existing analyses read the file unchanged.
    res = invoke("compare-classes", "-a", out_sum, "-b", out_mean, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_classes"] == 3
    res = invoke("group-fairness", out_sum, "--attribute", "category", "--json")
    assert res.exit_code == 0, res.output


def test_prompt_template_option(env, tmp_path):
    out = tmp_path / "t.parquet"
    res = invoke("predict", env["gpt2"], "--dataset", "bbq", "--data", env["bbq"], "-o", out,
                 "--prompt-template", "{context} Q: {question}\\nA:")
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq
    assert json.loads(pq.read_schema(out).metadata[b"kdfair"])["lm"]["template"] == "{context} Q: {question}\nA:"
    one_line_error(invoke("predict", env["gpt2"], "--dataset", "bbq", "--data", env["bbq"], "-o", out,
                          "--prompt-template", "{story}"), "{story}")


def test_resume_after_a_killed_run(env, tmp_path, monkeypatch):
    out = tmp_path / "r.parquet"
    args = ("predict", env["qwen2"], "--dataset", "bbq", "--data", env["bbq"], "--chunk-size", "10", "-o", out)
    assert invoke(*args[:-2], "-o", tmp_path / "full.parquet").exit_code == 0
    real = shared_prompt.score_shared
    calls = {"n": 0}

    def dies_after_three(*a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # the job is killed while scoring chunk 4
        return real(*a, **k)

    monkeypatch.setattr(shared_prompt, "score_shared", dies_after_three)
    invoke(*args)
    parts = tmp_path / "r.parquet.parts"
    assert not out.exists() and len(list(parts.glob("chunk-*.npy"))) == 3
    (parts / "chunk-000001.npy").write_bytes(b"garbage")  # a damaged chunk is scored again
    calls["n"] = -100
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert calls["n"] == -100 + 5  # 7 chunks: 2 kept, 5 scored
    assert "resuming" in res.stderr and "damaged" in res.stderr
    full, resumed = pd.read_parquet(tmp_path / "full.parquet"), pd.read_parquet(out)
    np.testing.assert_array_equal(np.stack(full["logits"]), np.stack(resumed["logits"]))
    assert not parts.exists()


def test_resume_after_the_weights_were_replaced_starts_afresh(env, tmp_path, monkeypatch):
    """Weights of the same size but another model: the chunks of the first are not reused (the
    manifest holds the weights' sha256), so no file mixes two models' scores."""
    import shutil

    model = tmp_path / "m"
    shutil.copytree(env["qwen2"], model)
    out = tmp_path / "r.parquet"
    args = ("predict", model, "--dataset", "bbq", "--data", env["bbq"], "--chunk-size", "10", "-o", out)
    real = shared_prompt.score_shared
    calls = {"n": 0}

    def dies_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(shared_prompt, "score_shared", dies_after_two)
    invoke(*args)
    assert len(list((tmp_path / "r.parquet.parts").glob("chunk-*.npy"))) == 2
    other = tiny_lm(tmp_path / "other", "qwen2", seed=7)
    size = (model / "model.safetensors").stat().st_size
    assert (other / "model.safetensors").stat().st_size == size
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    monkeypatch.setattr(shared_prompt, "score_shared", real)
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "different run" in res.stderr and "resuming" not in res.stderr
    fresh = tmp_path / "fresh.parquet"
    assert invoke("predict", other, "--dataset", "bbq", "--data", env["bbq"], "-o", fresh).exit_code == 0
    np.testing.assert_allclose(np.stack(pd.read_parquet(out)["logits"]),  # batch shapes differ: float noise
                               np.stack(pd.read_parquet(fresh)["logits"]), atol=1e-4)


def test_parts_folder_of_the_user_is_not_taken_over(env, tmp_path):
    mine = tmp_path / "r.parquet.parts"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_line_error(invoke("predict", env["gpt2"], "--dataset", "bbq", "--data", env["bbq"], "-o",
                          tmp_path / "r.parquet"), "did not write")
    assert (mine / "notes.txt").read_text() == "mine" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_model_dir_without_tokenizer(env, tmp_path):
    bare = tiny_lm(tmp_path / "bare", "gpt2", tokenizer=False)
    one_line_error(invoke("predict", bare, "--dataset", "bbq", "--data", env["bbq"], "-o", tmp_path / "x.parquet"),
                   "no tokenizer")


def test_hub_name_is_refused(env, tmp_path):
    one_line_error(invoke("predict", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "--dataset", "bbq",
                          "--data", env["bbq"], "-o", tmp_path / "x.parquet"), "never downloads")
    assert not (tmp_path / "x.parquet").exists()


def test_a_250_character_output_name_scores_and_keeps_its_chunks_beside_it(env, tmp_path):
    """OUT.parts would pass NAME_MAX (255 bytes) for a legal 250-character name: the chunk folder
    takes a hashed name instead, and is gone once the file is written."""
    from kdfair_cli.llm.scoring import parts_dir_for

    out = tmp_path / ("p" * 242 + ".parquet")
    assert len(out.name) == 250
    assert parts_dir_for(tmp_path / "r.parquet") == tmp_path / "r.parquet.parts"
    long_parts = parts_dir_for(out)
    assert long_parts.parent == tmp_path and len(long_parts.name) < 255 and long_parts.name.endswith(".parts")
    result = invoke("predict", env["llama"], "--dataset", "bbq", "--data", env["bbq"], "--chunk-size", "10", "-o", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert out.exists() and not long_parts.exists()
