"""DNN → SNN conversion against time steps (not part of the test suite).

For each dataset and seed: one DNN teacher; then, at every T, the ``plain`` conversion (max
activation balancing, no training), the ``qkd`` conversion (quantization through distillation
first) and ``direct`` (an SNN of the same layers, trained directly with surrogate gradients at
the same T, slayer CUBA neurons, 8-bit weights); where SpikingJelly is installed
(``pip install spikingjelly==0.0.0.0.14 requests``, not a dependency), its own ANN→SNN converter
runs on the same DNN as the outside reference. Accuracy is the test accuracy; the converted
networks run in the chip's integer numerics, equal to Lava's run, which is checked on 100 test
samples for every converted network of the first seed. Synaptic operations, neuron updates and
output spikes per inference of every spiking network are measured on the test samples and priced
with the hardware profile's energy figures; the DNN teacher's MACs with its MAC figure.

Every teacher (dataset, seed) is a cell, and so is every (T, method) network made from it; the
cells run in ``--jobs`` worker processes (one torch thread each) and each finished one is stored
under ``results/convert_cells/``, so an interrupted run resumes where it stopped (see common.py).

    python benchmarks/convert.py                              # digits and mnist, 3 seeds
    python benchmarks/convert.py --datasets digits --seeds 1  # a quick look
    python benchmarks/convert.py --summarize                  # the tables again, from what is stored

Writes benchmarks/results/convert.json (per dataset ``teacher_accuracy`` and, per method, T →
accuracy), convert.md and convert.png.
"""

from __future__ import annotations

import importlib.util
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
from neurokd.config import build_config
from neurokd.deploy.export import read_meta
from neurokd.fileio import atomic_path
from neurokd.hardware import load_profile
from neurokd.convert.dnn import convert_dnn, dnn_stages, stages_spec

TIMESTEPS = [4, 8, 16, 32, 64]
METHODS = ["plain", "qkd", "direct"]
# digits: a CNN with BatchNorm and average pooling; mnist: an MLP (a convolutional network on
# 28×28 images costs minutes per Lava check on this CPU).
BUDGETS: Dict[str, Dict] = {
    "digits": {"teacher": ["teacher.model=cnn_bn", "teacher.hidden=[16, 32]", "teacher.epochs=40"],
               "direct": ["student.epochs=20", "student.patience=20"], "qkd_epochs": 5},
    "mnist": {"teacher": ["teacher.model=mlp", "teacher.hidden=[256]", "teacher.epochs=30"],
              "direct": ["student.epochs=8", "student.patience=8"], "qkd_epochs": 5},
}


def direct_snn(cfg, ds, spec_path: Path, T: int, seed: int):
    """Train the converted network's layers as a slayer SNN at T steps: the SNN, its metadata and
    its test accuracy."""
    c = build_config(base=cfg.model_dump(mode="json"),
                     overrides=[f"student.spec={spec_path}", f"student.timesteps={T}",
                                "student.encoder=direct", f"seed={seed}"])
    snn, m = pipeline.train_snn(c, ds, progress=False)
    return snn, pipeline.snn_meta(c, ds), m["snn_accuracy"]


def spikingjelly_accuracies(teacher, ds, timesteps: List[int], calibration: int = 2000
                            ) -> Dict[int, float] | None:
    """The outside reference: SpikingJelly's ANN→SNN converter (max normalisation, IF neurons
    with reset by subtraction, float input every step, float arithmetic) on the same DNN.
    None when SpikingJelly is not installed (it is not a dependency of neurokd)."""
    import contextlib
    import copy
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from spikingjelly.activation_based import ann2snn, functional
    except ImportError:
        return None
    from torch.utils.data import DataLoader, TensorDataset

    x_cal = torch.as_tensor(ds.train.x[:calibration])
    loader = DataLoader(TensorDataset(x_cal, torch.as_tensor(ds.train.y[:calibration])), batch_size=256)
    with contextlib.redirect_stdout(io.StringIO()):
        snn = ann2snn.Converter(loader, mode="max")(copy.deepcopy(teacher).eval())
    x, y = torch.as_tensor(ds.test.x), torch.as_tensor(ds.test.y)
    out = {}
    with torch.no_grad():
        for T in timesteps:
            correct = 0
            for i in range(0, len(x), 500):
                functional.reset_net(snn)
                total = sum(snn(x[i:i + 500]) for _ in range(T))
                correct += int((total.argmax(1) == y[i:i + 500]).sum())
            out[T] = correct / len(x)
    return out


