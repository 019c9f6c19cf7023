"""One cost model for both sides: a DNN and an SNN priced alike, arithmetic and memory traffic.

``neurokd.metrics.energy`` counts what a network does (MACs, events, synaptic operations, neuron
updates); this module turns the counts into joules per inference under several pricings, each
saying what it counts and what it leaves out (``PRICINGS``).

**The 45 nm digital model** (``digital``; figures: ``HardwareProfile.energy.digital``), after
Lemaire et al. 2022: the same technology, the same arithmetic table and the same memories for
both sides, so that what differs is only what each network computes and moves. A memory of
``S`` bits costs ``E(S) = sram_pj_per_bit · S + sram_base_pj`` per ``word_bits``-bit access, and
moving ``n`` bits costs ``n / word_bits · E(S)`` (words packed).

* A DNN layer in ``b``-bit arithmetic (fp32: ``b`` = 32, int8: ``b`` = 8):
  arithmetic ``MACs · (E_mul + E_add) + outputs · E_add`` (the bias);
  weights ``(MACs + outputs) · b`` bits read from the weight memory (every weight read at every
  use: no reuse in registers; the biases once per output), of size all weights and biases × ``b``;
  activations ``(inputs + outputs) · b`` bits read and written once, in an activation memory of
  the largest layer's inputs and outputs.
* An SNN layer with ``w``-bit weights and ``s``-bit state (``profile.state_bits``):
  arithmetic per synaptic operation an accumulate (``E_add`` int32) for a binary event, a
  multiply-accumulate for a graded one (``payload × w`` bits: ``E_mul`` int8 scaled by the product
  of the operand widths over 64, which puts a 32 × 32 multiply at 3.2 pJ against Horowitz's
  3.1); per neuron update (every neuron, every step of the window) a CUBA neuron's two decays
  (12-bit × ``s``-bit multiplies) and three adds, a sigma-delta neuron's three adds (sigma,
  delta, threshold);
  weights ``synops · w`` bits from the synaptic memory (its size the resource model's, one entry
  per connection); state: each synaptic operation reads and writes its target's accumulator
  (``2 s`` bits), each neuron update reads and writes two state words (``4 s`` bits), in a
  state memory of every neuron's two words; events: every event in and out is one
  ``EVENT_BITS``-bit word (address and payload) written by its sender and read by its receiver,
  in a buffer of the largest layer's neurons.
* Not counted on either side: control, instruction fetch, data movement between chips or from a
  host, leakage. Static power is its own line where a published figure exists.

**Platform references**, labelled as such: ``loihi`` (the SNN at the profile's per-event chip
figures: Loihi 1's, standing in for Loihi 2's) and ``mcu`` (the DNN in int8 at a measured
microcontroller board's energy per MAC, MLPerf Tiny). ``arithmetic``: the DNN's multiply-adds
alone, the old lower bound, kept for comparison.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from neurokd.hardware import DigitalFigures, EnergyFigures

EVENT_BITS = 32  # one event word: 16-bit address and up to 16-bit payload
DECAY_BITS = 12  # a CUBA decay factor (Loihi's 12-bit current and voltage decays)

PRICINGS = {
    "digital": "45 nm digital model, both sides alike: arithmetic (Horowitz 2014) and SRAM "
               "traffic of weights, state, activations and events with access energy growing "
               "with the memory's size (Lemaire et al. 2022); no control, host I/O or leakage",
    "loihi": "platform reference, SNN: the profile's chip figures per synaptic operation, neuron "
             "update and spike (Davies et al. 2018, Loihi 1 standing in for Loihi 2); no static "
             "power, host I/O or hops between tiles",
    "mcu": "platform reference, DNN: int8 MACs at a measured microcontroller board's energy per "
           "MAC (MLPerf Tiny v1.0, whole board, static power included)",
    "arithmetic": "DNN multiply-adds alone (Horowitz 2014), no memory: a lower bound",
}


def access_pj(d: DigitalFigures, size_bits: float) -> float:
    """Picojoules of one ``word_bits``-bit access to an SRAM of ``size_bits`` bits."""
    return d.sram_pj_per_bit * size_bits + d.sram_base_pj


def traffic_j(d: DigitalFigures, bits: float, size_bits: float) -> float:
    """Joules of moving ``bits`` bits in or out of an SRAM of ``size_bits`` bits."""
    return bits / d.word_bits * access_pj(d, size_bits) * 1e-12


def mul_pj(d: DigitalFigures, a_bits: int, b_bits: int) -> float:
    """An ``a × b``-bit integer multiply: the 8 × 8 figure scaled by the operand widths' product."""
    return d.mul_int8_pj * a_bits * b_bits / 64


