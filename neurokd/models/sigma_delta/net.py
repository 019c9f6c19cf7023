"""The quantized sigma-delta network: a ReLU DNN's layers in Loihi 2's integers, computing exactly
what Lava's ``Delta`` → ``SigmaDelta`` … → ``Sigma`` network computes (:mod:`.numerics`).

A sample is one input frame held for ``timesteps = 1 + depth`` steps (``depth``: synaptic layers,
one step of delay each; no zero padding: a zero frame would be a change of input); the output layer's running sum at the window's last step, plus the output bias the
host adds, divided by the output scale, is the network's logit vector in the DNN's own units. A
stream of samples keeps the network's state: each new frame costs only its change.

:func:`map_relu_network` is the family's one mapping of float parameters to chip integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile, SigmaDeltaRules, load_profile
from neurokd.models.contract import SpikingModel
from neurokd.models.sigma_delta.numerics import DeltaState, SDLayer, delta_scan, run_layers
from neurokd.models.spec import ArchSpec, ConvLayer, FlattenLayer

WEIGHT_MAX = 127  # symmetric 8-bit weights (netx keeps [-128, 127] exactly)
HEADROOM = 4      # calibrated activations use at most a quarter of the message range (test data
                  # reached 2.4 times the largest of 2000 calibration samples on modulation)


def rules(profile: HardwareProfile) -> SigmaDeltaRules:
    if profile.sigma_delta is None:
        raise NeurokdError(f"hardware profile {profile.name} has no sigma-delta neurons (graded "
                           "spikes); use loihi2")
    return profile.sigma_delta


@dataclass(frozen=True)
class FloatLayer:
    """One layer of a ReLU DNN as the mapping reads it (batch norm already folded)."""

    weight: torch.Tensor          # (out, in) or (out, in, kh, kw)
    bias: Optional[torch.Tensor]
    act_max: float                # calibrated scale of its output (after ReLU; |logit| for the head)
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    flatten_before: bool = False


def map_relu_network(layers: Sequence[FloatLayer], input_levels: int, profile: HardwareProfile,
                     threshold: float = 0.0, input_threshold: float = 0.0
                     ) -> Tuple[List[SDLayer], Dict[str, float]]:
    """Map a ReLU network onto sigma-delta integers. ``input_levels``: integer input units per
    float unit (127 for the signed 8-bit encoder of ``[-1, 1]``, 255 for ``[0, 1]``).

    Layer by layer, the state scale ``S`` (state units per float unit) follows the chip's rules:
    a message is ``state >> state_exp``, so a layer's synaptic input is ``W_int · m`` and its
    output scale ``S' = S / 2^state_exp / step``. The weight step is the finest that holds the
    layer's weights in 8 bits, coarsened only where the calibrated activation would leave less than
    a factor ``HEADROOM`` below the message (hidden) or state (output) limit. Biases and
    thresholds are integers of the netx file, in units of ``2^(spike_exp + state_exp)`` state
    units; the output layer's bias stays on the host (Lava's ``Sigma`` has none), in state units.
    ``threshold``: each hidden layer's delta threshold as a fraction of its calibrated activation;
    ``input_threshold``: the input layer's, as a fraction of the input's full scale.

    Returns the integer layers and ``{"input_vth", "input_shift", "out_scale"}``."""
    sd = rules(profile)
    shift = sd.shift
    input_shift = sd.state_exp + _input_bits(layers[0], input_levels, sd, profile)
    scale = float(input_levels) * (1 << input_shift)
    input_vth = int(round(input_threshold * input_levels)) << input_shift
    out: List[SDLayer] = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        message_scale = scale / (1 << sd.state_exp)
        w = layer.weight.detach().double()
        wmax = float(w.abs().max())
        if wmax == 0:
            raise NeurokdError(f"layer {i}: all weights are zero")
        step = wmax / WEIGHT_MAX
        limit = (profile.state_limit if last else sd.message_limit << sd.state_exp) / HEADROOM
        amax = max(float(layer.act_max), 1e-12)
        if amax * message_scale / step > limit:
            step = amax * message_scale / limit
        new_scale = message_scale / step
        w_int = torch.clamp(torch.round(w / step), -WEIGHT_MAX, WEIGHT_MAX).to(torch.int64)
        b = torch.zeros(w.shape[0], dtype=torch.float64) if layer.bias is None else layer.bias.double()
        if last:
            bias = torch.round(b * new_scale).to(torch.int64)  # host-side, state units
            vth = 0
        else:
            file_bias = torch.round(b * new_scale / (1 << shift))
            if float(file_bias.abs().max()) > sd.bias_limit:
                raise NeurokdError(f"layer {i}: a bias of {float(b.abs().max()):.3g} needs "
                                   f"{int(file_bias.abs().max())} > {sd.bias_limit}, beyond the "
                                   f"{sd.bias_bits}-bit bias of {profile.name}")
            bias = file_bias.to(torch.int64) << shift
            vth = int(round(threshold * amax * new_scale / (1 << shift))) << shift
        out.append(SDLayer(w_int, bias, vth, output=last, stride=tuple(layer.stride),
                           padding=tuple(layer.padding), flatten_before=layer.flatten_before))
        scale = new_scale
    return out, {"input_vth": input_vth, "input_shift": input_shift, "out_scale": scale}


def _input_bits(first: FloatLayer, input_levels: int, sd: SigmaDeltaRules,
                profile: HardwareProfile) -> int:
    """Bits ``k`` (0..spike_exp) the host shifts the input integers left by in its messages. They
    carry no information, only scale: the largest ``k`` with which the first layer's weights keep
    all 8 bits below its state limit puts that layer's state, and so its bias and threshold grid,
    as fine as the chip allows (the input's own ``spike_exp`` of 6 would coarsen those weights
    wherever the first layer's activations outgrow its input)."""
    step = float(first.weight.abs().max()) / WEIGHT_MAX
    limit = sd.message_limit * (1 << sd.state_exp) / HEADROOM
    for k in range(sd.spike_exp, 0, -1):
        if first.act_max * input_levels * (1 << k) / step <= limit:
            return k
    return 0


class SigmaDeltaNet(SpikingModel):
    """A sigma-delta network in the chip's integers (family ``sdnn``)."""

    family = "sdnn"
    quantized = True

    def __init__(self, spec: ArchSpec, profile: HardwareProfile, layers: Sequence[SDLayer],
                 input_vth: int, out_scale: float, input_levels: int, input_shift: int) -> None:
        super().__init__()
        sd = rules(profile)
        if spec.family != "sdnn":
            raise NeurokdError(f"a sigma-delta network needs a spec with neuron: sdnn, not "
                               f"{spec.family!r}")
        if not sd.state_exp <= input_shift <= sd.shift:
            raise NeurokdError(f"input shift {input_shift} outside {sd.state_exp}..{sd.shift}")
        self.spec, self.profile = spec, profile
        self.input_vth, self.out_scale, self.input_levels = int(input_vth), float(out_scale), int(input_levels)
        self.input_shift = int(input_shift)
        # the integers live in buffers (what a state_dict holds); the rest of each layer here
        self._geometry = [(int(layer.vth), layer.output, tuple(layer.stride), tuple(layer.padding),
                           layer.flatten_before) for layer in layers]
        for i, layer in enumerate(layers):
            self.register_buffer(f"w{i}", layer.weight)
            self.register_buffer(f"b{i}", layer.bias)

    @property
    def layers(self) -> List[SDLayer]:
        """The integer layers, read from the buffers (a loaded state_dict replaces them)."""
        return [SDLayer(getattr(self, f"w{i}"), getattr(self, f"b{i}"), vth, output, stride,
                        padding, flat)
                for i, (vth, output, stride, padding, flat) in enumerate(self._geometry)]

    # ------------------------------------------------------------------ the contract
    @property
    def depth(self) -> int:
        return len(self._geometry)

    @property
    def window_pad(self) -> int:
        return 0  # the frame is held over the whole window (see ``timesteps``)

    @property
    def timesteps(self) -> int:
        """Steps a frame is held: one per synaptic delay, plus the step it arrives."""
        return self.depth + 1

    @property
    def num_classes(self) -> int:
        return int(self.b_out().shape[0])

    def arch(self) -> Dict[str, Any]:
        return {"family": self.family, "spec": self.spec.model_dump(), "hardware": self.profile.name,
                "sdnn": {"input_vth": self.input_vth, "input_shift": self.input_shift,
                         "out_scale": self.out_scale,
                         "input_levels": self.input_levels,
                         "vth": [vth for vth, *_ in self._geometry]}}

    def run(self, x: torch.Tensor, states: Optional[List[DeltaState]] = None, record: bool = False):
        sd = self.profile.sigma_delta
        return run_layers(self.layers, x, self.input_vth, self.input_shift, sd.state_exp,
                          states=states, record=record)

    def chip_weights(self, i: int) -> torch.Tensor:
        return self.layers[i].weight

    def first_layer_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_messages(x)

    def input_messages(self, x: torch.Tensor) -> torch.Tensor:
        """The input layer's graded messages for frames ``x`` (``(N, *input_shape, T)``): what the
        host sends the chip's first synapse."""
        sd = self.profile.sigma_delta
        return delta_scan(x.to(torch.int64) << self.input_shift, self.input_vth, sd.state_exp)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's running sum at every step, ``(N, K, T)`` state units."""
        return self.run(x)[0]

    def forward_intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:
        out, msgs, _ = self.run(x, record=True)
        per_layer = msgs[1:] + [out]
        result, k = [], 0
        for layer in self.spec.layers:
            if isinstance(layer, FlattenLayer):
                prev = result[-1]
                result.append(prev.reshape(prev.shape[0], -1, prev.shape[-1]))
            else:
                result.append(per_layer[k])
                k += 1
        return result

    def spiking_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        out, msgs, _ = self.run(x, record=True)
        return msgs[1:] + [out]

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """Logits in the DNN's units from the output sums ``(N, K, T)``: the last step, plus the
        output bias (added on the host), over the output scale."""
        return (out[..., -1] + self.b_out()).double().div(self.out_scale).float()

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return self.logits(out)

    def b_out(self) -> torch.Tensor:
        return getattr(self, f"b{self.depth - 1}")

    def chip_decays(self) -> Tuple[int, int]:
        raise NeurokdError("sigma-delta neurons have no current or voltage decay")

    @property
    def weight_bytes(self) -> int:
        return sum(int(getattr(self, f"w{i}").numel()) for i in range(self.depth))


def sdnn_readout(model: SigmaDeltaNet, x: torch.Tensor) -> torch.Tensor:
    """The readout the training and evaluation loops call: logits of encoded frames ``x``."""
    return model.logits(model(x))


def spec_layers(spec: ArchSpec) -> List[Dict[str, Any]]:
    """Per synaptic layer of ``spec``: stride, padding and whether a flatten precedes it."""
    out, flat = [], False
    for layer in spec.layers:
        if isinstance(layer, FlattenLayer):
            flat = True
            continue
        conv = isinstance(layer, ConvLayer)
        out.append({"stride": layer.stride2 if conv else (1, 1),
                    "padding": layer.padding2 if conv else (0, 0), "flatten_before": flat})
        flat = False
    return out


def sdnn_from_checkpoint(payload: Dict[str, Any], where: str = "checkpoint") -> SigmaDeltaNet:
    from neurokd.models.spec import spec_from_dict

    arch = payload.get("arch", {})
    spec = spec_from_dict(arch.get("spec"), where=f"{where}: spec")
    profile = load_profile(str(arch.get("hardware", "loihi2")))
    info = arch.get("sdnn")
    state = payload.get("state_dict", {})
    try:
        vths = [int(v) for v in info["vth"]]
        geometry = spec_layers(spec)
        if len(vths) != len(geometry):
            raise ValueError("one threshold per layer")
        layers = [SDLayer(state[f"w{i}"].to(torch.int64), state[f"b{i}"].to(torch.int64), vths[i],
                          output=i == len(vths) - 1, **geometry[i]) for i in range(len(vths))]
        model = SigmaDeltaNet(spec, profile, layers, int(info["input_vth"]), float(info["out_scale"]),
                              int(info["input_levels"]), int(info["input_shift"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NeurokdError(f"{where}: sigma-delta checkpoint is incomplete "
                           f"({type(exc).__name__})") from None
    if not 0 < model.out_scale < float("inf"):
        raise NeurokdError(f"{where}: sigma-delta checkpoint has an output scale that is not a "
                           "positive number")
    _check_layers(model, where)
    return model.eval()


def _check_layers(model: SigmaDeltaNet, where: str) -> None:
    """Each layer's integers of the shape its spec gives and in the chip's ranges."""
    sd = model.profile.sigma_delta
    shapes = [shape for layer, shape in zip(model.spec.layers, model.spec.shapes())
              if not isinstance(layer, FlattenLayer)]
    inputs = [tuple(model.spec.input_shape)] + shapes[:-1]
    for i, (layer, spec_layer, out, inp) in enumerate(zip(
            model.layers, [x for x in model.spec.layers if not isinstance(x, FlattenLayer)], shapes, inputs)):
        w, b = layer.weight, layer.bias
        if isinstance(spec_layer, ConvLayer):
            want = (out[0], inp[0], *spec_layer.kernel2)
        else:
            want = (out[0], int(np.prod(inp)))
        if tuple(w.shape) != want or tuple(b.shape) != (out[0],):
            raise NeurokdError(f"{where}: sigma-delta layer {i} holds weights {tuple(w.shape)} and "
                               f"biases {tuple(b.shape)}; its spec needs {want} and ({out[0]},)")
        if int(w.abs().max()) > WEIGHT_MAX or layer.vth < 0 or (
                not layer.output and int(b.abs().max()) > sd.bias_limit << sd.shift):
            raise NeurokdError(f"{where}: sigma-delta layer {i} holds integers outside the chip's "
                               "8-bit weights, 16-bit biases or non-negative thresholds")


class EncodedSDNN(nn.Module):
    """A sigma-delta network that reads the DNN's own input: each sample ``x`` is encoded by the
    graded ``encoder``, held for the network's window and read out as logits. Reports that compare
    receivers on raw samples (the radio reports) take it as they take a DNN."""

    def __init__(self, model: SigmaDeltaNet, encoder: str) -> None:
        super().__init__()
        from neurokd.data.encoders import get_encoder

        self.model, self.encoder = model, get_encoder(encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from neurokd.data.encoders import encode_window

        return sdnn_readout(self.model, encode_window(x, self.encoder, self.model.timesteps, 0))


def as_stream(frames: torch.Tensor) -> torch.Tensor:
    """Samples' windows ``(N, *shape, W)`` one after another: ``(1, *shape, N·W)``."""
    return parallel_streams(frames, 1)[0]


def from_stream(out: torch.Tensor, n: int) -> torch.Tensor:
    """A stream ``(1, *shape, N·W)`` back into per-sample windows ``(N, *shape, W)``."""
    return out[0].reshape(*out.shape[1:-1], n, -1).movedim(-2, 0)


def message_extremes(model: SigmaDeltaNet, out: torch.Tensor, msgs: Sequence[torch.Tensor]
                     ) -> List[Dict[str, Any]]:
    """Per layer, the largest |message| it sent (``msgs``: ``model.run(..., record=True)``'s; the
    output layer: its largest |sum| in ``out``) against the chip's limit: message bits for graded
    spikes, state bits for the output sum."""
    msgs = list(msgs)
    sd = model.profile.sigma_delta
    rows = []
    for i, m in enumerate(msgs + [out]):
        limit = model.profile.state_limit if i == len(msgs) else sd.message_limit
        peak = int(m.abs().max()) if m.numel() else 0
        rows.append({"layer": i, "max_abs": peak, "limit": limit, "overflow": peak > limit})
    return rows


def parallel_streams(frames: torch.Tensor, streams: int = 8) -> Tuple[torch.Tensor, int]:
    """Samples' windows ``(N, *shape, W)`` as ``streams`` streams of consecutive samples,
    ``(streams, *shape, (N // streams) · W)``, and the number of samples they hold: how a network
    that keeps its state runs them (no start from rest per sample)."""
    per = frames.shape[0] // streams
    if per == 0:
        streams, per = frames.shape[0], 1
    x = frames[: streams * per].reshape(streams, per, *frames.shape[1:]).movedim(1, -2)
    return x.reshape(*x.shape[:-2], -1), streams * per
