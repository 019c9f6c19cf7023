"""Quantization-aware training for Loihi: methods × bit-widths (not part of the test suite).

Per dataset and seed, one float SNN is trained; each method then quantizes that same SNN at 8, 6,
4 and 2 bits with the same QAT epoch budget. Accuracies are measured in Loihi numerics (the
batched emulator, which equals Lava's fixed-point run). For seed 0 each quantized network is
exported and run in Lava on 100 test samples (spike match). Finally the emulator and Lava run the
same 200 samples of one network side by side: agreement and samples per second. Synaptic
operations, neuron updates and output spikes per inference are measured on the test samples, and
priced with the hardware profile's energy figures.

Every float SNN (dataset, seed) is a cell, and so is every (method, bits) quantization of it; the
cells run in ``--jobs`` worker processes (one torch thread each) and each finished one is stored
under ``results/qat_cells/``, so an interrupted run resumes where it stopped (see common.py).

    python benchmarks/qat.py                                   # digits and mnist, 3 seeds
    python benchmarks/qat.py --datasets digits --seeds 1       # a quick look
    python benchmarks/qat.py --summarize                       # the tables again, from what is stored

Writes benchmarks/results/qat.json and qat.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

import common
from common import Cell, CellBenchmark, cell_options, parser, t_interval
from neurokd import pipeline
from neurokd.config import QuantConfig
from neurokd.deploy.export import read_meta
from neurokd.quant.qat import quantize_snn

METHODS = ["ptq", "fixed_qat", "lsq", "lsq_prob", "lsq_prob_kd"]
BITS = [8, 6, 4, 2]
BUDGETS: Dict[str, Dict] = {
    "digits": {"snn": ["student.timesteps=16", "student.hidden=128", "student.epochs=20",
                       "student.patience=20"], "qat_epochs": 6},
    "mnist": {"snn": ["student.timesteps=12", "student.hidden=128", "student.epochs=8",
                      "student.patience=8"], "qat_epochs": 2},
}


def emulator_vs_lava(model, ds, meta, net, samples: int = 200) -> Dict:
    prepare = pipeline.make_prepare(meta["encoder"], meta["timesteps"], model.window_pad)
    frames, _ = pipeline.lava_frames(prepare, ds.test, samples, seed=0)
    model.eval()
    with torch.no_grad():
        model(frames[:8])  # warm-up
        t0 = time.perf_counter()
        emu = model(frames).numpy()
        emu_s = time.perf_counter() - t0
    res = pipeline.run_on_lava(net, ds, read_meta(net), samples, "sim", seed=0, progress=False)
    lava = res["_spikes"]
    return {"samples": samples, "agreement": float((emu == lava).mean()),
            "samples_exact": int((emu == lava).all(axis=(1, 2)).sum()),
            "emulator_samples_per_s": samples / emu_s, "lava_samples_per_s": res["lava_samples_per_s"],
            "speedup": (samples / emu_s) / res["lava_samples_per_s"],
            "note": "Lava's time includes compiling and starting the run (about 1 s)"}


def float_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """The float SNN of one (dataset, seed), saved for the quantization cells."""
    ds, cfg = common.cell_data(config, data_dir)
    snn, m = pipeline.train_snn(cfg, ds, progress=False)
    pipeline.save_snn(checkpoint, snn, cfg, ds)
    print(f"[{config['dataset']}] seed {config['seed']} float SNN {m['snn_accuracy']:.4f}", flush=True)
    return {"snn_accuracy": m["snn_accuracy"], "snn_epochs": m["snn_epochs"]}


def quant_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """One method at one bit-width on the float SNN of its (dataset, seed): accuracy, bytes,
    activity; Lava's spike match where ``lava_samples``."""
    ds, cfg = common.cell_data(config, data_dir)
    seed, method, bits = config["seed"], config["method"], config["bits"]
    snn, _ = pipeline.load_snn(checkpoint)
    prepare = pipeline.make_prepare(cfg.student.encoder, cfg.student.timesteps, snn.window_pad)
    qc = QuantConfig(method=method, bits=bits, epochs=config["qat_epochs"], patience=config["qat_epochs"])
    model, m = quantize_snn(snn, ds, prepare, qc, seed=seed, progress=False)
    meta = pipeline.snn_meta(cfg, ds)
    out: Dict[str, Any] = {"quant_accuracy": m["quant_accuracy"],
                           "float_snn_accuracy": m["float_snn_accuracy"],
                           "weight_bytes": m["weight_bytes"],
                           "qat_epoch_seconds": m.get("qat_epoch_seconds", 0.0),
                           "activity": common.measure_activity(model, meta, ds, seed,
                                                               config["energy_samples"])}
    print(f"[{config['dataset']}] seed {seed} {bits} bits {method:12s}: {m['quant_accuracy']:.4f} "
          f"(float {m['float_snn_accuracy']:.4f})", flush=True)
    if config["lava_samples"]:
        with tempfile.TemporaryDirectory() as tmp:
            net = pipeline.export_snn(model, Path(tmp) / f"{method}_{bits}.net", meta, ds)
            v = pipeline.verify(model, net, ds, read_meta(net), config["lava_samples"], "sim",
                                seed=seed, progress=False)
            out["lava_spike_match"] = v["lava_spike_match"]
            out["lava_samples"] = v["lava_samples"]
            if config["emulator_vs_lava"]:
                out["emulator_vs_lava"] = emulator_vs_lava(model, ds, meta, net, config["emulator_vs_lava"])
                out["emulator_vs_lava"]["network"] = f"{method}, {bits} bits, seed {seed}"
    return out