def dnn_digital(layers: Sequence[Dict[str, Any]], bits: int, d: DigitalFigures) -> Dict[str, Any]:
    """A DNN in ``bits``-bit arithmetic (32: fp32, 8: int8) under the digital model. ``layers``:
    per Linear / Conv layer ``macs``, ``params`` (weights), ``inputs`` and ``outputs``
    (activation counts per sample). Returns the parts in joules and ``total``."""
    mul, add = (d.mul_fp32_pj, d.add_fp32_pj) if bits == 32 else (d.mul_int8_pj, d.add_int8_pj)
    weight_mem = sum(r["params"] + r["outputs"] for r in layers) * bits
    act_mem = max((r["inputs"] + r["outputs"] for r in layers), default=0) * bits
    parts = {
        "arithmetic": sum(r["macs"] * (mul + add) + r["outputs"] * add for r in layers) * 1e-12,
        "weights": traffic_j(d, sum(r["macs"] + r["outputs"] for r in layers) * bits, weight_mem),
        "activations": traffic_j(d, sum(r["inputs"] + r["outputs"] for r in layers) * bits,
                                 act_mem),
    }
    return {**parts, "total": sum(parts.values())}


def snn_digital(layers: Sequence[Dict[str, Any]], family: str, state_bits: int,
                d: DigitalFigures) -> Dict[str, Any]:
    """An SNN under the digital model. ``layers``: per spiking layer the counts of
    ``energy.snn_costs`` (``synops``, ``neuron_updates``, ``events_in``, ``spikes_out``,
    ``neurons``, ``weight_bits``, ``message_bits``, ``memory_bytes``); ``family``: cuba or sdnn.
    Returns the parts in joules and ``total``."""
    s = state_bits
    syn_mem = sum(r["memory_bytes"] for r in layers) * 8
    state_mem = sum(r["neurons"] for r in layers) * 2 * s
    event_mem = max((r["neurons"] for r in layers), default=0) * EVENT_BITS
    if family == "sdnn":
        update = 3 * d.add_int32_pj
    else:
        update = 2 * mul_pj(d, DECAY_BITS, s) + 3 * d.add_int32_pj
    parts = {"arithmetic": 0.0, "weights": 0.0, "state": 0.0, "events": 0.0}
    per_layer = []
    for r in layers:
        m = r["message_bits"]
        synop = d.add_int32_pj + (mul_pj(d, m, r["weight_bits"]) if m else 0.0)
        row = {"arithmetic": (r["synops"] * synop + r["neuron_updates"] * update) * 1e-12,
               "weights": traffic_j(d, r["synops"] * r["weight_bits"], syn_mem),
               "state": traffic_j(d, r["synops"] * 2 * s + r["neuron_updates"] * 4 * s, state_mem),
               "events": traffic_j(d, (r["events_in"] + r["spikes_out"]) * EVENT_BITS, event_mem)}
        for k, v in row.items():
            parts[k] += v
        per_layer.append(sum(row.values()))
    return {**parts, "total": sum(parts.values()), "per_layer": per_layer}


def neurobench_counts(layers: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """NeuroBench's operation counts of an SNN from its per-layer counts: dense operations (every
    synapse at every step of the window), effective MACs (operations of graded events) and
    effective accumulates (of binary events), each an event times the non-zero weights it meets
    (``synops_nonzero``, as NeuroBench counts; ``synops`` counts every synapse). Events are any
    non-zero message. Checked against the ``neurobench`` package: ``benchmarks/neurobench_check.py``."""
    dense = sum(r["synapses"] * r["neuron_updates"] / max(r["neurons"], 1) for r in layers)
    macs = sum(r.get("synops_nonzero", r["synops"]) for r in layers if r["message_bits"])
    acs = sum(r.get("synops_nonzero", r["synops"]) for r in layers if not r["message_bits"])
    return {"dense_ops": float(dense), "effective_macs": float(macs), "effective_acs": float(acs)}


def dnn_pricings(layers: Sequence[Dict[str, Any]], e: EnergyFigures) -> Dict[str, Any]:
    """Joules per inference of a DNN under every pricing that applies to it."""
    macs = sum(r["macs"] for r in layers)
    return {"digital_fp32": dnn_digital(layers, 32, e.digital),
            "digital_int8": dnn_digital(layers, 8, e.digital),
            "mcu_int8": {"total": macs * e.digital.mcu_mac_pj * 1e-12},
            "arithmetic_fp32": {"total": macs * e.mac_fp32_pj * 1e-12},
            "arithmetic_int8": {"total": macs * e.mac_int8_pj * 1e-12}}


def snn_pricings(layers: Sequence[Dict[str, Any]], family: str, state_bits: int,
                 e: EnergyFigures, loihi_total: Optional[float]) -> Dict[str, Any]:
    """Joules per inference of an SNN under every pricing that applies to it; ``loihi_total``:
    the per-event chip figure's total (``energy.snn_energy``)."""
    out: Dict[str, Any] = {"digital": snn_digital(layers, family, state_bits, e.digital)}
    if loihi_total is not None:
        out["loihi"] = {"total": loihi_total}
    return out


def static_line(e: EnergyFigures) -> List[str]:
    """The static power line: what a board draws whatever the network does."""
    d = e.digital
    if d.static_w is None:
        return ["- static power: no published figure for this profile; not counted"]
    return [f"- static power (its own line, not in any total): {d.static_w:g} W, so "
            f"{d.static_w * 1e-3 * 1e6:.3g} µJ for every millisecond an inference takes "
            f"(no published per-step latency of this network). Source: {d.static_source}"]
