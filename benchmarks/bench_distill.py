"""Wall time of one distillation epoch, ResNet-20 -> LeNet-5 on CPU: online teacher vs cached logits.

Run by hand from the repo root: python benchmarks/bench_distill.py [--n 4096] [--size 32]
Online runs the frozen teacher on every batch; offline indexes logits computed once (the cost of
that one pass is printed too: a temperature sweep pays it once, not once per temperature).
Prints the ratio online / offline (target >= 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from kdfair_cli.inference import compute_logits
from kdfair_cli.models.registry import build_model
from kdfair_cli.data.batches import ImageBatches
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.loop import LoopData, fit
from kdfair_cli.train.runner import kd_objective


def epoch_seconds(teacher_fn, data: LoopData, size: int, tmp: str) -> float:
    cfg = TrainConfig("bench", "x", "lenet5", tmp, role="ds", epochs=1, batch_size=128, temperature=4.0,
                      alpha=0.8, teacher="x", device="cpu")
    student = build_model("lenet5", 10, (3, size, size))
    t0 = time.perf_counter()
    fit(student, data, cfg, kd_objective(teacher_fn, cfg), torch.device("cpu"), Path(tmp) / "state.pt",
        verbose=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.n,), generator=gen)
    batches = ImageBatches(images, (0.5,) * 3, (0.25,) * 3)
    data = LoopData(batches, labels)
    teacher = build_model("resnet20", 10, (3, args.size, args.size)).eval()

    t0 = time.perf_counter()
    cache = torch.from_numpy(compute_logits(teacher, batches, 512))
    cache_s = time.perf_counter() - t0

    def online(index, x):
        with torch.no_grad():
            return teacher(x)

    def offline(index, x):
        return cache[index]

    on, off = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # alternate, keep the best of each, to spread machine noise
            on.append(epoch_seconds(online, data, args.size, tmp))
            off.append(epoch_seconds(offline, data, args.size, tmp))
    print(f"ResNet-20 -> LeNet-5, {args.n} images at {args.size}px, batch 128, {torch.get_num_threads()} threads")
    print(f"online  epoch: {min(on):7.2f} s")
    print(f"offline epoch: {min(off):7.2f} s   (+ {cache_s:.2f} s once for the logit cache)")
    print(f"ratio online/offline: {min(on) / min(off):.2f}x (target >= 3)")


if __name__ == "__main__":
    main()
