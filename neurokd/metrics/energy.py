"""What a network costs on the chip: resources, measured activity and energy per inference.

For each SNN of a run, on the target hardware profile:

* **resources** per spiking layer, from the resource model the architecture search uses
  (``neurokd.metrics.resources``): neurons, synapses, synaptic memory at the layer's weight bits,
  distinct weights, cores; and whether the network fits one chip (``chip_fit``, the rule the
  search admits by and the export's check refuses by);
* **activity** per inference, measured on test samples encoded as evaluation encodes them
  (``neurokd.metrics.activity``, NeuroBench's definitions): synaptic operations (input events ×
  fan-out), neuron updates (every neuron at every step of the window; active or inactive), output
  spikes, activation sparsity;
* **energy** per inference under every pricing of ``neurokd.metrics.pricing``: the headline
  the 45 nm digital model that prices the DNN alike (arithmetic and SRAM traffic), beside it
  the platform references (the profile's per-event chip figures, ``HardwareProfile.energy``;
  a measured microcontroller per MAC for the DNN) and the static power as its own line;
* **NeuroBench's counts**: dense operations, effective MACs (graded events) and accumulates
  (binary events), activation sparsity.

For each DNN (a teacher), the multiply-accumulates of its Linear and Conv2d layers and their
input and output sizes, counted by a forward pass with hooks, priced by the same digital model
in fp32 and int8 (and the microcontroller reference, and its arithmetic alone).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.data.encoders import get_encoder
from neurokd.errors import NeurokdError
from neurokd.hardware import EnergyFigures, HardwareProfile, load_profile
from neurokd.log import Log
from neurokd.metrics.activity import activity_counts, layer_outputs, weight_bits
from neurokd.metrics.pricing import (PRICINGS, dnn_pricings, neurobench_counts, snn_pricings,
                                     static_line)

Networks = Dict[str, Tuple[nn.Module, Dict[str, Any]]]

DEFINITIONS = {
    "synops": "synaptic operations per inference: every input event (non-zero spike or graded "
              "input entering a layer) times the number of synapses it fans out to (NeuroBench)",
    "neuron_updates": "neurons × time steps of the window (T input frames + one per layer): "
                      "Loihi updates every neuron at every step; active when the neuron received "
                      "an input event that step (or has a bias), inactive otherwise",
    "activation_sparsity": "1 − non-zero activations / all activations, over the output spikes "
                           "of every spiking layer at every step (NeuroBench)",
    "memory_bytes": "synaptic memory on the chip: one entry per connection at the layer's weight "
                    "bits (the resource model of neurokd.metrics.resources)",
    "weight_bytes": "distinct weights at the layer's weight bits",
    "energy_snn": "the digital model (neurokd.metrics.pricing): per synaptic operation an "
                  "accumulate (binary) or multiply-accumulate (graded), a weight read and the "
                  "target's state read and write; per neuron update its arithmetic and two state "
                  "words read and written; every event written and read once; SRAM access energy "
                  "by the memory's size",
    "macs": "multiply-accumulates of the DNN's Linear and Conv2d layers per sample (biases, "
            "BatchNorm, pooling and activations not counted)",
    "energy_dnn": "the same digital model: MACs and bias adds in fp32 or int8, every weight "
                  "read at every use, inputs read and outputs written once, SRAM access energy "
                  "by the memory's size",
    "neurobench": "NeuroBench's counts: dense operations (every synapse, every step), effective "
                  "MACs (operations of graded events) and accumulates (of binary events), an "
                  "operation counted where the weight is not zero (synops counts every synapse)",
}


# ---------------------------------------------------------------- the DNN
@torch.no_grad()
def teacher_macs(model: nn.Module, input_shape: Sequence[int]) -> Dict[str, Any]:
    """Multiply-accumulates per sample of every Linear and Conv2d call of ``model`` on one input of
    ``input_shape`` (a forward pass with hooks): ``out_features · in_features`` per output position
    for Linear, ``output elements · in_channels / groups · kh · kw`` for Conv2d."""
    rows: List[Dict[str, Any]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            def hook(mod, inputs, output, name=name):
                per_output = (mod.in_features if isinstance(mod, nn.Linear) else
                              mod.in_channels // mod.groups * math.prod(mod.kernel_size))
                rows.append({"layer": name, "kind": type(mod).__name__,
                             "macs": int(output[0].numel()) * int(per_output),
                             "params": int(mod.weight.numel()),
                             "inputs": int(inputs[0][0].numel()), "outputs": int(output[0].numel())})

            handles.append(module.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {"macs": int(sum(r["macs"] for r in rows)), "layers": rows}


def dnn_costs(model: nn.Module, input_shape: Sequence[int], energy: Optional[EnergyFigures]
              ) -> Dict[str, Any]:
    count = teacher_macs(model, input_shape)
    out: Dict[str, Any] = {"kind": "dnn", "macs": count["macs"],
                           "params": int(sum(p.numel() for p in model.parameters())),
                           "layers": count["layers"], "energy_j": None, "energy_int8_j": None,
                           "pricings": None}
    if energy is not None:  # the headline: the digital model, memory counted, as for the SNN
        out["pricings"] = dnn_pricings(count["layers"], energy)
        out["energy_j"] = out["pricings"]["digital_fp32"]["total"]
        out["energy_int8_j"] = out["pricings"]["digital_int8"]["total"]
    return out


# ---------------------------------------------------------------- the SNN
COUNTS = ("events_in", "synops", "synops_nonzero", "neuron_updates", "active_neuron_updates",
          "spikes_out")


def snn_costs(model: nn.Module, counts: Sequence[Dict[str, Any]], samples: int,
              input_bits: int = 0) -> Dict[str, Any]:
    """Resources, activity per inference and energy of an SNN from ``counts`` (``activity_counts``
    summed over ``samples`` samples), per layer and in total, on the model's own profile;
    ``input_bits``: the payload of the first layer's input events (the encoder's)."""
    from neurokd.metrics.resources import chip_fit

    profile: HardwareProfile = model.profile
    energy = profile.energy
    bits = weight_bits(model)
    fit = chip_fit(model.spec, profile, bits, input_bits)  # the rule the export's check applies
    rows = []
    for res, c, b in zip(fit.layers, counts, bits):
        row: Dict[str, Any] = {"layer": res.layer, "kind": res.kind, "neurons": res.neurons,
                               "fan_in": res.fan_in, "synapses": res.synapses, "weight_bits": b,
                               "message_bits": res.message_bits,
                               "memory_bytes": res.memory_bytes,
                               "weight_bytes": (res.params * b + 7) // 8, "cores": res.cores}
        row.update({k: c[k] / samples for k in COUNTS})
        row["activation_sparsity"] = 1.0 - c["spikes_out"] / c["neuron_updates"]
        rows.append(row)
    total: Dict[str, Any] = {k: sum(r[k] for r in rows) for k in
                             ("neurons", "synapses", "memory_bytes", "weight_bytes", "cores") + COUNTS}
    total["activation_sparsity"] = 1.0 - total["spikes_out"] / total["neuron_updates"]
    problem = fit.problem
    out: Dict[str, Any] = {"kind": "snn", "hardware": profile.name, "weight_bits": bits,
                           "window": int(counts[0]["steps"]) if counts else 0, **total,
                           "cores_per_chip": profile.cores_per_chip, "fits": problem is None,
                           "fit_problem": problem, "layers": rows,
                           "neurobench": neurobench_counts(rows),
                           "energy_j": None, "energy_parts_j": None, "pricings": None}
    if energy is not None:  # the headline: the digital model the DNN is priced with too
        loihi = snn_energy(total, energy)
        out["pricings"] = snn_pricings(rows, model.family, profile.state_bits, energy,
                                       loihi["total"])
        digital = out["pricings"]["digital"]
        for row, e in zip(rows, digital["per_layer"]):
            row["energy_j"] = e
        out["energy_j"] = digital["total"]
        out["energy_parts_j"] = {k: v for k, v in digital.items() if k not in ("total", "per_layer")}
    return out


def snn_energy(c: Dict[str, Any], e: EnergyFigures) -> Dict[str, float]:
    """Joules of the operations counted in ``c`` (per inference)."""
    inactive = c["neuron_updates"] - c["active_neuron_updates"]
    parts = {"synops": c["synops"] * e.synop_pj * 1e-12,
             "neuron_updates": (c["active_neuron_updates"] * e.neuron_update_active_pj
                                + inactive * e.neuron_update_inactive_pj) * 1e-12,
             "spikes": c["spikes_out"] * e.spike_pj * 1e-12}
    parts["total"] = parts["synops"] + parts["neuron_updates"] + parts["spikes"]
    return parts


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model``, or a copy of it on the CPU where the counts are made (the caller's model stays
    where it is)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device.type == "cpu" for t in tensors):
        return model
    import copy

    return copy.deepcopy(model).to("cpu")


@torch.no_grad()
def measure(model: nn.Module, meta: Dict[str, Any], ds, seed: int = 0,
            samples: Optional[int] = None, dnn_energy: Optional[EnergyFigures] = None,
            device: Any = None) -> Dict[str, Any]:
    """Costs and test accuracy of ``model`` on the first ``samples`` test samples (all by
    default), encoded exactly as evaluation encodes them (same seed and batches, so the accuracy
    on the whole test split is the one training reported). ``meta``: the SNN's metadata, or {}
    for a DNN, priced with ``dnn_energy``'s MAC figures. An SNN is priced with its own profile.
    ``device``: where the forward passes run (default the CPU); the counts are made on the CPU
    from their outputs. An integer network's outputs are the same on any device; a float one's
    may differ in a spike where float32 sums round differently."""
    from neurokd.training import identity, make_prepare
    from neurokd.training import encoded_batches

    model = _on_cpu(model).eval()
    runner = model
    if device is not None and torch.device(device).type != "cpu":
        import copy

        runner = copy.deepcopy(model).to(device).eval()
    snn = bool(meta)
    prepare = make_prepare(meta["encoder"], meta["timesteps"], model.window_pad) if snn else identity
    correct, seen = 0, 0
    totals: List[Dict[str, Any]] = []
    for xb, yb in encoded_batches(ds.test, prepare, seed, limit=samples):
        if snn:
            outs = [o.cpu() for o in layer_outputs(runner, xb.to(device or "cpu"))]
            counts = activity_counts(model, xb, outs)
            if not totals:
                totals = [dict(c) for c in counts]
            else:
                for t, c in zip(totals, counts):
                    for k in COUNTS:
                        t[k] += c[k]
            pred = model.decode(outs[-1]).argmax(1).numpy()
        else:
            pred = runner(xb.to(device or "cpu")).argmax(1).cpu().numpy()
        correct += int((pred == yb).sum())
        seen += len(yb)
    if seen == 0:
        raise NeurokdError(f"{ds.name}: no test samples to measure the network on")
    if snn:
        out = snn_costs(model, totals, seen, get_encoder(meta["encoder"]).message_bits)
        out["timesteps"] = int(meta["timesteps"])
    else:
        out = dnn_costs(model, ds.input_shape, dnn_energy)
    out.update({"accuracy": correct / seen, "samples": seen})
    return out


# ---------------------------------------------------------------- the report
def build_report(ds, networks: Networks, seed: int = 0, samples: Optional[int] = None,
                 device: Any = None) -> Dict[str, Any]:
    """The report of every network in ``networks`` (name → (model, its SNN metadata, or {} for a
    DNN)), measured on the same test samples. The DNNs are priced with the energy figures of the
    first SNN's profile (loihi2's when there is none)."""
    snn_profiles = [model.profile for model, meta in networks.values() if meta]
    reference: HardwareProfile = snn_profiles[0] if snn_profiles else load_profile("loihi2")
    measured = {name: measure(model, meta, ds, seed, samples, reference.energy, device)
                for name, (model, meta) in networks.items()}
    dnn = [m for m in measured.values() if m["kind"] == "dnn" and m["energy_int8_j"]]
    for m in measured.values():  # against the first DNN in int8, both in the digital model
        if m["kind"] == "snn" and dnn and m["energy_j"]:
            m["dnn_energy_ratio"] = dnn[0]["energy_int8_j"] / m["energy_j"]
    figures = {profile.name: profile.energy.model_dump() if profile.energy else None
               for profile in snn_profiles or [reference]}
    first = next(iter(measured.values()), {})
    return {"dataset": ds.name, "samples": first.get("samples", 0), "hardware": reference.name,
            "energy_figures": figures, "definitions": DEFINITIONS, "pricings": PRICINGS,
            "networks": [{"name": name, **m} for name, m in measured.items()]}


def joules(value: Optional[float]) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} pJ"


def _count(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def figures_line(name: str, e: Optional[Dict[str, Any]], digital: bool = True) -> List[str]:
    """The figures a report priced with, and their sources: the chip's per-event figures, then
    the DNN's arithmetic alone; with ``digital`` (and the figures recorded), the digital model's
    and the microcontroller's first."""
    if e is None:
        return [f"- {name}: the profile gives no energy figures; no energy estimate"]
    lines = []
    d = e.get("digital") if digital else None
    if d:
        lines += [f"- digital model (both sides): add {d['add_int8_pj']:g} / {d['add_int32_pj']:g} / "
                  f"{d['add_fp32_pj']:g} pJ (int8 / int32 / fp32), multiply {d['mul_int8_pj']:g} / "
                  f"{d['mul_fp32_pj']:g} pJ (int8 / fp32), SRAM {d['sram_pj_per_bit']:g} pJ per "
                  f"bit of size + {d['sram_base_pj']:g} pJ per {d['word_bits']}-bit access. "
                  f"Source: {d['source']}",
                  f"- microcontroller reference: {d['mcu_mac_pj']:g} pJ per int8 MAC. Source: "
                  f"{d['mcu_source']}"]
    return lines + [
        f"- {name} chip reference{' (proxy figures)' if e['proxy'] else ''}: synaptic op "
        f"{e['synop_pj']:g} pJ, neuron update {e['neuron_update_active_pj']:g} pJ active / "
        f"{e['neuron_update_inactive_pj']:g} pJ inactive, spike {e['spike_pj']:g} pJ. "
        f"Source: {e['source']}",
        f"- arithmetic alone: MAC {e['mac_fp32_pj']:g} pJ (fp32), {e['mac_int8_pj']:g} pJ "
        f"(int8). Source: {e['baseline_source']}"]


