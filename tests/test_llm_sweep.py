"""The LLM sweep kind: spec checks, the cell grid and its hashes, SLURM scripts, and (slow) a reduced
examples/llm_bbq.toml end to end with its report checked against kdfair_cli.api.bias_score."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.cli.app import app
from kdfair_cli.sweep.cells import build_cells, stage_ranges
from kdfair_cli.sweep.spec import load_spec

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llm_bbq.toml"


def example_text(path: Path = EXAMPLE, /, **edits: str) -> str:
    """A shipped example (llm_bbq.toml unless `path`) with its data under ./toy (relative to the
    copy) and `old=new` edits."""
    text = path.read_text().replace("../data/llm-toy", "toy")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def write(tmp_path: Path, text: str, name: str = "llm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_parses_into_the_documented_grid(tmp_path) -> None:
    spec = load_spec(EXAMPLE)
    assert spec.kind == "llm" and spec.teacher_trained and spec.distillation == "offline"
    cells = build_cells(spec)
    ids = [c.id for c in cells]
    seeds, temps = spec.seeds, ["1", "2", "4", "8"]
    expected = (["teacher"] + [f"nds-s{s}" for s in seeds] + ["cache-teacher"]
                + [f"ds-T{t}-s{s}" for t in temps for s in seeds]
                + ["audit-teacher"] + [f"audit-nds-s{s}" for s in seeds]
                + [f"audit-ds-T{t}-s{s}" for t in temps for s in seeds] + [f"compare-T{t}" for t in temps]
                + [f"compare-teacher-T{t}" for t in temps])
    assert ids == expected
    by = {c.id: c for c in cells}
    assert by["cache-teacher"].deps == ["teacher"] and by["ds-T4-s1"].deps == ["cache-teacher"]
    assert by["audit-ds-T4-s1"].deps == ["ds-T4-s1"]
    assert by["compare-T2"].deps == ["audit-ds-T2-s0", "audit-ds-T2-s1", "audit-nds-s0", "audit-nds-s1"]
    assert by["compare-teacher-T2"].deps == ["audit-ds-T2-s0", "audit-ds-T2-s1", "audit-teacher"]
    stages = [c.stage for c in cells]
    assert stages == sorted(stages, key=["train", "cache", "distill", "audit", "analyses"].index)
    assert by["cache-teacher"].config["temperatures"] == [1.0, 2.0, 4.0, 8.0]
    assert by["cache-teacher"].config["max_length"] == 64  # the DS's setting, which the cache must match
    cfg = spec.train_config("ds", 1, str(tmp_path / "m"), temperature=4.0, teacher_logits="c")
    assert (cfg.arch, cfg.dataset, cfg.role, cfg.temperature, cfg.alpha, cfg.max_length) == \
        ("causal-lm", "corpus", "ds", 4.0, 0.8, 64)
    assert cfg.pretrained == str(ROOT / "data" / "llm-toy" / "student-init")


def test_sweep_init_kind_llm_writes_the_shipped_example(tmp_path) -> None:
    res = cli.invoke(app, ["sweep", "init", "--kind", "llm", "-o", str(tmp_path / "llm.toml")])
    assert res.exit_code == 0, res.output
    written = (tmp_path / "llm.toml").read_text()
    assert written.replace('"data/llm-toy', '"../data/llm-toy').replace("THIS.toml", "examples/llm_bbq.toml") == \
        EXAMPLE.read_text()
    spec = load_spec(tmp_path / "llm.toml")
    assert spec.corpus == tmp_path / "data" / "llm-toy" / "distill_corpus.jsonl"
    res = cli.invoke(app, ["sweep", "init", "--kind", "vlm", "-o", "-"])
    assert res.exit_code == 2 and "--kind" in res.stderr


def test_online_and_a_teacher_used_as_it_is(tmp_path) -> None:
    online = load_spec(write(tmp_path, example_text(**{'distillation = "offline"': 'distillation = "online"'})))
    cells = {c.id: c for c in build_cells(online)}
    assert "cache-teacher" not in cells and cells["ds-T2-s0"].deps == ["teacher"]
    as_is = example_text(**{'corpus = "toy/teacher_corpus.jsonl"\nseed = 0\n': "",
                            'distillation = "offline"': 'distillation = "online"'})
    cells = build_cells(load_spec(write(tmp_path, as_is, "as_is.toml")))
    by = {c.id: c for c in cells}
    assert "teacher" not in by and by["ds-T2-s0"].deps == [] and by["audit-teacher"].deps == []
    assert by["audit-teacher"].config["pretrained"].endswith("toy/teacher-init")
    assert [c.index for c in cells] == list(range(len(cells)))


def test_audit_settings_rerun_only_audits_and_ds_settings_only_the_students(tmp_path) -> None:
    base = {c.id: c.hash for c in build_cells(load_spec(write(tmp_path, example_text())))}
    boot = {c.id: c.hash for c in build_cells(load_spec(write(
        tmp_path, example_text(**{"bootstrap = 1000": "bootstrap = 500"}), "b.toml")))}
    changed = {k for k in base if base[k] != boot[k]}
    assert changed == {k for k in base if k.startswith(("audit-", "compare-"))}
    ds = {c.id: c.hash for c in build_cells(load_spec(write(
        tmp_path, example_text(**{"[ds]\n": "[ds]\nepochs = 3\n"}), "d.toml")))}
    changed = {k for k in base if base[k] != ds[k]}
    assert changed == {k for k in base if k.startswith(("ds-", "audit-ds-", "compare-"))}


@pytest.mark.parametrize("edits, key", [
    ({'pretrained = "toy/student-init"': ""}, "student.pretrained"),
    ({"[nds]\n": "[nds]\narch = \"lenet5\"\n"}, "nds.arch"),
    ({"[student]\n": "[student]\naugment = true\n"}, "student.augment"),
    ({"planted_rate = 0.8": "planted_rate = 1.5"}, "data.generate.planted_rate"),
    ({'lm_score = "sum"': 'lm_score = "max"'}, "audit.lm_score"),
    ({"top_k = 64": "top_k = 0"}, "sweep.top_k"),
    ({"[ds]\n": "[ds]\nepochs = -1\n"}, "ds.epochs"),
    ({'kind = "llm"': 'kind = "vlm"'}, "sweep.kind"),
    ({'corpus = "toy/teacher_corpus.jsonl"\n': ""}, "teacher."),
    ({'bbq = "toy/bbq"': 'bbqs = "toy/bbq"'}, "data.bbqs"),
])
def test_bad_llm_spec_is_refused_with_one_line(tmp_path, edits, key) -> None:
    assert_refused(tmp_path, example_text(**edits), key)


def assert_refused(tmp_path: Path, text: str, key: str) -> None:
    """`sweep run` of spec `text`: exit 2, one line `kdfair: error:` naming `key`, nothing made
    (neither the sweep folder nor the toy)."""
    spec = write(tmp_path, text)
    out = tmp_path / "sweep"
    res = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(out)])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("kdfair: error:"), res.stderr
    assert key in lines[0], lines[0]
    assert not out.exists() and not (tmp_path / "toy").exists()


def test_missing_inputs_without_generate_are_named(tmp_path) -> None:
    text = example_text()
    text = text[:text.index("\n[data.generate]") + 1] + text[text.index("# Every role"):]
    res = cli.invoke(app, ["sweep", "run", str(write(tmp_path, text)), "-o", str(tmp_path / "sw")])
    assert res.exit_code == 2 and "data.corpus" in res.stderr and "does not exist" in res.stderr


def test_slurm_scripts_of_an_llm_sweep(tmp_path) -> None:
    spec_path = write(tmp_path, example_text())
    res = cli.invoke(app, ["sweep", "slurm", str(spec_path), "-o", str(tmp_path / "sw")])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "sw" / "slurm"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["01-train.sbatch", "02-cache.sbatch", "03-distill.sbatch", "04-audit.sbatch",
                     "05-analyses.sbatch", "submit.sh"]
    ranges = stage_ranges(build_cells(load_spec(spec_path)))
    for name, stage in (("01-train", "train"), ("02-cache", "cache"), ("03-distill", "distill"),
                        ("04-audit", "audit")):
        text = (folder / f"{name}.sbatch").read_text()
        lo, hi = ranges[stage]
        assert f"#SBATCH --array={lo}-{hi}\n" in text and '--index "$SLURM_ARRAY_TASK_ID"' in text
    analyses = (folder / "05-analyses.sbatch").read_text()
    assert "--stage analyses" in analyses and "--array" not in analyses and "--gres" not in analyses
    submit = (folder / "submit.sh").read_text()
    assert submit.count("--dependency=afterok:$prev") == 5 and submit.index("04-audit") < submit.index("05-analyses")
    for p in folder.iterdir():
        assert subprocess.run(["bash", "-n", str(p)]).returncode == 0, p.name
    rows = json.loads(cli.invoke(app, ["sweep", "status", str(tmp_path / "none"), "--spec", str(spec_path),
                                       "--json"]).stdout)
    assert [r["id"] for r in rows][:3] == ["teacher", "nds-s0", "nds-s1"]
    assert {r["status"] for r in rows} == {"missing"}


def near(x):
    """The report's CSV files keep 6 significant digits."""
    return pytest.approx(x, rel=1e-5, abs=1e-6)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment written out (the textbook loop)."""
    order = np.argsort(p)
    m, out, running = len(p), np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


@pytest.fixture
def one_thread():
    """One torch thread: two OpenMP threads stall when another process holds one of two cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_reduced_example_end_to_end(tmp_path, one_thread) -> None:
    """The example with a smaller audit, two temperatures and fewer student epochs: every cell runs, the
    teacher carries the planted stereotype, the NDS does not, and the report's numbers are
    bias_score's on the audit files."""
    text = example_text(**{"temperatures = [1, 2, 4, 8]": "temperatures = [1, 8]",
                           "audit_per_category = 500": "audit_per_category = 150",
                           "[student]\n": "[student]\nepochs = 3\n", "permutations = 10000": "permutations = 2000",
                           'device = "auto"': 'device = "cpu"'})
    spec = write(tmp_path, text)
    out = tmp_path / "sweep"
    res = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    again = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(out)])
    assert again.exit_code == 0 and "19 already done" in " ".join(again.stderr.split())
    rep = cli.invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    report = out / "report"
    for name in ("results.parquet", "table.csv", "deltas.csv", "table.md", "llm-bias.png"):
        assert (report / name).stat().st_size > 0, name
    cells = out / "cells"
    table = pd.read_csv(report / "table.csv")
    teacher = table[table["model"] == "teacher"].iloc[0]
    nds = table[table["model"] == "nds"].iloc[0]
    assert teacher["bias_ambig_ci_low"] > 0.3, teacher  # the planted stereotype, learned
    assert abs(nds["bias_ambig"]) < 0.25 and teacher["bias_ambig_ci_low"] > nds["bias_ambig_ci_high"]
    # The teacher's row is bias_score of its audit file, with the spec's [audit] settings.
    direct = bias_score([cells / "audit-teacher" / "preds.parquet"], n_boot=1000, seed=0).to_dict()["overall"]
    assert teacher["bias_ambig"] == near(direct["bias_ambig"])
    assert [teacher["bias_ambig_ci_low"], teacher["bias_ambig_ci_high"]] == near(direct["ci"]["bias_ambig"])
    # Two seeds: the NDS row is the mean over the seeds' files.
    per_seed = [bias_score([cells / f"audit-nds-s{s}" / "preds.parquet"], n_boot=1).to_dict()["overall"]["acc_ambig"]
                for s in (0, 1)]
    assert nds["acc_ambig"] == near(np.mean(per_seed))
    # The p-values are those of the paired test on the same files, and Holm's adjustment over all of them.
    deltas = pd.read_csv(report / "deltas.csv")
    for t in (1, 8):
        ds_files = [cells / f"audit-ds-T{t}-s{s}" / "preds.parquet" for s in (0, 1)]
        nds_files = [cells / f"audit-nds-s{s}" / "preds.parquet" for s in (0, 1)]
        vs = bias_score(ds_files, versus=nds_files, n_boot=1000, n_perm=2000, seed=0).to_dict()["overall"]["versus"]
        for metric, row in deltas[(deltas["temperature"] == t) & (deltas["against"] == "nds")].set_index("metric").iterrows():
            assert row["p"] == near(vs[metric]["p_value"])
            assert row["delta"] == near(vs[metric]["difference"])
        flips = pd.read_parquet(cells / f"compare-T{t}" / "flips.parquet")
        a = np.stack([pd.read_parquet(f).sort_values("sample_id")["pred"].to_numpy() for f in ds_files])
        b = np.stack([pd.read_parquet(f).sort_values("sample_id")["pred"].to_numpy() for f in nds_files])
        assert len(flips) == int((a != b).any(0).sum())
        teacher_files = [cells / "audit-teacher" / "preds.parquet"]
        vt = bias_score(ds_files, versus=teacher_files, n_boot=1000, n_perm=2000, seed=0).to_dict()["overall"]["versus"]
        rows = deltas[(deltas["temperature"] == t) & (deltas["against"] == "teacher")].set_index("metric")
        for metric, row in rows.iterrows():
            assert row["p"] == near(vt[metric]["p_value"]) and row["delta"] == near(vt[metric]["difference"])
    assert deltas["p_holm"].to_numpy() == near(holm(deltas["p"].to_numpy()))
    md = (report / "table.md").read_text()
    assert "## DS - NDS per temperature" in md and "## DS - teacher per temperature" in md and "Teacher s_AMB" in md
    ds_meta = json.loads((cells / "ds-T8-s1" / "model" / "model.json").read_text())
    assert ds_meta["temperature"] == 8 and ds_meta["role"] == "ds" and ds_meta["teacher"]["mode"] == "offline"
    status = json.loads(cli.invoke(app, ["sweep", "status", str(out), "--json"]).stdout)
    assert {r["status"] for r in status} == {"done"} and len(status) == 19


