"""kdfair against lm-evaluation-harness 0.4.13's own output (tests/data/lm_eval_0_4_13, made by
lm_eval itself; README there gives the command): BBQ's three options and the harness's 12-choice
`bbq` task. kdfair's scoring gives the harness's log-likelihoods, its answers are the harness's
(per-sample `acc`) apart from ties, and its bias scores are the harness's under the documented
convention (the harness gives 0 where no biased answer was named; kdfair NaN or -1)."""

from __future__ import annotations

import json
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from tests.llm_fakes import tiny_lm

DATA = Path(__file__).parent / "data" / "lm_eval_0_4_13"
STAMP = "2026-12-07T13-18-10.737971"
runner = CliRunner()
pytestmark = pytest.mark.slow


def samples(task: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"samples_{task}_{STAMP}.jsonl").read_text().splitlines()]


def lls(sample: dict) -> np.ndarray:
    return np.asarray([float(r[0]) for r in sample["filtered_resps"]])


def imported(tmp_path: Path, task: str, unknown: str) -> pd.DataFrame:
    out = tmp_path / f"{task}-{unknown}.parquet"
    res = runner.invoke(app, ["import", "lm-eval", str(DATA / f"samples_{task}_{STAMP}.jsonl"), "--unknown", unknown,
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    return pd.read_parquet(out)


def by_item(frame: pd.DataFrame) -> dict[tuple[str, int], pd.Series]:
    return {(r.attr_category, int(r.attr_example_id)): r for r in frame.itertuples()}


def test_three_options_kdfair_scores_what_lm_eval_scored(tmp_path):
    model = tiny_lm(tmp_path / "model", "llama", seed=0, hidden=32, layers=1)
    mine = tmp_path / "mine.parquet"
    res = runner.invoke(app, ["predict", str(model), "--dataset", "bbq", "--data", str(DATA / "items.jsonl"),
                              "--prompt-template", "{{context}}\\n\\nQ: {{question}}\\nA:", "--device", "cpu",
                              "-o", str(mine)])
    assert res.exit_code == 0, res.output
    ours = by_item(pd.read_parquet(mine))
    theirs = by_item(imported(tmp_path, "bbq3_local", "own"))
    assert ours.keys() == theirs.keys() and len(ours) == 16
    for s in samples("bbq3_local"):
        key = (s["doc"]["category"], s["doc"]["example_id"])
        np.testing.assert_allclose(np.asarray(ours[key].logits, float), lls(s), atol=1e-4)
        top = np.sort(lls(s))[::-1]
        if top[0] - top[1] > 1e-4:  # answers equal apart from ties
            assert float(int(np.argmax(ours[key].logits)) == s["doc"]["label"]) == s["acc"]


def test_twelve_choice_bbq_answers_and_bias_scores_are_the_harness(tmp_path):
    got = imported(tmp_path, "bbq_local", "max")
    rows = by_item(got)
    tested = 0
    for s in samples("bbq_local"):
        top = np.sort(lls(s))[::-1]
        if top[0] - top[1] <= 1e-6:
            continue
        r = rows[(s["doc"]["category"], s["doc"]["example_id"])]
        assert float(int(np.argmax(r.logits)) == r.label) == s["acc"], s["doc"]["example_id"]
        tested += 1
    assert tested >= 12
    path = tmp_path / "bbq_local-max.parquet"
    res = runner.invoke(app, ["bias-score", str(path), "--bootstrap", "0", "--json"])
    assert res.exit_code == 0, res.output
    overall = json.loads(res.stdout)["overall"]
    harness = json.loads((DATA / f"results_{STAMP}.json").read_text())["results"]["bbq_local"]
    per = samples("bbq_local")
    for ours_key, theirs_key, cond in (("bias_disambig", "disamb_bias_score,none", "disambig"),
                                       ("bias_ambig", "amb_bias_score,none", "ambig")):
        items = [s for s in per if s["doc"]["context_condition"] == cond]
        n_biased = sum(s["disamb_bias_score"][1] for s in items)
        ours, theirs = overall[ours_key], harness[theirs_key]
        if n_biased == 0:  # the harness's convention: 0 for "no biased answer named" (docs/llm.md)
            assert theirs == 0 and (ours is None or math.isnan(ours) or ours <= 0)
        else:
            assert ours == pytest.approx(theirs, abs=1e-9)
    assert overall["acc_ambig"] == pytest.approx(harness["accuracy_amb,none"], abs=1e-9)
    assert overall["acc_disambig"] == pytest.approx(harness["accuracy_disamb,none"], abs=1e-9)
