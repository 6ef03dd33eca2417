"""The distillation loss of the paper (Hinton et al. 2015 with the paper's alpha convention).

    L = alpha * s(T) * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

alpha weighs the distillation term (alpha = 1: pure distillation; other tools often use the
opposite convention). s(T) = T^2 by default (Hinton's scaling keeps the soft-target gradients
at the same magnitude as T changes), or 1. Everything is computed from log-softmax, so it is
stable for large logits and for T from 0.1 to 100.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (bf16 autocast) are lifted to float32; float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of KL(softmax(z_t/T) || softmax(z_s/T)), in nats."""
    log_p_s = F.log_softmax(_upcast(student_logits) / temperature, dim=-1)
    log_p_t = F.log_softmax(_upcast(teacher_logits) / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float, scale_t2: bool = True) -> torch.Tensor:
    """The paper's loss; see the module docstring."""
    scale = temperature**2 if scale_t2 else 1.0
    soft = kd_kl(student_logits, teacher_logits, temperature) * scale
    hard = F.cross_entropy(_upcast(student_logits), labels)
    return alpha * soft + (1.0 - alpha) * hard