@pytest.mark.slow
@pytest.mark.parametrize("inside", ["toy/teacher-init/sweep", "toy/bbq/sweep", "toy/student-init"])
def test_sweep_out_inside_an_input_is_refused_before_anything_is_made(tmp_path, inside) -> None:
    """Without [data.generate] the models and BBQ are read as they are: no sweep goes inside them."""
    text = example_text()
    text = text[:text.index("\n[data.generate]") + 1] + text[text.index("# Every role"):]
    spec = write(tmp_path, text)
    for d in ("teacher-init", "student-init", "bbq"):
        (tmp_path / "toy" / d).mkdir(parents=True)
        (tmp_path / "toy" / d / "keep.json").write_text("{}")
    for f in ("distill_corpus.jsonl", "teacher_corpus.jsonl"):
        (tmp_path / "toy" / f).write_text('{"text": "x"}\n')
    before = sorted(p for p in (tmp_path / "toy").rglob("*"))
    res = cli.invoke(app, ["sweep", "run", str(spec), "-o", str(tmp_path / inside)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("kdfair: error:")]
    assert len(lines) == 1 and "input folder" in lines[0], res.stderr
    assert sorted(p for p in (tmp_path / "toy").rglob("*")) == before


def test_done_cell_records_and_checks_the_sha256_of_its_files(tmp_path) -> None:
    """The engine's check of a finished cell (both kinds): truncated weights or a garbage output whose
    name and JSON are fine is still damage."""
    from kdfair_cli.sweep.cell import Cell
    from kdfair_cli.sweep.cells import damaged_output, output_hashes, write_record

    cell = Cell("ds-T2-s0", "lm-train", "distill", {}, outputs=["model/model.json", "metrics.json"])
    d = cell.dir(tmp_path)
    (d / "model").mkdir(parents=True)
    (d / "model" / "model.json").write_text("{}")
    (d / "model" / "model.safetensors").write_bytes(b"w" * 1000)
    (d / "metrics.json").write_text('{"val_acc": 0.5}')
    write_record(d, {"status": "done", "files": output_hashes(d)})
    assert set(output_hashes(d)) == {"model/model.json", "model/model.safetensors", "metrics.json"}
    assert damaged_output(cell, tmp_path) is None
    (d / "model" / "model.safetensors").write_bytes(b"w" * 500)
    assert "model/model.safetensors changed" in damaged_output(cell, tmp_path)
    (d / "model" / "model.safetensors").write_bytes(b"w" * 1000)
    assert damaged_output(cell, tmp_path) is None
    (d / "metrics.json").write_text('{"val_acc": 0.9}')  # still JSON, not what the cell wrote
    assert "metrics.json changed" in damaged_output(cell, tmp_path)
    (d / "metrics.json").write_text('{"val_acc": 0.5}')
    (d / "model" / "model.safetensors").unlink()
    assert "model/model.safetensors is missing" in damaged_output(cell, tmp_path)
