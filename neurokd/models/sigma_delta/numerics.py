"""The chip's fixed-point sigma-delta maths, as Lava's ``lava.proc.sdn`` ``fixed_pt`` models and
netx's ``Dense`` / ``Conv`` synapses compute it.

Units (``SigmaDeltaRules`` of the hardware profile; Loihi 2: ``spike_exp = state_exp = 6``):

- a neuron's state (``sigma``, ``act``, ``residue``) is an integer; thresholds and biases written
  in the netx file are shifted left by ``spike_exp + state_exp`` into state units;
- a graded spike carries its state-unit change shifted right by ``state_exp`` (an arithmetic
  shift: it floors, and the dropped bits are not kept in the residue);
- a synapse delivers ``W · s`` one step later (netx's weights are integers; the synapse's own
  exponent only ever rescales exactly).

One step of a hidden neuron (``SigmaDelta``, ReLU)::

    sigma  += W · s(t-1)                 # sigma dendrite
    act     = max(sigma + bias, 0)
    delta   = act - act_prev + residue
    out     = delta if |delta| >= vth else 0
    residue = delta - out
    s(t)    = out >> state_exp

The input layer (a ``Delta`` encoder, run on the host) encodes ``x << input_shift`` the same way
(no sigma, no ReLU, no bias), so that its messages carry ``x << (input_shift - state_exp)``; the
output layer (``Sigma``) sends its running sum ``sigma`` every step.

Two implementations: :func:`run_layers` (batched over samples, each layer's synaptic input for
all steps in one product) and :func:`reference_run` (numpy, one sample, step by step, a transcript
of Lava's process models). The tests hold them equal to each other and to Lava.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SDLayer:
    """One synaptic layer of a sigma-delta network in the chip's integers.

    ``weight``: ``(out, in)`` or ``(out, in, kh, kw)`` integers; ``bias`` and ``vth``: state units
    (already shifted), per output channel / scalar; ``output``: the network's last layer (a
    ``Sigma`` running sum, no ReLU, no bias on the chip)."""

    weight: torch.Tensor
    bias: torch.Tensor
    vth: int
    output: bool = False
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    flatten_before: bool = False

    @property
    def conv(self) -> bool:
        return self.weight.dim() == 4


def synapse(weight: torch.Tensor, s: torch.Tensor, stride=(1, 1), padding=(0, 0)) -> torch.Tensor:
    """``W · s`` for every step at once: ``s`` is ``(N, in, T)`` or ``(N, C, H, W, T)`` integers.
    Computed in float64, exact while every partial sum stays below 2^53 (8-bit weights times
    24-bit messages times any realistic fan-in)."""
    w = weight.to(torch.float64)
    x = s.to(torch.float64)
    if weight.dim() == 2:
        y = torch.matmul(x.transpose(1, 2), w.t()).transpose(1, 2)
    else:
        nb, c, h, wd, t = x.shape
        frames = x.permute(0, 4, 1, 2, 3).reshape(nb * t, c, h, wd)
        y = F.conv2d(frames, w, stride=stride, padding=padding)
        y = y.reshape(nb, t, *y.shape[1:]).permute(0, 2, 3, 4, 1)
    return torch.round(y).to(torch.int64)


def delayed(a: torch.Tensor) -> torch.Tensor:
    """One step of synaptic delay: the synapse delivers at ``t`` what arrived at ``t - 1``."""
    return torch.cat([torch.zeros_like(a[..., :1]), a[..., :-1]], dim=-1)


@dataclass
class DeltaState:
    """What a delta encoder carries from one step to the next (and one stream chunk to the next)."""

    act: torch.Tensor
    residue: torch.Tensor
    sigma: Optional[torch.Tensor] = None  # the dendrite's running sum (hidden and output layers)
    held: Optional[torch.Tensor] = None   # the product the synapse delivers next step


def delta_scan(act: torch.Tensor, vth: int, state_exp: int,
               state: Optional[DeltaState] = None) -> Tuple[torch.Tensor, DeltaState]:
    """Delta-encode ``act`` (``(..., T)`` state units) step by step. Returns the messages
    (``(..., T)``, payload units: the state-unit spikes shifted right) and the final state."""
    prev = torch.zeros_like(act[..., 0]) if state is None else state.act
    residue = torch.zeros_like(act[..., 0]) if state is None else state.residue
    out = torch.empty_like(act)
    for t in range(act.shape[-1]):
        now = act[..., t]
        delta = now - prev + residue
        fired = torch.where(delta.abs() >= vth, delta, torch.zeros_like(delta))
        residue = delta - fired
        prev = now
        out[..., t] = fired
    return out >> state_exp, DeltaState(prev, residue)


def run_layers(layers: Sequence[SDLayer], x: torch.Tensor, input_vth: int, input_shift: int,
               state_exp: int, states: Optional[List[DeltaState]] = None, record: bool = False
               ) -> Tuple[torch.Tensor, List[torch.Tensor], List[DeltaState]]:
    """Run integer input frames ``x`` (``(N, *input_shape, T)``) through the network
    (``input_vth``: the input layer's threshold in state units).

    Returns the output layer's ``sigma`` at every step (``(N, K, T)``, state units), the messages
    of every layer (the input layer first) when ``record``, and each layer's final state, which a
    later call takes as ``states`` to continue the same stream."""
    states = list(states) if states is not None else [None] * (len(layers) + 1)
    a = x.to(torch.int64) << input_shift
    msgs, s0 = delta_scan(a, input_vth, state_exp, states[0])
    recorded = [msgs] if record else []
    new_states = [s0]
    for i, layer in enumerate(layers):
        prev = states[i + 1]
        if not layer.conv:  # a dense layer reads its input flat (C·H·W order)
            msgs = msgs.reshape(msgs.shape[0], -1, msgs.shape[-1])
        z = delayed(synapse(layer.weight, msgs, layer.stride, layer.padding))
        if prev is not None:  # the product the synapse held at the end of the last chunk
            z[..., 0] = prev.held
        sigma = torch.cumsum(z, dim=-1) + (0 if prev is None else prev.sigma.unsqueeze(-1))
        held = synapse(layer.weight, msgs[..., -1:], layer.stride, layer.padding)[..., 0]
        if layer.output:
            zero = torch.zeros_like(sigma[..., -1])
            new_states.append(DeltaState(zero, zero, sigma[..., -1], held))
            return sigma, recorded, new_states
        bias = layer.bias.to(torch.int64).reshape(-1, *([1] * (sigma.dim() - 2)))
        act = torch.clamp_min(sigma + bias, 0)
        msgs, st = delta_scan(act, layer.vth, state_exp, prev)
        st.sigma, st.held = sigma[..., -1], held
        new_states.append(st)
        if record:
            recorded.append(msgs)
    raise ValueError("the last layer of a sigma-delta network must be its output layer")


def reference_run(layers: Sequence[SDLayer], x: np.ndarray, input_vth: int, input_shift: int,
                  state_exp: int) -> np.ndarray:
    """The same network for one sample ``x`` (``(*input_shape, T)``), step by step in numpy as
    Lava's process models compute it: every synapse sends the product it computed the step before,
    then computes the next. Returns the output layer's sigma, ``(K, T)``."""
    steps = x.shape[-1]
    n = len(layers)
    held = [None] * n                     # each synapse's buffered product
    sigma = [None] * n
    act = [None] * (n + 1)
    residue = [None] * (n + 1)
    out = []

    def delta(i, now, vth):
        d = now - act[i] + residue[i]
        s = np.where(np.abs(d) >= vth, d, 0)
        residue[i] = d - s
        act[i] = now
        return np.right_shift(s, state_exp)

    def product(layer, s):
        w = layer.weight.numpy().astype(np.int64)
        if w.ndim == 2:
            return w @ s.reshape(-1)
        t = torch.from_numpy(s[None].astype(np.float64))
        y = F.conv2d(t, torch.from_numpy(w.astype(np.float64)), stride=layer.stride,
                     padding=layer.padding)[0]
        return np.rint(y.numpy()).astype(np.int64)

    for t in range(steps):
        a_in = x[..., t].astype(np.int64) << input_shift
        if act[0] is None:
            act[0], residue[0] = np.zeros_like(a_in), np.zeros_like(a_in)
        s = delta(0, a_in, input_vth)
        for i, layer in enumerate(layers):
            buffered = held[i]
            held[i] = product(layer, s)
            z = np.zeros_like(held[i]) if buffered is None else buffered
            sigma[i] = z if sigma[i] is None else sigma[i] + z
            if layer.output:
                out.append(sigma[i].copy())
                break
            bias = layer.bias.numpy().astype(np.int64).reshape(-1, *([1] * (z.ndim - 1)))
            now = np.maximum(sigma[i] + bias, 0)
            if act[i + 1] is None:
                act[i + 1], residue[i + 1] = np.zeros_like(now), np.zeros_like(now)
            s = delta(i + 1, now, layer.vth)
    return np.stack(out, axis=-1)
