"""Spike decoders: spike trains ``(N, C[, H, W], T)`` → real-valued features ``(N, C[, H, W])``.

Registry ``DECODERS``; each entry is a ``torch.nn.Module`` class whose parameters (if any) train
with the student. ``FeatureAdapter`` adds the learned projection onto the teacher's feature shape.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.registry import Registry

DECODERS: Registry[type] = Registry("spike decoder")


def rate_readout(spikes: torch.Tensor) -> torch.Tensor:
    """Mean spike count per step."""
    return spikes.mean(-1)


def exp_readout(spikes: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """Exponentially weighted read-out ``Σ_t λ^(T-1-t) s[t] / Σ_t λ^(T-1-t)``: recent spikes weigh most."""
    steps = spikes.shape[-1]
    powers = torch.arange(steps - 1, -1, -1, dtype=spikes.dtype, device=spikes.device)
    weights = decay.clamp(1e-3, 1.0) ** powers
    return (spikes * weights).sum(-1) / weights.sum()


@DECODERS.register("rate")
class RateDecoder(nn.Module):
    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return rate_readout(spikes)


@DECODERS.register("exp")
class ExpDecoder(nn.Module):
    """Exponential read-out with a trainable decay λ = sigmoid(θ), initialised at 0.9."""

    def __init__(self) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(0.9 / 0.1)))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return exp_readout(spikes, torch.sigmoid(self.logit))


class FeatureAdapter(nn.Module):
    """Decode student spikes, then project onto the teacher feature's shape.

    Flat features use a linear map; spatial features of the same height and width a 1×1
    convolution; a spatial feature meeting a flat one is flattened first. Spatial features of
    different sizes cannot be matched.
    """

    def __init__(self, decoder: str, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        self.decoder = DECODERS.get(decoder)()
        s, t = tuple(student_shape), tuple(teacher_shape)
        self.teacher_shape = t
        if len(s) == 3 and len(t) == 3:
            if s[1:] != t[1:]:
                raise NeurokdError(f"feature shapes cannot be matched: student {list(s)} and teacher "
                                   f"{list(t)} differ in height/width; pick layers of equal size "
                                   "or a flat layer on one side")
            self.flatten = False
            self.proj: nn.Module = nn.Identity() if s == t else nn.Conv2d(s[0], t[0], 1)
        else:
            self.flatten = True
            fs, ft = _numel(s), _numel(t)
            self.proj = nn.Identity() if (fs == ft and len(t) == 1) else nn.Linear(fs, ft)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        feats = self.decoder(spikes)
        if self.flatten:
            feats = feats.reshape(feats.shape[0], -1)
            out = self.proj(feats)
            return out.reshape(out.shape[0], *self.teacher_shape) if len(self.teacher_shape) > 1 else out
        return self.proj(feats)


def _numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
