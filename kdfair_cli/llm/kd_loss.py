"""Token-level distillation of causal LMs: the paper's loss per token, over chunks of tokens.

    L = alpha * s(T) * mean_tokens KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * mean CE

with the convention of train/kd_loss.py (alpha weighs the distillation term, s(T) = T^2 or 1).
A causal LM's logits are [tokens, vocabulary]: 32k-150k floats per token, so a batch's logits
would dominate memory. `chunked_token_loss` applies the LM head to `chunk` tokens at a time
under activation checkpointing, so one chunk's [chunk, V] logits are alive at a time, in the
forward and in the backward pass.

Offline distillation stores only the teacher's top-k logits per token plus the log-mass of the
rest (`tail_lse`); `token_kd_terms_topk` then computes the KL over k + 1 buckets (the k teacher
tokens and the lumped tail). Lumping can only lose information, so that KL is <= the full one
(equal when k = V); docs/llm.md ("Top-k teacher caches") measures the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from kdfair_cli.train.kd_loss import _upcast


@dataclass
class TopKTargets:
    """The teacher's top-k logits for some tokens, at T = 1, and the tail's log-mass at one T.

    tail_lse[i] = logsumexp over the vocabulary entries not in indices[i] of z_t / T (-inf when
    k = V). It is per temperature because the tail's mass at T cannot be derived from its mass
    at T = 1 without the tail's logits themselves.
    """

    values: torch.Tensor  # [N, k] float32, sorted descending
    indices: torch.Tensor  # [N, k] int64
    tail_lse: torch.Tensor  # [N] float32

    def to(self, device: torch.device | str) -> TopKTargets:
        return TopKTargets(self.values.to(device), self.indices.to(device, torch.int64),
                           self.tail_lse.to(device))


TermSums = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _tail_mask(shape: torch.Size, indices: torch.Tensor) -> torch.Tensor:
    """True at the vocabulary entries of each row that are not among `indices`."""
    mask = torch.ones(shape, dtype=torch.bool, device=indices.device)
    return mask.scatter(1, indices, False)


def _tail_logsumexp(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """logsumexp per row over the entries not in `indices`, from the entries themselves.

    The alternative log1p(-sum(top-k probabilities)) cancels catastrophically when the top k hold
    almost all the mass (a peaked teacher, a low T): in float32 the tail's 1e-9 becomes 0 or a
    rounding error. A masked logsumexp keeps full relative precision for any tail mass.
    """
    return x.masked_fill(~_tail_mask(x.shape, indices), float("-inf")).logsumexp(dim=1)


@torch.no_grad()
def topk_from_logits(logits: torch.Tensor, k: int, temperatures: Sequence[float]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k logits [N, k] (float32, descending), their ids [N, k] (int64) and the tail's
    logsumexp of z/T per temperature [N, len(temperatures)] (float32; -inf when k = V).

    The top-k set is the same at every T > 0 (dividing by T keeps the order), so one set serves
    the whole temperature grid; only the tail's log-mass depends on T.
    """
    z = _upcast(logits).float()
    if not 1 <= k <= z.shape[1]:
        raise ValueError(f"top-k {k} is outside 1..{z.shape[1]} (the vocabulary size)")
    values, indices = z.topk(k, dim=1, largest=True, sorted=True)
    tail = torch.full((z.shape[0], len(temperatures)), float("-inf"), device=z.device)
    if k < z.shape[1]:
        masked = z.masked_fill(~_tail_mask(z.shape, indices), float("-inf"))
        for j, t in enumerate(temperatures):
            tail[:, j] = (masked / float(t)).logsumexp(dim=1)
    return values, indices, tail


def _kl_rows_sum(log_p_t: torch.Tensor, log_p_s: torch.Tensor) -> torch.Tensor:
    """sum over rows and entries of p_t (log p_t - log p_s); entries with p_t = 0 add 0 (not the
    NaN that 0 * -inf would give)."""
    p_t = log_p_t.exp()
    return torch.where(p_t > 0, p_t * (log_p_t - log_p_s), 0.0).sum()


