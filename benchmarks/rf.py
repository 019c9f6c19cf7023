"""Radio workloads against the classical receivers (not part of the test suite).

Per task (``sensing`` in AWGN with known noise power, ``sensing_nu`` with ±1 dB noise uncertainty,
``modulation``, ``symbols``: 2×2 MIMO-OFDM symbol detection, ``symbols_pa``: the same through a
Rapp amplifier at 3 dB input back-off) and per seed, on the same test frames: the classical baseline (the energy detector
for sensing; least-squares channel estimation with LMMSE or ML detection, and LMMSE and ML with the
true channel, for symbols), the DNN teacher, and SNN students trained directly, by co-learning, by QAT at 8 and 4
bits (from the direct student) and by conversion (qkd, T = 16). Every SNN is exported to netx and
checked against Lava's simulator on the first test frames; synaptic operations, neuron updates
and output spikes per inference are measured on the test frames (and priced with the hardware
profile's energy figures, the DNN teacher by its MACs), and model bytes counted at each layer's
bit-width.

Each (task, seed) is one chain run in its own worker process (``--jobs`` at once, one torch thread
each; common.py's ``run_cells``), and every finished receiver is stored as one cell under
``results/rf_cells/``, so an interrupted run resumes where it stopped; checkpoints a later cell
needs are kept in ``benchmarks/.rf_cache/``.

    python benchmarks/rf.py                           # every task × 3 seeds
    python benchmarks/rf.py --tasks sensing --seeds 1 # a quick look
    python benchmarks/rf.py --summarize               # the tables again, from the stored cells

Writes benchmarks/results/rf.json, rf.md and rf.png (after every finished chain), for every task
whose cells are stored, so tasks run at different times end up in one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import ROOT, Cell, run_cells, t_interval, write_results  # noqa: E402

CELLS = ROOT / "benchmarks" / "results" / "rf_cells"
CACHE = ROOT / "benchmarks" / ".rf_cache"

# One budget for every seed of a task; the student spec, T and epochs are the same for every method.
SHARED = ["data.split_seed=0", "student.timesteps=16", "student.hidden=128", "student.epochs=10",
          "student.patience=6", "student.lr=1e-3", "teacher.epochs=30", "teacher.patience=6", "quant.epochs=4",
          "quant.patience=4", "convert.epochs=3", "convert.patience=3"]
TASKS: Dict[str, List[str]] = {
    "sensing": ["data.dataset=sensing", "data.radio={n_frames: 10000}", "teacher.model=mlp",
                "distill.teacher_layer=relu1"],
    "sensing_nu": ["data.dataset=sensing", "data.radio={n_frames: 10000, noise_uncertainty_db: 1.0}",
                   "teacher.model=mlp", "distill.teacher_layer=relu1"],
    "modulation": ["data.dataset=modulation", "data.radio={n_frames: 16000}", "teacher.model=cnn1d",
                   "distill.teacher_layer=relu3"],
    # symbols: two hidden layers and 4-bit graded input spikes (a one-layer, rate-coded student
    # floored at BER 0.12); 78 k training samples, so fewer epochs
    "symbols": ["data.dataset=symbols", "teacher.model=mlp", "teacher.hidden=[128,128]",
                "distill.teacher_layer=relu1", "student.hidden=[128,128]", "student.encoder=direct",
                "student.epochs=6", "student.patience=3", "quant.epochs=2", "quant.patience=2"],
    "symbols_pa": ["data.dataset=symbols", "data.radio={pa: rapp}", "teacher.model=mlp",
                   "teacher.hidden=[128,128]", "distill.teacher_layer=relu1",
                   "student.hidden=[128,128]", "student.encoder=direct", "student.epochs=6",
                   "student.patience=3", "quant.epochs=2", "quant.patience=2"],
}
# conversion's encoder and T where the shared choice (direct, T = 16) does not suit the task:
# the symbol detector's matched-filter inputs need 8-bit graded spikes, and T = 32 halves the
# converted network's BER at 20 dB against T = 16 (plain conversion, one teacher: 9.0e-3 against 1.8e-2)
CONVERT = {"symbols": ["student.encoder=direct8", "student.timesteps=32"],
           "symbols_pa": ["student.encoder=direct8", "student.timesteps=32"]}
METHODS = ["teacher", "direct", "colearn", "qat8", "qat4", "convert"]
LABELS = {"teacher": "DNN teacher", "direct": "SNN direct", "colearn": "SNN co-learned",
          "qat8": "SNN QAT 8-bit", "qat4": "SNN QAT 4-bit", "convert": "SNN converted (qkd)"}


def _config(task: str, seed: int, extra: List[str] = ()):
    from neurokd.config import build_config

    return build_config(overrides=SHARED + TASKS[task] + [f"seed={seed}", *extra])


def _cell_path(task: str, seed: int, method: str) -> Path:
    return CELLS / f"{task}_s{seed}_{method}.json"


def _snn_cell(name: str, model, meta: Dict, ds, work: Path, seed: int, lava_samples: int,
              extra: Dict[str, Any]) -> Dict[str, Any]:
    """Radio figures, Lava spike match, synops and bytes of one SNN."""
    import torch

    from neurokd import pipeline
    from neurokd.deploy.export import read_meta
    from neurokd.metrics.radio import radio_receivers
    from neurokd.metrics.activity import measured_synops, model_bytes
    from neurokd.training import encoded_batches

    net = pipeline.export_snn(model, work / f"{name}.net", meta)
    v = pipeline.verify(model, net, ds, read_meta(net), lava_samples, "sim", seed=seed, progress=False)
    prepare = pipeline.make_prepare(meta["encoder"], meta["timesteps"], model.window_pad)
    xb = torch.cat([x for x, _ in encoded_batches(ds.test, prepare, seed, limit=256)])
    return {"receiver": radio_receivers(ds, {name: (model, meta)}, seed)[name].tolist(),
            "lava_spike_match": v["lava_spike_match"], "lava_samples": v["lava_samples"],
            "lava_backend": v["backend"], "synops": measured_synops(model, xb)["synops"],
            "activity": _activity(model, xb), "model_bytes": model_bytes(model), **extra}


def _activity(model, xb) -> Dict[str, Any]:
    """Per-inference activity on the frames ``xb`` (``neurokd.metrics.activity``), what the
    energy column is priced from."""
    from neurokd.metrics.activity import activity_counts

    rows = activity_counts(model, xb)
    n = int(xb.shape[0])
    out: Dict[str, Any] = {k: float(sum(r[k] for r in rows) / n) for k in common.ACTIVITY}
    out.update(neurons=int(sum(r["neurons"] for r in rows)), window=int(rows[0]["steps"]), samples=n,
               hardware=model.profile.name)
    return out


def run_chain(task: str, seed: int, lava_samples: int) -> None:
    """Every method of one (task, seed), skipping cells already stored."""
    import torch

    from neurokd import pipeline
    from neurokd.fileio import write_json
    from neurokd.metrics.radio import radio_receivers

    torch.set_num_threads(1)
    work = CACHE / f"{task}_s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    CELLS.mkdir(parents=True, exist_ok=True)
    cfg = _config(task, seed)
    ds = pipeline.load_data(cfg)
    todo = [m for m in METHODS if not _cell_path(task, seed, m).is_file()]
    if not todo:
        return
    teacher_path = work / "teacher.pt"
    if not teacher_path.is_file():
        teacher, tm = pipeline.train_teacher(cfg, ds, progress=False)
        pipeline.save_teacher(teacher_path, teacher, cfg, ds)
    teacher = pipeline.load_teacher(teacher_path)
    t0 = time.time()
    if "teacher" in todo:
        receiver = radio_receivers(ds, {"t": (teacher, {})}, seed)["t"]
        write_json(_cell_path(task, seed, "teacher"), {"receiver": receiver.tolist(),
                                                       "macs": common.dnn_macs(teacher, ds.input_shape)})
    direct_path = work / "direct.pt"
    if {"direct", "qat8", "qat4"} & set(todo) and not direct_path.is_file():
        t0 = time.time()
        snn, m = pipeline.train_snn(cfg, ds, progress=False)
        pipeline.save_snn(direct_path, snn, cfg, ds)
        write_json(work / "direct_train.json", {"seconds": time.time() - t0, "epochs": m["snn_epochs"]})
    meta = pipeline.snn_meta(cfg, ds)
    if "direct" in todo:
        snn, meta = pipeline.load_snn(direct_path)
        extra = json.loads((work / "direct_train.json").read_text())
        write_json(_cell_path(task, seed, "direct"),
                   _snn_cell("direct", snn, meta, ds, work, seed, lava_samples, extra))
    if "colearn" in todo:
        c = _config(task, seed, ["distill.method=colearn"])
        t0 = time.time()
        student, _, m = pipeline.train_distilled(c, ds, teacher_path, progress=False)
        write_json(_cell_path(task, seed, "colearn"),
                   _snn_cell("colearn", student, pipeline.snn_meta(c, ds), ds, work, seed,
                             lava_samples, {"seconds": time.time() - t0, "epochs": m["snn_epochs"]}))
    for bits in (8, 4):
        method = f"qat{bits}"
        if method in todo:
            snn, meta = pipeline.load_snn(direct_path)
            c = _config(task, seed, [f"quant.bits={bits}"])
            t0 = time.time()
            q, m = pipeline.quantize(snn, meta, c, ds, progress=False)
            write_json(_cell_path(task, seed, method),
                       _snn_cell(method, q, pipeline.snn_meta(c, ds), ds, work, seed, lava_samples,
                                 {"seconds": time.time() - t0, "quant_method": c.quant.method}))
    if "convert" in todo:
        c = _config(task, seed, ["student.encoder=direct", "convert.method=qkd", *CONVERT.get(task, [])])
        t0 = time.time()
        snn, m = pipeline.convert(c, ds, teacher_path, progress=False)
        write_json(_cell_path(task, seed, "convert"),
                   _snn_cell("convert", snn, pipeline.snn_meta(c, ds), ds, work, seed, lava_samples,
                             {"seconds": time.time() - t0}))


# ---------------------------------------------------------------- summary
def _load_cells(task: str, seeds: List[int]) -> Dict[str, Dict[int, Dict]]:
    out: Dict[str, Dict[int, Dict]] = {}
    for m in METHODS:
        for s in seeds:
            p = _cell_path(task, s, m)
            if p.is_file():
                out.setdefault(m, {})[s] = json.loads(p.read_text())
    return out


def _snn_columns(cells: Dict[str, Dict[int, Dict]], name: str, seeds: List[int],
                 arch: Dict[str, float]) -> Dict[str, Any]:
    """Lava match (worst seed), Lava samples, synops, energy and bytes of a spiking receiver; the
    teacher's MACs and energy; {} otherwise. ``arch``: per method, what the architecture alone
    gives (neuron updates per inference; the teacher's MACs), for cells stored without them."""
    method = next((m for m in METHODS if LABELS[m] == name), None)
    if method is None:
        return {}
    c = [cells[method][s] for s in seeds]
    if method == "teacher":
        macs = c[0].get("macs")
        out = {"macs": macs if macs is not None else arch["teacher"]}
        if macs is None:
            out["macs_from"] = "architecture"
        out["energy_j"] = common.dnn_energy_j(out["macs"])
        return out
    out = {"lava_spike_match": min(x["lava_spike_match"] for x in c),
           "lava_samples": int(sum(x["lava_samples"] for x in c)),
           "synops": float(np.mean([x["synops"] for x in c])), "model_bytes": int(c[0]["model_bytes"])}
    activity = common.mean_activity([x.get("activity") for x in c])
    if activity is not None:
        out["activity"] = activity
        out["energy_j"] = common.snn_energy_j(activity)
    else:
        # the exact figure where a seed recorded its activity, bounds where it recorded synops only
        bounds = np.array([[common.snn_energy_j(x["activity"])] * 2 if x.get("activity") else
                           common.snn_energy_bounds_j(x["synops"], arch[method]) for x in c])
        out["neuron_updates_from_architecture"] = arch[method]
        out["energy_j_bounds"] = [float(bounds[:, 0].mean()), float(bounds[:, 1].mean())]
    return out


def _architecture(task: str, ds) -> Dict[str, float]:
    """Per spiking method, the neuron updates per inference its architecture gives (neurons ×
    (T + one frame per layer)), and the DNN teacher's MACs: what the energy column needs from
    cells stored before their activity was recorded. No training: the counts depend on the
    layers' shapes only."""
    from neurokd import pipeline
    from neurokd.models.teachers import build_teacher
    from neurokd.convert.dnn import dnn_stages, stages_spec

    cfg = _config(task, 0)
    spec = pipeline.student_spec(cfg, ds)
    out = {m: common.spec_neuron_updates(spec, cfg.student.timesteps) for m in ("direct", "colearn", "qat8", "qat4")}
    c = _config(task, 0, ["student.encoder=direct", "convert.method=qkd", *CONVERT.get(task, [])])
    teacher = build_teacher(c.teacher.model, ds.input_shape, ds.num_classes, hidden=c.teacher.hidden).eval()
    out["convert"] = common.spec_neuron_updates(stages_spec(dnn_stages(teacher, ds.input_shape), ds.input_shape),
                                                c.student.timesteps)
    out["teacher"] = float(common.dnn_macs(teacher, ds.input_shape))
    return out


def _mean_ci(values: List[float]) -> Dict[str, Any]:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return {"mean": float(np.mean(v)) if v else None, "ci95": t_interval(np.array(v)) if len(v) > 1 else None,
            "per_seed": values, "n": len(v)}


def summarize_task(task: str, seeds: List[int]) -> Optional[Dict[str, Any]]:
    from neurokd import pipeline
    from neurokd.metrics.radio import ENERGY, modulation_report, sensing_report

    cells = _load_cells(task, seeds)
    if not cells:
        return None
    ds = pipeline.load_data(_config(task, 0))
    if ds.task == "symbols":
        return summarize_symbols(task, ds, cells, seeds)
    detection = ds.task == "detection"
    per_seed: Dict[int, Dict[str, Any]] = {}
    for s in seeds:
        receivers = {LABELS[m]: np.array(cells[m][s]["receiver"]) for m in METHODS
                     if s in cells.get(m, {})}
        if not receivers:
            continue
        rep = sensing_report(ds, receivers) if detection else modulation_report(ds, receivers)
        per_seed[s] = rep
    names = ([ENERGY] if detection else []) + [LABELS[m] for m in METHODS]
    arch = _architecture(task, ds)
    rows: Dict[str, Any] = {}
    for name in names:
        reps = [(s, r["receivers"][name]) for s, r in per_seed.items() if name in r["receivers"]]
        if not reps:
            continue
        row: Dict[str, Any] = {"seeds": [s for s, _ in reps]}
        if detection:
            for p in (0.1, 0.01):
                key = f"pfa_{p:g}"
                row[f"snr_at_pd90_db_{key}"] = _mean_ci([r[key]["snr_at_pd90_db"] for _, r in reps])
                row[f"pfa_achieved_{key}"] = float(np.mean([r[key]["pfa_achieved"] for _, r in reps]))
                snrs = list(reps[0][1][key]["pd"])
                row[f"pd_{key}"] = {k: float(np.mean([r[key]["pd"][k] for _, r in reps])) for k in snrs}
                row[f"mean_pd_{key}"] = _mean_ci([float(np.mean(list(r[key]["pd"].values())))
                                                  for _, r in reps])
            row["auc"] = _mean_ci([r["auc"] for _, r in reps])
        else:
            row["mean_accuracy_snr_ge_0"] = _mean_ci([r["mean_accuracy_snr_ge_0"] for _, r in reps])
            snrs = list(reps[0][1]["accuracy_per_snr"])
            row["accuracy_per_snr"] = {k: float(np.mean([r["accuracy_per_snr"][k] for _, r in reps]))
                                       for k in snrs}
        row.update(_snn_columns(cells, name, row["seeds"], arch))
        rows[name] = row
    out: Dict[str, Any] = {"frames_test": int(len(ds.test)), "budget": SHARED + TASKS[task],
                           "receivers": rows, "goals": {}}

    def paired(a: str, b: str, metric) -> Optional[Dict[str, Any]]:
        return _paired(per_seed, a, b, metric)

    q8 = LABELS["qat8"]
    if detection and task == "sensing":
        for p in (0.1, 0.01):
            key = f"pfa_{p:g}"
            out["goals"][f"qat8_minus_energy_snr_at_pd90_db_{key}"] = paired(
                q8, ENERGY, lambda r, k=key: (r[k]["snr_at_pd90_db"] if r[k]["snr_at_pd90_db"] is not None
                                             else float("nan")))
    if detection and task == "sensing_nu":
        for p in (0.1, 0.01):
            key = f"pfa_{p:g}"
            out["goals"][f"qat8_minus_energy_mean_pd_{key}"] = paired(
                q8, ENERGY, lambda r, k=key: float(np.mean(list(r[k]["pd"].values()))))
    if not detection:
        acc = lambda r: r["mean_accuracy_snr_ge_0"]  # noqa: E731
        out["goals"]["teacher_minus_qat8_mean_acc_ge0"] = paired(LABELS["teacher"], q8, acc)
        out["goals"]["direct_minus_qat4_mean_acc_ge0"] = paired(LABELS["direct"], LABELS["qat4"], acc)
        out["goals"]["colearn_minus_direct_mean_acc_ge0"] = paired(LABELS["colearn"], LABELS["direct"], acc)
    if detection:
        out["goals"]["colearn_minus_direct_auc"] = paired(LABELS["colearn"], LABELS["direct"],
                                                          lambda r: r["auc"])
    return out


def _paired(per_seed: Dict[int, Dict[str, Any]], a: str, b: str, metric) -> Optional[Dict[str, Any]]:
    """a − b of ``metric(report row)`` over the seeds where both have a finite value."""
    common = [s for s in per_seed if a in per_seed[s]["receivers"] and b in per_seed[s]["receivers"]]
    d = [metric(per_seed[s]["receivers"][a]) - metric(per_seed[s]["receivers"][b]) for s in common]
    d = [x for x in d if x is not None and np.isfinite(x)]
    if not d:
        return None
    return {"a": a, "b": b, "mean": float(np.mean(d)), "ci95": t_interval(np.array(d)) if len(d) > 1
            else None, "per_seed": d}


def summarize_symbols(task: str, ds, cells: Dict[str, Dict[int, Dict]], seeds: List[int]
                      ) -> Dict[str, Any]:
    """BER against Eb/N0 of every receiver per seed, Eb/N0 at BER 1e-2 and BER at 20 dB over
    seeds, and the issue's goals as paired differences."""
    from neurokd.metrics.radio import LS_LMMSE, classical_symbol_decisions, symbols_report

    classical = classical_symbol_decisions(ds)  # the same test samples for every seed (split_seed 0)
    per_seed: Dict[int, Dict[str, Any]] = {}
    for s in seeds:
        receivers = {LABELS[m]: np.array(cells[m][s]["receiver"]) for m in METHODS
                     if s in cells.get(m, {})}
        if receivers:
            per_seed[s] = symbols_report(ds, receivers, classical=classical)
    names = list(classical) + [LABELS[m] for m in METHODS]
    arch = _architecture(task, ds)
    nan = float("nan")
    rows: Dict[str, Any] = {}
    for name in names:
        reps = [(s, r["receivers"][name]) for s, r in per_seed.items() if name in r["receivers"]]
        if not reps:
            continue
        row: Dict[str, Any] = {"seeds": [s for s, _ in reps],
                               "ebn0_at_ber_1e-2_db": _mean_ci([r["ebn0_at_ber_1e-2_db"] for _, r in reps]),
                               "ber_at_20db": _mean_ci([r["ber_at_20db"] for _, r in reps]),
                               "ber_per_ebn0": {k: float(np.mean([r["ber_per_ebn0"][k] for _, r in reps]))
                                                for k in reps[0][1]["ber_per_ebn0"]},
                               "ser_per_ebn0": {k: float(np.mean([r["ser_per_ebn0"][k] for _, r in reps]))
                                                for k in reps[0][1]["ser_per_ebn0"]}}
        row.update(_snn_columns(cells, name, row["seeds"], arch))
        rows[name] = row
    at = lambda r: nan if r["ebn0_at_ber_1e-2_db"] is None else r["ebn0_at_ber_1e-2_db"]  # noqa: E731
    b20 = lambda r: nan if r["ber_at_20db"] is None else r["ber_at_20db"]  # noqa: E731
    goals: Dict[str, Any] = {
        "qat8_minus_ls_lmmse_ebn0_at_ber_1e-2_db": _paired(per_seed, LABELS["qat8"], LS_LMMSE, at),
        "colearn_minus_direct_ebn0_at_ber_1e-2_db": _paired(per_seed, LABELS["colearn"], LABELS["direct"], at),
        "colearn_minus_direct_ber_at_20db": _paired(per_seed, LABELS["colearn"], LABELS["direct"], b20),
        "qat8_minus_ls_lmmse_ber_at_20db": _paired(per_seed, LABELS["qat8"], LS_LMMSE, b20),
        "convert_minus_ls_lmmse_ebn0_at_ber_1e-2_db": _paired(per_seed, LABELS["convert"], LS_LMMSE, at),
        "convert_minus_ls_lmmse_ber_at_20db": _paired(per_seed, LABELS["convert"], LS_LMMSE, b20)}
    return {"samples_test": int(len(ds.test)), "bits_test": int(per_seed[next(iter(per_seed))]["bits"])
            if per_seed else 0, "budget": SHARED + TASKS[task],
            "convert_budget": CONVERT.get(task, []), "radio": ds.radio,
            "receivers": rows, "goals": goals}


def _fmt(stat: Optional[Dict[str, Any]], digits: int = 2, sci: bool = False) -> str:
    """Mean [95% interval] over seeds; ``sci``: a rate in scientific notation, interval floored at 0."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    ci = stat.get("ci95")
    text = f"{stat['mean']:.2e}" if sci else f"{stat['mean']:.{digits}f}"
    if ci and np.isfinite(ci[0]):
        text += (f" [{max(ci[0], 0):.1e}, {ci[1]:.1e}]" if sci
                 else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]")
    if stat.get("n") is not None and stat["n"] < len(stat.get("per_seed", [])):
        text += f" ({stat['n']}/{len(stat['per_seed'])} seeds reach it)"
    return text


def _synops(row: Dict[str, Any]) -> str:
    return f"{row['synops']:.3g}" if "synops" in row else ""


def _energy(row: Dict[str, Any], notes: set) -> str:
    """The energy column: exact, a range (¹) where the cells recorded synops only, the teacher's
    fp32 MAC energy (² where its MACs come from the architecture); blank for classical receivers."""
    if "macs" in row:
        e = row.get("energy_j") or {}
        if row.get("macs_from") == "architecture":
            notes.add(2)
        return f"{common.joules(e.get('fp32'))} (fp32 MACs){'²' if row.get('macs_from') else ''}"
    if "energy_j_bounds" in row:
        notes.add(1)
        lo, hi = row["energy_j_bounds"]
        return f"{common.joules(lo)} – {common.joules(hi)}¹"
    if "energy_j" in row:
        return common.joules(row["energy_j"])
    if "synops" in row:
        notes.add(3)
        return "—³"
    return ""


NOTES = {
    1: "¹ a range, not a measurement: the cells of these receivers were stored before the activity "
       "counts were, with their synaptic operations but not the active share of the neuron updates "
       "nor the output spikes. The neuron updates are counted from the architecture (neurons × (T + "
       "one frame per layer)); the low end prices every update inactive with no spike, the high end "
       "every update active with one spike. A new run records the exact figure.",
    2: "² the teacher's MACs counted on its architecture (the count does not depend on the weights): "
       "its cells were stored before the MACs were.",
    3: "³ not recorded by the run that stored these cells.",
}


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# Radio workloads against the classical receivers", "",
             f"Generated by `benchmarks/rf.py` ({results['date']}) on {results['machine']}; seeds "
             f"{results['seeds']}; every figure is on the same test frames for every receiver. "
             "Means over seeds with 95% t intervals in brackets. Sensing thresholds are set on the "
             "H0 test frames with the randomised Neyman-Pearson rule at ties, so every receiver "
             "runs at the same false-alarm rate. Lava: the exported network in Lava's CPU "
             "simulator against PyTorch on the first test frames of every seed. A receiver "
             "whose Pd never reaches 0.9 on the grid has no SNR at Pd 0.9 for that seed; the paired "
             "differences then use the seeds where both receivers have one. Synaptic operations "
             "and energy are per inference, on the first 256 test frames of every seed (mean over "
             "seeds), priced as the last paragraph says.", ""]
    for task, r in results["tasks"].items():
        notes: set = set()
        size = (f"{r['frames_test']} test frames" if "frames_test" in r else
                f"{r['samples_test']} test samples ({r['bits_test']} bits)")
        conv = (f" Conversion adds `{' '.join(r['convert_budget'])}`."
                if r.get("convert_budget") else "")
        lines += [f"## {task}", "", f"Budget (a later setting overrides an earlier one): "
                  f"`{' '.join(r['budget'])}`; {size}.{conv}", ""]
        if task.startswith("symbols"):
            lines += ["| receiver | Eb/N0 at BER 1e-2 (dB) | BER at 20 dB | Lava match | "
                      "synops/inference | energy/inference | bytes |", "|---|---|---|---|---|---|---|"]
            for name, row in r["receivers"].items():
                lines.append(f"| {name} | {_fmt(row['ebn0_at_ber_1e-2_db'])} | "
                             f"{_fmt(row['ber_at_20db'], sci=True)} | {row.get('lava_spike_match', '')} | "
                             f"{_synops(row)} | {_energy(row, notes)} | {row.get('model_bytes', '')} |")
        elif task.startswith("sensing"):
            lines += ["| receiver | SNR at Pd 0.9, Pfa 0.1 (dB) | SNR at Pd 0.9, Pfa 0.01 (dB) | "
                      "mean Pd over SNRs, Pfa 0.1 | AUC | Lava match | synops/inference | "
                      "energy/inference | bytes |", "|---|---|---|---|---|---|---|---|---|"]
            for name, row in r["receivers"].items():
                lines.append(f"| {name} | {_fmt(row['snr_at_pd90_db_pfa_0.1'])} | "
                             f"{_fmt(row['snr_at_pd90_db_pfa_0.01'])} | {_fmt(row['mean_pd_pfa_0.1'], 3)} | "
                             f"{_fmt(row['auc'], 3)} | {row.get('lava_spike_match', '')} | "
                             f"{_synops(row)} | {_energy(row, notes)} | {row.get('model_bytes', '')} |")
        else:
            lines += ["| receiver | mean accuracy, SNR ≥ 0 dB | Lava match | synops/inference | "
                      "energy/inference | bytes |", "|---|---|---|---|---|---|"]
            for name, row in r["receivers"].items():
                lines.append(f"| {name} | {_fmt(row['mean_accuracy_snr_ge_0'], 4)} | "
                             f"{row.get('lava_spike_match', '')} | {_synops(row)} | "
                             f"{_energy(row, notes)} | {row.get('model_bytes', '')} |")
        if notes:
            lines += [""] + [NOTES[n] for n in sorted(notes)]
        lines += ["", "Paired differences (a − b) over seeds:", ""]
        for goal, g in r["goals"].items():
            if g is None:
                lines.append(f"- {goal}: not measurable (a receiver never reached the target)")
            elif g["ci95"] is None:
                lines.append(f"- {goal}: {g['mean']:+.3g} (one seed: {g['a']} − {g['b']})")
            else:
                lo, hi = g["ci95"]
                lines.append(f"- {goal}: {g['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                             f"({g['a']} − {g['b']}, per seed {', '.join(f'{x:+.3f}' for x in g['per_seed'])})")
        lines.append("")
    figures = common.energy_figures_lines(results, teacher=True)
    if figures:
        lines += figures + [""]
    return "\n".join(lines)


def plot(results: Dict[str, Any], path: Path) -> None:
    from neurokd.plotting import pyplot, save_figure

    tasks = list(results["tasks"])
    if not tasks:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        r = results["tasks"][task]
        if task.startswith("symbols"):
            for name, row in r["receivers"].items():
                ber = np.array(list(row["ber_per_ebn0"].values()))
                style = dict(ls="--", lw=1.1) if name not in LABELS.values() else dict(lw=1.6)
                ax.semilogy([float(k) for k in row["ber_per_ebn0"]], np.where(ber > 0, ber, np.nan),
                            marker="o", ms=3, label=name, **style)
            ax.axhline(1e-2, color="tab:red", lw=0.8, ls=":")
            ax.set(xlabel="Eb/N0 (dB)", ylabel="uncoded BER", title=task)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6)
            continue
        for name, row in r["receivers"].items():
            curve = row.get("pd_pfa_0.1") or row.get("accuracy_per_snr")
            snr = [float(k) for k in curve]
            ax.plot(snr, list(curve.values()), marker="o", ms=3, label=name)
        ax.set(xlabel="SNR (dB)", ylabel="Pd at Pfa 0.1" if task.startswith("sensing") else "accuracy",
               title=task, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def summarize(tasks: List[str], seeds: List[int], out: Path) -> Dict[str, Any]:
    e = common.profile_energy("loihi2")
    results = {"date": time.strftime("%Y-%m-%d"), "seeds": seeds,
               "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU (Lava CPU simulator)",
               "hardware": "loihi2", "energy_figures": e.model_dump() if e is not None else None,
               "tasks": {}}
    for task in tasks:
        r = summarize_task(task, seeds)
        if r is not None:
            results["tasks"][task] = r
    write_results(out, "rf", results, markdown)
    plot(results, out / "rf.png")
    return results


def chain_cell(config: Dict[str, Any], deps: Dict) -> Dict[str, Any]:
    """One (task, seed) chain in a worker process; it stores its receivers' cells itself."""
    run_chain(config["task"], config["seed"], config["lava_samples"])
    return {}


def main(argv=None) -> int:
    from neurokd.interrupts import Interrupted

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chains run at once")
    ap.add_argument("--lava-samples", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--summarize", action="store_true",
                    help="run nothing: rebuild rf.json, rf.md and rf.png from the stored cells")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    if args.summarize:
        print(markdown(summarize(list(TASKS), seeds, Path(args.out))))
        return 0
    # the chains skip the receivers already stored, so they always run (there is no chain store)
    chains = [Cell(f"{t}/s{s}", chain_cell, {"task": t, "seed": s, "lava_samples": args.lava_samples})
              for s in seeds for t in args.tasks]
    try:
        run = run_cells(chains, None, args.jobs,
                        on_result=lambda key, _run: summarize(list(TASKS), seeds, Path(args.out)))
    except Interrupted as exc:
        return 128 + exc.signum
    print(markdown(summarize(list(TASKS), seeds, Path(args.out))))  # every task with stored cells
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
