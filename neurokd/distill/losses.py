"""Distillation losses as pure functions on tensors (registry ``LOSSES``).

Every loss takes ``(student, teacher, **params)`` and returns a scalar. Which tensors are passed
(logits or features) is the trainer's business; the functions only compute.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from neurokd.registry import Registry

Loss = Callable[..., torch.Tensor]
LOSSES: Registry[Loss] = Registry("distillation loss")


@LOSSES.register("kd")
def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
          temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: τ² · KL(softmax(t/τ) ‖ softmax(s/τ)), mean over the batch.

    The τ² factor keeps the gradient scale independent of the temperature.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


@LOSSES.register("hint")
def hint_mse(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """FitNet hint: mean squared error between (projected) student and teacher features."""
    return F.mse_loss(student_features, teacher_features)


def _similarity(features: torch.Tensor) -> torch.Tensor:
    flat = features.reshape(features.shape[0], -1)
    gram = flat @ flat.t()
    return F.normalize(gram, p=2, dim=1)


@LOSSES.register("relational")
def relational(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving loss (Tung & Mori 2019): the batch's pairwise-similarity matrices,
    each row L2-normalised, compared by squared Frobenius distance divided by b².

    Needs no projection: the two feature spaces may differ in size.
    """
    b = student_features.shape[0]
    diff = _similarity(student_features) - _similarity(teacher_features)
    return (diff * diff).sum() / (b * b)


@LOSSES.register("ce")
def hard_label(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the true labels."""
    return F.cross_entropy(student_logits, labels)
