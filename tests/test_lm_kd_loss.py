"""Token-level KD loss: hand-worked values, the large-T limit, chunking, memory, top-k buckets."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdfair_cli.train.kd_loss import kd_loss
from kdfair_cli.llm.kd_loss import (TopKTargets, chunked_token_loss, token_kd_terms_full,
                                         token_kd_terms_topk, topk_from_logits)

LN2, LN4 = math.log(2.0), math.log(4.0)
# At T = 2: teacher z/T = [ln 4, ln 2, 0] -> p_t = [4, 2, 1] / 7; student z/T = [0, 0, ln 2] -> [1, 1, 2] / 4.
TEACHER = torch.tensor([[2 * LN4, 2 * LN2, 0.0]], dtype=torch.float64)
STUDENT = torch.tensor([[0.0, 0.0, 2 * LN2]], dtype=torch.float64)
KL_FULL = 4 / 7 * math.log(16 / 7) + 2 / 7 * math.log(8 / 7) + 1 / 7 * math.log(2 / 7)
# top-1: buckets {0} and {1, 2}: teacher [4/7, 3/7], student [1/4, 3/4]
KL_TOP1 = 4 / 7 * math.log(16 / 7) + 3 / 7 * math.log(4 / 7)
CE = math.log(6 / 4)  # target 2 at T = 1: softmax([0, 0, 2 ln 2]) = [1, 1, 4] / 6


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second intra-op thread only waits on a busy machine (7 ms per op vs 15 us)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hand_worked_full_terms() -> None:
    kl, ce, correct = token_kd_terms_full(STUDENT, TEACHER, torch.tensor([2]), 2.0)
    assert float(kl) == pytest.approx(KL_FULL, rel=1e-12)
    assert float(ce) == pytest.approx(CE, rel=1e-12)
    assert int(correct) == 1


def test_hand_worked_topk_terms_and_tail() -> None:
    values, indices, tail = topk_from_logits(TEACHER, 1, [2.0, 1.0])
    assert indices.tolist() == [[0]] and values.dtype == torch.float32
    assert float(values[0, 0]) == pytest.approx(2 * LN4, rel=1e-6)
    # tail at T = 2: log(e^{ln 2} + e^0) = ln 3; at T = 1: log(e^{2 ln 2} + 1) = ln 5
    assert tail[0].tolist() == pytest.approx([math.log(3), math.log(5)], rel=1e-6)
    top = TopKTargets(values, indices, tail[:, 0])
    kl, ce, correct = token_kd_terms_topk(STUDENT, torch.tensor([0]), top, 2.0)
    assert float(kl) == pytest.approx(KL_TOP1, rel=1e-6)
    assert KL_TOP1 < KL_FULL
    assert float(ce) == pytest.approx(math.log(6), rel=1e-12) and int(correct) == 0


def test_hand_worked_chunked_loss() -> None:
    """alpha = 0.25, s(T) = T^2 = 4, two identical rows (means = the row's value)."""
    hidden = torch.cat([STUDENT, STUDENT]).requires_grad_()
    teacher = torch.cat([TEACHER, TEACHER])
    loss, correct, count = chunked_token_loss(hidden, lambda h: h, torch.tensor([2, 1]),
                                              lambda a, b: teacher[a:b], 2.0, 0.25, True, 3, chunk=1)
    ce1 = math.log(6)  # target 1: softmax([0, 0, 2 ln 2])[1] = 1/6
    assert float(loss.detach()) == pytest.approx(0.25 * 4 * KL_FULL + 0.75 * (CE + ce1) / 2, rel=1e-12)
    assert (int(correct), count) == (1, 2)


def test_large_temperature_limit() -> None:
    """T^2 KL -> (1/(2V)) sum_i (d_i - mean d)^2, d = z_t - z_s (Hinton's logit matching).

    log p_i = z_i/T - logsumexp(z/T); to second order in 1/T, KL(p||q) = Var_p(log p - log q)/2,
    log p - log q = d/T + const, and p -> uniform: KL = sum_i (d_i - mean d)^2 / (2 V T^2)."""
    rng = np.random.default_rng(5)
    zt, zs = rng.normal(size=(3, 4)) * 2, rng.normal(size=(3, 4)) * 2
    d = zt - zs
    limit = ((d - d.mean(1, keepdims=True)) ** 2).sum(1).sum() / (2 * 4)
    errors = []
    for t in (3.0, 10.0, 30.0, 100.0, 1000.0):
        kl, _, _ = token_kd_terms_full(torch.tensor(zs), torch.tensor(zt), torch.zeros(3, dtype=torch.long), t)
        errors.append(abs(t * t * float(kl) - limit) / limit)
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 2e-3 and errors[0] > 1e-2


def test_stable_for_extreme_logits_and_temperatures() -> None:
    zs = torch.tensor([[1e4, -1e4, 0.0, 5.0]])
    zt = torch.tensor([[-1e4, 1e4, 0.0, 3.0]])
    for t in (0.1, 1.0, 100.0):
        kl, ce, _ = token_kd_terms_full(zs, zt, torch.tensor([1]), t)
        values, indices, tail = topk_from_logits(zt, 2, [t])
        kl_k, _, _ = token_kd_terms_topk(zs, torch.tensor([1]), TopKTargets(values, indices, tail[:, 0]), t)
        assert all(math.isfinite(float(x)) for x in (kl, ce, kl_k))
        assert float(kl_k) <= float(kl) * (1 + 1e-6)


def _setup(n: int = 37, hdim: int = 8, vocab: int = 11, pad: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, hdim, generator=g, dtype=torch.float64)
    head = torch.nn.Linear(hdim, vocab + pad, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab + pad, hdim, generator=g, dtype=torch.float64))
        head.bias.copy_(torch.randn(vocab + pad, generator=g, dtype=torch.float64))
    teacher = torch.randn(n, vocab + pad, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, vocab, (n,), generator=g)
    return hidden, head, teacher, targets


