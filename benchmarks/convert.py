"""DNN → SNN conversion against time steps (not part of the test suite).

For each dataset and seed: one DNN teacher; then, at every T, the ``plain`` conversion (max
activation balancing, no training), the ``qkd`` conversion (quantization through distillation
first) and ``direct`` (an SNN of the same layers, trained directly with surrogate gradients at
the same T, slayer CUBA neurons, 8-bit weights); where SpikingJelly is installed
(``pip install spikingjelly==0.0.0.0.14 requests``, not a dependency), its own ANN→SNN converter
runs on the same DNN as the outside reference. Accuracy is the test accuracy; the converted
networks run in the chip's integer numerics, equal to Lava's run, which is checked on 100 test
samples for every converted network of the first seed.

    python benchmarks/convert.py                              # digits and mnist, 3 seeds
    python benchmarks/convert.py --datasets digits --seeds 1  # a quick look

Writes benchmarks/results/convert.json (per dataset ``teacher_accuracy`` and, per method, T →
accuracy), convert.md and convert.png.
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
from neurokd.config import build_config
from neurokd.deploy.export import read_meta
from neurokd.fileio import atomic_path
from neurokd.hardware import load_profile
from neurokd.quant.convert import convert_dnn, dnn_stages, stages_spec

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


def direct_snn(cfg, ds, spec_path: Path, T: int, seed: int) -> float:
    """Train the converted network's layers as a slayer SNN at T steps; its test accuracy."""
    c = build_config(base=cfg.model_dump(mode="json"),
                     overrides=[f"student.spec={spec_path}", f"student.timesteps={T}",
                                "student.encoder=direct", f"seed={seed}"])
    _, m = pipeline.train_snn(c, ds, progress=False)
    return m["snn_accuracy"]


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


def run_dataset(name: str, data_dir: str | None, seeds: List[int], workdir: Path,
                timesteps: List[int]) -> Dict:
    b = BUDGETS[name]
    base = [f"data.dataset={name}", "data.split_seed=0", *b["teacher"], *b["direct"],
            f"convert.epochs={b['qkd_epochs']}", f"convert.patience={b['qkd_epochs']}"]
    if data_dir:
        base.append(f"data.data_dir={data_dir}")
    profile = load_profile("loihi2")
    out: Dict = {"budget": base, "seeds": seeds, "timesteps": timesteps, "teacher_per_seed": [],
                 "methods": {m: {str(T): {"per_seed": []} for T in timesteps} for m in METHODS}}
    ds = pipeline.load_data(build_config(overrides=base), log=print)
    for seed in seeds:
        cfg = build_config(overrides=base + [f"seed={seed}"])
        teacher, tm = pipeline.train_teacher(cfg, ds, progress=False)
        out["teacher_per_seed"].append(tm["teacher_accuracy"])
        print(f"[{name}] seed {seed} teacher {tm['teacher_accuracy']:.4f}", flush=True)
        ref = spikingjelly_accuracies(teacher, ds, timesteps)
        if ref is not None:
            for T, acc in ref.items():
                out["methods"].setdefault("spikingjelly", {}).setdefault(
                    str(T), {"per_seed": []})["per_seed"].append(acc)
            print(f"[{name}] seed {seed} spikingjelly: "
                  f"{', '.join(f'T={T} {a:.4f}' for T, a in ref.items())}", flush=True)
        spec = stages_spec(dnn_stages(teacher, ds.input_shape), ds.input_shape)
        spec_path = workdir / f"{name}_spec.yaml"
        from neurokd.fileio import write_yaml

        write_yaml(spec_path, {**spec.model_dump(), "neuron": {}})  # direct: the default CUBA neuron
        out["layers"] = [layer.type for layer in spec.layers]
        for T in timesteps:
            for method in ("plain", "qkd"):
                c = build_config(base=cfg.model_dump(mode="json"),
                                 overrides=[f"convert.method={method}"]).convert
                t0 = time.perf_counter()
                snn, m = convert_dnn(teacher, ds, T, c, profile, seed=seed, progress=False)
                row = out["methods"][method][str(T)]
                row["per_seed"].append(m["snn_accuracy"])
                row.setdefault("seconds", []).append(time.perf_counter() - t0)
                row.setdefault("min_rate_correlation", []).append(
                    min(r["correlation"] for r in m["layers"]))
                if method == "qkd":
                    row.setdefault("qkd_dnn_accuracy", []).append(m["qkd_accuracy"])
                extra = ""
                if seed == seeds[0]:
                    cfg_t = build_config(base=cfg.model_dump(mode="json"),
                                         overrides=["student.encoder=direct", f"student.timesteps={T}"])
                    meta = pipeline.snn_meta(cfg_t, ds)
                    net = pipeline.export_snn(snn, workdir / f"{name}_{method}_{T}.net", meta, ds)
                    v = pipeline.verify(snn, net, ds, read_meta(net), 100, "sim", seed=seed,
                                        progress=False)
                    row["lava_spike_match"] = v["lava_spike_match"]
                    row["lava_samples"] = v["lava_samples"]
                    row["state_overflow"] = v["state_overflow"]
                    extra = f", Lava match {v['lava_spike_match']:.4f}"
                print(f"[{name}] seed {seed} T={T:<3d} {method:6s}: {m['snn_accuracy']:.4f}{extra}",
                      flush=True)
            t0 = time.perf_counter()
            acc = direct_snn(cfg, ds, spec_path, T, seed)
            row = out["methods"]["direct"][str(T)]
            row["per_seed"].append(acc)
            row.setdefault("seconds", []).append(time.perf_counter() - t0)
            print(f"[{name}] seed {seed} T={T:<3d} direct: {acc:.4f}", flush=True)
    teacher = np.array(out["teacher_per_seed"])
    out["teacher_accuracy"] = float(teacher.mean())
    for method, rows in out["methods"].items():
        for T, row in rows.items():
            acc = np.array(row["per_seed"])
            gap = teacher - acc  # paired by seed: the same teacher
            row.update({"mean": float(acc.mean()), "ci95": t_interval(acc),
                        "gap_to_teacher": float(gap.mean()), "gap_to_teacher_ci95": t_interval(gap)})
            if method == "qkd":
                gain = acc - np.array(out["methods"]["plain"][T]["per_seed"])
                row.update({"gain_vs_plain": float(gain.mean()), "gain_vs_plain_ci95": t_interval(gain)})
    # The mapping the issue asks for: per method, T → mean accuracy.
    out["accuracy"] = {m: {T: rows[T]["mean"] for T in rows} for m, rows in out["methods"].items()}
    return out


