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

``worst_case_states`` bounds the same integer states over every admissible input, from the
weights alone (``SpikingNet.state_bound`` and ``QuantSpikingNet.state_bound`` call it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from neurokd.hardware import HardwareProfile
from neurokd.models.spec import ArchSpec, ConvLayer, FlattenLayer, NeuronSpec


@dataclass(frozen=True)
class ChipNeuron:
    """A CUBA neuron's parameters as the chip's integers: 12-bit current and voltage decays and
    the threshold mantissa (the spike test is ``v > vth_mant << state_shift``)."""

    i_decay: int
    v_decay: int
    vth_mant: int

    @property
    def decays(self) -> Tuple[int, int]:
        return self.i_decay, self.v_decay


def chip_neuron(neuron: NeuronSpec, profile: HardwareProfile,
                threshold: Optional[float] = None) -> ChipNeuron:
    """The one mapping from a spec's float neuron to the chip's integers, rounded as slayer rounds
    them (and as its netx export writes them): each decay ``d`` becomes ``round(float32(d ·
    2^decay_bits))`` (half to even), the threshold ``θ`` becomes ``int(int(θ · s) / s · s)`` with
    ``s`` the weight scale. Every network of the family (float, quantized, converted, imported)
    reads its integers here; a test holds it equal to slayer's ``cx_current_decay``,
    ``cx_voltage_decay`` and ``v_th_mant``. ``threshold``: a layer's own threshold in place of
    the neuron's (``ArchSpec.layer_thresholds``)."""
    full = 1 << profile.decay_bits
    scale = profile.weight_scale

    def decay(d: float) -> int:
        return int(torch.round(torch.tensor([full * d], dtype=torch.float32)).clamp(0, full))

    theta = neuron.threshold if threshold is None else threshold
    threshold = int(theta * scale) / scale
    return ChipNeuron(decay(neuron.current_decay), decay(neuron.voltage_decay),
                      int(threshold * scale))


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


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``grad`` over the dimensions a tensor of ``shape`` was broadcast along."""
    lead = grad.dim() - len(shape)
    if lead:
        grad = grad.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class _Cuba(torch.autograd.Function):
    """The CUBA time loop as one autograd node. The forward pass steps the state in place with
    time as the leading (contiguous) dimension, writing each step's voltage straight into the
    buffer the backward pass reads; the backward pass runs the adjoint recursion of the same loop
    in reverse. Its gradients are those of ``cuba_dynamics_reference``: the rounding and the
    current wrap pass gradients straight through, the voltage clip blocks them where it clips,
    the spike uses slayer's surrogate on ``v / vth - 1``, and the reset ``v · (1 - s)`` is
    differentiated through both factors.

    ``v > vth`` is the reference's ``v / vth - 1 > 0`` for every float64 ``v`` and ``vth > 0``
    (when ``v > vth``, ``v / vth`` exceeds 1 by more than half an ulp, so it never rounds to 1)."""

    @staticmethod
    def forward(ctx, a_in, theta, bias, shift, cu, cv, half, exact, tau, scale, stats):
        # a_in: (N, ..., T) synaptic input; theta (0-d) and bias (None, or broadcastable to one
        # step's state) in state units. The state runs in float64, where the integers are exact.
        dtype = a_in.dtype
        a = a_in.detach().movedim(-1, 0).to(torch.float64, memory_format=torch.contiguous_format,
                                              copy=True).mul_(shift)
        b = None if bias is None else bias.detach().to(torch.float64)
        th, limit = float(theta), half - 1
        volts = torch.empty_like(a)  # v[t] after the clip, before the reset
        fired = torch.empty(a.shape, dtype=torch.bool, device=a.device)
        u = torch.zeros_like(a[0])
        clipped: Dict[int, torch.Tensor] = {}  # step -> mask of the voltages the clip left alone
        peak_u = peak_v = 0.0
        wraps = clips = 0
        for t in range(a.shape[0]):
            u.mul_(cu)
            if exact:
                u.trunc_()
            u.add_(a[t])
            v = volts[t]
            if t:
                torch.mul(volts[t - 1], cv, out=v).masked_fill_(fired[t - 1], 0.0)
                if exact:
                    v.trunc_()
            else:
                v.zero_()
            if exact:
                lo, hi = (float(m) for m in torch.aminmax(u))
                peak_u = max(peak_u, hi, -lo)
                if hi > half or lo <= -half:  # Lava's wrap of the 24-bit current, once
                    over, under = u > half, u <= -half
                    wraps += int(over.sum() + under.sum())
                    u.sub_(over.to(u.dtype), alpha=2 * half).add_(under.to(u.dtype), alpha=2 * half)
            v.add_(u)
            if b is not None:
                v.add_(b)
            if exact:
                lo, hi = (float(m) for m in torch.aminmax(v))
                peak_v = max(peak_v, hi, -lo)
                if hi > limit or lo < -limit:  # the voltage's clip
                    inside = v.abs() <= limit
                    clips += int(inside.numel() - inside.sum())
                    clipped[t] = inside
                    v.clamp_(-limit, limit)
            torch.gt(v, th, out=fired[t])
        if stats is not None and exact:
            stats.merge(StateStats(peak_u, peak_v, wraps, clips))
        if any(ctx.needs_input_grad[:3]):
            ctx.save_for_backward(volts.to(dtype), fired)
            ctx.clipped, ctx.th, ctx.shift, ctx.cu, ctx.cv = clipped, th, shift, cu, cv
            ctx.tau, ctx.scale = tau, scale
            ctx.bias_shape = None if bias is None else bias.shape
        return fired.to(dtype).movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_out):
        volts, fired = ctx.saved_tensors
        th, cu, cv = ctx.th, ctx.cu, ctx.cv
        grad_s = grad_out.movedim(-1, 0).to(volts.dtype)
        surrogate = (volts / th - 1.0).abs_().mul_(-1.0 / ctx.tau).exp_().mul_(ctx.scale / 2 / ctx.tau)
        keep = (~fired).to(volts.dtype)
        grad_a = torch.empty_like(volts)  # dL/du[t]: of the current, and so of a_in[t] << shift
        grad_x = torch.empty_like(volts)  # dL/dx[t], x = v / vth - 1
        gv = torch.zeros_like(volts[0])   # dL/dv[t] after the reset, from step t + 1
        last = volts.shape[0] - 1
        for t in range(last, -1, -1):
            dx = torch.addcmul(grad_s[t], gv, volts[t], value=-1.0, out=grad_x[t]).mul_(surrogate[t])
            gp = gv.mul_(keep[t]).add_(dx, alpha=1.0 / th)  # dL/dv[t] before the clip
            if t in ctx.clipped:
                gp.mul_(ctx.clipped[t])
            if t < last:
                torch.add(gp, grad_a[t + 1], alpha=cu, out=grad_a[t])
            else:
                grad_a[t].copy_(gp)
            gv = gp.mul_(cv)
        grad_theta = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_theta = (grad_x * volts).sum().to(torch.float64) * (-1.0 / (th * th))
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            # the bias enters every step's voltage: the sum over t of dL/dv[t] before the clip,
            # which is grad_a[t] - cu · grad_a[t + 1]
            total = grad_a.sum(0).mul_(1.0 - cu).add_(grad_a[0], alpha=cu)
            grad_bias = _sum_to(total, ctx.bias_shape).to(torch.float64)
        grad_a = grad_a.mul_(ctx.shift).movedim(0, -1)
        return grad_a, grad_theta, grad_bias, None, None, None, None, None, None, None, None


def cuba_dynamics(a_in: torch.Tensor, i_decay: int, v_decay: int, vth: torch.Tensor,
                  profile: HardwareProfile, exact: bool = True, tau_grad: float = 1.0,
                  scale_grad: float = 1.0, stats: Optional[StateStats] = None,
                  bias: Optional[torch.Tensor] = None, delay: bool = True) -> torch.Tensor:
    """Run CUBA neurons over time. ``a_in``: synaptic input ``(N, ..., T)`` in chip integer units
    (before the ``state_shift``); ``vth``: threshold mantissa (a 0-d tensor); ``bias``: bias
    mantissas broadcastable to one step's state ``(1, ...)``, added to the voltage at every step
    as ``bias << state_shift``, as Lava does. Returns spikes ``(N, ..., T)`` in ``a_in``'s
    dtype, with slayer's one-step output delay applied when ``delay``.

    The state runs in float64, where the chip's integers (below 2^53) are exact; the backward pass
    runs in ``a_in``'s dtype. One fused autograd node (``_Cuba``) runs the loop: the same spikes, states and gradients as
    ``cuba_dynamics_reference``, several times faster, because the reference's per-step
    autograd graph (and its per-step slicing of the input) dominates a training step."""
    one = float(profile.decay_scale)
    shift = float(1 << profile.state_shift)
    half = float(1 << (profile.state_bits - 1))
    theta = vth.to(torch.float64) * shift
    b = None if bias is None else bias.to(torch.float64) * shift
    cu, cv = (one - i_decay) / one, (one - v_decay) / one
    out = _Cuba.apply(a_in, theta, b, shift, cu, cv, half, bool(exact), float(tau_grad),
                      float(scale_grad), stats)
    if not delay:
        return out
    # One step of synaptic delay per layer, as slayer's delay_shift and Lava's synapses do.
    return torch.cat([torch.zeros_like(out[..., :1]), out[..., :-1]], dim=-1)


def cuba_dynamics_reference(a_in: torch.Tensor, i_decay: int, v_decay: int, vth: torch.Tensor,
                  profile: HardwareProfile, exact: bool = True, tau_grad: float = 1.0,
                  scale_grad: float = 1.0, stats: Optional[StateStats] = None,
                  bias: Optional[torch.Tensor] = None, delay: bool = True) -> torch.Tensor:
    """Run CUBA neurons over time. ``a_in``: synaptic input ``(N, ..., T)`` in chip integer units
    (before the ``state_shift``); ``vth``: threshold mantissa (a 0-d tensor); ``bias``: bias
    mantissas broadcastable to one step's state ``(1, ...)``, added to the voltage at every step
    as ``bias << state_shift``, as Lava does. Returns spikes ``(N, ..., T)`` in float64, with
    slayer's one-step output delay applied when ``delay``.

    The readable form of the dynamics, one autograd node per operation and step: the fused
    ``cuba_dynamics`` is tested against it, spike for spike and gradient for gradient."""
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
        # (N, T, in) @ (in, out) reads x in place (a transposed operand of one GEMM per sample);
        # an einsum copies x into (N·T, in) first, which costs as much as the product itself.
        return torch.matmul(x.transpose(1, 2), weight.t()).transpose(1, 2)
    nb, c, h, w, t = x.shape
    frames = x.permute(0, 4, 1, 2, 3).reshape(nb * t, c, h, w)
    y = F.conv2d(frames, weight, stride=stride, padding=padding)
    return y.reshape(nb, t, *y.shape[1:]).permute(0, 2, 3, 4, 1)


# ---------------------------------------------------------------- worst-case state
def encoder_input_range(encoder: str) -> Tuple[int, int]:
    """Smallest and largest value one input entry of ``encoder`` carries: 0 and 1 for binary
    spikes, 0 and ``2^b - 1`` for ``b``-bit graded spikes, ``±(2^(b-1) - 1)`` for signed ones."""
    from neurokd.data.encoders import get_encoder

    return get_encoder(encoder).input_range


def synaptic_range(weight: torch.Tensor, in_shape: Sequence[int], input_max: int, conv: bool = False,
                   stride: int = 1, padding: int = 0, input_min: int = 0
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per neuron (flattened), the largest and the smallest synaptic input ``a_in`` of one step, in
    chip integer units, over every input frame whose entries lie in ``input_min..input_max``
    (``input_min`` ≤ 0 ≤ ``input_max``): the positive weights that reach the neuron times one end
    of the range plus the negative ones times the other, a convolution's zero padding included.
    Both as int64; the largest is ≥ 0 and the smallest ≤ 0 (an empty frame)."""
    w = weight.detach().to(torch.float64)

    def frame(value: int) -> torch.Tensor:
        full = torch.full((1, *in_shape, 1), float(value), dtype=torch.float64)
        return full if conv else full.reshape(1, -1, 1)

    pos, neg = w.clamp(min=0), w.clamp(max=0)
    top, bottom = frame(input_max), frame(input_min)
    high = synaptic_input(pos, top, stride, padding, conv) + synaptic_input(neg, bottom, stride, padding, conv)
    low = synaptic_input(pos, bottom, stride, padding, conv) + synaptic_input(neg, top, stride, padding, conv)
    return high.reshape(-1).round().to(torch.int64), low.reshape(-1).round().to(torch.int64)


def _rtz_mul(x: torch.Tensor, factor: int, bits: int) -> torch.Tensor:
    """``rtz(x · factor) = sign(x) · (|x · factor| >> bits)`` on int64, without forming the product
    (``|x| = q·2^bits + r`` gives ``q·factor + (r·factor >> bits)``)."""
    a = x.abs()
    q, r = a >> bits, a & ((1 << bits) - 1)
    return torch.sign(x) * (q * factor + ((r * factor) >> bits))


def worst_case_state(high: torch.Tensor, low: torch.Tensor, active: Sequence[bool], i_decay: int,
                     v_decay: int, vth: int, profile: HardwareProfile,
                     bias: Optional[torch.Tensor] = None) -> Tuple[int, int]:
    """Bound on the largest ``|u|`` and ``|v|`` (chip units, before Loihi's wrap and clip, as
    ``StateStats`` measures them) that CUBA neurons reach over every input whose synaptic input at
    step ``t`` lies in ``[low, high]`` where ``active[t]``, and is 0 elsewhere.

    The fixed-point update is monotone in the state and the input, so an upper and a lower state
    run through it with the extreme inputs: ``u_hi[t] = rtz(u_hi[t-1]·(2^d - iDecay)) +
    (high << shift)``, likewise ``u_lo`` with ``low``. The voltage adds ``u`` and the bias; a
    neuron above ``vth << shift`` spikes and restarts from 0, so what is kept of the upper voltage is
    at most the threshold and of the lower one at most 0. ``high``/``low``/``bias``: int64 per
    neuron (``bias`` in mantissa units, added as ``bias << shift`` every step)."""
    one, bits, shift = profile.decay_scale, profile.decay_bits, profile.state_shift
    cu, cv = one - int(i_decay), one - int(v_decay)
    theta = int(vth) << shift
    high = high.to(torch.int64) * (1 << shift)
    low = low.to(torch.int64) * (1 << shift)
    b = torch.zeros_like(high) if bias is None else bias.to(torch.int64) * (1 << shift)
    u_hi, u_lo = torch.zeros_like(high), torch.zeros_like(high)
    v_hi, v_lo = torch.zeros_like(high), torch.zeros_like(high)
    peak_u = peak_v = 0
    for on in active:
        u_hi = _rtz_mul(u_hi, cu, bits) + (high if on else 0)
        u_lo = _rtz_mul(u_lo, cu, bits) + (low if on else 0)
        p_hi = _rtz_mul(v_hi, cv, bits) + u_hi + b
        p_lo = _rtz_mul(v_lo, cv, bits) + u_lo + b
        peak_u = max(peak_u, int(u_hi.abs().max()), int(u_lo.abs().max()))
        peak_v = max(peak_v, int(p_hi.abs().max()), int(p_lo.abs().max()))
        v_hi = p_hi.clamp(max=theta)
        v_lo = p_lo.clamp(max=0)
    return peak_u, peak_v


def worst_case_states(spec: ArchSpec, layers: Sequence[Dict[str, Any]], i_decay: int, v_decay: int,
                      profile: HardwareProfile, input_max: int, timesteps: int, window: int,
                      delay: bool = True, input_min: int = 0) -> List[Dict[str, Any]]:
    """Per spiking layer of ``spec``, the bound of ``worst_case_state`` over a sample's window of
    ``window`` steps (``timesteps`` input frames, then zero frames). ``layers``: per spiking layer
    ``{"weight": chip-unit integers, "vth": int, "bias": int64 per neuron or channel, or None}``.

    The first layer receives entries in ``input_min..input_max`` on the input frames; every later layer
    receives binary spikes, any of them, at every step at which its input layer can fire: from
    step ``l`` on for layer ``l`` with the one-step delay per layer (``delay``), from step 0 on
    without it (a biased network, whose input frames come after ``window - timesteps`` lead zero
    frames). Rows: ``layer`` (spiking layer index), ``max_abs_current``, ``max_abs_voltage``,
    ``overflow`` (either passes ``profile.state_limit``)."""
    rows = []
    in_shape = tuple(spec.input_shape)
    i = 0
    for layer, out_shape in zip(spec.layers, spec.shapes()):
        if isinstance(layer, FlattenLayer):
            in_shape = out_shape
            continue
        conv = isinstance(layer, ConvLayer)
        top, bottom = (input_max, input_min) if i == 0 else (1, 0)
        high, low = synaptic_range(layers[i]["weight"], in_shape, top, conv,
                                   layer.stride2 if conv else 1, layer.padding2 if conv else 0,
                                   input_min=bottom)
        if i == 0:
            first = 0 if delay else window - timesteps
            active = [first <= t < first + timesteps for t in range(window)]
        else:
            active = [t >= (i if delay else 0) for t in range(window)]
        bias = layers[i].get("bias")
        if bias is not None:
            bias = bias.to(torch.int64).reshape(-1)
            bias = bias.repeat_interleave(high.numel() // bias.numel())  # per channel → per neuron
        u, v = worst_case_state(high, low, active, i_decay, v_decay, layers[i]["vth"], profile, bias)
        limit = profile.state_limit
        rows.append({"layer": i, "max_abs_current": u, "max_abs_voltage": v,
                     "overflow": bool(u > limit or v > limit)})
        in_shape = out_shape
        i += 1
    return rows
