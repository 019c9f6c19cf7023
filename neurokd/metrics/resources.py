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
  ``rate`` (measured, or 1: the upper bound);
* ``message_bits``: the payload each event into the layer carries: 0 for a binary spike (the
  event is the message), the graded input's bits for the first layer of a network fed graded
  spikes (the encoder's ``message_bits``), and the profile's ``sigma_delta.message_bits`` for
  every layer of a sigma-delta network (the host sends the first layer its input's changes in
  messages of that width too). The chip carries at most ``max_message_bits``.

Whether a network fits one chip is decided in one place, ``chip_fit``; every resource decision
reads it: the architecture search's feasibility filter (``Budget.assess``, which adds the user's
budget), the chip-fit check that ``export``, ``quantize``, ``convert`` and ``demo`` run
(``check_fit``) and ``neurokd report``'s resource table (``neurokd.metrics.energy.snn_costs``). A
network the search returns therefore passes the export's check (at the profile's
``weight_bits``, the bit-width the search counts at).

Every number of the chip comes from the profile.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    message_bits: int = 0
    inputs: int = 0  # the layer's input neurons (all of the previous layer's outputs)


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


def message_bits(spec: ArchSpec, profile: HardwareProfile, input_bits: int = 0) -> List[int]:
    """Per spiking layer, the payload bits of the events it receives (see the module's text);
    ``input_bits``: the first layer's graded input (0: binary spikes), for a CUBA network."""
    n = spec.num_spiking_layers
    if spec.family == "sdnn":
        if profile.sigma_delta is None:
            raise NeurokdError(f"hardware profile {profile.name} has no sigma-delta neurons "
                               "(graded spikes); use loihi2")
        return [profile.sigma_delta.message_bits] * n
    return [int(input_bits)] + [0] * (n - 1)


def layer_resources(spec: ArchSpec, profile: HardwareProfile,
                    weight_bits: Optional[int | Sequence[int]] = None,
                    input_bits: int = 0) -> List[LayerResources]:
    """One row per spiking layer; ``weight_bits``: one bit-width for every layer, or one per
    spiking layer (default: the profile's ``weight_bits``); ``input_bits``: the payload of the
    first layer's input events (``message_bits``)."""
    per_layer = _bits_per_layer(spec, profile, weight_bits)
    payload = message_bits(spec, profile, input_bits)
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
        rows.append(LayerResources(i, layer.type, neurons, fan_in, synapses, params, memory, cores,
                                   payload[len(rows)], _prod(in_shape)))
        in_shape = out_shape
    return rows


def synops(rows: Sequence[LayerResources], timesteps: int,
           input_rates: Optional[Sequence[float]] = None) -> float:
    """Synaptic operations per inference; ``input_rates``: spikes per input neuron per step,
    per layer (default 1, the upper bound)."""
    rates = input_rates if input_rates is not None else [1.0] * len(rows)
    return float(sum(r.synapses * rate * timesteps for r, rate in zip(rows, rates)))


