"""Ablation of distillation methods for SNN students (not part of the test suite).

Every method trains the same student spec, at the same T, for the same number of epochs, from
the same teacher, over the same seeds and the same data split. The script reports per-seed test
accuracies, the paired difference of each method against direct training (mean and 95% t
interval), the share of the teacher-student gap closed, seconds per epoch, and the Lava spike match
of one co-learned student per dataset.

    python benchmarks/kd_ablation.py                       # digits and mnist, 5 seeds
    python benchmarks/kd_ablation.py --datasets digits --seeds 2   # a quick look

Writes benchmarks/results/kd_ablation.json and kd_ablation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

from common import parser, run_benchmark, t_interval
from neurokd import pipeline
from neurokd.config import build_config
from neurokd.deploy.export import read_meta


# method name -> config overrides
METHODS: Dict[str, List[str]] = {
    "none": ["distill.method=none"],
    "kd": ["distill.method=kd"],
    "fitnet": ["distill.method=fitnet"],
    "relational": ["distill.method=relational"],
    "colearn_output": ["distill.method=colearn", "distill.feature=false", "distill.mutual=false"],
    "colearn_output_feature": ["distill.method=colearn", "distill.feature=true", "distill.mutual=false"],
    "colearn_full": ["distill.method=colearn", "distill.feature=true", "distill.mutual=true"],
}

# The fixed budget per dataset: one student spec, T and epoch count for every method.
TEACHER = ["teacher.model=cnn", "teacher.hidden=[16, 32]", "teacher.epochs=30",
           "distill.teacher_layer=relu2"]
BUDGETS: Dict[str, List[str]] = {
    "digits": TEACHER + ["student.timesteps=16", "student.hidden=128", "student.epochs=20",
                         "student.patience=20"],
    "mnist": TEACHER + ["student.timesteps=12", "student.hidden=128", "student.epochs=8",
                        "student.patience=8"],
}


def run_dataset(name: str, data_dir: str | None, seeds: List[int], methods: List[str],
                workdir: Path) -> Dict:
    base = [f"data.dataset={name}", "data.split_seed=0", *BUDGETS[name]]
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    cfg0 = build_config(overrides=base + ["seed=0"])
    ds = pipeline.load_data(cfg0, log=print)
    teacher, tm = pipeline.train_teacher(cfg0, ds, progress=False)
    teacher_path = pipeline.save_teacher(workdir / f"{name}_teacher.pt", teacher, cfg0, ds)
    print(f"[{name}] teacher accuracy {tm['teacher_accuracy']:.4f}", flush=True)
    out: Dict = {"teacher_accuracy": tm["teacher_accuracy"], "budget": base,
                 "seeds": seeds, "methods": {}}
    last_colearn = None
    accs: Dict[str, List[float]] = {m: [] for m in methods}
    secs: Dict[str, List[float]] = {m: [] for m in methods}
    # Seeds outside, methods inside: a slow spell of the machine hits every method alike, so the
    # epoch-time ratios compare like with like.
    for seed in seeds:
        for method in methods:
            cfg = build_config(overrides=base + METHODS[method] + [f"seed={seed}"])
            student, _, m = pipeline.train_distilled(cfg, ds, teacher_path, progress=False)
            accs[method].append(m["snn_accuracy"])
            secs[method].append(m["snn_epoch_seconds"])
            print(f"[{name}] {method:24s} seed {seed}: {m['snn_accuracy']:.4f} "
                  f"({m['snn_epoch_seconds']:.2f} s/epoch)", flush=True)
            if method == "colearn_full":
                last_colearn = (student, cfg)
    for method in methods:
        out["methods"][method] = {"per_seed": accs[method], "epoch_seconds": float(np.median(secs[method])),
                                  "epoch_seconds_per_seed": secs[method],
                                  "mean": float(np.mean(accs[method]))}
    if "none" in out["methods"]:
        none = np.array(out["methods"]["none"]["per_seed"])
        gap = out["teacher_accuracy"] - none.mean()
        for method, r in out["methods"].items():
            diffs = np.array(r["per_seed"]) - none
            r["diff_vs_none"] = float(diffs.mean())
            r["diff_vs_none_ci95"] = t_interval(diffs)
            r["gap_closed"] = float(diffs.mean() / gap) if gap > 0 else float("nan")
            r["epoch_time_ratio_vs_none"] = r["epoch_seconds"] / out["methods"]["none"]["epoch_seconds"]
    if last_colearn is not None:
        student, cfg = last_colearn
        net = pipeline.export_snn(student, workdir / f"{name}_colearn.net", pipeline.snn_meta(cfg, ds), ds)
        v = pipeline.verify(student, net, ds, read_meta(net), 100, "sim", seed=cfg.seed, progress=False)
        out["colearn_full_lava"] = {"samples": v["lava_samples"], "spike_match": v["lava_spike_match"],
                                    "prediction_agreement": v["lava_prediction_agreement"],
                                    "backend": v["backend"], "seed": cfg.seed}
        print(f"[{name}] co-learned SNN on Lava: spike match {v['lava_spike_match']}", flush=True)
    return out


def markdown(results: Dict) -> str:
    lines = ["# Distillation ablation", "",
             f"Generated by `benchmarks/kd_ablation.py` ({results['date']}); seeds {results['seeds']}. "
             "Test accuracy of the SNN student; Δ is the paired difference against direct training "
             "(`none`) with its 95% t interval; 'gap closed' is Δ divided by (teacher − none); "
             "s/epoch is the median over seeds.", ""]
    for name, r in results["datasets"].items():
        lines += [f"## {name}", "", f"Teacher (CNN) test accuracy: {r['teacher_accuracy']:.4f}. "
                  f"Budget: `{' '.join(r['budget'][2:])}`.", "",
                  "| method | mean accuracy | per seed | Δ vs none [95% CI] | gap closed | s/epoch | time ratio |",
                  "|---|---|---|---|---|---|---|"]
        for method, m in r["methods"].items():
            lo, hi = m.get("diff_vs_none_ci95", [float("nan")] * 2)
            lines.append(f"| {method} | {m['mean']:.4f} | {', '.join(f'{a:.3f}' for a in m['per_seed'])} "
                         f"| {m.get('diff_vs_none', float('nan')):+.4f} [{lo:+.4f}, {hi:+.4f}] "
                         f"| {m.get('gap_closed', float('nan')):.2f} | {m['epoch_seconds']:.2f} "
                         f"| {m.get('epoch_time_ratio_vs_none', float('nan')):.2f} |")
        if "colearn_full_lava" in r:
            l = r["colearn_full_lava"]
            lines += ["", f"Co-learned SNN (colearn_full, seed {l['seed']}) on Lava ({l['backend']}): "
                          f"spike match {l['spike_match']:.4f}, prediction agreement "
                          f"{l['prediction_agreement']:.4f} on {l['samples']} test samples."]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = parser(__doc__, list(BUDGETS), 5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = ap.parse_args(argv)
    mnist = args.mnist_dir
    run_benchmark("kd_ablation", Path(args.out), args.datasets, list(range(args.seeds)),
                  lambda name, tmp: run_dataset(name, mnist if name == "mnist" else None,
                                                list(range(args.seeds)), args.methods, tmp),
                  markdown)
    return 0

if __name__ == "__main__":
    sys.exit(main())
