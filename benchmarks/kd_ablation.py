"""Ablation of distillation methods for SNN students (not part of the test suite).

Every method trains the same student spec, at the same T, for the same number of epochs, from
the same teacher, over the same seeds and the same data split. The script reports per-seed test
accuracies, the paired difference of each method against direct training (mean and 95% t
interval), the share of the teacher-student gap closed, seconds per epoch, the Lava spike match
of one co-learned student per dataset (the last seed's), and the synaptic operations and energy
per inference of every student (measured on the test samples, priced with the hardware profile's
energy figures) beside the teacher's MAC energy.

The teacher of a dataset is a cell, and so is every (seed, method) student; the cells run in
``--jobs`` worker processes (one torch thread each, queued seeds outside, methods inside) and
each finished one is stored under ``results/kd_ablation_cells/``, so an interrupted run resumes
where it stopped (see common.py). s/epoch is measured with the cells running side by side.

    python benchmarks/kd_ablation.py                       # digits and mnist, 5 seeds
    python benchmarks/kd_ablation.py --datasets digits --seeds 2   # a quick look
    python benchmarks/kd_ablation.py --summarize           # the tables again, from what is stored

Writes benchmarks/results/kd_ablation.json and kd_ablation.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import common
from common import Cell, CellBenchmark, cell_options, parser, t_interval
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


def _data(budget: List[str], data_dir: Optional[str], seed: int):
    overrides = list(budget) + ([f"data.data_dir={data_dir}"] if data_dir else [])
    cfg = build_config(overrides=overrides + [f"seed={seed}"])
    return pipeline.load_data(cfg), overrides


def teacher_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """The dataset's teacher (seed 0), saved for every student."""
    ds, overrides = _data(config["budget"], data_dir, 0)
    cfg0 = build_config(overrides=overrides + ["seed=0"])
    teacher, tm = pipeline.train_teacher(cfg0, ds, progress=False)
    pipeline.save_teacher(checkpoint, teacher, cfg0, ds)
    print(f"[{config['dataset']}] teacher accuracy {tm['teacher_accuracy']:.4f}", flush=True)
    return {"teacher_accuracy": tm["teacher_accuracy"], "macs": common.dnn_macs(teacher, ds.input_shape)}


def student_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """One method's student at one seed: accuracy, seconds per epoch, activity; Lava's spike
    match where ``lava_samples``."""
    ds, overrides = _data(config["budget"], data_dir, 0)
    seed, method = config["seed"], config["method"]
    cfg = build_config(overrides=overrides + METHODS[method] + [f"seed={seed}"])
    student, _, m = pipeline.train_distilled(cfg, ds, checkpoint, progress=False)
    meta = pipeline.snn_meta(cfg, ds)
    print(f"[{config['dataset']}] {method:24s} seed {seed}: {m['snn_accuracy']:.4f} "
          f"({m['snn_epoch_seconds']:.2f} s/epoch)", flush=True)
    out: Dict[str, Any] = {"accuracy": m["snn_accuracy"], "epoch_seconds": m["snn_epoch_seconds"],
                           "activity": common.measure_activity(student, meta, ds, seed,
                                                               config["energy_samples"])}
    if config["lava_samples"]:
        with tempfile.TemporaryDirectory() as tmp:
            net = pipeline.export_snn(student, Path(tmp) / f"{method}.net", meta, ds)
            v = pipeline.verify(student, net, ds, read_meta(net), config["lava_samples"], "sim",
                                seed=seed, progress=False)
        out["lava"] = {"samples": v["lava_samples"], "spike_match": v["lava_spike_match"],
                       "prediction_agreement": v["lava_prediction_agreement"],
                       "backend": v["backend"], "seed": seed}
        print(f"[{config['dataset']}] {method} seed {seed} on Lava: spike match {v['lava_spike_match']}",
              flush=True)
    return out


def plan(name: str, seeds: List[int], methods: List[str], overrides: List[str], lava_samples: int,
         energy_samples: int, data_dir: Optional[str], cache: str) -> List[Cell]:
    """The cells of one dataset: its teacher, then every (seed, method) student (every
    ``colearn_full`` student checked against Lava; the table shows the last seed's)."""
    budget = [f"data.dataset={name}", "data.split_seed=0", *BUDGETS[name], *overrides]
    tcfg = {"dataset": name, "budget": budget}
    key = f"{name}/teacher"
    ckpt = common.artifact(cache, "kd_ablation", key, tcfg)
    args = {"checkpoint": ckpt, "data_dir": data_dir}
    cells = [Cell(key, teacher_cell, tcfg, args, artifacts=(ckpt,))]
    # Seeds outside, methods inside: a slow spell of the machine hits every method alike, so the
    # epoch-time ratios compare like with like.
    for seed in seeds:
        for method in methods:
            cells.append(Cell(f"{name}/s{seed}/{method}", student_cell,
                              {**tcfg, "seed": seed, "method": method, "overrides": METHODS[method],
                               "lava_samples": lava_samples if method == "colearn_full" else 0,
                               "energy_samples": energy_samples}, args, needs=(key,)))
    return cells