def _totals(rows: Sequence[LayerResources], timesteps: int,
            input_rates: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    return {"neurons": sum(r.neurons for r in rows), "synapses": sum(r.synapses for r in rows),
            "params": sum(r.params for r in rows),
            "memory_bytes": sum(r.memory_bytes for r in rows),
            "cores": sum(r.cores for r in rows),
            "synops": synops(rows, timesteps, input_rates),
            "layers": [asdict(r) for r in rows]}


def summary(spec: ArchSpec, profile: HardwareProfile, timesteps: int,
            input_rates: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """The network's totals at the profile's ``weight_bits``, its rows (``layers``) and the
    energy per inference at the activity's upper bound (``energy_upper_j``)."""
    rows = layer_resources(spec, profile)
    res = _totals(rows, timesteps, input_rates)
    res["energy_upper_j"] = upper_energy_j(spec, profile, rows,
                                           [profile.weight_bits] * len(rows), timesteps)
    return res


@dataclass(frozen=True)
class ChipFit:
    """The resource model's verdict on one network for one chip: its rows (``layer_resources``)
    at ``weight_bits``, and ``problem``, the first limit it breaks (None: it fits)."""

    layers: Tuple[LayerResources, ...]
    weight_bits: Tuple[int, ...]
    problem: Optional[str]

    @property
    def fits(self) -> bool:
        return self.problem is None

    @property
    def cores(self) -> int:
        return sum(r.cores for r in self.layers)


def chip_fit(spec: ArchSpec, profile: HardwareProfile,
             weight_bits: Optional[int | Sequence[int]] = None, input_bits: int = 0) -> ChipFit:
    """Whether ``spec`` runs on one chip of ``profile``, and why not: the one rule the search's
    feasibility filter (``Budget.assess``), the chip-fit check (``check_fit``, run by export) and
    the report's resource table read. ``weight_bits``: one bit-width for every spiking layer, or
    one per layer (default: the profile's ``weight_bits``).

    What is counted, layer by layer in the network's order, the first broken limit named with
    its layer:

    * **fan-in per neuron**: the inputs one neuron reads (``fan_in``: all of the previous
      layer's outputs for a dense layer, ``C·k·k`` for a convolution) must be at most
      ``max_fan_in_per_core``: a neuron's synapses live in one core, which reads at most that many
      input axons, so a dense layer's inputs are never split across cores;
    * **synaptic memory per core**: one neuron's synapses (``fan_in`` weights at the layer's
      bit-width) must fit ``synaptic_memory_bytes_per_core``;
    * **messages**: the events a layer receives carry at most ``max_message_bits`` of payload
      (``message_bits``; ``input_bits``: the first layer's graded input);
    * **cores**: a layer takes the most of ``ceil(neurons / neurons_per_core)`` (neurons per
      core), ``ceil(memory_bytes / synaptic_memory_bytes_per_core)`` (synaptic memory per core)
      and ``ceil(input_neurons / max_fan_in_per_core)`` (input axons per core: a convolution's
      outputs are spread over cores that each read part of its input); the layers' cores, added
      up, must be at most ``cores_per_chip``.
    """
    bits = _bits_per_layer(spec, profile, weight_bits)
    rows = layer_resources(spec, profile, bits, input_bits)
    return ChipFit(tuple(rows), tuple(bits), _first_violation(rows, bits, profile))


def _first_violation(rows: Sequence[LayerResources], bits: Sequence[int],
                     profile: HardwareProfile) -> Optional[str]:
    used = 0
    for r, b in zip(rows, bits):
        name = f"layer {r.layer} ({r.kind})"
        if r.message_bits > profile.max_message_bits:
            return (f"{name}: receives {r.message_bits}-bit messages, more than the "
                    f"{profile.max_message_bits} bits a {profile.name} message carries "
                    "(max_message_bits)")
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


def upper_energy_j(spec: ArchSpec, profile: HardwareProfile, rows: Sequence[LayerResources],
                   bits: Sequence[int], timesteps: int) -> Optional[float]:
    """Joules per inference of ``spec`` at its activity's upper bound (every input an event at
    each of the ``timesteps`` steps, every neuron spiking at each, updated at every step of the
    window), priced by the digital model (``neurokd.metrics.pricing``) that ``neurokd report``
    prices trained networks with: a bound the network keeps whatever its activity after
    training. None when the profile has no energy figures. ``bits``: each layer's weight bits;
    ``timesteps``: the search's T, or a
    sigma-delta network's depth + 1 (its whole window)."""
    from neurokd.metrics.pricing import snn_digital

    if profile.energy is None:
        return None
    window = timesteps if spec.family == "sdnn" else timesteps + len(rows)
    counts = [{"synops": r.synapses * timesteps, "neuron_updates": r.neurons * window,
               "events_in": r.inputs * timesteps, "spikes_out": r.neurons * timesteps,
               "neurons": r.neurons, "weight_bits": b, "message_bits": r.message_bits,
               "memory_bytes": r.memory_bytes} for r, b in zip(rows, bits)]
    return snn_digital(counts, spec.family, profile.state_bits, profile.energy.digital)["total"]


@dataclass(frozen=True)
class Budget:
    """The user's limits; ``None``: no limit (cores also stop at the profile's chip).
    ``max_synops`` bounds the synaptic operations per inference of the resource model's upper
    bound (every input of every layer spiking at every one of the T steps, ``summary``'s
    ``synops``), a bound the network keeps whatever its activity after training.

    The search admits a network only if it fits one chip (``chip_fit``) and is within these
    limits (``assess``): a ``max_cores`` above the chip's ``cores_per_chip`` does not lift the
    chip's own limit, which the export's check enforces."""

    max_cores: Optional[int] = None
    max_memory_bytes: Optional[int] = None
    max_synops: Optional[float] = None
    max_energy_j: Optional[float] = None

    def assess(self, spec: ArchSpec, profile: HardwareProfile, timesteps: int
               ) -> Tuple[Dict[str, Any], Optional[str]]:
        """The search's feasibility filter: ``spec``'s ``summary`` (at the profile's
        ``weight_bits``, ``timesteps`` steps) and why it is refused, None when admitted: first
        the chip's rule (``chip_fit``, the reason the export's ``check_fit`` gives), then the
        budget's limits (``violation``)."""
        fit = chip_fit(spec, profile)
        res = _totals(fit.layers, timesteps)
        res["energy_upper_j"] = upper_energy_j(spec, profile, fit.layers, fit.weight_bits, timesteps)
        return res, fit.problem or self.violation(res, profile)

    def violation(self, res: Dict[str, float], profile: HardwareProfile) -> Optional[str]:
        """The first of the budget's limits that the totals ``res`` (``summary``) break; the
        chip's per-neuron limits are ``chip_fit``'s (``assess`` checks both)."""
        cores = self.max_cores if self.max_cores is not None else profile.cores_per_chip
        if res["cores"] > cores:
            return f"{res['cores']} cores > {cores}"
        if self.max_memory_bytes is not None and res["memory_bytes"] > self.max_memory_bytes:
            return f"{res['memory_bytes']} bytes of synaptic memory > {self.max_memory_bytes}"
        if self.max_synops is not None and res["synops"] > self.max_synops:
            return f"{res['synops']:.4g} synaptic operations per inference > {self.max_synops:.4g}"
        if self.max_energy_j is not None:
            energy = res.get("energy_upper_j")
            if energy is None:
                raise NeurokdError(f"--max-energy needs energy figures; hardware profile "
                                   f"{profile.name} has none")
            if energy > self.max_energy_j:
                return f"{energy:.4g} J per inference (upper bound) > {self.max_energy_j:.4g}"
        return None

    def check(self) -> None:
        for name, value in (("max_cores", self.max_cores), ("max_memory_bytes", self.max_memory_bytes),
                            ("max_synops", self.max_synops), ("max_energy_j", self.max_energy_j)):
            if value is not None and not value > 0:
                flag = {"max_memory_bytes": "max_memory", "max_energy_j": "max_energy"}.get(name, name)
                raise NeurokdError(f"--{flag.replace('_', '-')} must be positive, got {value}")


def fit_violation(spec: ArchSpec, profile: HardwareProfile,
                  weight_bits: Optional[int | Sequence[int]] = None) -> Optional[str]:
    """Why ``spec`` cannot run on one chip of ``profile``, as one line naming the first layer that
    breaks a limit and the limit; None when it fits (``chip_fit``'s ``problem``)."""
    return chip_fit(spec, profile, weight_bits).problem


IGNORE_FIT_FLAG = "--ignore-fit"


def check_fit(spec: ArchSpec, profile: HardwareProfile,
              weight_bits: Optional[int | Sequence[int]] = None) -> None:
    """Raise a one-line NeurokdError unless ``spec`` fits one chip of ``profile`` (``chip_fit``)."""
    problem = chip_fit(spec, profile, weight_bits).problem
    if problem is not None:
        raise NeurokdError(f"the network does not fit the chip: {problem}; pass "
                           f"{IGNORE_FIT_FLAG} to go on anyway")