def teacher_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """The DNN teacher of one (dataset, seed), saved for the cells made from it."""
    ds, cfg = common.cell_data(config, data_dir)
    teacher, tm = pipeline.train_teacher(cfg, ds, progress=False)
    pipeline.save_teacher(checkpoint, teacher, cfg, ds)
    spec = stages_spec(dnn_stages(teacher.eval(), ds.input_shape), ds.input_shape)
    print(f"[{config['dataset']}] seed {config['seed']} teacher {tm['teacher_accuracy']:.4f}", flush=True)
    return {"teacher_accuracy": tm["teacher_accuracy"], "layers": [layer.type for layer in spec.layers],
            "macs": common.dnn_macs(teacher, ds.input_shape)}


def spikingjelly_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    ds, _ = common.cell_data(config, data_dir)
    ref = spikingjelly_accuracies(pipeline.load_teacher(checkpoint), ds, config["timesteps"])
    if ref is None:
        raise RuntimeError("SpikingJelly is not installed")
    print(f"[{config['dataset']}] seed {config['seed']} spikingjelly: "
          f"{', '.join(f'T={T} {a:.4f}' for T, a in ref.items())}", flush=True)
    return {"accuracy": {str(T): a for T, a in ref.items()}}


def convert_cell(config: Dict[str, Any], deps: Dict, checkpoint: str, data_dir: Optional[str]) -> Dict:
    """One converted network (``plain`` or ``qkd``) at one T, or (``direct``) the same layers
    trained as an SNN: accuracy, seconds, activity; Lava's spike match where ``lava_samples``."""
    ds, cfg = common.cell_data(config, data_dir)
    seed, T, method = config["seed"], config["timesteps"], config["method"]
    teacher = pipeline.load_teacher(checkpoint)
    out: Dict[str, Any] = {}
    t0 = time.perf_counter()
    if method == "direct":
        with tempfile.TemporaryDirectory() as tmp:
            from neurokd.fileio import write_yaml

            spec = stages_spec(dnn_stages(teacher, ds.input_shape), ds.input_shape)
            spec_path = Path(tmp) / f"{config['dataset']}_spec.yaml"
            write_yaml(spec_path, {**spec.model_dump(), "neuron": {}})  # the default CUBA neuron
            snn, meta, acc = direct_snn(cfg, ds, spec_path, T, seed)
        out.update(accuracy=acc, seconds=time.perf_counter() - t0)
    else:
        c = build_config(base=cfg.model_dump(mode="json"), overrides=[f"convert.method={method}"]).convert
        snn, m = convert_dnn(teacher, ds, T, c, load_profile("loihi2"), seed=seed, progress=False)
        out.update(accuracy=m["snn_accuracy"], seconds=time.perf_counter() - t0,
                   min_rate_correlation=min(r["correlation"] for r in m["layers"]))
        if method == "qkd":
            out["qkd_dnn_accuracy"] = m["qkd_accuracy"]
        cfg_t = build_config(base=cfg.model_dump(mode="json"),
                             overrides=["student.encoder=direct", f"student.timesteps={T}"])
        meta = pipeline.snn_meta(cfg_t, ds)
    out["activity"] = common.measure_activity(snn, meta, ds, seed, config["energy_samples"])
    extra = ""
    if config["lava_samples"]:
        with tempfile.TemporaryDirectory() as tmp:
            net = pipeline.export_snn(snn, Path(tmp) / f"{method}_{T}.net", meta, ds)
            v = pipeline.verify(snn, net, ds, read_meta(net), config["lava_samples"], "sim", seed=seed,
                                progress=False)
        out.update(lava_spike_match=v["lava_spike_match"], lava_samples=v["lava_samples"],
                   state_overflow=v["state_overflow"])
        extra = f", Lava match {v['lava_spike_match']:.4f}"
    print(f"[{config['dataset']}] seed {seed} T={T:<3d} {method:6s}: {out['accuracy']:.4f}{extra}", flush=True)
    return out


def plan(name: str, seeds: List[int], timesteps: List[int], methods: List[str], overrides: List[str],
         lava_samples: int, energy_samples: int, data_dir: Optional[str], cache: str) -> List[Cell]:
    """The cells of one dataset: a teacher per seed, SpikingJelly's conversions of it (where
    installed), and every (T, method) network made from it (the converted networks of the first
    seed checked against Lava)."""
    b = BUDGETS[name]
    budget = [f"data.dataset={name}", "data.split_seed=0", *b["teacher"], *b["direct"],
              f"convert.epochs={b['qkd_epochs']}", f"convert.patience={b['qkd_epochs']}", *overrides]
    cells: List[Cell] = []
    for seed in seeds:
        tcfg = {"dataset": name, "budget": budget, "seed": seed}
        key = f"{name}/s{seed}/teacher"
        ckpt = common.artifact(cache, "convert", key, tcfg)
        args = {"checkpoint": ckpt, "data_dir": data_dir}
        cells.append(Cell(key, teacher_cell, tcfg, args, artifacts=(ckpt,)))
        if importlib.util.find_spec("spikingjelly") is not None:
            cells.append(Cell(f"{name}/s{seed}/spikingjelly", spikingjelly_cell,
                              {**tcfg, "timesteps": timesteps}, args, needs=(key,)))
        for T in timesteps:
            for method in methods:
                check = lava_samples if seed == 0 and method != "direct" else 0
                cells.append(Cell(f"{name}/s{seed}/T{T}_{method}", convert_cell,
                                  {**tcfg, "timesteps": T, "method": method, "lava_samples": check,
                                   "energy_samples": energy_samples}, args, needs=(key,)))
    return cells


