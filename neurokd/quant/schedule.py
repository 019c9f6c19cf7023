"""Probability-based selective layer quantization.

During QAT each layer is quantized in a training step with probability ``p_l(r)``, where ``r`` is
the fraction of training done. Layer ``l`` of ``L`` ramps from 0 to 1 over its own window of
``r``, the windows staggered from the first layer to the last and overlapping by half, so layers
enter quantization one after another; from ``r = ramp`` on, every layer is always quantized.
Evaluation always uses the fully quantized network.
"""

from __future__ import annotations

from typing import List


class ProbSchedule:
    def __init__(self, num_layers: int, ramp: float = 0.6) -> None:
        if num_layers <= 0:
            raise ValueError("num_layers must be positive")
        if not 0 < ramp <= 1:
            raise ValueError("ramp must be in (0, 1]")
        self.num_layers = num_layers
        self.ramp = ramp

    def probabilities(self, progress: float) -> List[float]:
        n = self.num_layers
        width = 2 * self.ramp / (n + 1)  # windows of this width, starting every width/2
        out = []
        for layer in range(n):
            start = layer * width / 2
            p = (progress - start) / width
            out.append(1.0 if progress >= self.ramp else min(1.0, max(0.0, p)))
        return out


class ConstantSchedule:
    """Every layer quantized in every step (plain QAT)."""

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers

    def probabilities(self, progress: float) -> List[float]:
        return [1.0] * self.num_layers
