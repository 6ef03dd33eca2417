"""Text: HateXplain / textcsv readers, BERT -> DistilBERT end to end on CPU, text pair sources."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.data.hatexplain import majority, open_hatexplain, parse_post, target_groups
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.data.text import swap_identity
from kdfair_cli.data.text_features import fit_tfidf
from kdfair_cli.errors import KdfairError
from tests.text_fakes import write_hatexplain

runner = CliRunner()
TINY_BERT = "hidden=32,layers=1,heads=2,ffn=64"
TINY_DISTIL = "hidden=16,layers=1,heads=2,ffn=32"


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def ann(label: str, *targets: str) -> dict:
    return {"label": label, "annotator_id": 1, "target": list(targets)}


# --- label and target rules on hand-made posts ------------------------------------------------

def test_majority_and_undecided_rule():
    assert majority(["hatespeech", "hatespeech", "normal"]) == "hatespeech"
    assert majority(["offensive", "normal", "offensive"]) == "offensive"
    assert majority(["hatespeech", "offensive", "normal"]) is None  # 1-1-1: dropped
    post = {"annotators": [ann("hatespeech"), ann("offensive"), ann("offensive")], "post_tokens": ["a", "b"]}
    assert parse_post("p1", post, "x")[:2] == ("a b", 1)  # offensive majority -> toxic
    post["annotators"] = [ann("normal"), ann("normal"), ann("hatespeech")]
    assert parse_post("p1", post, "x")[1] == 0
    post["annotators"] = [ann("hatespeech"), ann("offensive"), ann("normal")]
    assert parse_post("p1", post, "x")[1] is None  # hatespeech+offensive do not merge before voting


def test_target_aggregation():
    # A community counts when 2 of 3 annotators name it; groups are aggregated from communities.
    flags = target_groups([["Women", "African"], ["women"], ["Arab"]])
    assert flags == {"race": 0, "religion": 0, "gender": 1, "sexual_orientation": 0, "miscellaneous": 0}
    flags = target_groups([["Islam", "Homosexual"], ["Islam", "Gay"], ["Homosexual", "None"]])
    assert flags["religion"] == 1 and flags["sexual_orientation"] == 1 and flags["gender"] == 0
    assert target_groups([["None"], ["None"], ["None"]]) == dict.fromkeys(flags, 0)
    assert target_groups([["Martians"], ["Martians"], []])["miscellaneous"] == 1  # unknown name
    assert target_groups([["Women", "Women"], [], []])["gender"] == 0  # one annotator, counted once


def test_hatexplain_reader(tmp_path):
    write_hatexplain(tmp_path)
    ds = open_hatexplain(tmp_path)
    info = ds.info
    assert info.modality == "text" and info.class_names == ("normal", "toxic")
    assert [a.name for a in info.attributes] == ["race", "religion", "gender", "sexual_orientation",
                                                 "miscellaneous"]
    assert info.options["counts"]["train"] == {"posts": 49, "kept": 48, "undecided_dropped": 1}
    test = ds.split("test")
    assert len(test) == 16 and test.images is None and "undecided" not in " ".join(test.extra["post_id"])
    assert list(test.labels[:4]) == [1, 1, 0, 0] and set(np.unique(test.attrs["gender"])) <= {0, 1}
    swap = ds.split("test+swap")
    copies = np.flatnonzero(swap.extra["swap_of"] >= 0)
    assert copies.size > 0 and np.array_equal(swap.sample_id, np.arange(len(swap)))
    for c in copies:
        src = swap.extra["swap_of"][c]
        assert swap.extra["text"][c] == swap_identity(test.extra["text"][src])
        assert swap.labels[c] == test.labels[src]


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["train_0_gab"].pop("annotators"), "post train_0_gab has no 'annotators'"),
    (lambda p: p["train_2_gab"]["annotators"][1].update(label="toxic"),
     "post train_2_gab: annotator 1 has unknown label 'toxic'"),
    (lambda p: p["val_3_gab"]["annotators"][0].pop("label"), "post val_3_gab: annotator 0 has no 'label'"),
    (lambda p: p["test_1_gab"].pop("post_tokens"), "post test_1_gab has no 'post_tokens'"),
    (lambda p: p.pop("test_5_gab"), "post test_5_gab of split 'test' is not in"),
])
def test_malformed_dataset_names_the_post(tmp_path, mutate, message):
    write_hatexplain(tmp_path)
    posts = json.loads((tmp_path / "dataset.json").read_text())
    mutate(posts)
    (tmp_path / "dataset.json").write_text(json.dumps(posts))
    with pytest.raises(KdfairError, match=message.replace("(", r"\(")):
        open_hatexplain(tmp_path)
    result = runner.invoke(app, ["pairs", "--dataset", "hatexplain", "--data", str(tmp_path), "--source",
                                 "tfidf-knn", "-o", str(tmp_path / "p.parquet")])
    assert result.exit_code == 2 and message.split(" ")[1] in result.output


def test_identity_swap_words():
    assert swap_identity("The women and Black men") == "The men and White women"
    assert swap_identity("nothing to see") is None
    assert swap_identity("MUSLIMS here") == "CHRISTIANS here"


def test_textcsv(tmp_path):
    rows = [{"split": s, "text": f"{'bad' if i % 2 else 'good'} post {i}", "label": "toxic" if i % 2 else "ok",
             "attr_group": ["a", "b", "c"][i % 3], "other": i} for s in ("train", "test") for i in range(9)]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    ds = open_dataset("textcsv", tmp_path / "d.csv")
    assert ds.info.class_names == ("ok", "toxic") and ds.info.attribute("group").values == ("a", "b", "c")
    assert list(ds.split("train").labels[:3]) == [0, 1, 0] and ds.info.splits[:2] == ("train", "test")
    folder = tmp_path / "f"
    folder.mkdir()
    df = pd.DataFrame(rows).drop(columns="split")
    df.iloc[:9].to_parquet(folder / "train.parquet")
    bad = df.iloc[9:].copy()
    bad.loc[bad.index[2], "text"] = None
    bad.to_csv(folder / "test.csv", index=False)
    with pytest.raises(KdfairError, match=r"test.csv: column 'text' is empty in row 2"):
        open_dataset("textcsv", folder)


def test_tfidf_representation():
    tf = fit_tfidf(["a b c", "a b", "a d", "e"], max_features=2)
    assert tf.vocabulary == ("a", "b")
    x = tf.transform(["a a b", "zzz"])
    assert np.isclose(np.linalg.norm(x[0]), 1.0) and not x[1].any()


# --- end to end: BERT teacher -> DistilBERT student -> predict -> fairness ---------------------

@pytest.mark.slow
def test_text_pipeline_end_to_end(tmp_path):
    data = write_hatexplain(tmp_path / "hx")
    common = ["--dataset", "hatexplain", "--data", data, "--max-length", "32", "--optimizer", "adamw",
              "--lr", "1e-2", "--weight-decay", "0.01", "--batch-size", "16", "--device", "cpu", "-q"]
    teacher = tmp_path / "teacher"
    run("train-teacher", *common, "--arch", "bert", "--model-config", TINY_BERT, "--vocab-size", "200",
        "--epochs", "12", "-o", teacher)
    meta = json.loads((teacher / "model.json").read_text())
    assert meta["arch_family"] == "hf" and meta["role"] == "teacher" and meta["text"]["model_type"] == "bert"
    assert meta["text"]["tokenizer_source"].startswith("wordpiece") and meta["final_metrics"]["train_acc"] > 0.9
    for f in ("config.json", "model.safetensors", "tokenizer.json", "model.json", "history.parquet"):
        assert (teacher / f).exists(), f
    assert not (teacher / "train_state.pt").exists()

    # A local pretrained directory (the teacher's save_pretrained output) loads without the hub.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert AutoModelForSequenceClassification.from_pretrained(teacher, local_files_only=True).num_labels == 2
    assert len(AutoTokenizer.from_pretrained(teacher, local_files_only=True)) <= 200

    # Online KD (student reads with the teacher's tokenizer) and offline KD from the logit cache.
    student = ["--arch", "distilbert", "--model-config", TINY_DISTIL, "--tokenizer", teacher, "--epochs", "6",
               "-T", "4"]
    run("distill", *common, *student, "--teacher", teacher, "-o", tmp_path / "ds-online")
    cache = tmp_path / "t-train.parquet"
    run("predict", teacher, "--split", "train", "-o", cache, "--device", "cpu")
    run("distill", *common, *student, "--teacher-logits", cache, "-o", tmp_path / "ds-offline")
    ds_meta = json.loads((tmp_path / "ds-offline" / "model.json").read_text())
    assert ds_meta["role"] == "ds" and ds_meta["teacher"]["mode"] == "offline"
    assert ds_meta["text"]["model_type"] == "distilbert"

    # Online and offline give the same student: no augmentation on text, eval-mode teacher.
    from safetensors.numpy import load_file

    w_on = load_file(str(tmp_path / "ds-online" / "model.safetensors"))
    w_off = load_file(str(tmp_path / "ds-offline" / "model.safetensors"))
    assert all(np.allclose(w_on[k], w_off[k], atol=1e-4) for k in w_on)

    preds = tmp_path / "ds-test.parquet"
    run("predict", tmp_path / "ds-online", "--split", "test", "-o", preds, "--device", "cpu")
    table = pd.read_parquet(preds)
    assert len(table) == 16 and {"attr_gender", "attr_race", "attr_religion"} <= set(table.columns)
    result = run("group-fairness", preds, "--attribute", "race", "--attribute", "gender", "--json")
    assert '"race"' in result.stdout and '"gender"' in result.stdout

    # Individual fairness: TF-IDF neighbours on test; identity swaps on test+swap.
    run("pairs", "--dataset", "hatexplain", "--data", data, "--split", "test", "--source", "tfidf-knn",
        "-k", "3", "-o", tmp_path / "knn.parquet")
    run("individual-fairness", preds, "--pairs", tmp_path / "knn.parquet")
    run("pairs", "--dataset", "hatexplain", "--data", data, "--split", "test", "--source", "identity-swap",
        "-o", tmp_path / "swap.parquet")
    swap_preds = tmp_path / "ds-swap.parquet"
    run("predict", tmp_path / "ds-online", "--split", "test+swap", "-o", swap_preds, "--device", "cpu")
    run("individual-fairness", swap_preds, "--pairs", tmp_path / "swap.parquet")

    # Mismatches are one-line errors.
    bad = runner.invoke(app, ["train-teacher", *common, "--arch", "lenet5", "--epochs", "1",
                              "-o", tmp_path / "bad"])
    assert bad.exit_code == 2 and "does not fit dataset hatexplain" in bad.output
    bad = runner.invoke(app, ["train-teacher", *common, "--arch", "hf", "--pretrained", tmp_path / "nowhere",
                              "--epochs", "1", "-o", tmp_path / "bad2"])
    assert bad.exit_code == 2 and "--pretrained" in bad.output and "no such file or folder" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["train-teacher", *common, "--arch", "hf", "--pretrained", empty,
                              "--epochs", "1", "-o", tmp_path / "bad3"])
    assert bad.exit_code == 2 and "no config.json" in bad.output


@pytest.mark.slow
def test_pretrained_dir_and_textcsv_training(tmp_path):
    """--pretrained DIR (a local save_pretrained dir with its tokenizer) on the user's own CSV."""
    from kdfair_cli.models.text import build_text_model

    texts = [f"{'bad' if i % 2 else 'good'} words here {i}" for i in range(40)]
    model, _ = build_text_model("bert", 3, ("a", "b", "c"), texts, max_length=16, vocab_size=60,
                                model_config=TINY_BERT)
    model.write_dir(tmp_path / "pre")
    rows = [{"split": "train" if i < 30 else "test", "text": t, "label": i % 2, "attr_g": i % 3}
            for i, t in enumerate(texts)]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "m"
    run("train-teacher", "--dataset", "textcsv", "--data", tmp_path / "d.csv", "--arch", "hf", "--pretrained",
        tmp_path / "pre", "--max-length", "16", "--optimizer", "adamw", "--lr", "1e-3", "--epochs", "1",
        "--batch-size", "8", "--device", "cpu", "-q", "-o", out)
    meta = json.loads((out / "model.json").read_text())
    assert meta["text"]["pretrained"] and meta["num_classes"] == 2 and meta["selection"]["validation"] != "val split"
    run("predict", out, "--split", "test", "-o", tmp_path / "p.parquet", "--device", "cpu")
    assert pd.read_parquet(tmp_path / "p.parquet")["attr_g"].notna().all()
    bad = runner.invoke(app, ["train-teacher", "--dataset", "textcsv", "--data", tmp_path / "d.csv", "--arch",
                              "distilbert", "--pretrained", tmp_path / "pre", "--epochs", "1", "-o", tmp_path / "x"])
    assert bad.exit_code == 2 and "is a 'bert' model, not 'distilbert'" in bad.output