def plan(name: str, seeds: List[int], methods: List[str], bits_list: List[int], qat_epochs: Optional[int],
         overrides: List[str], lava_samples: int, energy_samples: int, data_dir: Optional[str],
         cache: str) -> List[Cell]:
    """The cells of one dataset: a float SNN per seed, then every (method, bits) of it (the
    network exported to Lava on the first seed, and compared with the emulator at 4 bits with
    lsq_prob_kd)."""
    b = BUDGETS[name]
    budget = [f"data.dataset={name}", "data.split_seed=0", *b["snn"], *overrides]
    epochs = qat_epochs or b["qat_epochs"]
    cells: List[Cell] = []
    for seed in seeds:
        fcfg = {"dataset": name, "budget": budget, "seed": seed}
        key = f"{name}/s{seed}/float"
        ckpt = common.artifact(cache, "qat", key, fcfg)
        cells.append(Cell(key, float_cell, fcfg, {"checkpoint": ckpt, "data_dir": data_dir},
                          artifacts=(ckpt,)))
        for bits in bits_list:
            for method in methods:
                first = seed == 0
                qcfg = {**fcfg, "method": method, "bits": bits, "qat_epochs": epochs,
                        "lava_samples": lava_samples if first else 0,
                        "emulator_vs_lava": 200 if first and lava_samples and bits == 4
                        and method == "lsq_prob_kd" else 0,
                        "energy_samples": energy_samples}
                cells.append(Cell(f"{name}/s{seed}/{method}_{bits}", quant_cell, qcfg,
                                  {"checkpoint": ckpt, "data_dir": data_dir}, needs=(key,)))
    return cells


def summarize(name: str, results: Dict[str, Dict], seeds: List[int], methods: List[str],
              bits_list: List[int], plan_cells: List[Cell]) -> Dict:
    """The dataset's entry of qat.json from its cells (the same as one process running them)."""
    first = next(c.config for c in plan_cells if "method" in c.config)
    base = list(first["budget"])
    data_dir = plan_cells[0].args.get("data_dir")
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    out: Dict = {"budget": base, "qat_epochs": first["qat_epochs"], "seeds": seeds,
                 "float_snn_per_seed": [], "methods": {m: {} for m in methods}}
    for seed in seeds:
        for bits in bits_list:
            for method in methods:
                c = results[f"{name}/s{seed}/{method}_{bits}"]
                if bits == bits_list[0] and method == methods[0]:
                    out["float_snn_per_seed"].append(c["float_snn_accuracy"])
                row = out["methods"][method].setdefault(str(bits), {"per_seed": [], "qat_epoch_seconds": [],
                                                                    "activity_per_seed": []})
                row["per_seed"].append(c["quant_accuracy"])
                row["weight_bytes"] = c["weight_bytes"]
                row["qat_epoch_seconds"].append(c["qat_epoch_seconds"])
                row["activity_per_seed"].append(c.get("activity"))
                for k in ("lava_spike_match", "lava_samples"):
                    if k in c:
                        row[k] = c[k]
                if "emulator_vs_lava" in c:
                    out["emulator_vs_lava"] = c["emulator_vs_lava"]
    fl = np.array(out["float_snn_per_seed"])
    out["float_snn_accuracy"] = float(fl.mean())
    for method, rows in out["methods"].items():
        for bits, row in rows.items():
            acc = np.array(row["per_seed"])
            loss = fl - acc  # paired by seed: the same float SNN
            row.update({"mean": float(acc.mean()), "ci95": t_interval(acc),
                        "loss_vs_float": float(loss.mean()), "loss_vs_float_ci95": t_interval(loss),
                        "activity": common.mean_activity(row["activity_per_seed"])})
            if method != "ptq" and "ptq" in out["methods"]:
                gain = acc - np.array(out["methods"]["ptq"][bits]["per_seed"])
                row.update({"gain_vs_ptq": float(gain.mean()), "gain_vs_ptq_ci95": t_interval(gain)})
    return out


