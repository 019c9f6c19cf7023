"""Quantization-aware training for Loihi: methods × bit-widths (not part of the test suite).

Per dataset and seed, one float SNN is trained; each method then quantizes that same SNN at 8, 6,
4 and 2 bits with the same QAT epoch budget. Accuracies are measured in Loihi numerics (the
batched emulator, which equals Lava's fixed-point run). For seed 0 each quantized network is
exported and run in Lava on 100 test samples (spike match). Finally the emulator and Lava run the
same 200 samples of one network side by side: agreement and samples per second.

    python benchmarks/qat.py                                   # digits and mnist, 3 seeds
    python benchmarks/qat.py --datasets digits --seeds 1       # a quick look

Writes benchmarks/results/qat.json and qat.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from common import parser, run_benchmark, t_interval
from neurokd import pipeline
from neurokd.config import QuantConfig, build_config
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


def run_dataset(name: str, data_dir: str | None, seeds: List[int], workdir: Path) -> Dict:
    b = BUDGETS[name]
    base = [f"data.dataset={name}", "data.split_seed=0", *b["snn"]]
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    out: Dict = {"budget": base, "qat_epochs": b["qat_epochs"], "seeds": seeds,
                 "float_snn_per_seed": [], "methods": {m: {} for m in METHODS}}
    ds = pipeline.load_data(build_config(overrides=base), log=print)
    for seed in seeds:
        cfg = build_config(overrides=base + [f"seed={seed}"])
        snn, _ = pipeline.train_snn(cfg, ds, progress=False)
        meta = pipeline.snn_meta(cfg, ds)
        prepare = pipeline.make_prepare(cfg.student.encoder, cfg.student.timesteps, snn.window_pad)
        for bits in BITS:
            for method in METHODS:
                qc = QuantConfig(method=method, bits=bits, epochs=b["qat_epochs"],
                                 patience=b["qat_epochs"])
                model, m = quantize_snn(snn, ds, prepare, qc, seed=seed, progress=False)
                if bits == BITS[0] and method == METHODS[0]:
                    out["float_snn_per_seed"].append(m["float_snn_accuracy"])
                row = out["methods"][method].setdefault(str(bits), {"per_seed": [], "qat_epoch_seconds": []})
                row["per_seed"].append(m["quant_accuracy"])
                row["weight_bytes"] = m["weight_bytes"]
                row["qat_epoch_seconds"].append(m.get("qat_epoch_seconds", 0.0))
                print(f"[{name}] seed {seed} {bits} bits {method:12s}: {m['quant_accuracy']:.4f} "
                      f"(float {m['float_snn_accuracy']:.4f})", flush=True)
                if seed == seeds[0]:
                    net = pipeline.export_snn(model, workdir / f"{name}_{method}_{bits}.net", meta, ds)
                    v = pipeline.verify(model, net, ds, read_meta(net), 100, "sim", seed=seed,
                                        progress=False)
                    row["lava_spike_match"] = v["lava_spike_match"]
                    row["lava_samples"] = v["lava_samples"]
                    if bits == 4 and method == "lsq_prob_kd":
                        out["emulator_vs_lava"] = emulator_vs_lava(model, ds, meta, net)
                        out["emulator_vs_lava"]["network"] = f"lsq_prob_kd, 4 bits, seed {seed}"
    fl = np.array(out["float_snn_per_seed"])
    out["float_snn_accuracy"] = float(fl.mean())
    for method, rows in out["methods"].items():
        for bits, row in rows.items():
            acc = np.array(row["per_seed"])
            loss = fl - acc  # paired by seed: the same float SNN
            row.update({"mean": float(acc.mean()), "ci95": t_interval(acc),
                        "loss_vs_float": float(loss.mean()), "loss_vs_float_ci95": t_interval(loss)})
            if method != "ptq":
                gain = acc - np.array(out["methods"]["ptq"][bits]["per_seed"])
                row.update({"gain_vs_ptq": float(gain.mean()), "gain_vs_ptq_ci95": t_interval(gain)})
    return out


def markdown(results: Dict) -> str:
    lines = ["# Quantization-aware training for Loihi", "",
             f"Generated by `benchmarks/qat.py` ({results['date']}); seeds {results['seeds']}. Test "
             "accuracy of the quantized SNN in Loihi integer numerics (equal to Lava's fixed-point run). "
             "'loss' is float SNN − quantized, paired by seed; 'vs ptq' is the paired gain over "
             "round-to-nearest, with 95% t intervals. 'match' is the Lava spike match of the seed-0 "
             "network on 100 test samples.", ""]
    for name, r in results["datasets"].items():
        lines += [f"## {name}", "", f"Float SNN accuracy {r['float_snn_accuracy']:.4f} "
                  f"(per seed {', '.join(f'{a:.4f}' for a in r['float_snn_per_seed'])}); "
                  f"QAT budget {r['qat_epochs']} epochs; SNN `{' '.join(r['budget'][2:])}`.", "",
                  "| bits | method | mean accuracy | per seed | loss vs float [95% CI] | vs ptq [95% CI] | bytes | match |",
                  "|---|---|---|---|---|---|---|---|"]
        for bits in BITS:
            for method in METHODS:
                row = r["methods"][method][str(bits)]
                lo, hi = row["loss_vs_float_ci95"]
                gain = (f"{row['gain_vs_ptq']:+.4f} [{row['gain_vs_ptq_ci95'][0]:+.4f}, "
                        f"{row['gain_vs_ptq_ci95'][1]:+.4f}]" if "gain_vs_ptq" in row else "")
                lines.append(f"| {bits} | {method} | {row['mean']:.4f} | "
                             f"{', '.join(f'{a:.3f}' for a in row['per_seed'])} | "
                             f"{row['loss_vs_float']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {gain} | "
                             f"{row['weight_bytes']} | {row.get('lava_spike_match', float('nan')):.4f} |")
        if "emulator_vs_lava" in r:
            e = r["emulator_vs_lava"]
            lines += ["", f"Emulator against Lava ({e['network']}), the same {e['samples']} samples: "
                          f"spike agreement {e['agreement']:.4f} ({e['samples_exact']} samples exact); "
                          f"emulator {e['emulator_samples_per_s']:.0f} samples/s, Lava "
                          f"{e['lava_samples_per_s']:.1f} samples/s: {e['speedup']:.0f}× ({e['note']})."]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = parser(__doc__, list(BUDGETS), 3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    mnist = args.mnist_dir
    run_benchmark("qat", Path(args.out), args.datasets, seeds,
                  lambda name, tmp: run_dataset(name, mnist if name == "mnist" else None, seeds, tmp),
                  markdown, torch_threads=torch.get_num_threads())
    return 0

if __name__ == "__main__":
    sys.exit(main())