def summarize(name: str, results: Dict[str, Dict], seeds: List[int], timesteps: List[int],
              methods: List[str], plan_cells: List[Cell]) -> Dict:
    """The dataset's entry of convert.json from its cells (the same as one process running them)."""
    base = list(plan_cells[0].config["budget"])
    data_dir = plan_cells[0].args.get("data_dir")
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    out: Dict = {"budget": base, "seeds": seeds, "timesteps": timesteps, "teacher_per_seed": [],
                 "teacher_macs": None,
                 "methods": {m: {str(T): {"per_seed": []} for T in timesteps} for m in methods}}
    for seed in seeds:
        t = results[f"{name}/s{seed}/teacher"]
        out["teacher_per_seed"].append(t["teacher_accuracy"])
        out["layers"] = t["layers"]
        out["teacher_macs"] = t["macs"]
        ref = results.get(f"{name}/s{seed}/spikingjelly")
        if ref is not None:
            for T in timesteps:
                out["methods"].setdefault("spikingjelly", {}).setdefault(
                    str(T), {"per_seed": []})["per_seed"].append(ref["accuracy"][str(T)])
        for T in timesteps:
            for method in methods:
                c = results[f"{name}/s{seed}/T{T}_{method}"]
                row = out["methods"][method][str(T)]
                row["per_seed"].append(c["accuracy"])
                row.setdefault("seconds", []).append(c["seconds"])
                row.setdefault("activity_per_seed", []).append(c.get("activity"))
                if "min_rate_correlation" in c:
                    row.setdefault("min_rate_correlation", []).append(c["min_rate_correlation"])
                if "qkd_dnn_accuracy" in c:
                    row.setdefault("qkd_dnn_accuracy", []).append(c["qkd_dnn_accuracy"])
                for k in ("lava_spike_match", "lava_samples", "state_overflow"):
                    if k in c:
                        row[k] = c[k]
    teacher = np.array(out["teacher_per_seed"])
    out["teacher_accuracy"] = float(teacher.mean())
    for method, rows in out["methods"].items():
        for T, row in rows.items():
            acc = np.array(row["per_seed"])
            gap = teacher - acc  # paired by seed: the same teacher
            row.update({"mean": float(acc.mean()), "ci95": t_interval(acc),
                        "gap_to_teacher": float(gap.mean()), "gap_to_teacher_ci95": t_interval(gap)})
            if "activity_per_seed" in row:
                row["activity"] = common.mean_activity(row["activity_per_seed"])
            if method == "qkd" and "plain" in out["methods"]:
                gain = acc - np.array(out["methods"]["plain"][T]["per_seed"])
                row.update({"gain_vs_plain": float(gain.mean()), "gain_vs_plain_ci95": t_interval(gain)})
    # The mapping the issue asks for: per method, T → mean accuracy.
    out["accuracy"] = {m: {T: rows[T]["mean"] for T in rows} for m, rows in out["methods"].items()}
    return out


def refresh(results: Dict) -> Dict:
    """Energy of every spiking row that recorded its activity and of the teacher."""
    return common.refresh_energy(
        results, lambda r: (row for rows in r["methods"].values() for row in rows.values()),
        teacher=True)


