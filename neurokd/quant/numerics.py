"""Loihi's fixed-point CUBA neuron in PyTorch, batched, equal to Lava's ``fixed_pt`` LIF model.

With every quantity an integer in the chip's units (``rtz(x) = sign(x)·(|x| >> decay_bits)``)::

    u = rtz(u · (2^decay_bits - iDecay)) + (a_in << state_shift)     then wrapped to state_bits
    v = rtz(v · (2^decay_bits - vDecay)) + u                          then clipped to ±(2^(state_bits-1) - 1)
    s = v > (vth << state_shift);   v = 0 where s

The wrap keeps ``u`` in ``(-2^(state_bits-1), 2^(state_bits-1)]`` as Lava does (one wrap, not a
modulo). All the integer numbers come from the hardware profile.

In ``exact`` mode the state runs in float64, where these integers (below 2^53) are exact, and
the rounding steps pass gradients straight through; ``exact=False`` drops the rounding, wrap and
clip (the full-precision reference). Spikes use slayer's surrogate gradient, written on the
voltage normalised by the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from neurokd.hardware import HardwareProfile


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tau, scale):  # x = v / vth - 1
        ctx.save_for_backward(x)
        ctx.tau, ctx.scale = tau, scale
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        surrogate = ctx.scale / 2 / ctx.tau * torch.exp(-x.abs() / ctx.tau)
        return grad * surrogate, None, None


def _ste(x: torch.Tensor, exact_value: torch.Tensor) -> torch.Tensor:
    """``exact_value`` forward, gradient of ``x`` backward."""
    return x + (exact_value - x).detach()


@dataclass
class StateStats:
    """Per-layer extremes of one forward pass, in chip units (before wrap or clip)."""

    max_abs_current: float = 0.0
    max_abs_voltage: float = 0.0
    current_wraps: int = 0
    voltage_clips: int = 0

    def merge(self, other: "StateStats") -> None:
        self.max_abs_current = max(self.max_abs_current, other.max_abs_current)
        self.max_abs_voltage = max(self.max_abs_voltage, other.max_abs_voltage)
        self.current_wraps += other.current_wraps
        self.voltage_clips += other.voltage_clips

    def as_dict(self) -> Dict[str, float]:
        return {"max_abs_current": int(self.max_abs_current), "max_abs_voltage": int(self.max_abs_voltage),
                "current_wraps": self.current_wraps, "voltage_clips": self.voltage_clips}


def cuba_dynamics(a_in: torch.Tensor, i_decay: int, v_decay: int, vth: torch.Tensor,
                  profile: HardwareProfile, exact: bool = True, tau_grad: float = 1.0,
                  scale_grad: float = 1.0, stats: Optional[StateStats] = None,
                  bias: Optional[torch.Tensor] = None, delay: bool = True) -> torch.Tensor:
    """Run CUBA neurons over time. ``a_in``: synaptic input ``(N, ..., T)`` in chip integer units
    (before the ``state_shift``); ``vth``: threshold mantissa (a 0-d tensor); ``bias``: bias
    mantissas broadcastable to one step's state ``(1, ...)``, added to the voltage at every step
    as ``bias << state_shift``, as Lava does. Returns spikes ``(N, ..., T)`` in float64, with
    slayer's one-step output delay applied when ``delay``."""
    one = float(profile.decay_scale)
    shift = float(1 << profile.state_shift)
    half = float(1 << (profile.state_bits - 1))
    v_limit = half - 1
    a_in = a_in.to(torch.float64) * shift
    theta = vth.to(torch.float64) * shift
    cu, cv = (one - i_decay) / one, (one - v_decay) / one
    b = None if bias is None else bias.to(torch.float64) * shift
    u = a_in.new_zeros(a_in.shape[:-1])
    v = torch.zeros_like(u)
    spikes = []
    track = stats is not None
    peak_u = peak_v = 0.0
    wraps = clips = 0
    for t in range(a_in.shape[-1]):
        if exact:
            du = u * cu
            u = _ste(du, torch.trunc(du)) + a_in[..., t]
            if track:
                peak_u = max(peak_u, float(u.detach().abs().max()))
            over, under = u > half, u <= -half
            if bool(over.any()) or bool(under.any()):
                wraps += int(over.sum() + under.sum())
                wrapped = torch.where(over, u - 2 * half, torch.where(under, u + 2 * half, u))
                u = _ste(u, wrapped)
            dv = v * cv
            v = _ste(dv, torch.trunc(dv)) + u
            if b is not None:
                v = v + b
            if track:
                peak_v = max(peak_v, float(v.detach().abs().max()))
                clips += int((v.detach().abs() > v_limit).sum())
            v = v.clamp(-v_limit, v_limit)
        else:
            u = u * cu + a_in[..., t]
            v = v * cv + u
            if b is not None:
                v = v + b
        s = _SpikeFn.apply(v / theta - 1.0, tau_grad, scale_grad)
        v = v * (1.0 - s)
        spikes.append(s)
    out = torch.stack(spikes, dim=-1)
    if track:
        stats.merge(StateStats(peak_u, peak_v, wraps, clips))
    if not delay:
        return out
    # One step of synaptic delay per layer, as slayer's delay_shift and Lava's synapses do.
    return torch.cat([torch.zeros_like(out[..., :1]), out[..., :-1]], dim=-1)


def synaptic_input(weight: torch.Tensor, x: torch.Tensor, stride: int = 1, padding: int = 0,
                   conv: bool = False) -> torch.Tensor:
    """One layer's synaptic input at every step: ``(N, in, T)`` through a dense ``(out, in)``
    weight, or ``(N, C, H, W, T)`` through a convolution, frame by frame."""
    import torch.nn.functional as F

    if not conv:
        return torch.einsum("oi,nit->not", weight, x)
    nb, c, h, w, t = x.shape
    frames = x.permute(0, 4, 1, 2, 3).reshape(nb * t, c, h, w)
    y = F.conv2d(frames, weight, stride=stride, padding=padding)
    return y.reshape(nb, t, *y.shape[1:]).permute(0, 2, 3, 4, 1)
