"""How far the top-k (bucketed) KL of an offline teacher cache falls below the full-vocabulary KL.

Run by hand from the repo root: python benchmarks/topk_kl_error.py [--rows 2000] [--seeds 5]
A Zipf-like teacher (p ~ rank^-1.5 at T = 1, log-normal jitter 0.3, random token order) and a
student whose logits are the teacher's plus N(0, 1) noise. For each T and k it prints the
relative error (full - top-k) / full of the KL summed over the rows (mean +- sd over seeds) and
the teacher's mean tail mass at T. docs/llm.md ("Top-k teacher caches") quotes the output.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from kdfair_cli.llm.kd_loss import TopKTargets, token_kd_terms_full, token_kd_terms_topk, topk_from_logits


def zipf_pair(vocab: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    rank = rng.permuted(np.tile(np.arange(1, vocab + 1), (rows, 1)), axis=1)
    teacher = -1.5 * np.log(rank) + rng.normal(0.0, 0.3, (rows, vocab))
    student = teacher + rng.normal(0.0, 1.0, (rows, vocab))
    return torch.from_numpy(teacher), torch.from_numpy(student)


def measure(teacher: torch.Tensor, student: torch.Tensor, k: int, t: float) -> tuple[float, float]:
    """(relative KL error of top-k, the teacher's mean tail mass) at temperature t."""
    y = torch.zeros(len(teacher), dtype=torch.long)
    full = float(token_kd_terms_full(student, teacher, y, t)[0])
    values, indices, tail = topk_from_logits(teacher, k, [t])
    bucketed = float(token_kd_terms_topk(student, y, TopKTargets(values, indices, tail[:, 0]), t)[0])
    tail_mass = torch.sigmoid(tail[:, 0].double() - torch.logsumexp(values.double() / t, dim=1))
    return (full - bucketed) / full, float(tail_mass.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print("vocab  k     T  rel. error (mean +- sd)  teacher tail mass")
    for vocab, ks in ((50, (4, 16)), (4096, (64,))):
        rows = args.rows if vocab <= 50 else max(args.rows // 10, 1)
        pairs = [zipf_pair(vocab, rows, seed) for seed in range(args.seeds)]
        for k in ks:
            for t in (1.0, 4.0, 10.0):
                runs = np.array([measure(zt, zs, k, t) for zt, zs in pairs])
                err = runs[:, 0]
                print(f"{vocab:5d} {k:3d} {t:5g}  {err.mean():.4f} +- {err.std(ddof=1):.4f}"
                      f"{'':11s}{runs[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
