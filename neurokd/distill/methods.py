"""Distillation methods (registry ``DISTILL_METHODS``): what each switches on in the one
objective of ``neurokd.distill.colearn.CoLearner``.

A method is a record, not code: whether it needs a teacher, whether the student learns the
teacher's soft targets (weight ``alpha``), which feature loss it adds (``hint`` through a learned
projection, or ``relational`` on the decoded features alone), whether the teacher trains too (the
SNN → DNN path), and whether it averages several teachers. Adding a method is one registered
record here and its name in ``DistillConfig.method``; a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from neurokd.registry import Registry


@dataclass(frozen=True)
class DistillMethod:
    name: str
    teacher: bool = True              # needs a teacher (--teacher)
    soft_targets: bool = False        # KD on the output path, weight alpha
    feature_loss: Optional[str] = None  # "hint" or "relational" (a loss of neurokd.distill.losses)
    features_optional: bool = False   # the feature path only with distill.feature
    trains_teacher: bool = False      # the teacher learns too (unless distill.freeze_teacher)
    several_teachers: bool = False    # the teacher and distill.ensemble, soft targets averaged


DISTILL_METHODS: Registry[DistillMethod] = Registry("distillation method")

for _m in (
    DistillMethod("none", teacher=False),
    DistillMethod("kd", soft_targets=True),
    DistillMethod("fitnet", feature_loss="hint"),
    DistillMethod("relational", feature_loss="relational"),
    DistillMethod("ensemble", soft_targets=True, several_teachers=True),
    DistillMethod("colearn", soft_targets=True, feature_loss="hint", features_optional=True,
                  trains_teacher=True),
):
    DISTILL_METHODS.register(_m.name)(_m)
