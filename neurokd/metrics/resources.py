"""Resource model of an ``ArchSpec`` on a hardware profile: neurons, synapses, cores, synaptic ops.

Per spiking layer, with ``fan_in`` the inputs each neuron reads (``C·k·k`` for a convolution):

* ``neurons``: the layer's output size;
* ``synapses``: ``neurons · fan_in`` connections (a convolution's shared weights are still one
  synapse per connection in the core's synaptic memory); ``params``: distinct weights;
* ``memory_bytes``: ``synapses · weight_bits / 8`` (the layer's own bit-width);
* ``cores``: the most of ``ceil(neurons / neurons_per_core)``,
  ``ceil(memory_bytes / synaptic_memory_bytes_per_core)`` and
  ``ceil(input_neurons / max_fan_in_per_core)`` (a core reads at most that many input axons);
* ``synops``: synaptic operations per inference, ``synapses · rate · T`` for an input spike rate
  ``rate`` (measured, or 1: the upper bound).

Every number of the chip comes from the profile.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile
from neurokd.models.spec import ArchSpec, DenseLayer, FlattenLayer


@dataclass
class LayerResources:
    layer: int
    kind: str
    neurons: int
    fan_in: int
    synapses: int
    params: int
    memory_bytes: int
    cores: int


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(int(s) for s in shape))


def _bits_per_layer(spec: ArchSpec, profile: HardwareProfile,
                    weight_bits: Optional[int | Sequence[int]]) -> List[int]:
    if weight_bits is None or isinstance(weight_bits, int):
        return [weight_bits or profile.weight_bits] * spec.num_spiking_layers
    bits = [int(b) for b in weight_bits]
    if len(bits) != spec.num_spiking_layers:
        raise NeurokdError(f"{len(bits)} bit-widths given for {spec.num_spiking_layers} spiking "
                           "layers")
    return bits


def layer_resources(spec: ArchSpec, profile: HardwareProfile,
                    weight_bits: Optional[int | Sequence[int]] = None) -> List[LayerResources]:
    """One row per spiking layer; ``weight_bits``: one bit-width for every layer, or one per
    spiking layer (default: the profile's ``weight_bits``)."""
    per_layer = _bits_per_layer(spec, profile, weight_bits)
    rows = []
    in_shape = tuple(spec.input_shape)
    for i, (layer, out_shape) in enumerate(zip(spec.layers, spec.shapes())):
        if isinstance(layer, FlattenLayer):
            in_shape = out_shape
            continue
        bits = per_layer[len(rows)]
        neurons = _prod(out_shape)
        if isinstance(layer, DenseLayer):
            fan_in, params = _prod(in_shape), _prod(in_shape) * layer.units
        else:
            fan_in = in_shape[0] * layer.kernel2[0] * layer.kernel2[1]
            params = fan_in * layer.channels
        synapses = neurons * fan_in
        memory = (synapses * bits + 7) // 8
        cores = max(math.ceil(neurons / profile.neurons_per_core),
                    math.ceil(memory / profile.synaptic_memory_bytes_per_core),
                    math.ceil(_prod(in_shape) / profile.max_fan_in_per_core))
        rows.append(LayerResources(i, layer.type, neurons, fan_in, synapses, params, memory, cores))
        in_shape = out_shape
    return rows


def synops(rows: Sequence[LayerResources], timesteps: int,
           input_rates: Optional[Sequence[float]] = None) -> float:
    """Synaptic operations per inference; ``input_rates``: spikes per input neuron per step,
    per layer (default 1, the upper bound)."""
    rates = input_rates if input_rates is not None else [1.0] * len(rows)
    return float(sum(r.synapses * rate * timesteps for r, rate in zip(rows, rates)))


def summary(spec: ArchSpec, profile: HardwareProfile, timesteps: int,
            input_rates: Optional[Sequence[float]] = None) -> Dict[str, float]:
    rows = layer_resources(spec, profile)
    return {"neurons": sum(r.neurons for r in rows), "synapses": sum(r.synapses for r in rows),
            "params": sum(r.params for r in rows),
            "memory_bytes": sum(r.memory_bytes for r in rows),
            "cores": sum(r.cores for r in rows),
            "synops": synops(rows, timesteps, input_rates),
            "layers": [asdict(r) for r in rows]}


@dataclass(frozen=True)
class Budget:
    """The user's limits; ``None``: no limit (cores also stop at the profile's chip).
    ``max_synops`` bounds the synaptic operations per inference of the resource model's upper
    bound (every input of every layer spiking at every one of the T steps, ``summary``'s
    ``synops``), a bound the network keeps whatever its activity after training."""

    max_cores: Optional[int] = None
    max_memory_bytes: Optional[int] = None
    max_synops: Optional[float] = None

    def violation(self, res: Dict[str, float], profile: HardwareProfile) -> Optional[str]:
        cores = self.max_cores if self.max_cores is not None else profile.cores_per_chip
        if res["cores"] > cores:
            return f"{res['cores']} cores > {cores}"
        if self.max_memory_bytes is not None and res["memory_bytes"] > self.max_memory_bytes:
            return f"{res['memory_bytes']} bytes of synaptic memory > {self.max_memory_bytes}"
        if self.max_synops is not None and res["synops"] > self.max_synops:
            return f"{res['synops']:.4g} synaptic operations per inference > {self.max_synops:.4g}"
        return None

    def check(self) -> None:
        for name, value in (("max_cores", self.max_cores), ("max_memory_bytes", self.max_memory_bytes),
                            ("max_synops", self.max_synops)):
            if value is not None and not value > 0:
                flag = {"max_memory_bytes": "max_memory"}.get(name, name)
                raise NeurokdError(f"--{flag.replace('_', '-')} must be positive, got {value}")


def fit_violation(spec: ArchSpec, profile: HardwareProfile,
                  weight_bits: Optional[int | Sequence[int]] = None) -> Optional[str]:
    """Why ``spec`` cannot run on one chip of ``profile``, as one line naming the first layer that
    breaks a limit and the limit; None when it fits. Checked layer by layer: a neuron reads more
    inputs than a core's input axons (``max_fan_in_per_core``), a neuron's synapses need more than
    a core's synaptic memory, the cores counted so far pass ``cores_per_chip``."""
    used = 0
    rows = layer_resources(spec, profile, weight_bits)
    for r, b in zip(rows, _bits_per_layer(spec, profile, weight_bits)):
        name = f"layer {r.layer} ({r.kind})"
        if r.fan_in > profile.max_fan_in_per_core:
            return (f"{name}: each neuron reads {r.fan_in} inputs, more than the "
                    f"{profile.max_fan_in_per_core} input axons a {profile.name} core reads "
                    "(max_fan_in_per_core)")
        neuron_bytes = (r.fan_in * b + 7) // 8
        if neuron_bytes > profile.synaptic_memory_bytes_per_core:
            return (f"{name}: one neuron's {r.fan_in} synapses at {b} bits take {neuron_bytes} "
                    f"bytes, more than the {profile.synaptic_memory_bytes_per_core} bytes of "
                    f"synaptic memory of a {profile.name} core (synaptic_memory_bytes_per_core)")
        used += r.cores
        if used > profile.cores_per_chip:
            return (f"{name}: brings the network to {used} cores (this layer {r.cores}), more "
                    f"than the {profile.cores_per_chip} cores of one {profile.name} chip "
                    "(cores_per_chip)")
    return None


IGNORE_FIT_FLAG = "--ignore-fit"


def check_fit(spec: ArchSpec, profile: HardwareProfile,
              weight_bits: Optional[int | Sequence[int]] = None) -> None:
    """Raise a one-line NeurokdError unless ``spec`` fits one chip of ``profile``."""
    problem = fit_violation(spec, profile, weight_bits)
    if problem is not None:
        raise NeurokdError(f"the network does not fit the chip: {problem}; pass "
                           f"{IGNORE_FIT_FLAG} to go on anyway")