def markdown(results: Dict) -> str:
    lines = ["# DNN → SNN conversion against time steps", "",
             f"Generated by `benchmarks/convert.py` ({results['date']}); seeds {results['seeds']}. "
             "Test accuracy. `plain`: conversion balanced on each layer's largest activation; "
             "`qkd`: conversion after quantization through distillation; `direct`: the same layers "
             "trained as an SNN at the same T; `spikingjelly` (where installed): SpikingJelly's "
             "own converter on the same DNN (float IF neurons with reset by subtraction, not Loihi's "
             "integers) as the outside reference. Gap = teacher − method, paired by seed, with its 95% "
             "t interval; 'match' is the Lava spike match of the seed-0 network on 100 test "
             "samples; 'corr' the lowest layer's rate–activation correlation (mean over seeds). "
             "Synaptic operations and energy are per inference, measured on the test samples "
             "(mean over seeds) and priced as the last paragraph says.", ""]
    for name, r in results["datasets"].items():
        teacher = ""
        if r.get("teacher_macs") is not None:
            e = r.get("teacher_energy_j") or {}
            teacher = (f"; the teacher's {r['teacher_macs']:,} MACs per sample cost "
                       f"{common.joules(e.get('fp32'))} in fp32 ({common.joules(e.get('int8'))} in "
                       f"int8) on a conventional processor")
            if r.get("teacher_macs_from") == "architecture":
                teacher += " (MACs counted on the teacher's architecture: that run did not record them)"
        lines += [f"## {name}", "",
                  f"DNN teacher accuracy {r['teacher_accuracy']:.4f} (per seed "
                  f"{', '.join(f'{a:.4f}' for a in r['teacher_per_seed'])}); layers "
                  f"{' → '.join(r['layers'])}; budget `{' '.join(r['budget'][2:])}`{teacher}.", "",
                  "| T | method | mean accuracy | per seed | gap to teacher [95% CI] | qkd − plain [95% CI] "
                  "| match | corr | synops/inference | energy/inference |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        notes = set()
        for T in r["timesteps"]:
            for method in method_order(r):
                row = r["methods"][method][str(T)]
                activity = row.get("activity")
                if activity:
                    synops, energy = common.fmt_synops(activity), common.joules(row.get("energy_j"))
                elif method == "spikingjelly":
                    synops = energy = "—¹"
                    notes.add(1)
                else:
                    synops = energy = "—²"
                    notes.add(2)
                lo, hi = row["gap_to_teacher_ci95"]
                gain = (f"{row['gain_vs_plain']:+.4f} [{row['gain_vs_plain_ci95'][0]:+.4f}, "
                        f"{row['gain_vs_plain_ci95'][1]:+.4f}]" if "gain_vs_plain" in row else "")
                match = f"{row['lava_spike_match']:.4f}" if "lava_spike_match" in row else ""
                corr = (f"{np.mean(row['min_rate_correlation']):.3f}"
                        if "min_rate_correlation" in row else "")
                lines.append(f"| {T} | {method} | {row['mean']:.4f} | "
                             f"{', '.join(f'{a:.3f}' for a in row['per_seed'])} | "
                             f"{row['gap_to_teacher']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {gain} | "
                             f"{match} | {corr} | {synops} | {energy} |")
        if notes:
            lines.append("")
        if 1 in notes:
            lines.append("¹ not measured: SpikingJelly's network runs in float arithmetic, not on the chip.")
        if 2 in notes:
            lines.append(f"² not recorded by the run that produced these numbers "
                         f"({r.get('date', results['date'])}): it predates the activity counts, and "
                         "what it stored (accuracies) does not give the synaptic operations. A new run "
                         "records them.")
        lines.append("")
    figures = common.energy_figures_lines(results, teacher=True)
    if figures:
        lines += figures + [""]
    lines += ["![accuracy against time steps](convert.png)", ""]
    return "\n".join(lines)


def method_order(r: Dict) -> List[str]:
    """The methods of a dataset's entry in the table's order (a results file stores them sorted)."""
    known = METHODS + ["spikingjelly"]
    return [m for m in known if m in r["methods"]] + [m for m in r["methods"] if m not in known]


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results["datasets"][name]
        ts = r["timesteps"]
        for method, marker in zip(method_order(r), "osdv"):
            mean = [r["methods"][method][str(T)]["mean"] for T in ts]
            ci = np.array([r["methods"][method][str(T)]["ci95"] for T in ts])
            ax.plot(ts, mean, marker=marker, label=method)
            if not np.isnan(ci).any():
                ax.fill_between(ts, ci[:, 0], ci[:, 1], alpha=0.15)
        ax.axhline(r["teacher_accuracy"], color="black", ls="--", lw=1, label="DNN teacher")
        ax.set(xscale="log", xticks=ts, xticklabels=[str(t) for t in ts], xlabel="time steps T",
               ylabel="test accuracy", title=name)
        ax.set_ylim(max(0.0, min(ax.get_ylim()[0], 0.5)), 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(BUDGETS), 3))
    ap.add_argument("--timesteps", type=int, nargs="+", default=TIMESTEPS)
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides after each dataset's budget (e.g. teacher.epochs=1)")
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples run in Lava for the first seed's converted networks (0: none)")
    ap.add_argument("--energy-samples", type=int, default=0,
                    help="test samples the activity is measured on (0: all)")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    plans: Dict[str, List[Cell]] = {}

    def plan_dataset(name: str) -> List[Cell]:
        plans[name] = plan(name, seeds, args.timesteps, args.methods, args.override, args.lava_samples,
                           args.energy_samples, args.mnist_dir if name == "mnist" else None, args.cache)
        return plans[name]

    bench = CellBenchmark("convert", plan_dataset,
                          lambda name, res: summarize(name, res, seeds, args.timesteps, args.methods,
                                                      plans[name]),
                          markdown, plot, refresh=refresh, extra={"torch_threads": 1, "jobs": args.jobs})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
