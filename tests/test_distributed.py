"""train-teacher and predict under torchrun with 2 CPU processes (gloo): DDP must equal one process.

With --batch-size the global batch and each rank taking every second sample of the same
seeded order, DDP's averaged gradient is the single-process gradient for a model without
BatchNorm (LeNet-5), so the weights agree up to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.io.predictions import read_predictions
from kdfair_cli.train.distributed import DistEnv, shard
from tests.vision_fakes import make_cifar10

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "kdfair_cli", *args]
    for attempt in range(2):  # a rendezvous port taken by another job on a shared machine: retry once
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        if res.returncode == 0 or not any(s in res.stderr for s in ("EADDRINUSE", "Address already in use",
                                                                    "DistNetworkError")):
            break
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_shard_pads_and_interleaves() -> None:
    order = torch.tensor([4, 2, 0, 1, 3])
    assert shard(order, DistEnv(0, 2)).tolist() == [4, 0, 3]
    assert shard(order, DistEnv(1, 2)).tolist() == [2, 1, 4]  # padded by wrapping to 6
    assert shard(order, DistEnv()).tolist() == order.tolist()


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tmp_path) -> None:
    data = make_cifar10(tmp_path / "c10")
    common = ["--dataset", "cifar10", "--data", str(data), "--arch", "lenet5", "--epochs", "2", "--batch-size", "12",
              "--no-augment", "--device", "cpu", "-q", "--lr", "0.05"]
    torchrun("train-teacher", *common, "-o", str(tmp_path / "ddp"))
    res = CliRunner().invoke(app, ["train-teacher", *common, "-o", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    import json

    meta = json.loads((tmp_path / "ddp" / "model.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo"}
    # Distributed predict: each rank runs every second sample, rank 0 writes the whole file.
    torchrun("predict", str(tmp_path / "one"), "--split", "test", "--device", "cpu",
             "-o", str(tmp_path / "ddp.parquet"))
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "one"), "--split", "test", "--device", "cpu",
                                   "-o", str(tmp_path / "one.parquet")])
    assert res.exit_code == 0, res.output
    p, q = read_predictions(tmp_path / "ddp.parquet"), read_predictions(tmp_path / "one.parquet")
    assert np.array_equal(p.sample_id, q.sample_id) and np.array_equal(p.label, q.label)
    np.testing.assert_allclose(p.logits, q.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_one_process_under_torchrun_runs_the_ddp_path(tmp_path) -> None:
    """torchrun --nproc_per_node 1 starts a process group of one (what gpu_check compares with nccl)."""
    import json

    data = make_cifar10(tmp_path / "c10")
    common = ["--dataset", "cifar10", "--data", str(data), "--arch", "lenet5", "--epochs", "1", "--batch-size", "12",
              "--device", "cpu", "-q", "--lr", "0.05"]
    torchrun("train-teacher", *common, "-o", str(tmp_path / "ddp"), nproc=1)
    res = CliRunner().invoke(app, ["train-teacher", *common, "-o", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ddp" / "model.json").read_text())["distributed"] == {"world_size": 1,
                                                                                        "backend": "gloo"}
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
