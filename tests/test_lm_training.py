"""Causal-LM training and distillation: the corpus, the token rows, online and offline (top-k
cache) distillation against a full-logit loss worked with transformers, resume after SIGTERM,
the same-tokenizer check, and predict on the result."""

from __future__ import annotations

import json
import math
import os
import signal

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.modeldir import STATE
from kdfair_cli.train import runner
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.loop import Interrupted
from kdfair_cli.train.runner import train_model
from tests.llm_fakes import tiny_lm, write_bbq, write_corpus
from tests.test_bad_input import kdfair


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    return {"teacher": tiny_lm(root / "teacher", "llama", seed=0, hidden=48, layers=2),
            "student": tiny_lm(root / "student", "llama", seed=1, hidden=32, layers=1),
            "gpt2": tiny_lm(root / "gpt2", "gpt2", seed=2, hidden=32, layers=1),  # same vocabulary, no BOS
            "corpus": write_corpus(root / "corpus.jsonl")}


def cfg(lms, out, role="nds", **kw) -> TrainConfig:
    base = dict(arch="causal-lm", dataset="corpus", data=str(lms["corpus"]), pretrained=str(lms["student"]),
                out=str(out), role=role, epochs=2, batch_size=8, optimizer="adamw", lr=3e-3,
                weight_decay=0.0, device="cpu", max_length=64, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**base)


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# ------------------------------------------------------------------------------ corpus and rows

def test_corpus_lines_and_refusals(tmp_path):
    from kdfair_cli.llm.corpus import open_corpus

    f = tmp_path / "c.jsonl"
    f.write_text('{"text": "a b"}\n\n{"prompt": "q", "response": " r", "id": 7}\n')
    split = open_corpus(f).split("train")
    assert list(split.sample_id) == [0, 7] and list(split.extra["prompt"]) == ["", "q"]
    for body, msg in (('{"txt": "a"}\n', "c.jsonl:1: no 'text' field"), ("[1]\n", "c.jsonl:1: expected a JSON object"),
                      ('{"text": "a"}\n{"text": "b", "id": 0}\n', "id 0 appears 2 times"),
                      ('{"text": "a"}\nnot json\n', "c.jsonl:2: not valid JSON"),
                      ('{"text": "a"}\n\xff\n', "c.jsonl: not UTF-8"),
                      ('{"prompt": "a", "response": ""}\n', "empty response")):
        f.write_bytes(body.encode("latin-1"))  # \xff: a byte that is not UTF-8
        with pytest.raises(KdfairError, match=msg):
            open_corpus(f)


def test_learned_tokens_are_the_response_and_eos(lms):
    """Worked by hand with the tokenizer: BOS + prompt + response + EOS, only response + EOS learned."""
    from transformers import AutoTokenizer

    from kdfair_cli.llm.trainee import LMBatches, encode_corpus, learned_rows

    tok = AutoTokenizer.from_pretrained(str(lms["student"]))
    enc = encode_corpus(tok, ["Who?", ""], [" The boy", "plain text"], max_length=64)
    p, r, t = (tok(s, add_special_tokens=False)["input_ids"] for s in ("Who?", " The boy", "plain text"))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert enc.ids.tolist() == [bos, *p, *r, eos, bos, *t, eos]
    batches = LMBatches(enc, torch.device("cpu"))
    assert learned_rows(torch.zeros(2, batches.get(torch.tensor([0, 1])).shape[2], 1),
                        batches.get(torch.tensor([0, 1])))[1].tolist() == [*r, eos, *t, eos]
    x = batches.get(torch.tensor([1, 0]))
    hidden = torch.arange(x.shape[2], dtype=torch.float32)[None, :, None].repeat(2, 1, 1)
    rows, targets = learned_rows(hidden, x)
    assert targets.tolist() == [*t, eos, *r, eos]
    # the row predicting a token is the position before it
    assert rows[:, 0].tolist() == [*range(0, len(t) + 1), *range(len(p), len(p) + len(r) + 1)]