def refresh(results: Dict) -> Dict:
    """Energy of every row that recorded its activity."""
    return common.refresh_energy(
        results, lambda r: (row for rows in r["methods"].values() for row in rows.values()),
        teacher=False)


def markdown(results: Dict) -> str:
    lines = ["# Quantization-aware training for Loihi", "",
             f"Generated by `benchmarks/qat.py` ({results['date']}); seeds {results['seeds']}. Test "
             "accuracy of the quantized SNN in Loihi integer numerics (equal to Lava's fixed-point run). "
             "'loss' is float SNN − quantized, paired by seed; 'vs ptq' is the paired gain over "
             "round-to-nearest, with 95% t intervals. 'match' is the Lava spike match of the seed-0 "
             "network on 100 test samples. Synaptic operations and energy are per inference, "
             "measured on the test samples (mean over seeds) and priced as the last paragraph says.", ""]
    for name, r in results["datasets"].items():
        lines += [f"## {name}", "", f"Float SNN accuracy {r['float_snn_accuracy']:.4f} "
                  f"(per seed {', '.join(f'{a:.4f}' for a in r['float_snn_per_seed'])}); "
                  f"QAT budget {r['qat_epochs']} epochs; SNN `{' '.join(r['budget'][2:])}`.", "",
                  "| bits | method | mean accuracy | per seed | loss vs float [95% CI] | vs ptq [95% CI] "
                  "| bytes | match | synops/inference | energy/inference |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        missing = False
        for bits in sorted({int(b) for rows in r["methods"].values() for b in rows}, reverse=True):
            for method in [m for m in METHODS if str(bits) in r["methods"].get(m, {})]:
                row = r["methods"][method][str(bits)]
                activity = row.get("activity")
                missing = missing or not activity
                lo, hi = row["loss_vs_float_ci95"]
                gain = (f"{row['gain_vs_ptq']:+.4f} [{row['gain_vs_ptq_ci95'][0]:+.4f}, "
                        f"{row['gain_vs_ptq_ci95'][1]:+.4f}]" if "gain_vs_ptq" in row else "")
                lines.append(f"| {bits} | {method} | {row['mean']:.4f} | "
                             f"{', '.join(f'{a:.3f}' for a in row['per_seed'])} | "
                             f"{row['loss_vs_float']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {gain} | "
                             f"{row['weight_bytes']} | {_match(row)} | "
                             f"{common.fmt_synops(activity)} | "
                             f"{common.joules(row.get('energy_j')) if activity else '—'} |")
        if missing:
            lines += ["", f"—: not recorded by the run that produced this table ({r.get('date', results['date'])}): "
                          "it predates the activity counts, and what it stored (accuracies, bytes) "
                          "does not give the synaptic operations. A new run records them."]
        if "emulator_vs_lava" in r:
            e = r["emulator_vs_lava"]
            lines += ["", f"Emulator against Lava ({e['network']}), the same {e['samples']} samples: "
                          f"spike agreement {e['agreement']:.4f} ({e['samples_exact']} samples exact); "
                          f"emulator {e['emulator_samples_per_s']:.0f} samples/s, Lava "
                          f"{e['lava_samples_per_s']:.1f} samples/s: {e['speedup']:.0f}× ({e['note']})."]
        lines.append("")
    figures = common.energy_figures_lines(results)
    if figures:
        lines += figures + [""]
    return "\n".join(lines)


def _match(row: Dict) -> str:
    return f"{row['lava_spike_match']:.4f}" if "lava_spike_match" in row else ""


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(BUDGETS), 3))
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--bits", type=int, nargs="+", default=BITS)
    ap.add_argument("--qat-epochs", type=int, help="QAT epochs (default: the dataset's budget)")
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides after each dataset's SNN budget (e.g. student.epochs=1)")
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples run in Lava for the first seed's networks (0: none)")
    ap.add_argument("--energy-samples", type=int, default=0,
                    help="test samples the activity is measured on (0: all)")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    plans: Dict[str, List[Cell]] = {}

    def plan_dataset(name: str) -> List[Cell]:
        plans[name] = plan(name, seeds, args.methods, args.bits, args.qat_epochs, args.override,
                           args.lava_samples, args.energy_samples,
                           args.mnist_dir if name == "mnist" else None, args.cache)
        return plans[name]

    bench = CellBenchmark("qat", plan_dataset,
                          lambda name, res: summarize(name, res, seeds, args.methods, args.bits, plans[name]),
                          markdown, refresh=refresh, extra={"torch_threads": 1, "jobs": args.jobs})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
