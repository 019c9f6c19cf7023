"""Quantized SNN students that compute in Loihi's integers, and their export.

A ``QuantSpikingNet`` has the layers of an ``ArchSpec`` and, per spiking layer, float weights ``w``,
a bit-width ``b`` and a step quantizer. In chip units a quantized layer computes with

* weight mantissas ``W = m · 2^g``, ``m`` the layer's ``b``-bit integers and ``g`` the shift that
  puts them on the profile's weight grid (``HardwareProfile.weight_shift``);
* threshold mantissa ``vth = round(θ · 2^g / s)``, ``θ`` the spec's threshold: the step ``s`` is
  folded into the threshold, so ``W / vth = s·m / θ`` is what training saw;
* the spec's 12-bit decays, and the fixed-point CUBA dynamics of ``neurokd.models.cuba.numerics``
  with Loihi's 24-bit current wrap and voltage clip.

These are exactly the integers the exporter writes, so the PyTorch forward pass in evaluation mode
*is* a batched emulator of Lava's fixed-point run. In training, each layer is quantized with the
probability in ``quant_prob`` (1: always); an unquantized layer runs the same dynamics in float
(``W = w · weight_scale``, ``vth = θ · weight_scale``, no rounding).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile, load_profile
from neurokd.models.contract import SpikingModel
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer
from neurokd.models.cuba.numerics import StateStats, chip_neuron, cuba_dynamics, synaptic_input
from neurokd.models.quantizers import QUANTIZERS, init_step, round_ste


def check_bits(bits: Sequence[int], profile: HardwareProfile) -> None:
    for b in bits:
        if b not in profile.weight_bits_allowed:
            raise NeurokdError(f"{b}-bit weights are not allowed on {profile.name}; choose from "
                               f"{', '.join(str(x) for x in profile.weight_bits_allowed)}")


class QuantSpikingNet(SpikingModel):
    """Feed-forward SNN in Loihi numerics. Input ``(N, C[, H, W], T)``; output spikes ``(N, K, T)``."""

    quantized = True

    def __init__(self, spec: ArchSpec, profile: HardwareProfile, bits: Sequence[int],
                 quantizer: str = "lsq", steps: Optional[Sequence[float]] = None,
                 bias: bool = False) -> None:
        super().__init__()
        if spec.family != "cuba":
            raise NeurokdError(f"this spec's neurons are {spec.family!r}, not CUBA: sigma-delta "
                               "networks come from 'neurokd convert --neuron sdnn'")
        self.spec, self.profile = spec, profile
        self.quantizer_name = quantizer
        spiking = [layer for layer in spec.layers if not isinstance(layer, FlattenLayer)]
        if len(bits) != len(spiking):
            raise NeurokdError(f"{len(bits)} bit-widths given for {len(spiking)} spiking layers")
        check_bits(bits, profile)
        self.bits = [int(b) for b in bits]
        chip = chip_neuron(spec.neuron, profile)
        self.i_decay, self.v_decay, self.vth_mant = chip.i_decay, chip.v_decay, chip.vth_mant
        # each spiking layer's threshold mantissa before quantization (the first may differ)
        self.vth_mants = [chip_neuron(spec.neuron, profile, t).vth_mant
                          for t in spec.layer_thresholds()]
        self.flatten_input = isinstance(spec.layers[0], DenseLayer) and len(spec.input_shape) > 1
        qcls = QUANTIZERS.get(quantizer)
        weights, quantizers = [], []
        in_shape = tuple(spec.input_shape)
        for layer, out_shape in zip(spec.layers, spec.shapes()):
            if isinstance(layer, DenseLayer):
                fan_in = int(torch.tensor(in_shape).prod())
                w = torch.empty(layer.units, fan_in)
            elif isinstance(layer, ConvLayer):
                w = torch.empty(layer.channels, in_shape[0], *layer.kernel2)
            else:
                in_shape = out_shape
                continue
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)
            weights.append(nn.Parameter(w))
            b = self.bits[len(quantizers)]
            quantizers.append(qcls(b, steps[len(quantizers)] if steps else init_step(w, b, "lsq")))
            in_shape = out_shape
        self.weights = nn.ParameterList(weights)
        self.quantizers = nn.ModuleList(quantizers)
        for qz, vth in zip(quantizers, self.vth_mants):
            # round(θ·g / step) must fit the threshold mantissa (a first layer reading signed
            # 8-bit input has a threshold 127 times the others')
            g = float(1 << profile.weight_shift(qz.bits))
            qz.min_step = vth / float(profile.weight_scale) * g / profile.threshold_mantissa_max
        # Biases (one per neuron or channel, in the weights' float units), as a converted DNN has.
        self.has_bias = bool(bias)
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(w.shape[0])) for w in weights] if bias else [])
        if bias:
            # Subtracted from each layer's threshold mantissa: a converted network fires when the
            # voltage reaches its nominal threshold (Loihi fires only above it).
            self.register_buffer("threshold_offset", torch.zeros(len(weights)))
        self.register_buffer("quant_prob", torch.ones(len(weights)))
        self.full_precision = False  # True: the float reference (no layer quantized)
        self._sample_gen = torch.Generator().manual_seed(0)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_snn(cls, snn: nn.Module, bits: Sequence[int], quantizer: str = "lsq",
                 step_rule: str = "lsq", profile: Optional[HardwareProfile] = None) -> "QuantSpikingNet":
        """Start from a trained slayer ``SpikingNet``: copy its weights, initialise the steps."""
        q = cls(snn.spec, profile or snn.profile, bits, quantizer)
        src = [b.synapse.weight.detach() for b in snn.blocks if getattr(b, "synapse", None) is not None]
        with torch.no_grad():
            for w, s, qz in zip(q.weights, src, q.quantizers):
                w.copy_(s.reshape(w.shape))
                qz.step.fill_(max(init_step(w, qz.bits, step_rule), qz.min_step))
        return q

    @property
    def window_pad(self) -> int:
        return self.spec.num_spiking_layers

    @property
    def num_classes(self) -> int:
        return self.spec.shapes()[-1][0]

    def arch(self) -> Dict[str, Any]:
        quant = {"bits": list(self.bits), "quantizer": self.quantizer_name}
        if self.has_bias:
            quant["bias"] = True
        return {"spec": self.spec.model_dump(), "hardware": self.profile.name, "quant": quant}

    def weight_bytes(self) -> int:
        """Synaptic memory of the weights at their bit-widths (thresholds and decays excluded)."""
        return int(sum((w.numel() * b + 7) // 8 for w, b in zip(self.weights, self.bits)))

    # ------------------------------------------------------------------ integers
    def layer_integers(self, i: int, quantized: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weights and threshold mantissa of spiking layer ``i`` in chip units (with gradients).
        Quantized: exact integers; otherwise the float reference."""
        w, q = self.weights[i], self.quantizers[i]
        scale = float(self.profile.weight_scale)
        theta = self.vth_mants[i] / scale
        if not quantized:
            return w * scale, w.new_tensor(float(self.vth_mants[i]))
        step = q.effective_step(w.numel())
        g = float(1 << self.profile.weight_shift(q.bits))
        weight = q.integers(w, step) * g
        vth = round_ste(theta * g / step)
        if self.has_bias:
            vth = vth - self.threshold_offset[i]
        return weight, vth.clamp_min(1.0)

    @torch.no_grad()
    def chip_weights(self, i: int) -> torch.Tensor:
        """Spiking layer ``i``'s weights in chip units, as ``forward`` uses them."""
        return self.layer_integers(i, self._quantized_layers()[i])[0].detach()

    def layer_bias(self, i: int, quantized: bool = True) -> Optional[torch.Tensor]:
        """Bias mantissas of spiking layer ``i`` in chip units (on the weights' scale), or None."""
        if not self.has_bias:
            return None
        b = self.biases[i]
        if not quantized:
            return b * float(self.profile.weight_scale)
        q = self.quantizers[i]
        g = float(1 << self.profile.weight_shift(q.bits))
        return round_ste(b * g / q.effective_step(self.weights[i].numel()))

    @torch.no_grad()
    def export_integers(self) -> List[Dict[str, Any]]:
        """Per spiking layer: integer weights and threshold, checked against the profile."""
        out = []
        for i in range(len(self.weights)):
            weight, vth = self.layer_integers(i, quantized=True)
            w = weight.round().to(torch.int64)
            v = int(vth.round())
            lo, hi = self.profile.weight_mantissa_min, self.profile.weight_mantissa_max
            if int(w.min()) < lo or int(w.max()) > hi:
                raise NeurokdError(f"layer {i}: weights {int(w.min())}..{int(w.max())} overflow "
                                   f"{self.profile.name}'s mantissa {lo}..{hi} at every exponent")
            if not 0 < v <= self.profile.threshold_mantissa_max:
                raise NeurokdError(f"layer {i}: step {float(self.quantizers[i].step):.3g} needs a "
                                   f"threshold mantissa of {v}, beyond the "
                                   f"{self.profile.threshold_mantissa_bits} bits of {self.profile.name}")
            row = {"weight": w, "vth": v, "bits": self.bits[i]}
            if self.has_bias:
                bias = self.layer_bias(i).round().to(torch.int64)
                top = self.profile.bias_mantissa_max
                if int(bias.abs().max()) > top:
                    raise NeurokdError(f"layer {i}: bias mantissas reach {int(bias.abs().max())}, "
                                       f"beyond the {self.profile.bias_mantissa_bits}-bit ±{top} "
                                       f"of {self.profile.name}")
                row["bias"] = bias
            out.append(row)
        return out

    # ------------------------------------------------------------------ forward
    def _quantized_layers(self) -> List[bool]:
        if self.full_precision:
            return [False] * len(self.weights)
        if not self.training:
            return [True] * len(self.weights)
        draw = torch.rand(len(self.weights), generator=self._sample_gen)
        return [bool(d < p) for d, p in zip(draw, self.quant_prob.tolist())]

    def chip_decays(self) -> Tuple[int, int]:
        """(iDecay, vDecay): the current and voltage decays as the chip's 12-bit integers."""
        return int(self.i_decay), int(self.v_decay)

    def forward_intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The output of every layer of the spec, in order (flatten layers included)."""
        spiking: List[torch.Tensor] = []
        self.forward(x, record=spiking)
        it = iter(spiking)
        outs: List[torch.Tensor] = []
        for layer in self.spec.layers:
            if isinstance(layer, FlattenLayer):
                last = outs[-1] if outs else x
                outs.append(last.reshape(last.shape[0], -1, last.shape[-1]))
            else:
                outs.append(next(it))
        return outs

    def forward(self, x: torch.Tensor, stats: Optional[List[StateStats]] = None,
                record: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """Output spikes; ``record`` (a list) receives every spiking layer's output spikes.

        With biases, Lava's timing differs: a biased neuron integrates its bias from the step its
        layer is reset, before the sample's first frame reaches it. Lava resets each layer ``L``
        steps (one per spiking layer) before that frame arrives (see ``deploy.lava_run``). So the
        window's ``L`` trailing zero frames are moved to its front and every layer runs without
        the one-step output delay: for zero biases this is the same computation as the delayed
        one, shifted by the same ``L`` steps."""
        x = x.to(torch.float32)
        if self.flatten_input:
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.has_bias:
            lead = self.window_pad
            x = torch.cat([x.new_zeros(*x.shape[:-1], lead), x[..., :x.shape[-1] - lead]], dim=-1)
        quantized = self._quantized_layers()
        i = 0
        n = self.spec.neuron
        for layer in self.spec.layers:
            if isinstance(layer, FlattenLayer):
                x = x.reshape(x.shape[0], -1, x.shape[-1])
                continue
            weight, vth = self.layer_integers(i, quantized[i])
            conv = isinstance(layer, ConvLayer)
            a = synaptic_input(weight, x, layer.stride2 if conv else 1, layer.padding2 if conv else 0,
                               conv=conv)
            bias = self.layer_bias(i, quantized[i])
            if bias is not None:
                bias = bias.reshape(1, -1, *([1] * (a.dim() - 3)))
            x = cuba_dynamics(a, self.i_decay, self.v_decay, vth, self.profile, exact=quantized[i],
                              tau_grad=n.tau_grad, scale_grad=n.scale_grad,
                              stats=None if stats is None else stats[i], bias=bias,
                              delay=not self.has_bias).to(torch.float32)
            if record is not None:
                record.append(x)
            i += 1
        return x

    @torch.no_grad()
    def state_extremes(self, x: torch.Tensor) -> List[Dict[str, Any]]:
        """Per spiking layer: the largest |current| and |voltage| before Loihi's wrap and clip, and
        how many times they happened. Unlike slayer, this model wraps and clips as Lava does, so an
        overflow changes the float behaviour but not the agreement with Lava."""
        stats = [StateStats() for _ in self.weights]
        was = self.training
        self.eval()
        self.forward(x, stats)
        self.train(was)
        limit = self.profile.state_limit
        return [{"layer": i, **s.as_dict(),
                 "overflow": bool(s.max_abs_current > limit or s.max_abs_voltage > limit)}
                for i, s in enumerate(stats)]

    @torch.no_grad()
    def state_bound(self, encoder: str, timesteps: int) -> List[Dict[str, Any]]:
        """Bound on the |current| and |voltage| of each spiking layer over *every* admissible input
        (``encoder``'s range on ``timesteps`` frames, any binary spikes into later layers), before
        Loihi's wrap and clip, from the exported integers. Rows as in ``state_extremes``; see
        ``numerics.worst_case_states``."""
        from neurokd.models.cuba.numerics import encoder_input_range, worst_case_states

        low, high = encoder_input_range(encoder)
        return worst_case_states(self.spec, self.export_integers(), self.i_decay, self.v_decay,
                                 self.profile, high, timesteps, timesteps + self.window_pad,
                                 delay=not self.has_bias, input_min=low)

    # ------------------------------------------------------------------ export
    def to_slayer(self) -> nn.Module:
        """A slayer ``SpikingNet`` holding exactly the exported integers (weights ``W / scale``,
        per-block thresholds ``vth / scale``), for the netx exporter."""
        from neurokd.models.cuba.net import SpikingNet, exact_threshold

        net = SpikingNet(self.spec, self.profile).eval()
        with torch.no_grad():
            net(torch.zeros(1, *self.spec.input_shape, 2))
        ints = self.export_integers()
        scale = float(self.profile.weight_scale)
        blocks = [b for b in net.blocks if getattr(b, "synapse", None) is not None]
        with torch.no_grad():
            for block, layer in zip(blocks, ints):
                syn = block.synapse.weight
                syn.copy_((layer["weight"].to(torch.float32) / scale).reshape(syn.shape))
                block.neuron._threshold = layer["vth"] / scale
                exact_threshold(block.neuron)
        # Bias mantissas for the exporter (slayer's own bias would be rounded to 8 bits).
        net.export_biases = [layer.get("bias") for layer in ints] if self.has_bias else None
        return net


def qsnn_from_checkpoint(payload: Dict[str, Any], where: str = "checkpoint") -> QuantSpikingNet:
    from neurokd.models.spec import spec_from_dict

    arch = payload.get("arch", {})
    quant = arch.get("quant") or {}
    spec = spec_from_dict(arch.get("spec"), where=f"{where}: spec")
    bits = quant.get("bits") if isinstance(quant, dict) else None
    if not isinstance(bits, list) or not all(isinstance(b, int) and not isinstance(b, bool)
                                             for b in bits):
        raise NeurokdError(f"{where}: quantized SNN checkpoint lacks its bit-widths")
    profile = load_profile(str(arch.get("hardware", "loihi2")))
    check_bits(bits, profile)
    try:
        model = QuantSpikingNet(spec, profile, bits, str(quant.get("quantizer", "lsq")),
                                bias=bool(quant.get("bias", False)))
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise NeurokdError(f"{where}: quantized SNN checkpoint does not match its spec "
                           f"({type(exc).__name__})") from None
    return model.eval()
