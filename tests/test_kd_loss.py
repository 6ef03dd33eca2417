"""The KD loss against a hand computation in numpy (float64)."""

import numpy as np
import pytest
import torch

from kdfair_cli.train.kd_loss import kd_loss


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _reference(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, t: float, alpha: float, t2: bool) -> float:
    p_t = _softmax(zt / t)
    p_s = _softmax(zs / t)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1).mean()
    ce = -np.log(_softmax(zs)[np.arange(len(y)), y]).mean()
    return alpha * kl * (t * t if t2 else 1.0) + (1 - alpha) * ce


@pytest.mark.parametrize("t,alpha,t2", [(1.0, 0.8, True), (4.0, 0.8, True), (4.0, 0.5, False),
                                         (10.0, 1.0, True), (0.5, 0.0, True), (2.0, 0.3, False)])
def test_matches_numpy_reference(t: float, alpha: float, t2: bool) -> None:
    rng = np.random.default_rng(3)
    zs, zt = rng.normal(size=(7, 5)) * 3, rng.normal(size=(7, 5)) * 3
    y = rng.integers(0, 5, 7)
    got = kd_loss(torch.tensor(zs, dtype=torch.float64), torch.tensor(zt, dtype=torch.float64),
                  torch.tensor(y), t, alpha, t2)
    assert float(got) == pytest.approx(_reference(zs, zt, y, t, alpha, t2), rel=1e-6)


def test_hand_worked_value() -> None:
    # Two classes, T = 1, alpha = 1: KL([0.5, 0.5] || softmax([ln 3, 0]) = [0.75, 0.25])
    # = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.5 ln(4/3) = 0.143841...
    zs = torch.tensor([[np.log(3.0), 0.0]])
    zt = torch.zeros(1, 2)
    got = kd_loss(zs, zt, torch.tensor([0]), 1.0, 1.0, True)
    assert float(got) == pytest.approx(0.5 * np.log(4 / 3), rel=1e-6)


def test_large_temperature_limit() -> None:
    """For T -> inf, T^2 * KL -> sum_i (zs_i - zt_i - mean diff)^2 / (2C) (Hinton et al., eq. 3-4)."""
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    d = (zs - zs.mean(1, keepdims=True)) - (zt - zt.mean(1, keepdims=True))
    limit = (d**2).sum(1).mean() / (2 * 6)
    got = kd_loss(torch.tensor(zs), torch.tensor(zt), torch.tensor([0, 1, 2, 3]), 1000.0, 1.0, True)
    assert float(got) == pytest.approx(limit, rel=1e-3)


def test_stable_for_extreme_logits_and_temperatures() -> None:
    zs = torch.tensor([[1e4, -1e4, 0.0]])
    zt = torch.tensor([[-1e4, 1e4, 0.0]])
    for t in (0.1, 1.0, 100.0):
        assert torch.isfinite(kd_loss(zs, zt, torch.tensor([0]), t, 0.8, True))


def test_identical_logits_leave_only_the_hard_term() -> None:
    z = torch.tensor([[2.0, 0.5, -1.0]])
    ce = torch.nn.functional.cross_entropy(z, torch.tensor([1]))
    assert float(kd_loss(z, z.clone(), torch.tensor([1]), 4.0, 0.8, True)) == pytest.approx(0.2 * float(ce), rel=1e-6)
