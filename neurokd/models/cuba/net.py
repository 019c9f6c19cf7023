"""SNN students built from lava-dl slayer CUBA blocks, from an ``ArchSpec``.

slayer's CUBA neuron in fixed point (what Lava's ``fixed_pt`` LIF computes on the chip's integers)::

    u[t] = rtz(u[t-1] * (4096 - du)) + (a_in[t] << 6)          # 24-bit current
    v[t] = rtz(v[t-1] * (4096 - dv)) + u[t]                     # 24-bit voltage
    s[t] = v[t] > (vth << 6);  v[t] = 0 where s[t]

Weights are rounded by slayer's ``quantize_8bit`` pre-hook to the even integers Loihi keeps. Each
block delays its output by one step (``delay_shift``), as Loihi's synapses do, so an ``L``-layer
network needs ``L`` trailing frames for the last input frame to reach the output: ``window_pad``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile, load_profile
from neurokd.models.contract import SpikingModel
from neurokd.models.cuba.numerics import chip_neuron
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer, spec_from_dict


def _slayer():
    """Import slayer, hiding the notices its optional modules print at import."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import lava.lib.dl.slayer as slayer
    return slayer


def exact_threshold(neuron: nn.Module) -> None:
    """Make slayer's spike test ``v >= threshold + eps`` fire exactly when Loihi's ``v > vth`` does.

    slayer fires at ``v >= threshold + threshold_eps`` with ``threshold_eps = 0.01 / s_scale``: in
    integer state units, ``v >= X + 0.01`` with ``X = vThMant << state_shift``. The comparison runs in
    float32 (the integer state against a Python float, and the float32 voltage in the spike
    function), and float32 keeps the 0.01 only while half its spacing at ``X`` is below 0.01, that
    is ``X < 2^18`` (``vThMant < 4096``, threshold < 64 with a 6-bit shift). From there on
    ``X + 0.01`` rounds to ``X`` and slayer fires when the voltage *equals* the threshold, where Lava
    does not. Half a state unit, ``X + 0.5``, is exact in float32 for every ``X < 2^23`` (every
    17-bit threshold mantissa), so it is used where 0.01 is lost; elsewhere slayer's own margin,
    which is exact, stays untouched."""
    import numpy as np

    scale = float(neuron.s_scale)
    x = float(neuron.threshold) * scale  # the integer vThMant << state_shift

    def exact(eps: float) -> bool:
        # both of slayer's comparisons: integer state vs (threshold + eps) * s_scale, and float32
        # voltage vs threshold + eps; each must land strictly between X and X + 1
        in_state = float(np.float32((neuron.threshold + eps) * scale))
        in_spike = float(np.float32(neuron.threshold + eps)) * scale
        return x < in_state < x + 1 and x < in_spike < x + 1

    if not exact(float(neuron.threshold_eps)) and exact(0.5 / scale):
        neuron.threshold_eps = 0.5 / scale