PRICING_COLUMNS = (("digital", "digital model"), ("digital_int8", "digital model, int8"),
                   ("digital_fp32", "digital model, fp32"), ("loihi", "Loihi per-event figures"),
                   ("mcu_int8", "microcontroller, int8"), ("arithmetic_int8", "arithmetic alone, int8"),
                   ("arithmetic_fp32", "arithmetic alone, fp32"))


def pricing_lines(nets: Sequence[Dict[str, Any]]) -> List[str]:
    """Every network's energy per inference under every pricing that applies to it."""
    lines = ["| network | " + " | ".join(label for _, label in PRICING_COLUMNS) + " |",
             "|---|" + "---|" * len(PRICING_COLUMNS)]
    for n in nets:
        p = n.get("pricings") or {}
        lines.append(f"| {n['name']} | " + " | ".join(
            joules(p[k]["total"]) if k in p else "—" for k, _ in PRICING_COLUMNS) + " |")
    return lines


def report_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown (also readable as plain text): the networks side by side, then each
    network layer by layer, the energy figures with their sources, and the definitions."""
    nets = report["networks"]
    lines = [f"# What the networks cost: {report['dataset']}, {report['samples']} test samples", ""]
    lines += ["| network | accuracy | energy / inference | operations / inference | cores | "
              "fits one chip |", "|---|---|---|---|---|---|"]
    for n in nets:
        if n["kind"] == "snn":
            ratio = n.get("dnn_energy_ratio")
            ratio = ("" if not ratio else f" ({ratio:.3g}× less than the DNN's int8)" if ratio >= 1
                     else f" ({1 / ratio:.3g}× more than the DNN's int8)")
            lines.append(f"| {n['name']}, {n['hardware']} | {n['accuracy']:.4f} | "
                         f"{joules(n['energy_j'])}{ratio} | {_count(n['synops'])} synops, "
                         f"{_count(n['neuron_updates'])} neuron updates | {n['cores']} of "
                         f"{n['cores_per_chip']} | {'yes' if n['fits'] else 'no'} |")
        else:
            lines.append(f"| {n['name']} | {n['accuracy']:.4f} | {joules(n['energy_j'])} "
                         f"fp32, {joules(n['energy_int8_j'])} int8 | {_count(n['macs'])} MACs | "
                         "— | — |")
    lines += ["", "Energy: the digital model, the same 45 nm arithmetic and SRAM traffic for both "
              "sides (see Pricings). Every pricing:", ""] + pricing_lines(nets)
    for n in nets:
        lines += ["", f"## {n['name']}", ""]
        if n["kind"] == "dnn":
            lines += [f"{n['params']:,} parameters, {n['macs']:,} MACs per sample.", "",
                      "| layer | kind | MACs | weights |", "|---|---|---|---|"]
            lines += [f"| {r['layer']} | {r['kind']} | {r['macs']:,} | {r['params']:,} |"
                      for r in n["layers"]]
            continue
        fit = (f"fits one {n['hardware']} chip ({n['cores']} of {n['cores_per_chip']} cores)"
               if n["fits"] else f"does NOT fit one {n['hardware']} chip: {n['fit_problem']}")
        lines += [f"{n['hardware']}, weights {'/'.join(str(b) for b in n['weight_bits'])} bits, "
                  f"T = {n['timesteps']} (window {n['window']} steps); {fit}.", "",
                  "| layer | neurons | synapses | bits | synaptic memory (B) | weights (B) | cores "
                  "| events in | synops | neuron updates (active) | spikes out | sparsity | energy |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in n["layers"] + [dict(n, layer="total", kind="", weight_bits="")]:
            name = f"{r['layer']} ({r['kind']})" if r["kind"] else str(r["layer"])
            lines.append(f"| {name} | {r['neurons']:,} | {r['synapses']:,} | {r['weight_bits']} | "
                         f"{r['memory_bytes']:,} | {r['weight_bytes']:,} | {r['cores']} | "
                         f"{_count(r['events_in'])} | {_count(r['synops'])} | "
                         f"{_count(r['neuron_updates'])} ({_count(r['active_neuron_updates'])}) | "
                         f"{_count(r['spikes_out'])} | {r['activation_sparsity']:.4f} | "
                         f"{joules(r['energy_j'])} |")
        if n["energy_parts_j"]:
            p = n["energy_parts_j"]
            lines += ["", "Energy per inference, digital model: " + " + ".join(
                f"{k} {joules(v)}" for k, v in p.items()) + f" = {joules(n['energy_j'])}."]
        nb = n["neurobench"]
        lines += ["", f"NeuroBench counts per inference: dense operations {_count(nb['dense_ops'])}, "
                      f"effective MACs {_count(nb['effective_macs'])} (graded events), effective "
                      f"accumulates {_count(nb['effective_acs'])} (binary events), activation "
                      f"sparsity {n['activation_sparsity']:.4f}."]
    lines += ["", "## Energy figures", ""]
    for name, e in report["energy_figures"].items():
        lines += figures_line(name, e)
        if e is not None:
            lines += static_line(EnergyFigures(**e))
    lines += ["", "## Pricings", ""]
    lines += [f"- {k}: {v}" for k, v in report.get("pricings", PRICINGS).items()]
    lines += ["", "## Definitions", ""]
    lines += [f"- {k}: {v}" for k, v in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """One line per network: accuracy and energy per inference."""
    out = []
    for n in report["networks"]:
        if n["kind"] == "dnn":
            energy = (f"{joules(n['energy_int8_j'])} int8 / {joules(n['energy_j'])} fp32 per "
                      "inference (digital model, memory counted)")
            p = n.get("pricings") or {}
            if "mcu_int8" in p:
                energy += f"; {joules(p['mcu_int8']['total'])} on the microcontroller reference"
            out.append(f"report: {n['name']}: accuracy {n['accuracy']:.4f}, {energy}")
            continue
        extra = "" if n["fits"] else f"; does not fit the chip: {n['fit_problem']}"
        p = n.get("pricings") or {}
        loihi = f"; {joules(p['loihi']['total'])} at Loihi's per-event figures" if "loihi" in p else ""
        out.append(f"report: {n['name']}: accuracy {n['accuracy']:.4f}, {joules(n['energy_j'])} "
                   f"per inference on {n['hardware']} (the same digital model){loihi}{extra}")
    return out


def write_report(out_dir: str | Path, report: Dict[str, Any]) -> List[Path]:
    """Write ``report.json``, ``report.md`` and ``energy_vs_accuracy.png`` into ``out_dir``
    (atomically); the plot only when some network has an energy estimate."""
    from neurokd.fileio import atomic_path, write_json
    from neurokd.metrics.plots import energy_accuracy

    out = Path(out_dir)
    write_json(out / "report.json", report)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report_markdown(report))
    written = [out / "report.json", out / "report.md"]
    points = [(n["name"], n["kind"], n["energy_j"], n.get("energy_int8_j"), n["accuracy"])
              for n in report["networks"] if n["energy_j"]]
    if points:
        written.append(energy_accuracy(points, out / "energy_vs_accuracy.png"))
    return written


def run_report(out_dir: str | Path, ds, networks: Networks, seed: int = 0,
               samples: Optional[int] = None, log: Log = print) -> Dict[str, Any]:
    """Measure, write (``write_report``) and log one line per network: the report every run
    directory that holds a trained SNN carries."""
    report = build_report(ds, networks, seed, samples)
    write_report(out_dir, report)
    for line in summary_lines(report):
        log(line)
    return report


def networks(snns: Sequence[Tuple[nn.Module, Dict[str, Any]]], teacher: Optional[nn.Module] = None,
             teacher_model: str = "") -> Networks:
    """The networks of a run as ``build_report`` takes them: the DNN teacher (if any) first, then
    each (SNN, its metadata), named by ``snn_name``."""
    out: Networks = {}
    if teacher is not None:
        out[f"DNN teacher ({teacher_model})" if teacher_model else "DNN teacher"] = (teacher, {})
    for model, meta in snns:
        out[snn_name(model)] = (model, meta)
    return out


def snn_name(model: nn.Module) -> str:
    """A network's name in reports: float (slayer's 8-bit weights) or quantized, with its bits."""
    if model.family == "sdnn":
        return "SDNN, 8-bit weights"
    if model.quantized:
        kind = "converted" if model.has_bias else "quantized"
        return f"SNN, {kind}, {'/'.join(str(b) for b in model.bits)}-bit weights"
    return "SNN, float (8-bit weights)"
