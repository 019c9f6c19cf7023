"""Throughput: the fused Loihi-numerics kernel, the emulator against Lava, data-parallel training.

Every figure is a ratio of two things measured side by side in this one run, on this machine:

1. **Training step** (forward, backward, SGD step; batch 64, one thread, binary input spikes at
   20 %) of the quantized student in Loihi numerics (``QuantSpikingNet``, 8-bit, fused CUBA
   kernel) against slayer's float ``SpikingNet`` step on the same spec, against the same QAT step
   with the step-by-step reference kernel (``cuba_dynamics_reference``, the implementation before
   the fused one), and against snntorch's equivalent (``nn.Linear`` + ``snntorch.Synaptic``, a
   CUBA neuron, with the same decays and threshold). The four steps are interleaved rep by rep;
   each ratio is the median of the per-rep ratios, with a 95 % bootstrap interval.
2. **Emulator against Lava** on the same network and the same ≥ 1000 samples: a student trained
   briefly on the MNIST split, rounded to 8 bits (ptq) and exported; Lava's CPU simulator runs it
   sample by sample, the batched PyTorch model in Loihi numerics runs the same windows, and every
   output spike is compared.
3. **Data parallel**: ``torchrun --nproc_per_node 2`` against 1 process, ``train-snn`` on the
   MNIST split (gloo on the CPU, one thread per process); epoch seconds from each run's metrics,
   runs alternated; the accuracies must agree.

No GPU was lent to this project's sessions: every figure is CPU-only and says so.

    python benchmarks/throughput.py [--reps 30] [--lava-samples 1000] [--ddp-reps 3]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, parser, write_results  # noqa: E402

STEP_CASES = [(784, 256, 10, 24), (64, 256, 10, 16)]
BATCH = 64


def bootstrap_median(x: List[float], reps: int = 2000, seed: int = 0) -> List[float]:
    rng = np.random.default_rng(seed)
    a = np.asarray(x, dtype=float)
    meds = np.median(rng.choice(a, size=(reps, len(a)), replace=True), axis=1)
    return [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))]


def machine() -> Dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "device": "cpu (no GPU lent)" if not torch.cuda.is_available() else
            torch.cuda.get_device_name(0), "torch": torch.__version__,
            "load_average_at_start": [round(v, 2) for v in load]}


# ---------------------------------------------------------------- 1. training steps
def _snntorch_net(inp: int, hid: int, out: int, alpha: float, beta: float, threshold: float):
    import snntorch as snn
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(inp, hid, bias=False), nn.Linear(hid, out, bias=False)
            self.l1 = snn.Synaptic(alpha=alpha, beta=beta, threshold=threshold)
            self.l2 = snn.Synaptic(alpha=alpha, beta=beta, threshold=threshold)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, in, T)
            syn1, mem1 = self.l1.init_synaptic()
            syn2, mem2 = self.l2.init_synaptic()
            out = []
            for t in range(x.shape[-1]):
                s1, syn1, mem1 = self.l1(self.fc1(x[..., t]), syn1, mem1)
                s2, syn2, mem2 = self.l2(self.fc2(s1), syn2, mem2)
                out.append(s2)
            return torch.stack(out, -1)

    return Net()


def _stepper(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             around: Callable[[], Any] = None) -> Callable[[], None]:
    import contextlib

    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        with (around() if around else contextlib.nullcontext()):
            loss = torch.nn.functional.cross_entropy(model(x).sum(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return step


def _reference_kernel():
    """The QAT student with the step-by-step kernel it used before the fused one."""
    import contextlib

    from neurokd.models.cuba import numerics
    from neurokd.models.cuba import quantized as qsnn

    @contextlib.contextmanager
    def patched():
        qsnn.cuba_dynamics = numerics.cuba_dynamics_reference
        try:
            yield
        finally:
            qsnn.cuba_dynamics = numerics.cuba_dynamics

    return patched


def training_steps(reps: int) -> List[Dict[str, Any]]:
    from neurokd.hardware import load_profile
    from neurokd.models.cuba.net import SpikingNet
    from neurokd.models.spec import ArchSpec, DenseLayer
    from neurokd.models.cuba.quantized import QuantSpikingNet

    profile = load_profile("loihi2")
    rows = []
    for inp, hid, out, steps in STEP_CASES:
        spec = ArchSpec(input_shape=[inp], layers=[DenseLayer(units=hid), DenseLayer(units=out)])
        torch.manual_seed(0)
        x = (torch.rand(BATCH, inp, steps) < 0.2).float()
        y = torch.randint(0, out, (BATCH,))
        slayer_net = SpikingNet(spec, profile).train()
        fused = QuantSpikingNet.from_snn(slayer_net, [8, 8]).train()
        reference = QuantSpikingNet.from_snn(slayer_net, [8, 8]).train()
        n = spec.neuron
        snt = _snntorch_net(inp, hid, out, 1 - n.current_decay, 1 - n.voltage_decay, n.threshold)
        runs = {"slayer_float": _stepper(slayer_net, x, y), "qat_fused": _stepper(fused, x, y),
                "qat_reference_kernel": _stepper(reference, x, y, _reference_kernel()),
                "snntorch": _stepper(snt, x, y)}
        for fn in runs.values():  # warm up
            fn()
            fn()
        times: Dict[str, List[float]] = {k: [] for k in runs}
        for _ in range(reps):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        row: Dict[str, Any] = {"network": f"{inp}-{hid}-{out}", "timesteps": steps, "batch": BATCH,
                               "reps": reps,
                               "ms": {k: statistics.median(v) * 1e3 for k, v in times.items()}}
        for a, b in (("qat_fused", "slayer_float"), ("qat_fused", "snntorch"),
                     ("snntorch", "slayer_float"), ("qat_reference_kernel", "qat_fused")):
            ratios = [p / q for p, q in zip(times[a], times[b])]
            row[f"{a}_over_{b}"] = {"median": statistics.median(ratios),
                                    "ci": bootstrap_median(ratios)}
        rows.append(row)
        print(f"step {row['network']} T{steps}: " + ", ".join(
            f"{k} {v['median']:.2f}" for k, v in row.items() if "_over_" in k), flush=True)
    return rows


# ---------------------------------------------------------------- 2. emulator vs Lava
EMULATOR_CASES = [("digits", 128, 16), ("mnist", 128, 16)]


def emulator_vs_lava(dataset: str, hidden: int, timesteps: int, mnist_dir: str, samples: int,
                     work: Path) -> Dict[str, Any]:
    """A student trained briefly on ``dataset``, rounded to 8 bits (ptq), exported; the same
    ``samples`` windows through Lava's simulator and through the batched emulator. The windows
    are the test split's, followed by validation and training samples where the test split is
    smaller than ``samples`` (digits): throughput and spike agreement do not need held-out data."""
    import dataclasses

    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.data.datasets import Split
    from neurokd.deploy.export import read_meta

    cfg = build_config(overrides=[
        f"data.dataset={dataset}", f"data.data_dir={mnist_dir if dataset == 'mnist' else ''}",
        f"student.hidden={hidden}", f"student.timesteps={timesteps}", "student.epochs=2",
        "quant.method=ptq", "quant.bits=8"])
    if dataset != "mnist":
        cfg.data.data_dir = None
    ds = pipeline.load_data(cfg)
    snn, _ = pipeline.train_snn(cfg, ds, progress=False)
    meta = pipeline.snn_meta(cfg, ds)
    q, qm = pipeline.quantize(snn, meta, cfg, ds, progress=False)
    net = pipeline.export_snn(q, work / f"{dataset}.net", meta)
    meta = read_meta(net)
    splits = (ds.test, ds.val, ds.train)
    pool = Split(np.concatenate([s.x for s in splits])[:samples],
                 np.concatenate([s.y for s in splits])[:samples])
    if len(pool) < samples:
        raise SystemExit(f"{dataset} has {len(pool)} samples, fewer than {samples}")
    lava = pipeline.run_on_lava(net, dataclasses.replace(ds, test=pool), meta, samples, "sim",
                                cfg.seed, progress=False)
    frames, lava_spikes = lava.pop("_frames"), lava.pop("_spikes")
    q.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # Lava's simulator runs on every core, too
    try:
        reps = []
        with torch.no_grad():
            for _ in range(15):
                t0 = time.perf_counter()
                ours = torch.cat([q(frames[i:i + 500]) for i in range(0, len(frames), 500)]).numpy()
                reps.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    emu_s = statistics.median(reps)
    return {"dataset": dataset,
            "network": f"{'-'.join(str(d) for d in meta['spec']['input_shape'])}-{hidden}-"
                       f"{ds.num_classes} dense, T {meta['timesteps']} (+{meta['window_pad']}), 8-bit ptq",
            "samples": int(len(frames)), "test_samples": min(samples, len(ds.test)),
            "lava_backend": lava["backend"], "lava_seconds": lava["lava_seconds"],
            "lava_samples_per_s": lava["lava_samples_per_s"],
            "emulator_threads": os.cpu_count() or 1, "emulator_batch": 500,
            "emulator_seconds": emu_s, "emulator_samples_per_s": len(frames) / emu_s,
            "emulator_over_lava": (len(frames) / emu_s) / lava["lava_samples_per_s"],
            "spike_match": float((ours == lava_spikes).mean()),
            "samples_exact": int((ours == lava_spikes).all(axis=(1, 2)).sum()),
            "quant_test_accuracy": qm["quant_accuracy"]}


# ---------------------------------------------------------------- 3. data parallel
def data_parallel(mnist_dir: str, reps: int, work: Path, epochs: int = 3) -> Dict[str, Any]:
    """``train-snn`` under ``torchrun`` with 1 and 2 processes, alternated; the seconds of every
    training epoch (validation excluded) read from the runs' epoch lines."""
    import re

    args = ["train-snn", "--dataset", "mnist", "--data-dir", mnist_dir, "--set", "student.hidden=256",
            "--timesteps", "24", "--epochs", str(epochs), "--set", "student.batch_size=64",
            "--set", "student.patience=5", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seconds: Dict[int, List[float]] = {1: [], 2: []}
    acc: Dict[int, List[float]] = {1: [], 2: []}
    for r in range(reps):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            out = work / f"ddp{n}_{r}"
            res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={n}", "-m", "neurokd.cli", *args,
                                  "--out", str(out)], env=env, capture_output=True, text=True,
                                 cwd=ROOT)
            if res.returncode:
                raise SystemExit(f"torchrun with {n} processes failed:\n{res.stderr[-3000:]}")
            seconds[n] += [float(x) for x in re.findall(r"snn: epoch \d+/\d+: .*?, ([0-9.]+) s;",
                                                        res.stdout)]
            acc[n].append(json.loads((out / "metrics.json").read_text())["snn_accuracy"])
    speed = [a / b for a, b in zip(seconds[1], seconds[2])]
    return {"command": f"train-snn mnist 784-256-10, T 24, global batch 64, {epochs} epochs",
            "epoch_seconds_1": statistics.median(seconds[1]),
            "epoch_seconds_2": statistics.median(seconds[2]),
            "speedup_2_over_1": {"median": statistics.median(speed), "ci": bootstrap_median(speed)},
            "epochs_timed": len(speed), "accuracy_1": acc[1][0], "accuracy_2": acc[2][0],
            "accuracies_equal": acc[1] == acc[2],
            # every process draws the whole global batch's encoding (so that the draws are one
            # process's): that part of a step does not shrink with more processes
            "note": "each process encodes the whole global batch; slayer's per-step overhead does "
                    "not halve with the batch"}


