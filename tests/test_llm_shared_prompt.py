"""Prompt-shared option scoring against plain transformers forwards, and lm-eval's truncation rule."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from kdfair_cli.llm import shared_prompt
from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.shared_prompt import group_pairs, score_shared
from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm, score_batch, score_pairs
from tests.llm_fakes import tiny_lm

FAMILIES = ("gpt2", "llama", "qwen2")
PROMPTS = ["I saw the grandfather and the grandson near the shop number 3.\nQuestion: Who was rude?\nAnswer:",
           "Who", "The fat guy and the slim guy near the shop"]
OPTIONS = [[" The grandson", " Unknown", " The grandfather"], [" Cannot be determined", " guy", " Who"],
           [" a", " The slim guy was the one", " Robert"]]


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    return {f: load_causal_lm(tiny_lm(root / f, f, seed=i), torch.device("cpu")) for i, f in enumerate(FAMILIES)}


def full_forward(model, ctx: list[int], cont: list[int]) -> float:
    """One unpadded forward of prompt + option: sum of log p(option token | everything before)."""
    with torch.no_grad():
        logp = model(torch.tensor([ctx + cont])).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(ctx) - 1 + j, t] for j, t in enumerate(cont)))


def lm_eval_rule(model, ctx: list[int], cont: list[int], max_length: int) -> float:
    """lm-evaluation-harness's window, written out: (ctx + cont)[-(max_length + 1):][:-1] is fed and
    the last len(cont) outputs score the continuation."""
    inp = (ctx + cont)[-(max_length + 1):][:-1]
    with torch.no_grad():
        logp = model(torch.tensor([inp])).logits[0].float().log_softmax(-1)
    return float(logp[len(inp) - len(cont):].gather(1, torch.tensor(cont)[:, None]).sum())


def item_pairs(lm):
    pairs = encode_pairs(lm, [p for p, opts in zip(PROMPTS, OPTIONS) for _ in opts],
                         [o for opts in OPTIONS for o in opts])
    lengths = {len(c) for _, c in pairs}
    assert 1 in lengths and max(lengths) > 2  # single- and multi-token options both exercised
    assert len({len(p) for p, _ in pairs}) == 3  # items of different lengths share a batch
    return pairs


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_matches_full_forwards(lms, family):
    lm = lms[family]
    pairs = item_pairs(lm)
    want = np.array([full_forward(lm.model, p, c) for p, c in pairs])
    for side in ("left", "right"):
        for batch in (1, 2, 3):
            sums, counts = score_shared(lm, pairs, batch, side)
            np.testing.assert_allclose(sums, want, atol=1e-4, rtol=0)
            assert list(counts) == [len(c) for _, c in pairs]
    np.testing.assert_allclose(score_pairs(lm, pairs, 4)[0], want, atol=1e-4, rtol=0)


def test_each_prompt_runs_once(lms, monkeypatch):
    lm = lms["llama"]
    pairs = item_pairs(lm)
    base = lm.model.base_model
    real = base.forward
    calls = []

    def spy(**kw):
        calls.append(tuple(kw["input_ids"].shape))
        return real(**kw)

    monkeypatch.setattr(base, "forward", spy)
    score_shared(lm, pairs, 8)
    # One packed row per prompt: the prompt once, then each option's tokens but the last; then the
    # first batch's check, pair by pair.
    packed = max(len(pairs[3 * g][0]) + sum(len(c) - 1 for _, c in pairs[3 * g:3 * g + 3]) for g in range(3))
    assert calls[0] == (3, packed) and len(calls) == 2 and calls[1][0] == 8
    calls.clear()
    score_shared(lm, pairs * 2, 2)  # repeated pairs join their context's row; later batches unchecked
    assert [c[0] for c in calls] == [2, 2, 1]


def test_grouping_is_by_identical_context():
    pairs = [([1, 2], [5]), ([3], [6]), ([1, 2], [7, 8]), ([2], [5])]
    assert group_pairs(pairs) == ([[1, 2], [3], [2]], [[0, 2], [1], [3]])


def test_unpackable_models_are_scored_pair_by_pair(lms, monkeypatch):
    lm = lms["qwen2"]
    pairs = item_pairs(lm)
    want = score_pairs(lm, pairs, 4)[0]
    monkeypatch.setattr(shared_prompt, "packable", lambda lm, width: False)
    np.testing.assert_allclose(score_shared(lm, pairs, 2)[0], want, atol=1e-5, rtol=0)
    monkeypatch.undo()
    fake = lambda **cfg: SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(**cfg)))  # noqa: E731
    assert shared_prompt.packable(lm, 10) and shared_prompt.packable(fake(_attn_implementation="eager"), 10)
    assert not shared_prompt.packable(fake(_attn_implementation="flash_attention_2"), 10)
    window = fake(_attn_implementation="sdpa", sliding_window=8, use_sliding_window=True)
    assert not shared_prompt.packable(window, 10) and shared_prompt.packable(window, 8)
    assert shared_prompt.packable(fake(_attn_implementation="sdpa", sliding_window=8, use_sliding_window=False), 10)
    # A model that ignores the mask: the first batch's check catches it.
    real = shared_prompt._score_packed
    monkeypatch.setattr(shared_prompt, "_score_packed", lambda *a: real(*a) - 1.0)
    with pytest.warns(UserWarning, match="pair by pair"):
        got = score_shared(lm, pairs, 2)[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ("gpt2", "llama"))
def test_truncation_is_lm_evals_rule(lms, family):
    """An item longer than the model: max_length + 1 tokens of prompt + option are kept, the last
    option token is never fed, so each option sees its own cut of the prompt."""
    lm = dataclasses.replace(lms[family], max_length=12)
    full = lm.prefix_ids + lm.tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    conts = [lm.tokenizer(o, add_special_tokens=False)["input_ids"] for o in (" a", " The slim guy was the one", " Who")]
    assert len(full) > 13 and len({len(c) for c in conts}) > 1
    pairs = encode_pairs(lm, [PROMPTS[0]] * 3, [" a", " The slim guy was the one", " Who"])
    for (p, c), cont in zip(pairs, conts):
        assert c == cont and p == full[-(13 - len(c)):] and len(p) + len(c) - 1 == 12
    assert len(group_pairs(pairs)[0]) == len({len(c) for c in conts})  # cut differently, not shared
    want = np.array([lm_eval_rule(lm.model, full, c, 12) for c in conts])
    np.testing.assert_allclose(score_shared(lm, pairs, 4)[0], want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(score_batch(lm, pairs)[0], want, atol=1e-4, rtol=0)
    # An option of exactly max_length tokens keeps one context token; a longer one is refused.
    long_opt = " " + " ".join(["guy"] * 40)
    n_long = len(lm.tokenizer(long_opt, add_special_tokens=False)["input_ids"])
    lm12 = dataclasses.replace(lm, max_length=n_long)
    (p, c), = encode_pairs(lm12, [PROMPTS[0]], [long_opt])
    assert len(p) == 1 and len(c) == n_long
    np.testing.assert_allclose(score_shared(lm12, [(p, c)], 1)[0],
                               [lm_eval_rule(lm.model, full, c, n_long)], atol=1e-4, rtol=0)
    with pytest.raises(KdfairError, match="longer than"):
        encode_pairs(dataclasses.replace(lm, max_length=n_long - 1), [PROMPTS[0]], [long_opt])


@pytest.mark.slow
def test_truncated_scores_equal_lm_evals_own(lms, tmp_path):
    """lm-eval's HFLM._loglikelihood_tokens on the untruncated token pairs, max_length 12."""
    hf_mod = pytest.importorskip("lm_eval.models.huggingface")
    lm = dataclasses.replace(lms["llama"], max_length=12)
    folder = tiny_lm(tmp_path / "llama", "llama", seed=1)
    assert (folder / "config.json").is_file()
    hf = hf_mod.HFLM(pretrained=str(folder), backend="causal", device="cpu", dtype="float32", batch_size=4,
                     max_length=12)
    prompts = [p for p, opts in zip(PROMPTS, OPTIONS) for _ in opts]
    conts = [o for opts in OPTIONS for o in opts]
    full = [lm.prefix_ids + lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    cids = [lm.tokenizer(o, add_special_tokens=False)["input_ids"] for o in conts]
    theirs = [r[0] for r in hf._loglikelihood_tokens([((p, o), f, c) for p, o, f, c in
                                                       zip(prompts, conts, full, cids)], disable_tqdm=True)]
    ours = score_shared(dataclasses.replace(lm, model=hf.model), encode_pairs(lm, prompts, conts), 2)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
