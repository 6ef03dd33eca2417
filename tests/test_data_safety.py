"""No command destroys data: resume identity, stale temporaries, umask, signals, full disks.

The five data-loss cases of issue 13 are regression-tested here (resume with a changed input,
for each identity) and in tests/test_bad_input.py (the `dataloss-*` cases: -o onto an input,
and a report over a damaged cell).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdfair_cli.errors import KdfairError
from kdfair_cli.failures import explain
from kdfair_cli.io import atomic
from kdfair_cli.io.modeldir import STATE
from tests.test_bad_input import FAST, kdfair, ok

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    from kdfair_cli.data.trifeature import generate_trifeature

    root = tmp_path_factory.mktemp("safety")
    old = os.umask(0o022)
    try:
        tri = generate_trifeature(root / "tri", image_size=16, train_per_combination=1, val_per_combination=1,
                                  test_per_combination=1, seed=0)
        ok("train-teacher", "--data", tri, "--arch", "lenet5", "-o", root / "teacher", *FAST)
        ok("predict", root / "teacher", "--split", "train", "-o", root / "cache.parquet", "--device", "cpu")
    finally:
        os.umask(old)
    return {"root": root, "tri": tri, "teacher": root / "teacher", "cache": root / "cache.parquet"}


@pytest.fixture
def stop_after_first_epoch(monkeypatch):
    """Act as if SIGTERM arrived during epoch 1: the loop stops at the next batch (exit 143)."""
    from kdfair_cli.train import progress, signals

    real = progress.EpochReporter.end_epoch

    def end_epoch(self, record):
        real(self, record)
        signals._flag["stop"] = True

    monkeypatch.setattr(progress.EpochReporter, "end_epoch", end_epoch)
    return monkeypatch


def _interrupted(*args: object) -> None:
    run = kdfair(*args)
    assert run.code == 143, run.stderr


def _refused(args: list, state: Path, what: str) -> None:
    before = state.read_bytes()
    run = kdfair(*args, "--resume")
    assert run.code == 2, run.stderr
    assert len(run.error_lines) == 1 and what in run.error_lines[0] and "changed" in run.error_lines[0]
    assert state.read_bytes() == before and not (state.parent / "model.json").exists()


@pytest.mark.slow
def test_resume_refuses_a_changed_dataset(setup, tmp_path, stop_after_first_epoch) -> None:
    from kdfair_cli.data.trifeature import generate_trifeature

    data = tmp_path / "data"
    shutil.copytree(setup["tri"], data)
    args = ["train-teacher", "--data", data, "--arch", "lenet5", "-o", tmp_path / "m", *FAST[2:],
            "--epochs", "2"]
    _interrupted(*args)
    stop_after_first_epoch.undo()
    generate_trifeature(data, image_size=16, train_per_combination=1, val_per_combination=1,
                        test_per_combination=1, seed=1)  # same shapes and labels, other images
    _refused(args, tmp_path / "m" / STATE, "dataset")


def _distill_interrupted(setup, tmp_path, stop, teacher_option: str, teacher: Path) -> list:
    """Start a 2-epoch distillation, stop it after epoch 1; returns its arguments."""
    args = ["distill", teacher_option, teacher, "-T", "4", "--data", setup["tri"], "--arch", "lenet5",
            "-o", tmp_path / "s", *FAST[2:], "--epochs", "2"]
    _interrupted(*args)
    stop.undo()
    return args


@pytest.mark.slow
def test_resume_refuses_a_changed_logit_cache(setup, tmp_path, stop_after_first_epoch) -> None:
    from kdfair_cli.io.predictions import read_predictions, write_predictions

    cache = tmp_path / "cache.parquet"
    shutil.copy(setup["cache"], cache)
    args = _distill_interrupted(setup, tmp_path, stop_after_first_epoch, "--teacher-logits", cache)
    p = read_predictions(cache)
    write_predictions(cache, sample_id=p.sample_id, label=p.label, logits=p.logits * 2.0, attrs=p.attrs,
                      meta={k: v for k, v in p.meta.items() if k not in ("schema", "num_classes")})
    _refused(args, tmp_path / "s" / STATE, "teacher-logit cache")


@pytest.mark.slow
def test_resume_refuses_a_changed_teacher(setup, tmp_path, stop_after_first_epoch) -> None:
    teacher = tmp_path / "t"
    shutil.copytree(setup["teacher"], teacher)
    args = _distill_interrupted(setup, tmp_path, stop_after_first_epoch, "--teacher", teacher)
    ok("train-teacher", "--data", setup["tri"], "--arch", "lenet5", "--seed", "1", "--force", "-o", teacher, *FAST)
    _refused(args, tmp_path / "s" / STATE, "teacher weights")


@pytest.mark.slow
def test_resume_with_unchanged_inputs_finishes(setup, tmp_path, stop_after_first_epoch) -> None:
    args = _distill_interrupted(setup, tmp_path, stop_after_first_epoch, "--teacher-logits", setup["cache"])
    ok(*args, "--resume")
    assert (tmp_path / "s" / "model.json").exists() and not (tmp_path / "s" / STATE).exists()


@pytest.mark.slow
def test_outputs_honour_the_umask(setup, tmp_path) -> None:
    for name in ("model.safetensors", "model.json", "history.parquet"):
        assert (setup["teacher"] / name).stat().st_mode & 0o777 == 0o644, name
    assert setup["cache"].stat().st_mode & 0o777 == 0o644
    old = os.umask(0o007)
    try:
        atomic.write_text_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o660


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_run_are_swept(tmp_path) -> None:
    host = socket.gethostname()
    dead = tmp_path / f".out.{host}-{_dead_pid()}.abc123.tmp"  # a SIGKILLed writer's folder
    dead.mkdir()
    (dead / "train_images.npy").write_bytes(b"partial")
    live = tmp_path / f".out.{host}-{os.getpid()}.def456.tmp"  # a writer that still runs
    live.mkdir()
    other = tmp_path / ".out.otherhost-1.ghi789.tmp"  # another node's, recent: left alone
    other.mkdir()
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f").write_text("done")
    assert not dead.exists() and live.exists() and other.exists()
    assert (tmp_path / "out" / "f").read_text() == "done"


def test_a_full_disk_is_named(tmp_path, monkeypatch) -> None:
    target = tmp_path / "m" / "model.safetensors"
    with pytest.raises(KdfairError, match=r"no space left on the device writing .*model.safetensors"):
        with atomic.atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
    # torch's "[enforce fail at inline_container.cc] ... file write failed" names no errno
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(KdfairError, match="no space left"):
        with atomic.atomic_path(target) as tmp:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed")
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))


@pytest.mark.parametrize("exc, code, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/x"), 2, "no space left on the device (/data/x)"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300), 2, "file name too long"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/r/f/cells"), 2, "a file stands where a folder"),
    (FileExistsError(errno.EEXIST, "File exists", "/r/report"), 2, "exists and is not a folder"),
    (MemoryError(), 2, "out of memory"),
    (ValueError("something\nelse"), 1, "run failed: ValueError: something"),
])
def test_failures_are_one_line_in_kdfairs_words(exc, code, words) -> None:
    got, message = explain(exc)
    assert got == code and words in message and "\n" not in message


def test_pyarrow_errors_are_one_line() -> None:
    import pyarrow as pa

    code, message = explain(pa.ArrowInvalid("Couldn't deserialize thrift: TProtocolException\nDeserializing page header failed."))
    assert code == 2 and "damaged" in message and "\n" not in message


@pytest.mark.slow
def test_stdout_redirected_onto_an_input_is_refused(setup, tmp_path) -> None:
    preds = tmp_path / "p.parquet"
    ok("predict", setup["teacher"], "--split", "test", "-o", preds, "--device", "cpu")
    before = preds.read_bytes()
    with open(preds, "ab") as sink:
        proc = subprocess.run([sys.executable, "-m", "kdfair_cli", "group-fairness", str(preds), "-o", "-"],
                              stdout=sink, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              timeout=120)
    assert proc.returncode == 2 and b"redirected to the input" in proc.stderr
    assert preds.read_bytes() == before


@pytest.mark.slow
def test_sigterm_during_set_up_exits_143(setup, tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "kdfair_cli", "train-teacher", "--data", str(setup["tri"]),
                             "--arch", "lenet5", "-o", str(out), "--epochs", "3", "--device", "cpu"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # signal while torch is still loading
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err.decode()
    assert b"rerun with --resume" in err and b"Traceback" not in err
    assert not (out / "model.json").exists()
    assert not (out / STATE).exists()  # stopped before epoch 1 ended
