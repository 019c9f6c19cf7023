"""NIR → neurokd: a parsed chain becomes a float slayer ``SpikingNet``, each approximation stated
node by node (see :mod:`neurokd.interop.nir`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile, load_profile
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer, NeuronSpec, compact
from neurokd.interop.nir.graph import MAX_IMPORT_VTH, Chain

# ---------------------------------------------------------------- NIR → neurokd
@dataclass
class Imported:
    """The result of ``chain_to_snn``: the network and what the mapping did."""

    model: nn.Module
    chain: Chain
    approximations: List[Dict[str, str]]
    layers: List[Dict[str, Any]]


def _uniform_decay(chain: Chain, attr: str, label: str, scale: int) -> int:
    """The one integer decay of every neuron (``attr`` du or dv), or a refusal naming the node."""
    first: Optional[Tuple[int, str]] = None
    for st in chain.stages:
        ints = np.round(getattr(st, attr) * scale).astype(np.int64)
        lo, hi = int(ints.min()), int(ints.max())
        if lo != hi:
            raise NeurokdError(f"node {st.neuron!r} ({st.neuron_type}): its {label} decays differ "
                               f"between neurons ({lo}/{scale} .. {hi}/{scale} in the chip's "
                               f"{scale.bit_length() - 1} bits); a neurokd network has one "
                               f"{label} decay for all its neurons")
        if first is None:
            first = (lo, st.neuron)
        elif lo != first[0]:
            raise NeurokdError(f"node {st.neuron!r} ({st.neuron_type}): its {label} decay "
                               f"{lo}/{scale} differs from node {first[1]!r}'s {first[0]}/{scale}; "
                               f"a neurokd network has one {label} decay for all its layers")
    assert first is not None
    return first[0]


def _kept_threshold(chain: Chain, profile: HardwareProfile) -> Optional[int]:
    """The graph's own threshold mantissa where rescaling would only lose exactness: every neuron
    has the same gain / threshold ratio, and the weights in those units already are slayer's
    8-bit values (a graph neurokd exported from a float network). None otherwise."""
    ratios = np.concatenate([st.gain / st.threshold for st in chain.stages])
    c = float(ratios[0])
    if np.abs(ratios - c).max() > 1e-6 * c:
        return None
    w_scale = profile.weight_scale
    vth = w_scale / c
    if abs(vth - round(vth)) > 1e-4 or not 1 <= round(vth) <= MAX_IMPORT_VTH:
        return None
    for st in chain.stages:
        m = st.weight * w_scale
        even = np.round(m / 2) * 2
        if np.abs(m - even).max() > 1e-4 or even.min() < profile.weight_mantissa_min or \
                even.max() > profile.weight_mantissa_max:
            return None
    return int(round(vth))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _time_notes(chain: Chain, profile: HardwareProfile, i_decay: int, v_decay: int,
                note: Callable[[str, str, str], None]) -> None:
    """Note how time is read (forward-Euler steps, IF per step), and the decays clamped or rounded
    to the chip's bits."""
    scale = profile.decay_scale
    leaky = [st.neuron for st in chain.stages if st.neuron_type != "IF"]
    if leaky:
        note(", ".join(leaky), "time",
             f"continuous-time neurons taken as forward-Euler steps of dt = {chain.dt:g} "
             "(decay = dt/tau, input gain r·dt/tau), as snntorch writes and reads them; "
             "--dt sets the step")
    ifs = [st.neuron for st in chain.stages if st.neuron_type == "IF"]
    if ifs:
        note(", ".join(ifs), "time", "IF neurons integrate r·input per step (v += r·I), as "
             "discrete-time producers mean them (no dt factor)")
    for st in chain.stages:
        for line in st.decay_clamped:
            note(st.neuron, "decay clamped", line)
    # Rounding of the decays to the chip's bits (one note per layer where they are not exact).
    for st in chain.stages:
        for attr, integer, label in (("du", i_decay, "current"), ("dv", v_decay, "voltage")):
            exact = float(getattr(st, attr)[0])
            if abs(exact * scale - integer) > 1e-3:  # more than float32 noise in tau
                keep = f" (beta {_fmt(1 - exact)} → {_fmt(1 - integer / scale)})"
                note(st.neuron, "decay rounded",
                     f"{label} decay per step {_fmt(exact)}{keep} rounded to the chip's "
                     f"{profile.decay_bits}-bit {integer}/{scale} = {integer / scale:.6g}")
    if i_decay < scale or v_decay > 0:
        note("all layers", "state rounding",
             "decayed current and voltage round toward zero in the chip's integer units (1/"
             f"{profile.state_scale} of a weight unit), where the graph computes in float")


def _normalized_weights(chain: Chain, note: Callable[[str, str, str], None]) -> List[np.ndarray]:
    """Each stage's weights with its neurons' gain / threshold folded into their rows; the bias,
    v_leak and v_reset the float students drop are noted."""
    normalized: List[np.ndarray] = []
    for st in chain.stages:
        g = st.gain / st.threshold
        shape = (-1,) + (1,) * (st.weight.ndim - 1)
        normalized.append(st.weight * g.reshape(shape))
        bias = st.bias * g  # in thresholds per step (before the gain, for LIF/CubaLIF)
        if np.any(bias != 0):
            drive = np.abs(bias)
            note(st.synapse, "bias dropped",
                 f"bias dropped (neurokd's float students have none): it drove the voltage by up "
                 f"to {_fmt(float(drive.max()))} thresholds per step (mean "
                 f"{_fmt(float(drive.mean()))})")
        leak = st.dv * st.v_leak / st.threshold
        if np.any(leak != 0):
            note(st.neuron, "v_leak dropped",
                 f"v_leak dropped: it drove the voltage by up to {_fmt(float(np.abs(leak).max()))} "
                 "thresholds per step (dt/tau·v_leak)")
        reset = st.v_reset / st.threshold
        if np.any(reset != 0):
            note(st.neuron, "v_reset", f"reset to 0 (Loihi's reset) instead of v_reset, up to "
                 f"{_fmt(float(np.abs(reset).max()))} thresholds")
    return normalized


