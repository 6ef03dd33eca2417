"""Training throughput of kdfair's loop vs a bare PyTorch loop (same model, batch, device).

Run by hand from the repo root (after `pip install .`): python benchmarks/bench_train.py [--arch resnet20] [--size 32] [--n 4096] [--epochs 2]
Both loops see the same in-memory uint8 data; the bare loop does only normalise + forward +
backward + step. Prints images/s of each and the ratio kdfair / bare (target >= 0.9).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from kdfair_cli.models.registry import build_model
from kdfair_cli.data.batches import ImageBatches
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.train.loop import LoopData, fit
from kdfair_cli.train.runner import hard_label_objective


def bare_loop(model, images: torch.Tensor, labels: torch.Tensor, batch: int, epochs: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n = len(labels)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            x = (images[idx].float() / 255 - 0.5) / 0.25
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return n * epochs / (time.perf_counter() - t0)


def kdfair_loop(model, images: torch.Tensor, labels: torch.Tensor, batch: int, epochs: int,
                augment: bool, tmp: str) -> float:
    cfg = TrainConfig("bench", "x", "bench", tmp, epochs=epochs, batch_size=batch, lr=0.05, augment=augment,
                      device="cpu")
    data = LoopData(ImageBatches(images, (0.5,) * 3, (0.25,) * 3), labels)
    from pathlib import Path

    res = fit(model, data, cfg, hard_label_objective(cfg), torch.device("cpu"), Path(tmp) / "state.pt",
              verbose=False)
    return res.samples_per_second


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.n,), generator=gen)
    shape = (3, args.size, args.size)
    print(f"{args.arch} {args.size}px, {args.n} images, batch {args.batch}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads")
    # Warm up both paths once, then alternate to spread machine noise.
    results: dict[str, list[float]] = {"bare": [], "kdfair": [], "kdfair+aug": []}
    with tempfile.TemporaryDirectory() as tmp:
        bare_loop(build_model(args.arch, 10, shape), images, labels, args.batch, 1)
        for _ in range(2):
            torch.manual_seed(0)
            results["bare"].append(bare_loop(build_model(args.arch, 10, shape), images, labels, args.batch,
                                             args.epochs))
            results["kdfair"].append(kdfair_loop(build_model(args.arch, 10, shape), images, labels, args.batch,
                                                 args.epochs, False, tmp))
            results["kdfair+aug"].append(kdfair_loop(build_model(args.arch, 10, shape), images, labels,
                                                     args.batch, args.epochs, True, tmp))
    best = {k: max(v) for k, v in results.items()}
    for name, ips in best.items():
        print(f"{name:>11}: {ips:8.0f} images/s   ratio to bare {ips / best['bare']:.3f}")


if __name__ == "__main__":
    main()