def markdown(r: Dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"# Throughput ({r['date']})", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['device']}, torch {m['torch']}; load "
             f"average at start {m['load_average_at_start']}. Every figure is a ratio measured "
             "side by side in this run; intervals are 95 % bootstrap intervals of the median.", "",
             "## Training step (batch 64, one thread)", "",
             "| network | T | slayer float ms | QAT fused ms | QAT reference-kernel ms | snntorch ms "
             "| QAT / slayer | QAT / snntorch | snntorch / slayer | reference / fused |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def f(v: Dict[str, Any]) -> str:
        return f"{v['median']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"

    for row in r.get("steps", []):
        ms = row["ms"]
        lines.append(f"| {row['network']} | {row['timesteps']} | {ms['slayer_float']:.1f} | "
                     f"{ms['qat_fused']:.1f} | {ms['qat_reference_kernel']:.1f} | {ms['snntorch']:.1f} | "
                     f"{f(row['qat_fused_over_slayer_float'])} | {f(row['qat_fused_over_snntorch'])} | "
                     f"{f(row['snntorch_over_slayer_float'])} | {f(row['qat_reference_kernel_over_qat_fused'])} |")
    if r.get("emulator"):
        lines += ["", "## Emulator against Lava's CPU simulator", "",
                  "The same network and the same windows through both; the emulator is the batched "
                  "PyTorch model in Loihi numerics (`QuantSpikingNet`, batches of 500, all cores, as "
                  "Lava's simulator uses them).", "",
                  "| network | samples | Lava samples/s | emulator samples/s | emulator / Lava | "
                  "spike match | samples exact |", "|---|---|---|---|---|---|---|"]
        for e in r["emulator"]:
            lines.append(f"| {e['dataset']}: {e['network']} | {e['samples']} ({e['test_samples']} "
                         f"test) | {e['lava_samples_per_s']:.1f} | {e['emulator_samples_per_s']:.0f} | "
                         f"**{e['emulator_over_lava']:.0f}×** | {e['spike_match']:.4f} | "
                         f"{e['samples_exact']} of {e['samples']} |")
    d = r.get("ddp")
    if d:
        lines += ["", "## Data parallel (torchrun, gloo, one thread per process)", "",
                  f"{d['command']}: epoch {d['epoch_seconds_1']:.2f} s with 1 process, "
                  f"{d['epoch_seconds_2']:.2f} s with 2; speed-up {f(d['speedup_2_over_1'])} over "
                  f"{d['epochs_timed']} epochs; test accuracy {d['accuracy_1']:.4f} (1) and "
                  f"{d['accuracy_2']:.4f} (2)" + ("." if d.get("accuracies_equal", True) else
                                                 "; they differ in float summation order only "
                                                 "(the same batches and encodings)."),
                  "", "Why less than 2×: every process encodes the whole global batch (its random "
                  "draws must be one process's), about 8 ms of a 54 ms step here, and a step of half "
                  "the batch costs more than half (25 ms against 46 ms: slayer's time loop has a "
                  "fixed cost per step)."]
    lines += ["", "GPU: none was lent to this project, so there are no GPU figures; `--device cuda` "
              "is untested on hardware. `benchmarks/gpu_check.py` is the check to run where one "
              "is lent (integers against the CPU, every stage, QAT step and emulator speed-ups; "
              "results in `gpu_check.md`)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = parser(__doc__, ["mnist"], None)
    ap.add_argument("--reps", type=int, default=30, help="interleaved repetitions per step")
    ap.add_argument("--lava-samples", type=int, default=1000)
    ap.add_argument("--ddp-reps", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=["steps", "emulator", "ddp"],
                    default=["steps", "emulator", "ddp"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    path = out / "throughput.json"
    results: Dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    results.update(date=time.strftime("%Y-%m-%d"), machine=machine())
    with tempfile.TemporaryDirectory() as tmp:
        if "steps" in args.only:
            results["steps"] = training_steps(args.reps)
        if "emulator" in args.only:
            results["emulator"] = []
            for dataset, hidden, steps in EMULATOR_CASES:
                row = emulator_vs_lava(dataset, hidden, steps, args.mnist_dir, args.lava_samples,
                                       Path(tmp))
                results["emulator"].append(row)
                print(f"emulator/lava {dataset}: {row['emulator_over_lava']:.0f}x, match "
                      f"{row['spike_match']}", flush=True)
        if "ddp" in args.only:
            results["ddp"] = data_parallel(args.mnist_dir, args.ddp_reps, Path(tmp))
    write_results(out, "throughput", results, markdown)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
