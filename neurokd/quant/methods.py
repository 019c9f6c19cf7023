"""Quantization-aware training methods (registry ``QAT_METHODS``): what each does, as a record
that ``neurokd.quant.qat.quantize_snn`` reads.

``quantizer``: ``lsq`` (trainable steps, started at the least-squared-error step) or ``fixed``
(the round-to-nearest step, the largest weight on the top level); ``trained``: whether the weights
are fine-tuned at all (``ptq`` only rounds); ``probabilistic``: layers enter quantization by
``ProbSchedule`` instead of all at once; ``distilled``: the full-precision model supervises the
quantized student through the ``kd`` loss. A test keeps the registry equal to
``QuantConfig.method``.
"""

from __future__ import annotations

from dataclasses import dataclass

from neurokd.registry import Registry


@dataclass(frozen=True)
class QatMethod:
    name: str
    quantizer: str = "fixed"       # a neurokd.models.quantizers.QUANTIZERS name
    trained: bool = True
    probabilistic: bool = False
    distilled: bool = False

    @property
    def step_rule(self) -> str:
        """How the starting steps are chosen: least squared error for trainable steps, else the
        largest weight on the top level."""
        return "mse" if self.quantizer == "lsq" else "max"


QAT_METHODS: Registry[QatMethod] = Registry("quantization method")

for _m in (
    QatMethod("ptq", trained=False),
    QatMethod("fixed_qat"),
    QatMethod("lsq", quantizer="lsq"),
    QatMethod("lsq_prob", quantizer="lsq", probabilistic=True),
    QatMethod("lsq_prob_kd", quantizer="lsq", probabilistic=True, distilled=True),
):
    QAT_METHODS.register(_m.name)(_m)
