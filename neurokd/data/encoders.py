"""Encoders: real-valued samples in [0, 1] (signed encoders: [-1, 1]) → spike or current tensors
in slayer's layout.

Input ``x`` is ``(N, C[, H, W])``; output is ``(N, C[, H, W], T)``. Every encoder produces
integers, because Loihi's first synapse receives integer messages: binary spikes (``message_bits``
0) or graded spikes of ``message_bits`` bits (direct current injection). A ``signed`` encoder's
graded spikes carry a sign: ``b`` bits hold ``-(2^(b-1) - 1) .. 2^(b-1) - 1``, so signed samples
(radio I/Q) enter the first layer as they are, with no split into positive and negative channels.

``encode_window`` appends ``pad`` zero frames after the ``T`` input frames. The padding lets the
last input frames travel through the network's per-layer delays, and gives Lava's per-sample reset
a quiet step to land on. Training, PyTorch evaluation and the Lava run all use the same window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from neurokd.errors import NeurokdError
from neurokd.registry import Registry


@dataclass(frozen=True)
class Encoder:
    name: str
    message_bits: int  # 0: binary spikes; b > 0: graded integers in [0, 2^b - 1]
    fn: Callable[[torch.Tensor, int, int, Optional[torch.Generator]], torch.Tensor]
    signed: bool = False  # graded integers in [-(2^(b-1) - 1), 2^(b-1) - 1]

    @property
    def input_range(self) -> "tuple[int, int]":
        """The smallest and the largest integer one input entry carries."""
        if self.message_bits == 0:
            return 0, 1
        if self.signed:
            top = (1 << (self.message_bits - 1)) - 1
            return -top, top
        return 0, (1 << self.message_bits) - 1

    def __call__(self, x: torch.Tensor, timesteps: int,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if timesteps <= 0:
            raise NeurokdError(f"timesteps must be positive, got {timesteps}")
        return self.fn(x, timesteps, self.message_bits, generator)


ENCODERS: Registry[Encoder] = Registry("encoder")


def _register(name: str, message_bits: int, signed: bool = False):
    def deco(fn):
        ENCODERS.register(name)(Encoder(name, message_bits, fn, signed))
        return fn

    return deco


@_register("rate", message_bits=0)
def rate(x: torch.Tensor, timesteps: int, bits: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Rate coding: at each step a unit spikes with probability equal to its intensity."""
    p = x.clamp(0, 1).unsqueeze(-1).expand(*x.shape, timesteps)
    return (torch.rand(p.shape, generator=generator) < p).to(torch.float32)


@_register("direct", message_bits=4)
def direct(x: torch.Tensor, timesteps: int, bits: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Direct current injection: the intensity, quantized to ``bits``-bit integers, at every step."""
    levels = (1 << bits) - 1
    q = torch.round(x.clamp(0, 1) * levels)
    return q.unsqueeze(-1).expand(*x.shape, timesteps).contiguous()


@_register("direct8", message_bits=8)
def direct8(x: torch.Tensor, timesteps: int, bits: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Direct current injection at 8 bits (256 levels), for inputs whose precision matters more
    than their count, such as a symbol detector's matched-filter outputs."""
    return direct(x, timesteps, bits, generator)


@_register("signed8", message_bits=8, signed=True)
def signed8(x: torch.Tensor, timesteps: int, bits: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Signed direct current injection at 8 bits: ``round(127 · clip(x, -1, 1))`` at every step.
    Radio datasets give it their I/Q as they are (two signed channels, no constant channel; see
    ``neurokd.data.radio``), so no sign split and no Bernoulli noise stand between the samples and
    the first layer."""
    top = (1 << (bits - 1)) - 1
    q = torch.round(x.clamp(-1, 1) * top)
    return q.unsqueeze(-1).expand(*x.shape, timesteps).contiguous()


def get_encoder(name: str) -> Encoder:
    return ENCODERS.get(name)


def encode_window(x: torch.Tensor, encoder: Encoder, timesteps: int, pad: int,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Encode ``x`` over ``timesteps`` frames and append ``pad`` zero frames."""
    if pad < 0:
        raise NeurokdError(f"pad must be non-negative, got {pad}")
    frames = encoder(x, timesteps, generator)
    if pad:
        frames = torch.cat([frames, frames.new_zeros(*frames.shape[:-1], pad)], dim=-1)
    return frames
