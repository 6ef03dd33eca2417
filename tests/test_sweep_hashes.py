"""The hashes of a sweep's training cells are pinned: a change to them retrains every model of
every existing sweep folder (e.g. a long reproduction), so it must be deliberate."""

from __future__ import annotations

from pathlib import Path

from kdfair_cli.sweep.cells import build_cells
from kdfair_cli.sweep.spec import load_spec

SPEC = """
[sweep]
seeds = [0, 1]
temperatures = [1, 4]
alpha = 0.8
device = "cpu"
[data]
dataset = "trifeature"
path = "/srv/kdfair-pin/trifeature"
[train]
epochs = 2
batch_size = 64
lr = 0.05
[teacher]
arch = "resnet20"
[nds]
arch = "lenet5"
[analyses]
group_attributes = ["color"]
pairs = "twins"
pairs_attribute = "color"
compare_classes = true
"""

#: Computed with kdfair at 866ba40, before the analysis cells gained noise floors (issue 11).
PINNED = {
    "pairs": "5d4890de2c4d6fac", "teacher-s0": "7d2095fe0f91f304", "teacher-s1": "fd67b5743fd2d9fd",
    "nds-s0": "0a712b65dd9012bc", "nds-s1": "bb2edb6306bf8942", "cache-teacher-s0": "5e16d21ce745b2e9",
    "cache-teacher-s1": "d79b3a6d08ecdf5a", "ds-T1-s0": "148b3cb433d3c5a5", "ds-T1-s1": "8b7efa1ee49abc8c",
    "ds-T4-s0": "fddbd4f00897fa85", "ds-T4-s1": "e33c726eeb2f5af5", "classes-T1": "3f138d89a9455a99",
    "classes-T4": "b1109609971508a8",
}
#: The fair cells' hashes before they carried their statistics' settings: they must differ now,
#: so that old sweep folders recompute them (and only them).
OLD_FAIR = {"fair-teacher-s0": "b2c622b1a5eb7e83", "fair-ds-T4-s1": "f9874fa3364d8f44"}


def test_training_cell_hashes_are_pinned(tmp_path: Path) -> None:
    (tmp_path / "sweep.toml").write_text(SPEC)
    cells = {c.id: c.hash for c in build_cells(load_spec(tmp_path / "sweep.toml"))}
    assert {k: cells[k] for k in PINNED} == PINNED
    for cid, old in OLD_FAIR.items():
        assert cells[cid] != old