def _loss_and_grads(hidden, head, targets, teacher_fn, t, alpha, scale_t2, vocab, chunk):
    h = hidden.clone().requires_grad_()
    loss, correct, count = chunked_token_loss(h, head, targets, teacher_fn, t, alpha, scale_t2, vocab, chunk)
    grads = torch.autograd.grad(loss, [h, head.weight, head.bias])
    return loss.detach(), grads, int(correct), count


@pytest.mark.parametrize("t,alpha,scale_t2", [(1.0, 0.5, True), (4.0, 0.8, True), (0.5, 1.0, False)])
def test_chunked_equals_whole_batch_reference(t: float, alpha: float, scale_t2: bool) -> None:
    """Any chunk size (incl. 1 and sizes not dividing N) gives train/kd_loss.py's loss and gradients."""
    hidden, head, teacher, targets = _setup()
    h = hidden.clone().requires_grad_()
    z = head(h)[:, :11]
    ref = kd_loss(z, teacher[:, :11], targets, t, alpha, scale_t2)
    ref_grads = torch.autograd.grad(ref, [h, head.weight, head.bias])
    ref_correct = int((z.argmax(1) == targets).sum())
    for chunk in (1, 5, 16, 37, 64):
        loss, grads, correct, count = _loss_and_grads(hidden, head, targets, lambda a, b: teacher[a:b],
                                                      t, alpha, scale_t2, 11, chunk)
        assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-10)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
        assert (correct, count) == (ref_correct, 37)


def test_no_teacher_is_mean_cross_entropy() -> None:
    hidden, head, _, targets = _setup()
    loss, _, _ = chunked_token_loss(hidden, head, targets, None, None, 0.7, True, 11, chunk=5)
    ce = F.cross_entropy(head(hidden)[:, :11], targets).detach()
    assert float(loss.detach()) == pytest.approx(float(ce), rel=1e-12)