def summarize(name: str, results: Dict[str, Dict], seeds: List[int], methods: List[str],
              plan_cells: List[Cell]) -> Dict:
    """The dataset's entry of kd_ablation.json from its cells (the same as one process running them)."""
    base = list(plan_cells[0].config["budget"])
    data_dir = plan_cells[0].args.get("data_dir")
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    t = results[f"{name}/teacher"]
    out: Dict = {"teacher_accuracy": t["teacher_accuracy"], "teacher_macs": t["macs"], "budget": base,
                 "seeds": seeds, "methods": {}}
    for method in methods:
        cells = [results[f"{name}/s{seed}/{method}"] for seed in seeds]
        accs = [c["accuracy"] for c in cells]
        secs = [c["epoch_seconds"] for c in cells]
        activity = [c.get("activity") for c in cells]
        out["methods"][method] = {"per_seed": accs, "epoch_seconds": float(np.median(secs)),
                                  "epoch_seconds_per_seed": secs, "mean": float(np.mean(accs)),
                                  "activity_per_seed": activity,
                                  "activity": common.mean_activity(activity)}
        if method == "colearn_full" and "lava" in cells[-1]:
            out["colearn_full_lava"] = cells[-1]["lava"]
    if "none" in out["methods"]:
        none = np.array(out["methods"]["none"]["per_seed"])
        gap = out["teacher_accuracy"] - none.mean()
        for method, r in out["methods"].items():
            diffs = np.array(r["per_seed"]) - none
            r["diff_vs_none"] = float(diffs.mean())
            r["diff_vs_none_ci95"] = t_interval(diffs)
            r["gap_closed"] = float(diffs.mean() / gap) if gap > 0 else float("nan")
            r["epoch_time_ratio_vs_none"] = r["epoch_seconds"] / out["methods"]["none"]["epoch_seconds"]
    return out


def refresh(results: Dict) -> Dict:
    """Energy of every student that recorded its activity and of the teacher."""
    return common.refresh_energy(results, lambda r: r["methods"].values(), teacher=True)


def markdown(results: Dict) -> str:
    lines = ["# Distillation ablation", "",
             f"Generated by `benchmarks/kd_ablation.py` ({results['date']}); seeds {results['seeds']}. "
             "Test accuracy of the SNN student; Δ is the paired difference against direct training "
             "(`none`) with its 95% t interval; 'gap closed' is Δ divided by (teacher − none); "
             "s/epoch is the median over seeds. Synaptic operations and energy are per inference, "
             "measured on the test samples (mean over seeds) and priced as the last paragraph says.", ""]
    for name, r in results["datasets"].items():
        teacher = ""
        if r.get("teacher_macs") is not None:
            e = r.get("teacher_energy_j") or {}
            teacher = (f" Its {r['teacher_macs']:,} MACs per sample cost {common.joules(e.get('fp32'))} "
                       f"in fp32 ({common.joules(e.get('int8'))} in int8) on a conventional processor")
            teacher += (" (MACs counted on the teacher's architecture: that run did not record them)."
                        if r.get("teacher_macs_from") == "architecture" else ".")
        lines += [f"## {name}", "", f"Teacher (CNN) test accuracy: {r['teacher_accuracy']:.4f}.{teacher} "
                  f"Budget: `{' '.join(r['budget'][2:])}`.", "",
                  "| method | mean accuracy | per seed | Δ vs none [95% CI] | gap closed | s/epoch | time ratio "
                  "| synops/inference | energy/inference |",
                  "|---|---|---|---|---|---|---|---|---|"]
        missing = False
        for method in [x for x in METHODS if x in r["methods"]]:
            m = r["methods"][method]
            activity = m.get("activity")
            missing = missing or not activity
            lo, hi = m.get("diff_vs_none_ci95", [float("nan")] * 2)
            lines.append(f"| {method} | {m['mean']:.4f} | {', '.join(f'{a:.3f}' for a in m['per_seed'])} "
                         f"| {m.get('diff_vs_none', float('nan')):+.4f} [{lo:+.4f}, {hi:+.4f}] "
                         f"| {m.get('gap_closed', float('nan')):.2f} | {m['epoch_seconds']:.2f} "
                         f"| {m.get('epoch_time_ratio_vs_none', float('nan')):.2f} "
                         f"| {common.fmt_synops(activity)} "
                         f"| {common.joules(m.get('energy_j')) if activity else '—'} |")
        if missing:
            lines += ["", f"—: not recorded by the run that produced this table ({r.get('date', results['date'])}): "
                          "it predates the activity counts, and what it stored (accuracies, epoch "
                          "times) does not give the synaptic operations. A new run records them."]
        if "colearn_full_lava" in r:
            l = r["colearn_full_lava"]
            lines += ["", f"Co-learned SNN (colearn_full, seed {l['seed']}) on Lava ({l['backend']}): "
                          f"spike match {l['spike_match']:.4f}, prediction agreement "
                          f"{l['prediction_agreement']:.4f} on {l['samples']} test samples."]
        lines.append("")
    figures = common.energy_figures_lines(results, teacher=True)
    if figures:
        lines += figures + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(BUDGETS), 5))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides after each dataset's budget (e.g. student.epochs=1)")
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples run in Lava for the co-learned students (0: none)")
    ap.add_argument("--energy-samples", type=int, default=0,
                    help="test samples the activity is measured on (0: all)")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    plans: Dict[str, List[Cell]] = {}

    def plan_dataset(name: str) -> List[Cell]:
        plans[name] = plan(name, seeds, args.methods, args.override, args.lava_samples,
                           args.energy_samples, args.mnist_dir if name == "mnist" else None, args.cache)
        return plans[name]

    bench = CellBenchmark("kd_ablation", plan_dataset,
                          lambda name, res: summarize(name, res, seeds, args.methods, plans[name]),
                          markdown, refresh=refresh, extra={"torch_threads": 1, "jobs": args.jobs})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
