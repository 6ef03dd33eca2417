"""The noise floor of colour EOD on the generated Trifeature test split, measured (by hand).

    python benchmarks/floor_trifeature.py [--models 200] [--draws 1000]

The test design: every (shape, colour, texture) combination `per` times; label = shape, group =
colour. A model with no disparity: each test image is right with probability `acc`, else a
uniformly drawn wrong shape, independently of colour. For each accuracy and design it prints
  - EOD of such models: mean and sd over --models simulated models (what a user would see);
  - the null of metrics.null (within-label permutation, --draws draws) of one such model: its
    mean and 95th percentile, and the p-value of that model's EOD.
The numbers are in docs/trifeature.md ("Noise floor").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.metrics.group import group_fairness  # noqa: E402
from kdfair_cli.metrics.null import null_draws, null_test  # noqa: E402

N_SHAPES = N_COLORS = N_TEXTURES = 10


def design(per: int) -> tuple[np.ndarray, np.ndarray]:
    """(label, colour) of the test split, in combination order."""
    shape, colour, _, _ = np.meshgrid(np.arange(N_SHAPES), np.arange(N_COLORS),
                                      np.arange(N_TEXTURES), np.arange(per), indexing="ij")
    return shape.ravel(), colour.ravel()


def model(label: np.ndarray, acc: float, rng: np.random.Generator) -> np.ndarray:
    wrong = (label + rng.integers(1, N_SHAPES, label.size)) % N_SHAPES
    return np.where(rng.random(label.size) < acc, label, wrong)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = [str(c) for c in range(N_COLORS)]
    print("| test images per combination | accuracy | EOD of no-disparity models, mean ± sd "
          "| null mean | null q95 | p of one such model |")
    print("|---|---|---|---|---|---|")
    for per in (1, 10):
        label, colour = design(per)
        for acc in (0.91, 0.95, 0.96):
            eods = [group_fairness(label, model(label, acc, rng), colour, names, N_SHAPES).eod
                    for _ in range(args.models)]
            res = group_fairness(label, model(label, acc, rng), colour, names, N_SHAPES)
            test = null_test(res.eod, null_draws(res.cells, res.classes, n_draws=args.draws).eod)
            print(f"| {per} | {acc:.0%} | {100 * np.mean(eods):.1f} ± {100 * np.std(eods, ddof=1):.1f}% "
                  f"| {100 * test.null_mean:.1f}% | {100 * test.null_q95:.1f}% | {test.p:.2f} |")


if __name__ == "__main__":
    main()
