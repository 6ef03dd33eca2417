"""kdfair sweep: spec validation, skip/rerun by hash, concurrent cells, SLURM scripts, report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.sweep.cells import build_cells, stage_ranges
from kdfair_cli.sweep.runner import run_sweep, sweep_status
from kdfair_cli.classifier.spec import EXAMPLE_SPEC
from kdfair_cli.sweep.spec import load_spec

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(path: Path, *, seeds=(0, 1), temps=(1, 2), ds_epochs=1, analyses=True, pairs="knn",
              distillation="offline") -> Path:
    text = f"""
[sweep]
distillation = "{distillation}"
seeds = {list(seeds)}
temperatures = {list(temps)}
device = "cpu"
[data]
dataset = "blobs"
path = "."
[train]
epochs = 1
batch_size = 64
lr = 0.05
[teacher]
arch = "lenet5"
[nds]
arch = "lenet5"
[ds]
epochs = {ds_epochs}
[analyses]
group_attributes = {'["color"]' if analyses else '[]'}
pairs = "{pairs if analyses else 'none'}"
pairs_k = 3
compare_classes = {'true' if analyses else 'false'}
"""
    path.write_text(text)
    return path


def _quiet(_msg: str) -> None:
    pass


# ----------------------------------------------------------------------------- spec checks

@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("[teacher]\n", "[teacher]\nepoch = 3\n"), "teacher.epoch"),
    (lambda t: t.replace("temperatures = [1, 2]", "temperatures = [1, -2]"), "sweep.temperatures"),
    (lambda t: t.replace('dataset = "blobs"\n', ""), "data.dataset"),
    (lambda t: t.replace("[train]\nepochs = 1", "[train]\nepochs = -1"), "epochs"),
    (lambda t: t.replace('pairs = "knn"', 'pairs = "nearby"'), "analyses.pairs"),
    (lambda t: t + "\n[extra]\nx = 1\n", "extra"),
    (lambda t: t.replace('distillation = "offline"', 'distillation = "live"'), "sweep.distillation"),
])
def test_bad_spec_is_refused_before_any_work(blobs, tmp_path, edit, key) -> None:
    spec = tiny_spec(tmp_path / "s.toml")
    spec.write_text(edit(spec.read_text()))
    out = tmp_path / "sweep"
    res = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(out)])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdfair: error:") and key in lines[0], res.stderr
    assert not out.exists()


def test_example_spec_parses_and_grid_is_staged(tmp_path) -> None:
    (tmp_path / "sweep.toml").write_text(EXAMPLE_SPEC)
    spec = load_spec(tmp_path / "sweep.toml")
    cells = build_cells(spec)
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["pairs", "teacher-s0"] and "cache-teacher-s4" in ids and "ds-T10-s4" in ids
    assert "classes-T3" in ids and "fair-ds-T1-s0" in ids
    stages = [c.stage for c in cells]
    assert stages == sorted(stages, key=["train", "cache", "distill", "analyses"].index)
    r = stage_ranges(cells)
    assert r["distill"][1] - r["distill"][0] + 1 == 50


def test_sweep_init_writes_the_example_spec_of_the_repository() -> None:
    """`kdfair sweep init` and examples/trifeature.toml describe the same study (paths aside)."""
    shipped = (ROOT / "examples" / "trifeature.toml").read_text()
    assert shipped.replace('path = "../data/trifeature"   # relative to this file: <repo>/data/trifeature',
                           'path = "data/trifeature"') == EXAMPLE_SPEC


def test_online_distillation_has_no_cache_stage(tmp_path) -> None:
    (tmp_path / "sweep.toml").write_text(EXAMPLE_SPEC.replace('distillation = "offline"', 'distillation = "online"'))
    spec = load_spec(tmp_path / "sweep.toml")
    cells = {c.id: c for c in build_cells(spec)}
    assert not [c for c in cells if c.startswith("cache-")]
    assert cells["ds-T3-s2"].deps == ["teacher-s2"]
    offline = {c.id: c for c in build_cells(load_spec(_write(tmp_path / "off.toml", EXAMPLE_SPEC)))}
    # Same teacher, NDS and pairs cells (shared between modes); different distilled students.
    assert cells["teacher-s0"].hash == offline["teacher-s0"].hash
    assert cells["ds-T3-s2"].hash != offline["ds-T3-s2"].hash
    res = cli.invoke(app, ["sweep", "slurm", str(tmp_path / "sweep.toml"), "-o", str(tmp_path / "sw")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "sw" / "slurm").iterdir())
    assert names == ["01-train.sbatch", "03-distill.sbatch", "04-analyses.sbatch", "submit.sh"]
    assert (tmp_path / "sw" / "slurm" / "submit.sh").read_text().count("--dependency=afterok:$prev") == 3


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- slurm

def test_sbatch_scripts_are_valid_bash_and_use_the_array_index(tmp_path) -> None:
    (tmp_path / "sweep.toml").write_text(EXAMPLE_SPEC)
    out = tmp_path / "sw"
    res = cli.invoke(app, ["sweep", "slurm", str(tmp_path / "sweep.toml"), "-o", str(out), "--partition", "gpu"])
    assert res.exit_code == 0, res.output
    cells = build_cells(load_spec(tmp_path / "sweep.toml"))
    ranges = stage_ranges(cells)
    scripts = sorted((out / "slurm").iterdir())
    assert [p.name for p in scripts] == ["01-train.sbatch", "02-cache.sbatch", "03-distill.sbatch",
                                         "04-analyses.sbatch", "submit.sh"]
    for p in scripts:
        subprocess.run(["bash", "-n", str(p)], check=True)
    for p, stage in zip(scripts[:3], ("train", "cache", "distill")):
        text = p.read_text()
        lo, hi = ranges[stage]
        assert f"#SBATCH --array={lo}-{hi}\n" in text
        assert '--index "$SLURM_ARRAY_TASK_ID"' in text and "#SBATCH --requeue" in text
        assert "#SBATCH --signal=B:USR1@" in text and "scontrol requeue" in text
        assert "#SBATCH --open-mode=append\n" in text
    submit = scripts[-1].read_text()
    assert submit.count("--dependency=afterok:$prev") == 4


@pytest.mark.slow
def test_slurm_array_task_id_selects_the_cell(blobs, tmp_path, monkeypatch) -> None:
    spec = load_spec(tiny_spec(tmp_path / "s.toml", seeds=(0,), temps=(1,), analyses=False))
    cells = build_cells(spec)
    target = next(c for c in cells if c.id == "nds-s0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(target.index))
    from kdfair_cli.sweep.runner import index_from_env

    summary = run_sweep(spec, tmp_path / "sw", index=index_from_env(None), log=_quiet)
    assert summary.ran == ["nds-s0"]
    status = {r["id"]: r["status"] for r in sweep_status(tmp_path / "sw")}
    assert status["nds-s0"] == "done" and status["teacher-s0"] == "missing"
    # A distilled cell whose teacher cache is missing waits instead of failing.
    ds = next(c for c in cells if c.id == "ds-T1-s0")
    assert run_sweep(spec, tmp_path / "sw", index=ds.index, log=_quiet).blocked == ["ds-T1-s0"]


# --------------------------------------------------------------------------- run, skip, rerun

@pytest.mark.slow
def test_online_sweep_distils_from_the_teacher_model(blobs, tmp_path) -> None:
    import json

    spec = load_spec(tiny_spec(tmp_path / "s.toml", seeds=(0,), temps=(2,), analyses=False,
                               distillation="online"))
    summary = run_sweep(spec, tmp_path / "sw", log=_quiet)
    assert summary.ok and sorted(summary.ran) == ["ds-T2-s0", "nds-s0", "teacher-s0"]
    meta = json.loads((tmp_path / "sw" / "cells" / "ds-T2-s0" / "model" / "model.json").read_text())
    assert meta["teacher"]["mode"] == "online"
    assert Path(meta["teacher"]["dir"]) == (tmp_path / "sw" / "cells" / "teacher-s0" / "model").resolve()
    assert meta["temperature"] == 2.0


@pytest.mark.slow
def test_second_run_does_nothing_deleted_output_reruns_only_that_cell(blobs, tmp_path) -> None:
    spec_path = tiny_spec(tmp_path / "s.toml")
    sw = tmp_path / "sw"
    first = run_sweep(load_spec(spec_path), sw, log=_quiet)
    assert first.ok and len(first.ran) == len(build_cells(load_spec(spec_path))) == 21
    second = run_sweep(load_spec(spec_path), sw, log=_quiet)
    assert second.ran == [] and len(second.skipped) == 21

    (sw / "cells" / "fair-ds-T1-s0" / "metrics.json").unlink()
    (sw / "cells" / "nds-s1" / "preds.parquet").unlink()
    third = run_sweep(load_spec(spec_path), sw, log=_quiet)
    assert sorted(third.ran) == ["fair-ds-T1-s0", "nds-s1"]

    # A changed spec reruns exactly what it changes: the DS cells and what reads them.
    tiny_spec(spec_path, ds_epochs=2)
    changed = load_spec(spec_path)
    stale = {r["id"] for r in sweep_status(sw, changed) if r["status"] != "done"}
    assert stale == {"ds-T1-s0", "ds-T1-s1", "ds-T2-s0", "ds-T2-s1", "fair-ds-T1-s0", "fair-ds-T1-s1",
                     "fair-ds-T2-s0", "fair-ds-T2-s1", "classes-T1", "classes-T2"}
    fourth = run_sweep(changed, sw, log=_quiet)
    assert set(fourth.ran) == stale

    res = cli.invoke(app, ["report", str(sw)])
    assert res.exit_code == 0, res.output
    results = __import__("pandas").read_parquet(sw / "report" / "results.parquet")
    assert len(results) == 2 + 2 + 4
    cols = ["accuracy", "eod_color", "dpd_color", "individual_fairness"]
    assert results[cols].notna().all().all()
    ds = results[results["model"] == "ds"]
    assert ds[["n_tc", "n_sc"]].notna().all().all()
    floors = ["eod_color_null_mean", "eod_color_null_q95", "eod_color_p", "dpd_color_p",
              "individual_fairness_ci_low", "individual_fairness_ci_high"]
    assert results[floors].notna().all().all() and (results["eod_color_p"] <= 1).all()
    assert results[["eod_color_excess", "dpd_color_excess"]].notna().all().all()
    md = (sw / "report" / "table.md").read_text()
    assert "excess disparity" in md and "Raw EOD and DPD, for reference" in md
    assert "| Teacher | - | 2 |" in md and "| DS | 2 | 2 |" in md and "±" in md
    assert "## DS - NDS per temperature" in md and "Welch" in md
    for name in ("group-fairness.png", "excess.png", "class-bias.png", "individual-fairness.png", "table.csv",
                 "deltas.csv"):
        assert (sw / "report" / name).stat().st_size > 0


@pytest.mark.slow
def test_interrupted_cell_resumes(blobs, tmp_path, monkeypatch) -> None:
    import signal

    from kdfair_cli.sweep.runner import CellInterrupted
    from kdfair_cli.train import runner as train_runner

    spec = load_spec(tiny_spec(tmp_path / "s.toml", seeds=(0,), temps=(1,), analyses=False))
    spec.roles["teacher"]["epochs"] = 3
    plain = train_runner.hard_label_objective
    steps = {"n": 0}

    def killing(cfg):
        inner = plain(cfg)

        def objective(*args):
            steps["n"] += 1
            if steps["n"] == 5:  # epoch 2 of 3 (4 steps per epoch)
                signal.raise_signal(signal.SIGTERM)
            return inner(*args)
        return objective

    monkeypatch.setattr(train_runner, "hard_label_objective", killing)
    teacher = next(c for c in build_cells(spec) if c.id == "teacher-s0")
    with pytest.raises(CellInterrupted):
        run_sweep(spec, tmp_path / "sw", index=teacher.index, log=_quiet)
    row = next(r for r in sweep_status(tmp_path / "sw", spec) if r["id"] == "teacher-s0")
    assert row["status"] == "missing" and "interrupted" in row["note"]
    monkeypatch.setattr(train_runner, "hard_label_objective", plain)
    assert run_sweep(spec, tmp_path / "sw", index=teacher.index, log=_quiet).ran == ["teacher-s0"]
    hist = __import__("pandas").read_parquet(tmp_path / "sw" / "cells" / "teacher-s0" / "model" / "history.parquet")
    assert list(hist["epoch"]) == [0, 1, 2]


# ----------------------------------------------------------------- two processes, one folder

WORKER = """
import sys
from kdfair_cli.data import registry
registry.DATASETS["blobs"] = "tests.fakes:open_blobs"
from kdfair_cli.cli.app import main
sys.argv = ["kdfair", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_two_processes_with_different_indices_share_one_folder(blobs, tmp_path) -> None:
    spec_path = tiny_spec(tmp_path / "s.toml", seeds=(0,), temps=(1, 2))
    spec = load_spec(spec_path)
    sw = tmp_path / "sw"
    index = {c.id: c.index for c in build_cells(spec)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SLURM_ARRAY_TASK_ID", None)

    def together(*ids: str) -> None:
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, "sweep", "run", str(spec_path), "-o", str(sw),
                                   "--index", str(index[i])], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in ids]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err

    together("teacher-s0", "nds-s0")
    assert run_sweep(spec, sw, stage="cache", log=_quiet).ok
    together("ds-T1-s0", "ds-T2-s0")
    rest = run_sweep(spec, sw, log=_quiet)
    assert rest.ok and not set(rest.ran) & {"teacher-s0", "nds-s0", "ds-T1-s0", "ds-T2-s0"}
    assert all(r["status"] == "done" for r in sweep_status(sw))
    res = cli.invoke(app, ["report", str(sw)])
    assert res.exit_code == 0, res.output
    results = __import__("pandas").read_parquet(sw / "report" / "results.parquet")
    assert len(results) == 4 and results["individual_fairness"].notna().all()
    leftovers = [p for p in sw.rglob("*.tmp")]
    assert leftovers == []
