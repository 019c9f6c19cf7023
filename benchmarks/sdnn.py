"""Sigma-delta conversion against the DNN teacher, on images and radio (not part of the test suite).

Per task and seed: the DNN teacher is trained, converted into a sigma-delta network
(``neurokd convert --neuron sdnn``: graded spikes, 8-bit weights, no fine-tuning) at several delta
thresholds (each hidden layer's, as a fraction of its largest calibrated activation), and every
converted network is measured on the whole test split (accuracy, or the task's own figure),
counted (synaptic operations per inference, any non-zero message an event, each sample from rest)
and run in Lava on test samples spread over the split, every output payload compared.

One cell per (task, seed), stored under ``results/sdnn_cells/``; an interrupted run resumes.

    python benchmarks/sdnn.py                       # every task, 3 seeds
    python benchmarks/sdnn.py --datasets digits --seeds 1
    python benchmarks/sdnn.py --summarize           # the tables again, from the stored cells
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Cell, CellBenchmark, cell_options, parser, t_interval  # noqa: E402

THRESHOLDS = [0.0, 0.05, 0.1, 0.2]
# fine-tuned first (convert --method qkd --sparsity LAMBDA: 8-bit grid, kd + ce, LAMBDA times the
# estimated synops per DNN MAC), then converted at these thresholds
SPARSITY = [0.0, 3.0, 10.0]
TUNED_THRESHOLDS = [0.0, 0.05]
# teachers: benchmarks/convert.py's for images, benchmarks/rf.py's for radio (the split I+/I-/Q+/Q-
# layout with its constant channel, on which rf.md's CUBA students were trained: a sensing MLP on
# the signed layout reached -1.5 dB at Pd 0.9 against -5.2 dB on the split one), read at 8 bits
RF = ["data.split_seed=0", "teacher.epochs=30", "teacher.patience=6", "student.encoder=direct8"]
TASKS: Dict[str, Dict[str, Any]] = {
    "digits": {"budget": ["data.dataset=digits", "data.split_seed=0", "teacher.model=cnn_bn",
                          "teacher.hidden=[16, 32]", "teacher.epochs=40", "student.encoder=direct8"],
               "figure": "accuracy"},
    "mnist": {"budget": ["data.dataset=mnist", "data.split_seed=0", "teacher.model=mlp",
                         "teacher.hidden=[256]", "teacher.epochs=30", "student.encoder=direct8"],
              "figure": "accuracy"},
    "modulation": {"budget": ["data.dataset=modulation", "data.radio={n_frames: 16000}",
                              "teacher.model=cnn1d", *RF], "figure": "mean_accuracy_snr_ge_0"},
    "sensing": {"budget": ["data.dataset=sensing", "data.radio={n_frames: 10000}",
                           "teacher.model=mlp", *RF], "figure": "snr_at_pd90_db"},
    "symbols": {"budget": ["data.dataset=symbols", "teacher.model=mlp", "teacher.hidden=[128,128]",
                           *RF], "figure": "ebn0_at_ber_1e-2_db"},
}
FIGURES = {"accuracy": ("test accuracy", "higher"),
           "mean_accuracy_snr_ge_0": ("mean accuracy at SNR >= 0 dB", "higher"),
           "snr_at_pd90_db": ("SNR (dB) at Pd 0.9, Pfa 0.1, AWGN", "lower"),
           "ebn0_at_ber_1e-2_db": ("Eb/N0 (dB) at BER 1e-2", "lower")}


def task_cell(config: Dict[str, Any], deps: Dict, data_dir: Optional[str]) -> Dict[str, Any]:
    import tempfile

    import torch

    from neurokd import pipeline
    from neurokd.convert.sdnn import convert_sdnn, measure, sparsity_finetune
    from neurokd.deploy.export import read_meta
    from neurokd.hardware import load_profile
    from neurokd.metrics.radio import radio_report
    from neurokd.models.sigma_delta.net import EncodedSDNN
    from neurokd.models.sigma_delta.netx import write_netx
    from neurokd.training import accuracy, identity, logits_of

    torch.set_num_threads(1)
    ds, cfg = common.cell_data(config, data_dir)
    t0 = time.time()
    teacher, tm = pipeline.train_teacher(cfg, ds, progress=False)
    teacher.eval()
    out: Dict[str, Any] = {"teacher_seconds": time.time() - t0, "teacher_epochs": tm["teacher_epochs"],
                           "teacher_macs": common.dnn_macs(teacher, ds.input_shape), "networks": {}}
    encoder = cfg.student.encoder
    receivers = {"teacher": teacher}
    variants = [(f"sdnn_{th:g}", teacher, th, None) for th in config["thresholds"]]
    for lam in config["sparsity"]:
        t0 = time.time()
        c = cfg.convert.model_copy(update={"sparsity": lam})
        dnn, tuned = sparsity_finetune(teacher, ds, encoder, c, cfg.seed)
        for th in config["tuned_thresholds"]:
            variants.append((f"sdnn_ft{lam:g}_{th:g}", dnn, th,
                             {"sparsity": lam, "finetune_seconds": time.time() - t0,
                              "finetune_val_accuracy": tuned["finetune_val_accuracy"]}))
    for name, dnn, th, tuned in variants:
        t0 = time.time()
        snn, m = convert_sdnn(dnn, ds, encoder, load_profile("loihi2"), threshold=th, seed=cfg.seed)
        meta = {**pipeline.snn_meta(cfg, ds), "timesteps": snn.timesteps}
        activity = common.measure_activity(snn, meta, ds, cfg.seed, 512)
        # test accuracy, and the same samples as 8 streams, each frame held for the window and the
        # state kept: what a frame costs once the network runs (no start from rest)
        measured: Dict[str, Any] = {}
        measure(snn, ds, cfg, measured, samples=512)
        with tempfile.TemporaryDirectory() as tmp:
            net = write_netx(snn, Path(tmp) / "n.net", meta)
            v = pipeline.verify(snn, net, ds, read_meta(net), config["lava_samples"], "sim",
                                seed=cfg.seed, progress=False)
        receivers[name] = EncodedSDNN(snn, encoder)
        out["networks"][name] = {
            "threshold": th, "sparsity": None if tuned is None else tuned["sparsity"],
            "accuracy": measured["snn_accuracy"], "activity": activity,
            "stream_synops": measured["synops_per_frame_stream"], "seconds": time.time() - t0,
            "lava_payload_match": v["lava_payload_match"], "lava_samples": v["lava_samples"],
            "lava_samples_exact": v["lava_samples_exact"], "message_overflow": v["state_overflow"],
            "layers": m["layers"], **(tuned or {})}
    out["teacher_accuracy"] = accuracy(teacher, ds.test, identity, logits_of, seed=cfg.seed)
    if pipeline.is_radio(ds):
        with tempfile.TemporaryDirectory() as tmp:
            rep = radio_report(ds, {k: (mdl, {}) for k, mdl in receivers.items()}, Path(tmp), cfg.seed)
        figure = config["figure"]
        for k, row in rep["receivers"].items():
            target = out if k == "teacher" else out["networks"].get(k)
            if target is not None:
                target["figure"] = row.get(figure)
            elif k != "teacher":  # the classical receivers
                out.setdefault("classical", {})[k] = row.get(figure)
    else:
        out["figure"] = out["teacher_accuracy"]
        for row in out["networks"].values():
            row["figure"] = row["accuracy"]
    return out


def plan(task: str, seeds: List[int], lava_samples: int, data_dir: Optional[str]) -> List[Cell]:
    t = TASKS[task]
    return [Cell(f"{task}/s{s}", task_cell, {"budget": t["budget"], "seed": s, "figure": t["figure"],
                                              "thresholds": THRESHOLDS, "sparsity": SPARSITY,
                                              "tuned_thresholds": TUNED_THRESHOLDS,
                                              "lava_samples": lava_samples},
                 {"data_dir": data_dir if task == "mnist" else None}) for s in seeds]


def _stat(values: List[Optional[float]]) -> Dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=float)
    return {"mean": float(v.mean()) if v.size else None, "n": int(v.size), "of": len(values),
            "ci95": t_interval(v) if v.size > 1 else None, "per_seed": list(values)}


def summarize(task: str, results: Dict[str, Dict[str, Any]], seeds: List[int]) -> Dict[str, Any]:
    cells = [results[f"{task}/s{s}"] for s in seeds]
    figure = TASKS[task]["figure"]
    higher = FIGURES[figure][1] == "higher"
    macs = float(np.mean([c["teacher_macs"] for c in cells]))
    rows = {"DNN teacher": {"figure": _stat([c.get("figure") for c in cells]), "macs": macs,
                            "energy_j": common.dnn_energy_j(macs)}}
    for name in cells[0]["networks"]:
        nets = [c["networks"][name] for c in cells]
        gap = [None if (c.get("figure") is None or n.get("figure") is None) else
               (c["figure"] - n["figure"] if higher else n["figure"] - c["figure"])
               for c, n in zip(cells, nets)]
        activity = common.mean_activity([n["activity"] for n in nets])
        label = (f"SDNN, threshold {nets[0]['threshold']:g}" if nets[0].get("sparsity") is None else
                 f"SDNN fine-tuned, sparsity {nets[0]['sparsity']:g}, threshold {nets[0]['threshold']:g}")
        rows[label] = {
            "figure": _stat([n.get("figure") for n in nets]), "gap": _stat(gap),
            "synops": activity["synops"], "synops_per_mac": activity["synops"] / macs,
            "stream_synops": float(np.mean([n["stream_synops"] for n in nets])),
            "energy_j": common.snn_energy_j(activity), "activity": activity,
            "lava_payload_match": min(n["lava_payload_match"] for n in nets),
            "lava_samples": int(sum(n["lava_samples"] for n in nets)),
            "lava_samples_exact": int(sum(n["lava_samples_exact"] for n in nets)),
            "message_overflow": any(n["message_overflow"] for n in nets)}
    classical = {}
    for k in (cells[0].get("classical") or {}):
        classical[k] = _stat([(c.get("classical") or {}).get(k) for c in cells])
    return {"figure": figure, "budget": TASKS[task]["budget"], "rows": rows, "classical": classical,
            "teacher_seconds": float(np.mean([c["teacher_seconds"] for c in cells]))}


def _fmt(stat: Dict[str, Any], digits: int = 3) -> str:
    if stat is None or stat["mean"] is None:
        return "—"
    text = f"{stat['mean']:.{digits}f}"
    if stat["ci95"] is not None:
        text += f" [{stat['ci95'][0]:+.{digits}f}, {stat['ci95'][1]:+.{digits}f}]" if "gap" in stat \
            else f" [{stat['ci95'][0]:.{digits}f}, {stat['ci95'][1]:.{digits}f}]"
    if stat["n"] < stat["of"]:
        text += f" ({stat['of'] - stat['n']} of {stat['of']} never)"
    return text


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# Sigma-delta conversion: the DNN teacher and its sigma-delta network", "",
             "Each hidden layer's threshold is a fraction of its largest calibrated activation. "
             "'synops / inference' runs each sample from rest: a neuron's bias reaches it from the "
             "first step, before its input, so a deep network first sends the biases' effect layer "
             "by layer and then corrects it (up to one message per layer below). 'synops / frame, "
             "stream' runs the same samples as 8 streams, each frame held for the window with the "
             "state kept (consecutive test samples are unrelated, so this is no slowly changing "
             "stream either).", "",
             f"Generated by `benchmarks/sdnn.py` ({results.get('date', '')}); seeds "
             f"{results.get('seeds')}; machine: {results.get('machine', '?')} (CPU only). Mean "
             "[95% t-interval] over seeds. Gap: teacher minus SDNN in the task's figure, paired by "
             "seed (positive: the SDNN is worse). Synaptic operations: per inference, each test "
             "sample from rest (any non-zero graded message to one synapse counts one), on 512 test "
             "samples, against the DNN's multiply-accumulates. Energy: the current model of "
             "`neurokd report` (Loihi 1's per-event figures for the SNN, Horowitz's fp32 MAC with "
             "no memory traffic for the DNN): not yet a fair comparison (issue 30). Lava: every "
             "converted network exported and run in Lava's CPU simulator on test samples spread "
             "over the split, as one stream; 'exact' counts samples whose every output payload, "
             "every step, equals PyTorch's. 'SDNN, threshold F': converted with no fine-tuning (8-bit "
             "weights straight from the DNN); 'fine-tuned, sparsity λ': first fine-tuned for "
             "`convert.epochs` epochs on the 8-bit grid from the DNN (kd + ce) plus λ times the "
             "estimated synaptic operations per DNN MAC, the last epoch kept (λ = 0: "
             "fine-tuning alone).", ""]
    for task, r in results.get("datasets", {}).items():
        label, better = FIGURES[r["figure"]]
        digits = 2 if r["figure"].endswith("db") else 4
        lines += [f"## {task}: {label} ({better} is better)", "",
                  f"Budget `{' '.join(r['budget'])}`.", "",
                  "| network | figure | gap to teacher | synops / inference | synops / DNN MAC | "
                  "synops / frame, stream | energy / inference | Lava exact |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in r["rows"].items():
            if name == "DNN teacher":
                lines.append(f"| {name} | {_fmt(row['figure'], digits)} | | {row['macs']:,.0f} MACs | "
                             f"1 | | {common.joules((row['energy_j'] or {}).get('fp32'))} (fp32) | |")
                continue
            gap = dict(row["gap"], gap=True)
            lines.append(f"| {name} | {_fmt(row['figure'], digits)} | {_fmt(gap, digits)} | "
                         f"{row['synops']:,.0f} | {row['synops_per_mac']:.2f} | "
                         f"{row['stream_synops']:,.0f} | {common.joules(row['energy_j'])} | {row['lava_samples_exact']}/"
                         f"{row['lava_samples']}{' (messages past 16 bits)' if row['message_overflow'] else ''} |")
        for name, stat in (r.get("classical") or {}).items():
            lines.append(f"| {name} (classical) | {_fmt(stat, digits)} | | | | | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(TASKS), 3))
    ap.add_argument("--lava-samples", type=int, default=50)
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    bench = CellBenchmark("sdnn", lambda task: plan(task, seeds, args.lava_samples, args.mnist_dir),
                          lambda task, res: summarize(task, res, seeds), markdown,
                          extra={"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                                 "torch_threads": 1})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
