"""A pinned result: a tiny fixed-seed run with the default recipe, so that a changed default shows.

LeNet-5 on the in-memory blobs dataset, 2 epochs at batch size 32, every other setting at its
TrainConfig default. Measured when pinned (CPU, torch 2.x): test accuracy 45/64 = 0.703, colour
DPD 0.176, EOD 0.092. Changing lr to 0.05, augmentation off or the schedule to constant each
moves accuracy by >= 0.3, far outside the tolerance; the tolerance absorbs float differences
between CPUs and thread counts. If a deliberate change of a default moves these, re-measure
and update the numbers in the same commit.
"""

from __future__ import annotations

import pytest

from kdfair_cli import api
from kdfair_cli.inference import predict_split
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.runner import train_model

pytestmark = pytest.mark.slow


def test_default_recipe_result_is_pinned(blobs, tmp_path) -> None:
    out = tmp_path / "m"
    train_model(TrainConfig(dataset="blobs", data=blobs, arch="lenet5", out=str(out), epochs=2,
                            batch_size=32, device="cpu"), verbose=False)
    res = predict_split(out, split="test", device="cpu")
    fair = api.group_fairness({"sample_id": res.sample_id, "label": res.label, "logits": res.logits,
                               "attr_color": res.attrs["color"]}, ["color"])["color"].summary
    assert res.accuracy == pytest.approx(0.703, abs=0.05)
    assert fair["dpd"] == pytest.approx(0.176, abs=0.04)
    assert fair["eod"] == pytest.approx(0.092, abs=0.04)
