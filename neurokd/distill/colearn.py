"""Co-learning of DNN teachers and SNN students, and the reference distillation methods.

One objective covers every method; the paths it sums are switched by ``DistillConfig``:

* output path, DNN → SNN:   ``(1-α)·CE(s, y) + α·KD(κ·s, t; τ)`` on the student's spike counts
  ``s``, with ``κ > 0`` a learned scale
* feature path, DNN → SNN:  ``β·hint(P(D(h_s)), h_t)`` (FitNet, colearn) or
  ``β·relational(D(h_s), h_t)``, with ``D`` a spike decoder and ``P`` a learned projection
* SNN → DNN (mutual):       the teacher minimises ``(1-γ)·CE(t, y) + γ·KD(t, κ·s; τ)``

Features are read with forward hooks by module path; neither model is edited.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from neurokd.config import DistillConfig
from neurokd.distill.decoders import DECODERS, FeatureAdapter
from neurokd.distill.hooks import FeatureTap, get_module
from neurokd.distill.losses import LOSSES
from neurokd.distill.methods import DISTILL_METHODS, DistillMethod
from neurokd.errors import NeurokdError
from neurokd.models.cuba.net import SpikingNet

def method_of(cfg: DistillConfig) -> DistillMethod:
    return DISTILL_METHODS.get(cfg.method)


def uses_teacher(cfg: DistillConfig) -> bool:
    return method_of(cfg).teacher


def uses_features(cfg: DistillConfig) -> bool:
    m = method_of(cfg)
    return m.feature_loss is not None and (cfg.feature or not m.features_optional)


def teacher_trains(cfg: DistillConfig) -> bool:
    return method_of(cfg).trains_teacher and not cfg.freeze_teacher


class CoLearner(nn.Module):
    """Holds the student, its teachers and the feature adapter; ``objective`` is the training loss."""

    def __init__(self, student: SpikingNet, teachers: List[nn.Module], cfg: DistillConfig,
                 sample_raw: torch.Tensor, sample_input: torch.Tensor) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList(teachers)
        self.cfg = cfg
        self.adapter: Optional[FeatureAdapter] = None
        # Spike counts are bounded by the window; a learned positive scale (log-parametrised) lets
        # the soft-target terms compare distributions without forcing absolute count gaps. Argmax,
        # and so every prediction and the exported network, is unchanged by it.
        self.log_logit_scale = nn.Parameter(torch.zeros(()))
        if uses_teacher(cfg) and not teachers:
            raise NeurokdError(f"method {cfg.method!r} needs a teacher checkpoint (--teacher)")
        if uses_features(cfg):
            DECODERS.get(cfg.decoder)
            get_module(student, cfg.student_layer, owner="the student")
            get_module(teachers[0], cfg.teacher_layer, owner="the teacher")
            s_shape, t_shape = self._feature_shapes(sample_raw, sample_input)
            if method_of(cfg).feature_loss == "relational":
                self.adapter = FeatureAdapter(cfg.decoder, s_shape, s_shape)  # decoder only
            else:
                self.adapter = FeatureAdapter(cfg.decoder, s_shape, t_shape)
        for t in self.teachers:
            t.requires_grad_(teacher_trains(cfg))

    @torch.no_grad()
    def _feature_shapes(self, raw: torch.Tensor, inp: torch.Tensor) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        with FeatureTap(self.student, [self.cfg.student_layer]) as st, \
                FeatureTap(self.teachers[0], [self.cfg.teacher_layer]) as tt:
            self.student(inp[:2])
            self.teachers[0](raw[:2])
            s, t = st[self.cfg.student_layer], tt[self.cfg.teacher_layer]
        if s.dim() < 3:
            raise NeurokdError(f"student layer {self.cfg.student_layer!r} gives {list(s.shape)}, "
                               "not spike trains (N, C[, H, W], T)")
        return tuple(s.shape[1:-1]), tuple(t.shape[1:])

    def param_groups(self, student_lr: float) -> List[Dict[str, Any]]:
        groups = [{"params": list(self.student.parameters()) + [self.log_logit_scale], "lr": student_lr}]
        if self.adapter is not None and any(True for _ in self.adapter.parameters()):
            groups.append({"params": list(self.adapter.parameters()), "lr": student_lr})
        if teacher_trains(self.cfg):
            groups.append({"params": list(self.teachers[0].parameters()), "lr": self.cfg.teacher_lr})
        return groups

    def train(self, mode: bool = True) -> "CoLearner":
        super().train(mode)
        for t in self.teachers:  # frozen teachers stay in evaluation mode
            t.train(mode and teacher_trains(self.cfg))
        return self

    def teacher_logits(self, raw: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(teacher_trains(self.cfg) and torch.is_grad_enabled()):
            return torch.stack([t(raw) for t in self.teachers]).mean(0)

    def objective(self, raw: torch.Tensor, inp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss of one batch: ``raw`` samples for the teachers, ``inp`` spikes for the student."""
        cfg = self.cfg
        ce, kd = LOSSES.get("ce"), LOSSES.get("kd")
        if not uses_teacher(cfg):
            return ce(self.student(inp).sum(-1), labels)
        s_paths = [cfg.student_layer] if self.adapter is not None else []
        t_paths = [cfg.teacher_layer] if self.adapter is not None else []
        with FeatureTap(self.student, s_paths) as st, FeatureTap(self.teachers[0], t_paths) as tt:
            s_logits = self.student(inp).sum(-1)
            t_logits = self.teacher_logits(raw)
        alpha = cfg.alpha if method_of(cfg).soft_targets else 0.0
        loss = (1 - alpha) * ce(s_logits, labels)
        s_scaled = s_logits * self.log_logit_scale.exp()
        if alpha > 0:
            loss = loss + alpha * kd(s_scaled, t_logits.detach(), temperature=cfg.temperature)
        if self.adapter is not None:
            s_feat = st[cfg.student_layer]
            t_feat = tt[cfg.teacher_layer].detach()
            if method_of(cfg).feature_loss == "relational":  # similarities need no projection
                loss = loss + cfg.feature_weight * LOSSES.get("relational")(self.adapter.decoder(s_feat), t_feat)
            else:
                loss = loss + cfg.feature_weight * LOSSES.get("hint")(self.adapter(s_feat), t_feat)
        if teacher_trains(cfg):
            gamma = cfg.mutual_weight if cfg.mutual else 0.0
            t_loss = (1 - gamma) * ce(t_logits, labels)
            if gamma > 0:
                t_loss = t_loss + gamma * kd(t_logits, s_scaled.detach(), temperature=cfg.temperature)
            loss = loss + t_loss
        return loss


