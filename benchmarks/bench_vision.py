"""train-teacher throughput on real-format vision data vs a bare PyTorch loop (images/s).

Run by hand from the repo root: python benchmarks/bench_vision.py [--n 2560] [--epochs 2] [--workers 2]

1. cifar10: CIFAR-shaped random images written in the CIFAR-10 pickle layout, trained with
   kdfair's runner (the whole train-teacher path: reader, holdout, in-memory batches with
   on-device crop/flip, validation, per-epoch state saving), ResNet-20, batch 128.
2. imagefolder: the same images as PNG files in a class-per-folder tree, streamed by the
   DataLoader (decode, RandomResizedCrop + flip, pinned memory on CUDA), ResNet-20, batch 128.
Both as a ratio to bench_train.bare_loop (normalise + forward + backward + step over uint8
tensors already in memory; no augmentation, no validation). Target for (1): >= 0.9.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import bare_loop  # noqa: E402

from kdfair_cli.models.registry import build_model  # noqa: E402
from kdfair_cli.train.config import TrainConfig  # noqa: E402
from kdfair_cli.train.runner import train_model  # noqa: E402


def write_cifar(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh, protocol=2)
    parts = np.array_split(np.arange(len(labels)), 5)
    for i, idx in enumerate(parts, start=1):
        with open(d / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": images[idx].reshape(len(idx), -1), b"labels": labels[idx].tolist()}, fh, protocol=2)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"data": images[:100].reshape(100, -1), b"labels": labels[:100].tolist()}, fh, protocol=2)
    return root


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for i, (img, y) in enumerate(zip(images, labels)):
        d = root / "train" / f"c{y}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i}.png", compress_level=1)
    return root


def kdfair_ips(dataset: str, data: Path, out: Path, epochs: int, batch: int, options: dict, workers: int = 0) -> float:
    cfg = TrainConfig(dataset=dataset, data=str(data), arch="resnet20", out=str(out), epochs=epochs, batch_size=batch,
                      lr=0.05, device="cpu", val_fraction=0.02, dataset_options=options, workers=workers)
    meta = train_model(cfg, force=True, verbose=False)
    return float(meta["train_samples_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2560)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, args.n)
    print(f"resnet20 32px, {args.n} images, batch {args.batch}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers")
    results: dict[str, list[float]] = {"bare": [], "cifar10": [], "imagefolder": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cifar = write_cifar(tmp_path / "cifar", images, labels)
        folder = write_folder(tmp_path / "folder", images, labels)
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        bare_loop(build_model("resnet20", 10, (3, 32, 32)), x, y, args.batch, 1)  # warm-up
        for _ in range(args.rounds):
            torch.manual_seed(0)
            results["bare"].append(bare_loop(build_model("resnet20", 10, (3, 32, 32)), x, y, args.batch, args.epochs))
            results["cifar10"].append(kdfair_ips("cifar10", cifar, tmp_path / "m1", args.epochs, args.batch, {}))
            results["imagefolder"].append(kdfair_ips("imagefolder", folder, tmp_path / "m2", args.epochs, args.batch,
                                                     {"image_size": 32, "resize": 32, "crop_scale": 0.5},
                                                     args.workers))
    best = {k: max(v) for k, v in results.items()}
    for name, ips in best.items():
        print(f"{name:>12}: {ips:8.0f} images/s   ratio to bare {ips / best['bare']:.3f}")


if __name__ == "__main__":
    main()
