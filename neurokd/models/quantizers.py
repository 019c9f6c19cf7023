"""Weight quantizers on a per-layer step ``s`` (registry ``QUANTIZERS``).

A ``b``-bit layer keeps signed integers ``m = clip(round(w / s), -2^(b-1), 2^(b-1) - 1)`` and
computes with ``s·m``. ``lsq`` learns ``s`` (Esser et al., *Learned Step Size Quantization*, 2020:
straight-through rounding, the step's gradient scaled by ``1/sqrt(N·Qp)``); ``fixed`` keeps the
step it was initialised with. Both export the same way: the integers ``m`` become Loihi weight
mantissas and ``s`` is folded into the layer's threshold (see ``neurokd.models.cuba.quantized``).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from neurokd.registry import Registry

QUANTIZERS: Registry[type] = Registry("quantizer")


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """``x`` forward; its gradient multiplied by ``g`` backward."""
    return (x - x * g).detach() + x * g


def int_range(bits: int) -> Tuple[int, int]:
    """Signed ``bits``-bit range ``(-Qn, Qp)``."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def init_step(weight: torch.Tensor, bits: int, rule: str) -> float:
    """``max``: the largest weight lands on the top level (plain round-to-nearest);
    ``lsq``: ``2·mean|w| / sqrt(Qp)``, the initialisation of the LSQ paper;
    ``mse``: the step, among 100 fractions of the ``max`` step, with the least squared error."""
    qn, qp = int_range(bits)
    w = weight.detach().abs()
    if rule == "max":
        s = float(w.max()) / qp
    elif rule == "lsq":
        s = 2 * float(w.mean()) / math.sqrt(qp)
    elif rule == "mse":
        flat = weight.detach().reshape(1, -1)
        cand = (float(w.max()) / qp) * torch.linspace(0.01, 1.0, 100).reshape(-1, 1)
        err = ((torch.clamp(torch.round(flat / cand), qn, qp) * cand - flat) ** 2).sum(1)
        s = float(cand[int(err.argmin())])
    else:
        raise ValueError(f"unknown step rule {rule!r}")
    return max(s, 1e-8)


class StepQuantizer(nn.Module):
    """Quantizer with one step per layer; ``trainable`` decides whether the step learns."""

    trainable = True

    def __init__(self, bits: int, step: float) -> None:
        super().__init__()
        self.bits = bits
        self.step = nn.Parameter(torch.tensor(float(step)), requires_grad=self.trainable)
        # the smallest step the layer may take: its threshold in steps must fit the chip's
        # threshold mantissa (QuantSpikingNet sets it; a step below it is raised to it)
        self.min_step = 1e-8

    def effective_step(self, numel: int) -> torch.Tensor:
        s = self.step.abs().clamp_min(self.min_step)
        if self.trainable:
            s = grad_scale(s, 1.0 / math.sqrt(numel * int_range(self.bits)[1]))
        return s

    def integers(self, weight: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """The integer mantissas ``m`` (float tensor, straight-through gradient to ``weight``/``step``)."""
        qn, qp = int_range(self.bits)
        return round_ste(torch.clamp(weight / step, qn, qp))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, step={float(self.step):.4g}, trainable={self.trainable}"


@QUANTIZERS.register("lsq")
class LSQQuantizer(StepQuantizer):
    trainable = True


@QUANTIZERS.register("fixed")
class FixedQuantizer(StepQuantizer):
    trainable = False