def _ce_correct(z_s: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy at T = 1 and the count of argmax hits."""
    ce = F.cross_entropy(z_s, targets, reduction="sum")
    correct = (z_s.detach().argmax(dim=1) == targets).sum()
    return ce, correct


def token_kd_terms_full(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                        targets: torch.Tensor, T: float) -> TermSums:
    """(sum of KL(softmax(z_t/T) || softmax(z_s/T)), sum of CE(z_s, target), argmax hits) over
    the rows; the teacher's logits carry no gradient."""
    z_s = _upcast(student_logits)
    z_t = _upcast(teacher_logits.detach()).to(z_s.dtype)
    kl = _kl_rows_sum(F.log_softmax(z_t / T, dim=1), F.log_softmax(z_s / T, dim=1))
    return (kl, *_ce_correct(z_s, targets))


def token_kd_terms_topk(student_logits: torch.Tensor, targets: torch.Tensor, top: TopKTargets,
                        T: float) -> TermSums:
    """As token_kd_terms_full, with the KL over k + 1 buckets: the teacher's k tokens and the rest.

    Teacher bucket log-probabilities: log_softmax over [values / T, tail_lse]. Student: its full
    log-softmax at T gathered at the k ids, and the logsumexp of the others for the tail. When
    k = V there is no tail bucket and the KL is the full one.
    """
    z_s = _upcast(student_logits)
    idx = top.indices.to(z_s.device, torch.int64)
    log_p_s = F.log_softmax(z_s / T, dim=1)
    s_top = log_p_s.gather(1, idx)
    t_top = top.values.to(z_s.device, z_s.dtype) / T
    if idx.shape[1] < z_s.shape[1]:
        s_buckets = torch.cat([s_top, _tail_logsumexp(log_p_s, idx)[:, None]], dim=1)
        t_buckets = torch.cat([t_top, top.tail_lse.to(z_s.device, z_s.dtype)[:, None]], dim=1)
    else:
        s_buckets, t_buckets = s_top, t_top
    kl = _kl_rows_sum(F.log_softmax(t_buckets, dim=1), s_buckets)
    return (kl, *_ce_correct(z_s, targets))


Teacher = Callable[[int, int], "torch.Tensor | TopKTargets"]


def _chunk_terms(hidden: torch.Tensor, targets: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
                 teacher: Teacher | None, start: int, end: int, T: float | None, vocab: int,
                 want_kl: bool) -> TermSums:
    """One chunk's term sums. The teacher is asked for its rows here, under no_grad, so that a
    checkpoint's recomputation asks again instead of keeping every chunk's [chunk, V] teacher
    logits alive until the backward pass (an online teacher's head runs once more per chunk,
    as the student's does; its body is not rerun)."""
    z_s = head(hidden)[:, :vocab]
    if teacher is None or not want_kl:
        ce, correct = _ce_correct(_upcast(z_s), targets)
        return torch.zeros((), dtype=ce.dtype, device=ce.device), ce, correct
    with torch.no_grad():
        target = teacher(start, end)
    if isinstance(target, TopKTargets):
        return token_kd_terms_topk(z_s, targets, target, T)
    return token_kd_terms_full(z_s, target[:, :vocab], targets, T)


def chunked_token_loss(hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
                       targets: torch.Tensor, teacher: Teacher | None, T: float | None,
                       alpha: float, scale_t2: bool, vocab: int, chunk: int = 1024
                       ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss, correct, count) over the N rows of `hidden` (the learned token positions).

    loss = alpha * s(T) * mean KL + (1 - alpha) * mean CE (teacher None: mean CE). `teacher(start,
    end)` gives the teacher's logits for rows start..end ([end-start, V'], online) or a
    TopKTargets (offline). Logits are cut to `vocab` columns (heads may be padded). With
    gradients on, each chunk runs under torch.utils.checkpoint (non-reentrant): only its inputs
    ([chunk, H] hidden states) are kept, and its logits are recomputed in the backward pass.
    alpha = 0 never calls the teacher; alpha = 1 adds no CE (it is still the source of `correct`).
    `teacher` is called inside the checkpointed chunk, so up to twice per chunk (forward and
    recomputation): it must return the same rows each time (an online teacher applies its head to
    hidden states computed once per batch under no_grad; an offline one slices its cache).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = hidden.shape[0]
    want_kl = teacher is not None and alpha != 0.0
    want_ce = teacher is None or alpha != 1.0
    if want_kl and (T is None or not T > 0):
        raise ValueError(f"a teacher needs a temperature > 0, got {T}")
    use_ckpt = torch.is_grad_enabled() and hidden.requires_grad
    kl_sum = ce_sum = None
    correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        args = (hidden[start:end], targets[start:end], head, teacher, start, end, T, vocab, want_kl)
        kl, ce, hits = (checkpoint(_chunk_terms, *args, use_reentrant=False) if use_ckpt
                        else _chunk_terms(*args))
        kl_sum = kl if kl_sum is None else kl_sum + kl
        ce_sum = ce if ce_sum is None else ce_sum + ce
        correct = correct + hits
    if n == 0:  # nothing learned in this batch: a zero loss that still backpropagates
        return hidden.sum() * 0.0, correct, 0
    loss = torch.zeros((), dtype=kl_sum.dtype, device=kl_sum.device)
    if want_kl:
        scale = T * T if scale_t2 else 1.0
        loss = loss + alpha * scale * kl_sum / n
    if want_ce:
        loss = loss + (1.0 if teacher is None else 1.0 - alpha) * ce_sum / n
    return loss, correct, n
