"""The distillation settings have one declaration (TrainConfig): one name, one default, the
options of `kdfair distill` and the keys of a sweep's [sweep] table made from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdfair_cli.cli.train_options import DISTILL_OPTIONS, TRAIN_OPTIONS
from kdfair_cli.errors import KdfairError
from kdfair_cli.sweep.spec_common import GRID_KEYS, parse_grid
from kdfair_cli.train.config import TrainConfig

#: The distillation options of `kdfair distill` (declared in TrainConfig); -T is checked by
#: validate (token-level KD needs it, --kd sequence takes the corpus's sampling temperature).
DISTILL_BEFORE = [
    ("temperature", ["--temperature", "-T"], None), ("teacher", ["--teacher"], None),
    ("teacher_logits", ["--teacher-logits"], None), ("alpha", ["--alpha"], 0.8),
    ("t2_scaling", ["--t2-scaling/--no-t2-scaling"], True), ("kd", ["--kd"], "token"),
]


def test_distill_options_are_the_training_options_and_the_distillation_ones():
    got = [(name, list(opt.param_decls), opt.default) for name, _, opt in DISTILL_OPTIONS]
    kd = [g for g in got if g[0] in {n for n, _, _ in DISTILL_BEFORE}]
    assert kd == DISTILL_BEFORE
    assert [g for g in got if g not in kd] == [(n, list(o.param_decls), o.default) for n, _, o in TRAIN_OPTIONS]


def test_sweep_keys_and_defaults_come_from_the_declaration(tmp_path: Path):
    assert GRID_KEYS["alpha"] is float and GRID_KEYS["t2_scaling"] is bool
    grid = parse_grid(tmp_path / "s.toml", {"temperatures": [2]})
    assert (grid.alpha, grid.t2_scaling) == (TrainConfig.alpha, TrainConfig.t2_scaling) == (0.8, True)


def test_a_distilled_config_without_alpha_gets_the_documented_default(tmp_path: Path):
    cfg = TrainConfig("trifeature", str(tmp_path), "lenet5", str(tmp_path / "o"), role="ds", temperature=4.0,
                      teacher_logits="c.parquet")
    cfg.validate()
    assert cfg.alpha == 0.8 and cfg.t2_scaling is True
    with pytest.raises(KdfairError, match="--alpha must be in"):
        TrainConfig("trifeature", str(tmp_path), "lenet5", str(tmp_path / "o"), role="ds", temperature=4.0,
                    alpha=1.5, teacher_logits="c.parquet").validate()


def test_resume_identities_of_earlier_runs_stay_valid():
    """run_hash values computed with the TrainConfig of 9460d09 (kd_scale_t2, alpha None by default)."""
    cfgs = [TrainConfig("trifeature", "/d", "lenet5", "/o", epochs=3),
            TrainConfig("trifeature", "/d", "resnet20", "/o", role="nds", seed=2),
            TrainConfig("trifeature", "/d", "lenet5", "/o", role="ds", temperature=4.0, alpha=0.8,
                        teacher_logits="/c", t2_scaling=False),
            TrainConfig("trifeature", "/d", "lenet5", "/o", role="ds", temperature=2.0, alpha=0.5, teacher="/t")]
    assert [c.run_hash() for c in cfgs] == ["b273e61631b3b9a3", "6600a90d3ecdafcb", "b39177ae70506fbd",
                                            "fb29c79e1de9755d"]
