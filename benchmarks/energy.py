"""The energy scoreboard: every network a user could pick, per workload, priced alike (not part of
the test suite).

Per workload and seed, the DNN teacher of ``benchmarks/sdnn.py``'s budget is trained, and beside
it the networks neurokd makes from it or from its layers:

* the DNN itself, in fp32 and in int8;
* ``CUBA, graded input``: converted to integrate-and-fire at T = 16 (``convert -T 16``, qkd
  fine-tuning, 4-bit graded input);
* ``CUBA, rate input``: the teacher's layers trained directly as an SNN on Bernoulli spikes at
  T = 16 (``train-snn``);
* ``SDNN``: converted to sigma-delta (``convert``: delta threshold 0, the default), and at
  threshold 0.05 (``--delta-threshold 0.05``);
* ``SDNN, target rate 0.2``: fine-tuned on the 8-bit grid towards 0.2 synaptic operations per DNN
  MAC (``convert --target-rate 0.2``), at thresholds 0 and 0.05.

Each is measured on the test split (accuracy, or the task's own figure on radio) and priced by
``neurokd report``'s model (``neurokd.metrics.pricing``) on 512 test samples: the digital model
that prices both sides alike (arithmetic and SRAM traffic), the Loihi per-event figures (SNNs) and
the measured microcontroller per MAC (the DNN in int8). Lava exactness of these families is
``benchmarks/sdnn.py``'s and ``benchmarks/convert.py``'s; not run again here.

One cell per (workload, seed), stored under ``results/energy_cells/``; an interrupted run resumes.

    python benchmarks/energy.py                     # every workload, 3 seeds
    python benchmarks/energy.py --datasets digits --seeds 1
    python benchmarks/energy.py --summarize         # the tables again, from the stored cells
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import sdnn as sd  # noqa: E402
from common import Cell, CellBenchmark, cell_options, parser  # noqa: E402

TIMESTEPS = 16
SAMPLES = 512  # test samples every network is counted and priced on
THRESHOLDS = [0.0, 0.05]  # sigma-delta delta thresholds (fractions of each layer's largest)
# what each network is priced by: (pricing key in the report, label)
DNN_PRICINGS = {"DNN, fp32": ["digital_fp32", "arithmetic_fp32"],
                "DNN, int8": ["digital_int8", "mcu_int8", "arithmetic_int8"]}
STUDENT_EPOCHS = {"digits": 15, "mnist": 8, "modulation": 6, "sensing": 10, "symbols": 10}


def _priced(m: Dict[str, Any]) -> Dict[str, Any]:
    """The figures of one ``energy.measure`` record the scoreboard keeps."""
    keep = {k: m[k] for k in ("accuracy", "samples") if k in m}
    keep["pricings"] = {k: v["total"] for k, v in (m.get("pricings") or {}).items()}
    for k in ("synops", "neuron_updates", "spikes_out", "events_in", "macs", "activation_sparsity"):
        if k in m:
            keep[k] = float(m[k])
    if "neurobench" in m:
        keep["neurobench"] = m["neurobench"]
    if m.get("energy_parts_j"):
        keep["digital_parts"] = m["energy_parts_j"]
    return keep


def task_cell(config: Dict[str, Any], deps: Dict, data_dir: Optional[str]) -> Dict[str, Any]:
    import torch

    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.convert.dnn import convert_dnn, dnn_stages, stages_spec
    from neurokd.convert.sdnn import convert_sdnn, sparsity_finetune
    from neurokd.fileio import write_yaml
    from neurokd.hardware import load_profile
    from neurokd.metrics.energy import measure
    from neurokd.metrics.radio import radio_report
    from neurokd.models.sigma_delta.net import EncodedSDNN
    from neurokd.training import accuracy, identity, logits_of

    torch.set_num_threads(1)
    loihi2 = load_profile("loihi2")
    ds, cfg = common.cell_data(config, data_dir)
    seed, T = config["seed"], config["timesteps"]
    t0 = time.time()
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    teacher.eval()
    out: Dict[str, Any] = {"teacher_seconds": time.time() - t0, "networks": {}}
    dnn = _priced(measure(teacher, {}, ds, seed, config["samples"], loihi2.energy))
    dnn["accuracy"] = accuracy(teacher, ds.test, identity, logits_of, seed=seed)
    out["dnn"] = dnn
    receivers: Dict[str, Any] = {"teacher": (teacher, {})}

    def record(name: str, model, meta: Dict[str, Any], started: float, acc: float) -> None:
        m = _priced(measure(model, meta, ds, seed, config["samples"]))
        out["networks"][name] = {**m, "accuracy": acc, "seconds": time.time() - started}
        print(f"[{config['dataset']}] seed {seed} {name}: {acc:.4f}, "
              f"{common.joules(m['pricings'].get('digital'))} digital", flush=True)

    # CUBA, graded input: converted (qkd) at T steps
    t0 = time.time()
    c = build_config(base=cfg.model_dump(mode="json"),
                     overrides=["convert.method=qkd", f"convert.epochs={config['qkd_epochs']}"]).convert
    snn, m = convert_dnn(teacher, ds, T, c, loihi2, seed=seed, progress=False)
    cfg_t = build_config(base=cfg.model_dump(mode="json"),
                         overrides=["student.encoder=direct", f"student.timesteps={T}"])
    meta = pipeline.snn_meta(cfg_t, ds)
    record("CUBA, graded input", snn, meta, t0, m["snn_accuracy"])
    receivers["CUBA, graded input"] = (snn, meta)
    # CUBA, rate input: the teacher's layers trained directly on Bernoulli spikes
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        spec = stages_spec(dnn_stages(teacher, ds.input_shape), ds.input_shape)
        spec_path = Path(tmp) / "spec.yaml"
        write_yaml(spec_path, {**spec.model_dump(), "neuron": {}})
        c_rate = build_config(base=cfg.model_dump(mode="json"), overrides=[
            f"student.spec={spec_path}", f"student.timesteps={T}", "student.encoder=rate",
            f"student.epochs={config['student_epochs']}"])
        rate_snn, rm = pipeline.train_snn(c_rate, ds, progress=False)
    meta_rate = pipeline.snn_meta(c_rate, ds)
    record("CUBA, rate input", rate_snn, meta_rate, t0, rm["snn_accuracy"])
    receivers["CUBA, rate input"] = (rate_snn, meta_rate)
    # sigma-delta: converted, and fine-tuned towards a target rate
    encoder = cfg.student.encoder
    for label, target in (("SDNN", None), ("SDNN, target rate 0.2", 0.2)):
        t0 = time.time()
        source = teacher
        if target is not None:
            ct = cfg.convert.model_copy(update={"target_rate": target})
            source, _ = sparsity_finetune(teacher, ds, encoder, ct, seed)
        for th in config["thresholds"]:
            name = f"{label}, threshold {th:g}"
            model, _ = convert_sdnn(source, ds, encoder, loihi2, threshold=th, seed=seed)
            meta_sd = {**pipeline.snn_meta(cfg, ds), "timesteps": model.timesteps}
            wrapped = EncodedSDNN(model, encoder)
            record(name, model, meta_sd, t0,
                   accuracy(wrapped, ds.test, identity, logits_of, seed=seed))
            receivers[name] = (wrapped, {})
            t0 = time.time()
    if pipeline.is_radio(ds):
        with tempfile.TemporaryDirectory() as tmp:
            rep = radio_report(ds, receivers, Path(tmp), seed)
        figure = config["figure"]
        for k, row in rep["receivers"].items():
            target = out["dnn"] if k == "teacher" else out["networks"].get(k)
            if target is not None:
                target["figure"] = row.get(figure)
            else:  # the classical receivers
                out.setdefault("classical", {})[k] = row.get(figure)
    else:
        out["dnn"]["figure"] = out["dnn"]["accuracy"]
        for row in out["networks"].values():
            row["figure"] = row["accuracy"]
    return out


def plan(task: str, seeds: List[int], data_dir: Optional[str]) -> List[Cell]:
    t = sd.TASKS[task]
    return [Cell(f"{task}/s{s}", task_cell,
                 {"budget": t["budget"], "seed": s, "figure": t["figure"], "dataset": task,
                  "timesteps": TIMESTEPS, "samples": SAMPLES, "thresholds": THRESHOLDS, "qkd_epochs": 3,
                  "student_epochs": STUDENT_EPOCHS[task]},
                 {"data_dir": data_dir if task == "mnist" else None}) for s in seeds]


_stat = sd._stat  # mean, 95 % t-interval and count over seeds (a seed may have no figure)


def summarize(task: str, results: Dict[str, Dict[str, Any]], seeds: List[int]) -> Dict[str, Any]:
    cells = [results[f"{task}/s{s}"] for s in seeds]
    figure = sd.TASKS[task]["figure"]
    higher = sd.FIGURES[figure][1] == "higher"

    def gap(teacher: Optional[float], value: Optional[float]) -> Optional[float]:
        if teacher is None or value is None:
            return None
        return teacher - value if higher else value - teacher

    rows: Dict[str, Any] = {}
    for name, keys in DNN_PRICINGS.items():
        rows[name] = {"figure": _stat([c["dnn"].get("figure") for c in cells]),
                      "gap": _stat([0.0] * len(cells)),
                      "energy": {k: _stat([c["dnn"]["pricings"][k] for c in cells]) for k in keys},
                      "macs": float(np.mean([c["dnn"]["macs"] for c in cells]))}
    for name in cells[0]["networks"]:
        nets = [c["networks"][name] for c in cells]
        rows[name] = {"figure": _stat([n.get("figure") for n in nets]),
                      "gap": _stat([gap(c["dnn"].get("figure"), n.get("figure"))
                                    for c, n in zip(cells, nets)]),
                      "energy": {k: _stat([n["pricings"][k] for n in nets])
                                 for k in ("digital", "loihi")},
                      "synops": float(np.mean([n["synops"] for n in nets])),
                      "neurobench": {k: float(np.mean([n["neurobench"][k] for n in nets]))
                                     for k in nets[0]["neurobench"]},
                      "digital_parts": {k: float(np.mean([n["digital_parts"][k] for n in nets]))
                                        for k in nets[0]["digital_parts"]}}
    classical = {k: _stat([(c.get("classical") or {}).get(k) for c in cells])
                 for k in (cells[0].get("classical") or {})}
    tol = 0.5 if figure.endswith("db") else 0.01
    int8, mcu = rows["DNN, int8"]["energy"]["digital_int8"]["mean"], rows["DNN, int8"]["energy"]["mcu_int8"]["mean"]
    verdict = {}
    for name, row in rows.items():
        if name.startswith("DNN"):
            continue
        g = row["gap"]["mean"]
        close = g is not None and g <= tol
        verdict[name] = {"within_tolerance": close,
                         "digital_vs_dnn_int8": row["energy"]["digital"]["mean"] / int8,
                         "loihi_vs_dnn_mcu": row["energy"]["loihi"]["mean"] / mcu,
                         "digital_vs_dnn_mcu": row["energy"]["digital"]["mean"] / mcu,
                         "gap": g}
    return {"figure": figure, "budget": sd.TASKS[task]["budget"], "rows": rows,
            "classical": classical, "tolerance": tol, "verdict": verdict}


def _fmt(stat: Optional[Dict[str, Any]], digits: int, signed: bool = False) -> str:
    if stat is None or stat["mean"] is None:
        return "—"
    sign = "+" if signed else ""
    text = f"{stat['mean']:{sign}.{digits}f}"
    if stat["ci95"] is not None:
        text += f" [{stat['ci95'][0]:{sign}.{digits}f}, {stat['ci95'][1]:{sign}.{digits}f}]"
    if stat["n"] < stat["of"]:
        text += f" ({stat['of'] - stat['n']} of {stat['of']} never)"
    return text


def _energy(row: Dict[str, Any], key: str) -> str:
    stat = row["energy"].get(key)
    if stat is None:
        return "—"
    text = common.joules(stat["mean"])
    if stat["ci95"] is not None:
        text += f" [{common.joules(stat['ci95'][0])}, {common.joules(stat['ci95'][1])}]"
    return text


def answer_lines(task: str, r: Dict[str, Any]) -> List[str]:
    """Is the SNN cheaper? The best SNN within tolerance of the teacher under each pricing."""
    unit = "dB" if r["figure"].endswith("db") else "points"
    tol = r["tolerance"] if unit == "dB" else r["tolerance"] * 100
    close = {n: v for n, v in r["verdict"].items() if v["within_tolerance"]}
    if not close:
        return [f"- **{task}**: no SNN within {tol:g} {unit} of the teacher."]
    best = min(close, key=lambda n: close[n]["digital_vs_dnn_int8"])
    v = close[best]
    cheaper = "yes" if v["digital_vs_dnn_int8"] <= 1 else "no"
    board = min(close, key=lambda n: close[n]["loihi_vs_dnn_mcu"])
    return [f"- **{task}**: {cheaper} under the digital model: the cheapest SNN within {tol:g} "
            f"{unit} of the teacher, {best}, costs {v['digital_vs_dnn_int8']:.3g}× the int8 DNN "
            f"with its SRAM traffic. On the platform references (Loihi's per-event figures "
            f"against the microcontroller board running the int8 DNN), {board} costs "
            f"{close[board]['loihi_vs_dnn_mcu']:.3g}× ({'within' if close[board]['loihi_vs_dnn_mcu'] <= 0.1 else 'not within'} "
            f"the goal of 1/10)."]


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# Energy scoreboard: accuracy against energy per inference, both sides priced alike",
             "",
             f"Generated by `benchmarks/energy.py` ({results.get('date', '')}); seeds "
             f"{results.get('seeds')}; machine: {results.get('machine', '?')} (CPU only). Mean "
             "[95% t-interval] over seeds. Every network counted and priced on 512 test samples "
             "by `neurokd report`'s model (`neurokd/metrics/pricing.py`): **digital**, the same "
             "45 nm arithmetic (Horowitz 2014) and SRAM traffic with access energy growing with "
             "the memory's size (Lemaire et al. 2022) for the DNN and the SNN; **Loihi**, the "
             "SNN at Loihi 1's per-event figures (Davies et al. 2018, standing in for Loihi 2's), "
             "a platform reference; **MCU**, the DNN in int8 at a measured microcontroller board's "
             "energy per MAC (MLPerf Tiny v1.0, 0.45 nJ), a platform reference; **arithmetic**, "
             "the DNN's multiply-adds alone, the old lower bound. Static power is in none of "
             "them. Gap: teacher minus network in the task's figure, paired by seed (positive: "
             "worse than the teacher). Networks: the DNN teacher; CUBA converted at T = 16 with "
             "4-bit graded input (qkd, 3 epochs); CUBA trained directly on rate-coded input at "
             "T = 16; sigma-delta converted, and fine-tuned towards 0.2 synaptic operations per "
             "DNN MAC, each at delta thresholds 0 (the default) and 0.05.", "",
             "## Is the SNN cheaper?", ""]
    for task, r in results.get("datasets", {}).items():
        lines += answer_lines(task, r)
    for task, r in results.get("datasets", {}).items():
        label, better = sd.FIGURES[r["figure"]]
        digits = 2 if r["figure"].endswith("db") else 4
        lines += ["", f"## {task}: {label} ({better} is better)", "",
                  f"Budget `{' '.join(r['budget'])}`.", "",
                  "| network | figure | gap to teacher | digital | Loihi | MCU | arithmetic | "
                  "digital / DNN int8 digital |", "|---|---|---|---|---|---|---|---|"]
        int8 = r["rows"]["DNN, int8"]["energy"]["digital_int8"]["mean"]
        for name, row in r["rows"].items():
            digital = "digital_fp32" if name == "DNN, fp32" else "digital_int8" if name == "DNN, int8" else "digital"
            arith = {"DNN, fp32": "arithmetic_fp32", "DNN, int8": "arithmetic_int8"}.get(name, "")
            ratio = row["energy"][digital]["mean"] / int8
            lines.append(f"| {name} | {_fmt(row['figure'], digits)} | "
                         f"{'' if name.startswith('DNN') else _fmt(row['gap'], digits, True)} | "
                         f"{_energy(row, digital)} | {_energy(row, 'loihi')} | "
                         f"{_energy(row, 'mcu_int8')} | {_energy(row, arith) if arith else '—'} | "
                         f"{ratio:.3g} |")
        for name, stat in (r.get("classical") or {}).items():
            lines.append(f"| {name} (classical) | {_fmt(stat, digits)} | | | | | | |")
        lines += ["", "Where the digital model's energy goes (mean joules per inference), and "
                      "NeuroBench's counts (effective operations where the weight is not zero; "
                      "synops, which the energy is priced from, counts every synapse):", "",
                  "| network | arithmetic | weights | state | events | synops | effective MACs | "
                  "effective ACs | dense ops |", "|---|---|---|---|---|---|---|---|---|"]
        for name, row in r["rows"].items():
            if name.startswith("DNN"):
                continue
            p, nb = row["digital_parts"], row["neurobench"]
            lines.append(f"| {name} | {common.joules(p['arithmetic'])} | {common.joules(p['weights'])} | "
                         f"{common.joules(p['state'])} | {common.joules(p['events'])} | "
                         f"{row['synops']:,.0f} | {nb['effective_macs']:,.0f} | "
                         f"{nb['effective_acs']:,.0f} | {nb['dense_ops']:,.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: Dict[str, Any], path: Path) -> None:
    """Per workload, the task's figure against energy per inference (digital model), every
    network, the Pareto front drawn."""
    from neurokd.plotting import pyplot, save_figure

    plt = pyplot()
    tasks = list(results.get("datasets", {}))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        r = results["datasets"][task]
        higher = sd.FIGURES[r["figure"]][1] == "higher"
        pts = []
        for name, row in r["rows"].items():
            key = ("digital_fp32" if name == "DNN, fp32" else "digital_int8" if name == "DNN, int8"
                   else "digital")
            e, f = row["energy"][key]["mean"], row["figure"]["mean"]
            if e is None or f is None:
                continue
            pts.append((e, f))
            ax.scatter([e], [f], marker="s" if name.startswith("DNN") else "o", s=40, label=name)
        front, best = [], None
        for e, f in sorted(pts):
            if best is None or (f > best if higher else f < best):
                front.append((e, f))
                best = f
        if front:
            ax.plot(*zip(*front), color="k", lw=0.8, ls="--", label="Pareto front")
        ax.set_xscale("log")
        if not higher:
            ax.invert_yaxis()
        ax.set(title=task, xlabel="energy / inference (J, digital model)",
               ylabel=sd.FIGURES[r["figure"]][0])
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=7, loc="best")
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(sd.TASKS), 3))
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    bench = CellBenchmark("energy", lambda task: plan(task, seeds, args.mnist_dir),
                          lambda task, res: summarize(task, res, seeds), markdown, plot=plot,
                          extra={"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                                 "torch_threads": 1})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