def _spec_layers(chain: Chain) -> List[Any]:
    """The spec's layers of ``chain``: a dense or conv layer per stage, flattens between."""
    spec_layers: List[Any] = []
    for st in chain.stages:
        if st.kind == "conv":
            spec_layers.append(ConvLayer(channels=st.out_shape[0],
                                         kernel=compact((int(st.weight.shape[2]),
                                                       int(st.weight.shape[3]))),
                                         stride=compact(st.stride), padding=compact(st.padding)))
        else:
            spec_layers.append(DenseLayer(units=st.out_shape[0]))
        if st.flatten_after and st is not chain.stages[-1]:
            spec_layers.append(FlattenLayer())
    return spec_layers


def chain_to_snn(chain: Chain, profile: Optional[HardwareProfile] = None,
                 input_shape: Optional[Sequence[int]] = None) -> Imported:
    """The slayer ``SpikingNet`` of ``chain`` (see the module docstring for the mapping), its
    approximations (``{"node", "kind", "detail"}`` each) and one row per layer of what was done.
    ``input_shape``: the dataset's sample shape, used for a dense first layer whose input has as
    many entries (a flat graph input for ``(1, 8, 8)`` images)."""
    from neurokd.models.cuba.net import SpikingNet

    profile = profile or load_profile("loihi2")
    scale = profile.decay_scale
    w_scale = profile.weight_scale
    i_decay = _uniform_decay(chain, "du", "current", scale)
    v_decay = _uniform_decay(chain, "dv", "voltage", scale)
    approx: List[Dict[str, str]] = []

    def note(node: str, kind: str, detail: str) -> None:
        approx.append({"node": node, "kind": kind, "detail": detail})

    _time_notes(chain, profile, i_decay, v_decay, note)
    # Normalized weights: each neuron's gain and threshold folded into its row.
    normalized = _normalized_weights(chain, note)
    top = max(float(np.abs(w).max()) for w in normalized)
    if top == 0:
        raise NeurokdError("every weight of the graph is zero")
    w_max = profile.weight_mantissa_max  # slayer's 8-bit rounding keeps |w·scale| ≤ this
    vth = _kept_threshold(chain, profile)
    if vth is None:
        vth = int(math.floor(w_max / top * (1 - 1e-12)))
        if vth < 1:
            raise NeurokdError(f"one input spike carries up to {top:.4g} thresholds; with "
                               f"slayer's 8-bit weights (at most {w_max}) and a threshold of at "
                               f"least 1/{w_scale} a layer holds at most {w_max}")
        vth = min(vth, MAX_IMPORT_VTH)
    theta = vth / w_scale
    spec_layers = _spec_layers(chain)
    shape_in = list(chain.input_shape)
    if input_shape is not None and isinstance(spec_layers[0], DenseLayer) and \
            int(np.prod(input_shape)) == int(np.prod(shape_in)):
        shape_in = [int(v) for v in input_shape]
    spec = ArchSpec(input_shape=shape_in, layers=spec_layers,
                    neuron=NeuronSpec(threshold=theta, current_decay=i_decay / scale,
                                      voltage_decay=v_decay / scale))
    spec.shapes()
    model = SpikingNet(spec, profile).eval()
    with torch.no_grad():
        model(torch.zeros(1, *spec.input_shape, 2))
    blocks = [b for b in model.blocks if getattr(b, "synapse", None) is not None]
    rows = []
    step = 2.0 / w_scale  # slayer keeps even mantissas: steps of 2/scale
    for st, block, w in zip(chain.stages, blocks, normalized):
        weight = torch.as_tensor(w * theta, dtype=torch.float32)
        syn = block.synapse.weight
        with torch.no_grad():
            syn.copy_(weight.reshape(syn.shape))
        largest = float(np.abs(w).max()) * theta
        levels = int(largest / step)
        rows.append({"synapse": st.synapse, "neuron": st.neuron, "neuron_type": st.neuron_type,
                     "kind": st.kind, "out_shape": list(st.out_shape),
                     "weight_scale": f"θ·gain/v_threshold per neuron (θ = {theta:g})",
                     "largest_weight": largest, "weight_levels_8bit": levels})
        scaled = w * theta / step
        if np.abs(scaled - np.round(scaled)).max() < 1e-4:
            continue  # already slayer's 8-bit values: nothing is rounded
        note(st.synapse, "weights 8-bit",
             f"the float model (as train-snn's) rounds weights to multiples of {step:g}: "
             f"{levels} levels per sign at this layer's largest |w| {largest:.4g} (relative step "
             f"{step / max(largest, 1e-30):.2%}); the checkpoint keeps the unrounded weights, "
             "which 'neurokd quantize' starts from")
    if vth == MAX_IMPORT_VTH:
        note("all layers", "threshold cap",
             f"the threshold mantissa is capped at {MAX_IMPORT_VTH}, so the weights fill only "
             f"{top * theta * w_scale:.0f} of slayer's {w_max} 8-bit levels")
    return Imported(model, chain, approx, rows)


def _where(node: str) -> str:
    if node == "all layers":
        return node
    names = node.split(", ")
    return ("node " if len(names) == 1 else "nodes ") + ", ".join(repr(n) for n in names)


def approximation_lines(approximations: Sequence[Dict[str, str]]) -> List[str]:
    """One log line per approximation."""
    return [f"approximation ({a['kind']}) at {_where(a['node'])}: {a['detail']}"
            for a in approximations]