def markdown(results: Dict) -> str:
    lines = ["# DNN → SNN conversion against time steps", "",
             f"Generated by `benchmarks/convert.py` ({results['date']}); seeds {results['seeds']}. "
             "Test accuracy. `plain`: conversion balanced on each layer's largest activation; "
             "`qkd`: conversion after quantization through distillation; `direct`: the same layers "
             "trained as an SNN at the same T; `spikingjelly` (where installed): SpikingJelly's "
             "own converter on the same DNN (float IF neurons with reset by subtraction, not Loihi's "
             "integers) as the outside reference. Gap = teacher − method, paired by seed, with its 95% "
             "t interval; 'match' is the Lava spike match of the seed-0 network on 100 test "
             "samples; 'corr' the lowest layer's rate–activation correlation (mean over seeds).", ""]
    for name, r in results["datasets"].items():
        lines += [f"## {name}", "",
                  f"DNN teacher accuracy {r['teacher_accuracy']:.4f} (per seed "
                  f"{', '.join(f'{a:.4f}' for a in r['teacher_per_seed'])}); layers "
                  f"{' → '.join(r['layers'])}; budget `{' '.join(r['budget'][2:])}`.", "",
                  "| T | method | mean accuracy | per seed | gap to teacher [95% CI] | qkd − plain [95% CI] | match | corr |",
                  "|---|---|---|---|---|---|---|---|"]
        for T in r["timesteps"]:
            for method in r["methods"]:
                row = r["methods"][method][str(T)]
                lo, hi = row["gap_to_teacher_ci95"]
                gain = (f"{row['gain_vs_plain']:+.4f} [{row['gain_vs_plain_ci95'][0]:+.4f}, "
                        f"{row['gain_vs_plain_ci95'][1]:+.4f}]" if "gain_vs_plain" in row else "")
                match = f"{row['lava_spike_match']:.4f}" if "lava_spike_match" in row else ""
                corr = (f"{np.mean(row['min_rate_correlation']):.3f}"
                        if "min_rate_correlation" in row else "")
                lines.append(f"| {T} | {method} | {row['mean']:.4f} | "
                             f"{', '.join(f'{a:.3f}' for a in row['per_seed'])} | "
                             f"{row['gap_to_teacher']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {gain} | "
                             f"{match} | {corr} |")
        lines.append("")
    lines += ["![accuracy against time steps](convert.png)", ""]
    return "\n".join(lines)


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results["datasets"][name]
        ts = r["timesteps"]
        for method, marker in zip(r["methods"], "osdv"):
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
    ap = parser(__doc__, list(BUDGETS), 3)
    ap.add_argument("--timesteps", type=int, nargs="+", default=TIMESTEPS)
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    mnist = args.mnist_dir
    run_benchmark("convert", Path(args.out), args.datasets, seeds,
                  lambda name, tmp: run_dataset(name, mnist if name == "mnist" else None, seeds, tmp,
                                                args.timesteps),
                  markdown, plot, torch_threads=torch.get_num_threads())
    return 0

if __name__ == "__main__":
    sys.exit(main())