def test_offline_chunked_equals_unchunked_and_k_equal_v_is_full() -> None:
    hidden, head, teacher, targets = _setup()
    v, t = 11, 3.0
    full_vals, full_idx, full_tail = topk_from_logits(teacher[:, :v], v, [t])
    assert torch.isneginf(full_tail).all()
    vals, idx, tail = topk_from_logits(teacher[:, :v], 4, [t])

    def offline(values, indices, tails):
        return lambda a, b: TopKTargets(values[a:b], indices[a:b], tails[a:b, 0])

    whole, whole_grads, _, _ = _loss_and_grads(hidden, head, targets, offline(vals, idx, tail), t, 0.6, True, v, 37)
    for chunk in (3, 10):
        loss, grads, _, _ = _loss_and_grads(hidden, head, targets, offline(vals, idx, tail), t, 0.6, True, v, chunk)
        assert float(loss) == pytest.approx(float(whole), rel=1e-6)
        for g, r in zip(grads, whole_grads):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    exact, exact_grads, _, _ = _loss_and_grads(hidden, head, targets, offline(full_vals, full_idx, full_tail),
                                               t, 0.6, True, v, 7)
    online, online_grads, _, _ = _loss_and_grads(hidden, head, targets, lambda a, b: teacher[a:b],
                                                 t, 0.6, True, v, 7)
    assert float(exact) == pytest.approx(float(online), rel=1e-6)  # values are stored as float32
    for g, r in zip(exact_grads, online_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    assert float(whole) < float(online)  # lumping lowers the KL; the CE part is the same


def test_deterministic_reruns_are_bit_identical() -> None:
    hidden, head, teacher, targets = _setup()
    hidden, teacher = hidden.float(), teacher.float()
    head = head.float()
    runs = [_loss_and_grads(hidden, head, targets, lambda a, b: teacher[a:b], 2.0, 0.5, True, 11, 6)
            for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_half_precision_logits_are_upcast() -> None:
    hidden, head, teacher, targets = _setup()
    head16 = torch.nn.Linear(8, 14).to(torch.bfloat16)
    with torch.no_grad():
        head16.weight.copy_(head.weight)
        head16.bias.copy_(head.bias)
    loss, _, _ = chunked_token_loss(hidden.to(torch.bfloat16).requires_grad_(), head16, targets,
                                    lambda a, b: teacher[a:b].to(torch.bfloat16), 2.0, 0.5, True, 11, 8)
    assert loss.dtype == torch.float32


def test_memory_no_vocabulary_sized_tensors_kept_for_backward() -> None:
    """Autograd saves (outside the checkpointed chunks) far less than one [N, V] logits tensor,
    and at most one chunk's teacher and student logits are alive at any time, backward included."""
    n, v, chunk = 64, 50, 8
    hidden, head, teacher, targets = _setup(n=n, vocab=v, pad=0)
    alive: dict[str, list] = {"teacher": [], "student": []}
    peak = {"teacher": 0, "student": 0}

    def track(kind: str, x: torch.Tensor) -> torch.Tensor:
        peak[kind] = max(peak[kind], sum(r() is not None for r in alive[kind]))
        alive[kind].append(weakref.ref(x))
        return x

    def head_fn(h: torch.Tensor) -> torch.Tensor:
        return track("student", head(h))

    def teacher_fn(a: int, b: int) -> torch.Tensor:
        return track("teacher", teacher[a:b].clone())

    saved: list[int] = []

    def pack(x: torch.Tensor) -> torch.Tensor:
        saved.append(x.numel())
        return x

    h = hidden.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss, _, _ = chunked_token_loss(h, head_fn, targets, teacher_fn, 2.0, 0.5, True, v, chunk)
    loss.backward()
    assert sum(saved) < n * v / 4, saved
    assert peak == {"teacher": 0, "student": 0}  # each chunk's logits are gone before the next one's
    assert len(alive["teacher"]) <= 2 * (n // chunk)  # once in forward, at most once in recomputation
    # without chunking the same hooks see the whole batch's logits saved
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        kd_loss(head(hidden.clone().requires_grad_()), teacher, targets, 2.0, 0.5)
    assert sum(saved) >= n * v


def test_alpha_zero_never_calls_the_teacher() -> None:
    hidden, head, _, targets = _setup()

    def teacher_fn(a: int, b: int) -> torch.Tensor:
        raise AssertionError("teacher called")

    loss, _, _ = chunked_token_loss(hidden, head, targets, teacher_fn, 2.0, 0.0, True, 11, 5)
    ce = F.cross_entropy(head(hidden)[:, :11], targets).detach()
    assert float(loss.detach()) == pytest.approx(float(ce), rel=1e-12)


def _peaked_problem(v: int = 50, rows: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A Zipf-like teacher (p ~ rank^-1.5 at T = 1, random token order) and a noisy student."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.argsort(torch.rand(rows, v, generator=g), dim=1).double() + 1
    zt = -1.5 * torch.log(ranks) + 0.3 * torch.randn(rows, v, generator=g, dtype=torch.float64)
    zs = zt + torch.randn(rows, v, generator=g, dtype=torch.float64)
    return zt, zs


def topk_relative_error(zt: torch.Tensor, zs: torch.Tensor, k: int, t: float) -> float:
    """(full KL - top-k KL) / full KL, summed over the rows."""
    y = torch.zeros(len(zt), dtype=torch.long)
    full, _, _ = token_kd_terms_full(zs, zt, y, t)
    values, indices, tail = topk_from_logits(zt, k, [t])
    top, _, _ = token_kd_terms_topk(zs, y, TopKTargets(values, indices, tail[:, 0]), t)
    return float((full - top) / full)


def test_topk_kl_is_a_lower_bound_exact_at_v_and_tightens_with_k() -> None:
    """Buckets of top-(k+1) refine those of top-k, so the KL cannot decrease with k (data
    processing inequality); it reaches the full KL at k = V."""
    zt, zs = _peaked_problem(rows=40)
    for t in (1.0, 4.0, 10.0):
        errors = [topk_relative_error(zt, zs, k, t) for k in range(1, 51)]
        assert all(e >= -1e-6 for e in errors)
        assert all(a >= b - 1e-6 for a, b in zip(errors, errors[1:]))
        assert errors[0] > 0.05 and abs(errors[-1]) < 1e-6


def test_topk_error_grows_with_temperature() -> None:
    """The documented table's trend: a hotter teacher has more mass in the lumped tail."""
    zt, zs = _peaked_problem()
    for k in (4, 16):
        errors = [topk_relative_error(zt, zs, k, t) for t in (1.0, 4.0, 10.0)]
        assert errors[0] < errors[1] < errors[2]