class SpikingNet(SpikingModel):
    """A feed-forward SNN of slayer CUBA blocks. Input ``(N, C[, H, W], T)``; output spikes ``(N, K, T)``."""

    def __init__(self, spec: ArchSpec, profile: HardwareProfile | None = None) -> None:
        super().__init__()
        if spec.family != "cuba":
            raise NeurokdError(f"this spec's neurons are {spec.family!r}, not CUBA: sigma-delta "
                               "networks come from 'neurokd convert --neuron sdnn'")
        slayer = _slayer()
        self.spec = spec
        self.profile = profile or load_profile("loihi2")
        n = spec.neuron
        neuron_params = {
            "threshold": n.threshold, "current_decay": n.current_decay,
            "voltage_decay": n.voltage_decay, "tau_grad": n.tau_grad, "scale_grad": n.scale_grad,
            "requires_grad": False, "scale": self.profile.weight_scale,
        }
        shapes = spec.shapes()
        in_shape: Tuple[int, ...] = tuple(spec.input_shape)
        self.flatten_input = isinstance(spec.layers[0], DenseLayer) and len(in_shape) > 1
        blocks: List[nn.Module] = []
        thresholds = iter(spec.layer_thresholds())
        for layer, out_shape in zip(spec.layers, shapes):
            if not isinstance(layer, FlattenLayer):
                neuron_params = dict(neuron_params, threshold=next(thresholds))
            if isinstance(layer, DenseLayer):
                fan_in = int(torch.tensor(in_shape).prod())
                blocks.append(slayer.block.cuba.Dense(neuron_params, fan_in, layer.units,
                                                      weight_scale=spec.weight_scale))
            elif isinstance(layer, ConvLayer):
                blocks.append(slayer.block.cuba.Conv(neuron_params, in_shape[0], layer.channels,
                                                     layer.kernel2, stride=layer.stride2,
                                                     padding=layer.padding2,
                                                     weight_scale=spec.weight_scale))
            elif isinstance(layer, FlattenLayer):
                blocks.append(slayer.block.cuba.Flatten())
            in_shape = out_shape
        self.blocks = nn.ModuleList(blocks)
        for block in self.blocks:
            if getattr(block, "neuron", None) is not None:
                exact_threshold(block.neuron)

    @property
    def window_pad(self) -> int:
        """Zero frames after the input: one per synaptic delay between input and output. The same
        count lets Lava's per-sample resets land on zero input (see ``deploy.lava_run``)."""
        return self.spec.num_spiking_layers

    @property
    def num_classes(self) -> int:
        return self.spec.shapes()[-1][0]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        for block in self.blocks:
            x = block(x)
        return x

    def chip_decays(self) -> Tuple[int, int]:
        """(iDecay, vDecay): the current and voltage decays as the chip's 12-bit integers
        (``numerics.chip_neuron``; every layer shares them, and they are not trained)."""
        return chip_neuron(self.spec.neuron, self.profile).decays

    def forward_intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Output spikes of every block, in order (the last one is ``forward``'s result)."""
        x = self._prepare(x)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    @torch.no_grad()
    def state_extremes(self, x: torch.Tensor) -> List[Dict[str, Any]]:
        """Largest |current| and |voltage| each spiking layer reaches, in the chip's integer units.

        slayer neither wraps the current nor clips the voltage at 24 bits as Loihi does, so a
        layer whose state passes ``profile.state_limit`` will not run the same on Lava.
        """
        seen: Dict[int, Tuple[float, float]] = {}
        handles = []
        for i, block in enumerate(self.blocks):
            neuron = getattr(block, "neuron", None)
            if neuron is None:
                continue

            def hook(module, inputs, i=i):
                current, voltage = module.dynamics(inputs[0])
                seen[i] = (float(current.abs().max()), float(voltage.abs().max()))

            handles.append(neuron.register_forward_pre_hook(hook))
        try:
            self.forward(x)
        finally:
            for h in handles:
                h.remove()
        scale = self.profile.state_scale
        limit = self.profile.state_limit
        report = []
        for i in sorted(seen):
            u, v = seen[i][0] * scale, seen[i][1] * scale
            report.append({"layer": i, "max_abs_current": int(round(u)), "max_abs_voltage": int(round(v)),
                           "overflow": bool(u > limit or v > limit)})
        return report

    @torch.no_grad()
    def chip_weights(self, i: int) -> torch.Tensor:
        """Spiking layer ``i``'s exported integer weights (slayer's 8-bit rounding)."""
        blocks = [b for b in self.blocks if getattr(b, "neuron", None) is not None]
        layers = [la for la in self.spec.layers if not isinstance(la, FlattenLayer)]
        syn = blocks[i].synapse
        weight = syn.pre_hook_fx(syn.weight, descale=True)
        shape = weight.shape[:2] if isinstance(layers[i], DenseLayer) else weight.shape[:4]
        return weight.reshape(shape).round()

    @torch.no_grad()
    def state_bound(self, encoder: str, timesteps: int) -> List[Dict[str, Any]]:
        """Bound on the |current| and |voltage| of each spiking layer over *every* admissible input
        (``encoder``'s range on ``timesteps`` frames, any binary spikes into later layers), in the
        chip's integer units, from the exported integer weights, decays and threshold. Rows as in
        ``state_extremes`` (``layer`` is the block index); see ``numerics.worst_case_states``."""
        from neurokd.models.cuba.numerics import encoder_input_range, worst_case_states

        index, layers = [], []
        for i, block in enumerate(self.blocks):
            neuron = getattr(block, "neuron", None)
            if neuron is None:
                continue
            layers.append({"weight": self.chip_weights(len(layers)), "vth": int(neuron.v_th_mant)})
            index.append(i)
        low, high = encoder_input_range(encoder)
        rows = worst_case_states(self.spec, layers, *self.chip_decays(), self.profile, high,
                                 timesteps, timesteps + self.window_pad, input_min=low)
        return [dict(row, layer=i) for row, i in zip(rows, index)]

    def arch(self) -> Dict[str, Any]:
        return {"spec": self.spec.model_dump(), "hardware": self.profile.name}


def snn_from_checkpoint(payload: Dict[str, Any], where: str = "checkpoint") -> SpikingNet:
    arch = payload.get("arch", {})
    spec = spec_from_dict(arch.get("spec"), where=f"{where}: spec")
    model = SpikingNet(spec, load_profile(str(arch.get("hardware", "loihi2"))))
    # slayer sizes its neurons lazily: one forward pass fixes the shapes before loading.
    with torch.no_grad():
        model(torch.zeros(1, *spec.input_shape, 2))
    try:
        model.load_state_dict(payload["state_dict"], strict=False)
    except (RuntimeError, KeyError) as exc:
        raise NeurokdError(f"{where}: SNN checkpoint does not match its spec ({type(exc).__name__})") from None
    return model.eval()