# ------------------------------------------------------------------------------ the loss against transformers

def full_kd_loss(student, teacher, x, T, alpha):
    """The paper's loss over every learned token, from transformers' full [B, L, V] logits."""
    ids, mask, learn = x[:, 0], x[:, 1], x[:, 2].bool()
    zs = student(input_ids=ids, attention_mask=mask).logits[:, :-1]
    with torch.no_grad():
        zt = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
    sel, y = learn[:, 1:], ids[:, 1:]
    zs, zt, y = zs[sel], zt[sel], y[sel]
    kl = (torch.softmax(zt / T, -1) * (torch.log_softmax(zt / T, -1) - torch.log_softmax(zs / T, -1))).sum(-1)
    ce = -torch.log_softmax(zs, -1).gather(1, y[:, None])[:, 0]
    return alpha * T * T * kl.mean() + (1 - alpha) * ce.mean()


@pytest.mark.parametrize("mode", ["online", "offline-full-k"])
def test_first_step_loss_matches_transformers(lms, tmp_path, mode):
    from kdfair_cli.llm.cache import write_teacher_cache
    from kdfair_cli.llm.trainee import build_trainee
    from kdfair_cli.llm.corpus import open_corpus
    from kdfair_cli.llm.teacher import lm_objective
    from transformers import AutoModelForCausalLM

    T, alpha = 3.0, 0.7
    trainee, _ = build_trainee(str(lms["student"]), None, 64)
    corpus = open_corpus(lms["corpus"])
    train = corpus.split("train")
    batches = trainee.make_batches(train, torch.device("cpu"))
    kw = {"teacher": str(lms["teacher"])}
    if mode != "online":
        write_teacher_cache(lms["teacher"], lms["corpus"], tmp_path / "cache", top_k=trainee.vocab,
                            temperatures=[T], max_length=64, device="cpu", verbose=False)
        kw = {"teacher_logits": str(tmp_path / "cache")}
    c = cfg(lms, tmp_path / "o", role="ds", temperature=T, alpha=alpha, **kw)
    objective, provenance = lm_objective(c, trainee, batches, train, torch.device("cpu"), corpus.info.fingerprint)
    assert provenance["mode"] == mode.split("-")[0]
    index = torch.tensor([5, 0, 17, 3])
    x = batches.get(index)
    got = objective(trainee(x), None, index, x)
    teacher = AutoModelForCausalLM.from_pretrained(str(lms["teacher"]), dtype=torch.float32)
    want = full_kd_loss(trainee.hf, teacher, x, T, alpha)
    assert got.count == int(x[:, 2, 1:].sum())
    assert float(got.loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


# ------------------------------------------------------------------------------ training runs

@pytest.mark.slow
def test_nds_learns_the_corpus_and_predict_reads_it(lms, tmp_path):
    meta = train_model(cfg(lms, tmp_path / "nds", epochs=3), verbose=False)
    out = tmp_path / "nds"
    assert meta["arch"] == "causal-lm" and meta["arch_family"] == "causal-lm" and meta["role"] == "nds"
    assert meta["lm"]["tokenizer"]["size"] > 0
    import pandas as pd

    hist = pd.read_parquet(out / "history.parquet")
    assert hist["val_loss"].iloc[-1] < hist["val_loss"].iloc[0]
    assert hist["train_loss"].iloc[-1] < math.log(meta["lm"]["vocab"])  # below a uniform guess
    bbq = write_bbq(tmp_path / "BBQ", n_per_category=4)
    run = kdfair("predict", out, "--dataset", "bbq", "--data", bbq, "-o", tmp_path / "p.parquet", "--device", "cpu")
    assert run.code == 0, run.stderr
    preds = pd.read_parquet(tmp_path / "p.parquet")
    assert len(preds) == 16


@pytest.mark.slow
def test_offline_with_every_logit_equals_online(lms, tmp_path):
    """k = V: the bucket KL is the full KL, so offline and online train the same weights."""
    from kdfair_cli.llm.cache import write_teacher_cache
    from transformers import AutoTokenizer

    v = len(AutoTokenizer.from_pretrained(str(lms["student"])))
    write_teacher_cache(lms["teacher"], lms["corpus"], tmp_path / "cache", top_k=v, temperatures=[2],
                        max_length=64, device="cpu", verbose=False)
    on = train_model(cfg(lms, tmp_path / "on", role="ds", temperature=2.0, alpha=0.8,
                         teacher=str(lms["teacher"])), verbose=False)
    off = train_model(cfg(lms, tmp_path / "off", role="ds", temperature=2.0, alpha=0.8,
                          teacher_logits=str(tmp_path / "cache")), verbose=False)
    assert on["teacher"]["mode"] == "online" and off["teacher"]["mode"] == "offline"
    a, b = weights(tmp_path / "on"), weights(tmp_path / "off")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.slow
def test_sigterm_then_resume_gives_bit_identical_student(lms, tmp_path, monkeypatch):
    """GPT-2 models (dropout 0.1): the resumed run must also replay the dropout masks."""
    from kdfair_cli.llm.cache import write_teacher_cache
    from kdfair_cli.llm import teacher as lm_teacher

    teacher = tiny_lm(tmp_path / "t", "gpt2", seed=0, hidden=48, layers=2)
    student = tiny_lm(tmp_path / "s", "gpt2", seed=1, hidden=32, layers=1)
    write_teacher_cache(teacher, lms["corpus"], tmp_path / "cache", top_k=8, temperatures=[4],
                        max_length=64, device="cpu", verbose=False)
    make = lambda out: cfg(lms, out, role="ds", temperature=4.0, alpha=0.5, epochs=3,  # noqa: E731
                           pretrained=str(student), teacher_logits=str(tmp_path / "cache"))
    train_model(make(tmp_path / "full"), verbose=False)
    plain = lm_teacher.lm_objective
    steps = {"n": 0}

    def killing(*args):
        inner, provenance = plain(*args)

        def objective(*a):
            steps["n"] += 1
            if steps["n"] == 8:  # in epoch 2 (6 steps per epoch: 43 training lines, batch 8)
                signal.raise_signal(signal.SIGTERM)
            return inner(*a)

        return objective, provenance

    monkeypatch.setattr(lm_teacher, "lm_objective", killing)
    with pytest.raises(Interrupted) as info:
        train_model(make(tmp_path / "cut"), verbose=False)
    assert info.value.epochs_done == 1 and (tmp_path / "cut" / STATE).exists()
    monkeypatch.setattr(lm_teacher, "lm_objective", plain)
    train_model(make(tmp_path / "cut"), resume=True, verbose=False)
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


# ------------------------------------------------------------------------------ refusals

def swapped_tokenizer_lm(src, dst):
    """A copy of the student whose tokenizer swaps the ids of two tokens: same size, other ids."""
    import shutil

    shutil.copytree(src, dst)
    data = json.loads((dst / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (dst / "tokenizer.json").write_text(json.dumps(data))
    return dst


def test_tokenizer_mismatch_is_refused_online_and_offline(lms, tmp_path):
    from kdfair_cli.llm.cache import write_teacher_cache

    other = swapped_tokenizer_lm(lms["student"], tmp_path / "other")
    common = ["--arch", "causal-lm", "--dataset", "corpus", "--data", lms["corpus"], "--pretrained", other,
              "-T", "2", "--epochs", "1", "--device", "cpu", "--max-length", "64"]
    run = kdfair("distill", "--teacher", lms["teacher"], *common, "-o", tmp_path / "ds-on")
    assert run.code == 2 and len(run.error_lines) == 1, run.stderr
    assert "tokenizers of teacher" in run.error_lines[0] and "2 id(s) differ" in run.error_lines[0]
    assert not (tmp_path / "ds-on" / "model.json").exists()
    write_teacher_cache(lms["teacher"], lms["corpus"], tmp_path / "cache", top_k=4, temperatures=[2],
                        max_length=64, device="cpu", verbose=False)
    run = kdfair("distill", "--teacher-logits", tmp_path / "cache", *common, "-o", tmp_path / "ds-off")
    assert run.code == 2 and "another tokenizer" in run.error_lines[0], run.stderr
    same = [lms["student"] if a == other else a for a in common]
    run = kdfair("distill", "--teacher-logits", tmp_path / "cache", *same[:8], "-T", "3", *same[10:],
                 "-o", tmp_path / "ds-t3")
    assert run.code == 2 and "temperature" in run.error_lines[0], run.stderr
    run = kdfair("train-teacher", "--arch", "causal-lm", "--dataset", "corpus", "--data", lms["corpus"],
                 "-o", tmp_path / "x", "--device", "cpu")
    assert run.code == 2 and "--pretrained" in run.error_lines[0], run.stderr


@pytest.fixture(scope="module")
def cache4(lms, tmp_path_factory):
    from kdfair_cli.llm.cache import write_teacher_cache

    out = tmp_path_factory.mktemp("c") / "cache"
    write_teacher_cache(lms["teacher"], lms["corpus"], out, top_k=4, temperatures=[2], max_length=64,
                        device="cpu", verbose=False)
    return out


BAD = [  # (id, args, culprit in the one error line, path that must not appear)
    ("corpus-bad-line", ["train-teacher", "--arch", "causal-lm", "--pretrained", "{student}", "--dataset",
                         "corpus", "--data", "{badcorpus}", "-o", "{tmp}/o"], "bad.jsonl:2", "{tmp}/o"),
    ("lm-needs-pretrained", ["train-teacher", "--arch", "causal-lm", "--dataset", "corpus", "--data",
                             "{corpus}", "-o", "{tmp}/o"], "--pretrained", "{tmp}/o"),
    ("lm-needs-corpus", ["train-teacher", "--arch", "lenet5", "--dataset", "corpus", "--data", "{corpus}",
                         "-o", "{tmp}/o"], "corpus", "{tmp}/o"),
    ("student-over-its-init", ["train-teacher", "--arch", "causal-lm", "--pretrained", "{student}",
                               "--dataset", "corpus", "--data", "{corpus}", "-o", "{student}",
                               "--force"], "student", None),
    ("cache-needs-data", ["predict", "{teacher}", "--dataset", "corpus", "-o", "{tmp}/c"], "--data", "{tmp}/c"),
    ("cache-to-stdout", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}", "-o", "-"],
     "directory", None),
    ("cache-top-k-0", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}", "--top-k", "0",
                       "-o", "{tmp}/c"], "--top-k", "{tmp}/c"),
    ("cache-bad-temperature", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}",
                               "--cache-temperatures", "2,hot", "-o", "{tmp}/c"], "hot", "{tmp}/c"),
    ("cache-exists", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}", "-o", "{cache}"],
     "--force", None),
    ("cache-over-corpus", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}", "-o",
                           "{corpus}", "--force"], "corpus.jsonl", None),
    ("cache-of-another-corpus", ["distill", "--teacher-logits", "{cache}", "--arch", "causal-lm", "--pretrained",
                                 "{student}", "--dataset", "corpus", "--data", "{corpus2}", "-T", "2",
                                 "--max-length", "64", "-o", "{tmp}/o"], "another corpus", "{tmp}/o"),
    ("cache-of-another-encoding", ["distill", "--teacher-logits", "{cache}", "--arch", "causal-lm", "--pretrained",
                                   "{gpt2}", "--dataset", "corpus", "--data", "{corpus}", "-T", "2",
                                   "--max-length", "64", "-o", "{tmp}/o"], "tokenised the corpus otherwise",
     "{tmp}/o"),
    ("max-length-beyond-positions", ["train-teacher", "--arch", "causal-lm", "--pretrained", "{student}",
                                     "--dataset", "corpus", "--data", "{corpus}", "--max-length", "300",
                                     "-o", "{tmp}/o"], "256 positions", "{tmp}/o"),
    ("cache-max-length-beyond-positions", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}",
                                           "--max-length", "300", "-o", "{tmp}/c"], "256 positions", "{tmp}/c"),
    ("nothing-learned", ["train-teacher", "--arch", "causal-lm", "--pretrained", "{student}", "--dataset",
                         "corpus", "--data", "{longprompts}", "--max-length", "8", "-o", "{tmp}/o"],
     "no learned token", "{tmp}/o"),
    ("cache-split-not-train", ["predict", "{teacher}", "--dataset", "corpus", "--data", "{corpus}", "--split",
                               "val", "-o", "{tmp}/c"], "--split", "{tmp}/c"),
    ("distill-not-a-cache", ["distill", "--teacher-logits", "{student}", "--arch", "causal-lm", "--pretrained",
                             "{student}", "--dataset", "corpus", "--data", "{corpus}", "-T", "2", "-o",
                             "{tmp}/o"], "cache.json", "{tmp}/o"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_lm_input_gets_one_line(case, lms, cache4, tmp_path):
    import hashlib

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    rows = [json.loads(line) for line in lms["corpus"].read_text().splitlines()]
    corpus2 = tmp_path / "corpus2.jsonl"  # the same ids and responses, other contexts
    corpus2.write_text("".join(json.dumps({**r, "prompt": "Elsewhere. " + r["prompt"]} if "prompt" in r else r) + "\n"
                               for r in rows))
    longprompts = tmp_path / "long.jsonl"
    longprompts.write_text("".join(json.dumps({"prompt": "a very long prompt about many things " * 3,
                                               "response": " yes"}) + "\n" for _ in range(12)))
    where = {"student": lms["student"], "teacher": lms["teacher"], "corpus": lms["corpus"], "badcorpus": bad,
             "cache": cache4, "tmp": tmp_path, "corpus2": corpus2, "gpt2": lms["gpt2"],
             "longprompts": longprompts}
    _, args, culprit, absent = case
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for root in (lms["student"], cache4, lms["corpus"])
              for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()}
    run = kdfair(*[a.format(**where) for a in args], "--device", "cpu")
    assert run.code == 2 and len(run.error_lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert culprit in run.error_lines[0], run.error_lines
    if absent:
        assert not os.path.exists(absent.format(**where))
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert after == before


@pytest.mark.slow
def test_predictions_of_a_distilled_lm_name_its_role_and_temperature(lms, tmp_path):
    from kdfair_cli.io.predictions import read_predictions

    train_model(cfg(lms, tmp_path / "ds", role="ds", temperature=3.0, alpha=0.6, epochs=1,
                    teacher=str(lms["teacher"])), verbose=False)
    bbq = write_bbq(tmp_path / "BBQ", n_per_category=2)
    run = kdfair("predict", tmp_path / "ds", "--dataset", "bbq", "--data", bbq, "-o", tmp_path / "p.parquet",
                 "--device", "cpu")
    assert run.code == 0, run.stderr
    model = read_predictions(tmp_path / "p.parquet").meta["model"]
    assert (model["role"], model["temperature"], model["alpha"]) == ("ds", 3.0, 0.6)
    assert model["teacher"]["mode"] == "online"


@pytest.mark.slow
def test_model_files_follow_the_umask(lms, tmp_path):
    old = os.umask(0o022)
    try:
        train_model(cfg(lms, tmp_path / "m", epochs=1), verbose=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_top_k_beyond_the_vocabulary_keeps_every_logit(lms, tmp_path):
    from transformers import AutoTokenizer

    from kdfair_cli.llm.cache import write_teacher_cache

    manifest = write_teacher_cache(lms["teacher"], lms["corpus"], tmp_path / "c", top_k=10_000, temperatures=[2],
                                   max_length=64, device="cpu", verbose=False)
    assert manifest["top_k"] == len(AutoTokenizer.from_pretrained(str(lms["teacher"])))
