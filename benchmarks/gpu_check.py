"""The GPU path, run: what a developer runs on a machine with a GPU whenever one is lent (not part
of the test suite; CI has no GPU).

One short script, side by side on the GPU and on the CPU of the same machine:

1. **integers**: networks of every family run on both devices and their integers compared
   (a quantized CUBA network's output spikes; a sigma-delta network's output payloads, whose
   state is exact integers in float64, so the comparison is bit for bit);
2. **every stage on the device**: a student trained (``train-snn``), quantized (QAT),
   converted (``convert -T``) and converted to sigma-delta (``convert``), each with
   ``--device``; the test accuracy each reaches;
3. **speed**: the QAT training step and the integer emulator's samples per second on the GPU
   against the CPU (median of repeats, bootstrap interval of the ratio).

Results: ``benchmarks/results/gpu_check.{json,md}`` with the card's name. ``--device cpu``
runs the same script with the CPU standing in for the GPU (every comparison trivially equal):
how the script itself is checked.

    python benchmarks/gpu_check.py                 # on a machine with a GPU
    python benchmarks/gpu_check.py --device cpu --quick   # the script's own check
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bootstrap_median  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _median_ms(fn: Callable[[], Any], reps: int, sync: Callable[[], None]) -> List[float]:
    fn()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def integers(device: torch.device, quick: bool) -> List[Dict[str, Any]]:
    """Every family's integers on ``device`` against the CPU."""
    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.convert.sdnn import convert_sdnn
    from neurokd.hardware import load_profile
    from neurokd.models.cuba.quantized import QuantSpikingNet
    from neurokd.training import make_prepare

    cfg = build_config(overrides=["student.epochs=1", "teacher.epochs=3", "student.timesteps=8"])
    ds = pipeline.load_data(cfg)
    rows = []
    snn, _ = pipeline.train_snn(cfg, ds, progress=False)
    q = QuantSpikingNet.from_snn(snn.cpu(), [8] * snn.spec.num_spiking_layers).eval()
    prepare = make_prepare(cfg.student.encoder, cfg.student.timesteps, q.window_pad)
    x = prepare(torch.as_tensor(ds.test.x[:64 if quick else 449]), torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = q(x)
        dev = q.to(device)(x.to(device)).cpu()
    rows.append({"network": "CUBA, 8-bit (QuantSpikingNet)", "samples": len(x),
                 "identical": bool(torch.equal(cpu, dev)),
                 "differing_values": int((cpu != dev).sum())})
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    sd, _ = convert_sdnn(teacher, ds, "direct8", load_profile("loihi2"))
    prep = make_prepare("direct8", sd.timesteps, 0)
    xs = prep(torch.as_tensor(ds.test.x[:64 if quick else 449]), torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = sd(xs)
        dev = sd.to(device)(xs.to(device)).cpu()
    rows.append({"network": "sigma-delta, 8-bit (SigmaDeltaNet)", "samples": len(xs),
                 "identical": bool(torch.equal(cpu, dev)),
                 "differing_values": int((cpu != dev).sum())})
    return rows


def stages(device: str, quick: bool) -> List[Dict[str, Any]]:
    """Each training stage run with ``--device``: seconds and test accuracy."""
    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.convert.dnn import convert_dnn
    from neurokd.convert.sdnn import convert_run
    from neurokd.hardware import load_profile

    epochs = 1 if quick else 3
    cfg = build_config(overrides=[f"device={device}", f"student.epochs={epochs}",
                                  f"teacher.epochs={epochs}", "student.timesteps=8",
                                  f"quant.epochs={epochs}", f"convert.epochs={epochs}"])
    ds = pipeline.load_data(cfg)
    rows = []
    t0 = time.perf_counter()
    snn, m = pipeline.train_snn(cfg, ds, progress=False)
    rows.append({"stage": "train-snn", "seconds": time.perf_counter() - t0,
                 "accuracy": m["snn_accuracy"]})
    t0 = time.perf_counter()
    _, qm = pipeline.quantize(snn, pipeline.snn_meta(cfg, ds), cfg, ds, progress=False)
    rows.append({"stage": "quantize (QAT)", "seconds": time.perf_counter() - t0,
                 "accuracy": qm["quant_accuracy"]})
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    t0 = time.perf_counter()
    _, cm = convert_dnn(teacher, ds, 8, cfg.convert, load_profile(cfg.hardware),
                        progress=False, device=device)
    rows.append({"stage": "convert -T 8 (qkd)", "seconds": time.perf_counter() - t0,
                 "accuracy": cm["snn_accuracy"]})
    t0 = time.perf_counter()
    sd_cfg = build_config(base=cfg.model_dump(mode="json"),
                          overrides=["student.encoder=direct8", "convert.neuron=sdnn",
                                     "convert.target_rate=0.5"])
    _, sm = convert_run(sd_cfg, ds, teacher)
    rows.append({"stage": "convert --neuron sdnn --target-rate 0.5", "seconds":
                 time.perf_counter() - t0, "accuracy": sm["snn_accuracy"]})
    return rows


def speed(device: torch.device, reps: int) -> List[Dict[str, Any]]:
    """QAT step and emulator throughput on ``device`` against the CPU."""
    from neurokd.hardware import load_profile
    from neurokd.models.cuba.net import SpikingNet
    from neurokd.models.cuba.quantized import QuantSpikingNet
    from neurokd.models.spec import ArchSpec, DenseLayer

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for inp, hid, out, steps, batch in ((784, 256, 10, 24, 256), (64, 128, 10, 16, 512)):
        spec = ArchSpec(input_shape=[inp], layers=[DenseLayer(units=hid), DenseLayer(units=out)])
        torch.manual_seed(0)
        base = SpikingNet(spec, load_profile("loihi2"))
        x = (torch.rand(batch, inp, steps) < 0.2).float()
        y = torch.randint(0, out, (batch,))
        times: Dict[str, Dict[str, List[float]]] = {}
        for where in ("cpu", str(device)):
            q = QuantSpikingNet.from_snn(base, [8, 8]).to(where).train()
            opt = torch.optim.Adam(q.parameters(), lr=1e-3)
            xd, yd = x.to(where), y.to(where)

            def step() -> None:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(q(xd).sum(-1), yd).backward()
                opt.step()

            def emulate() -> None:
                with torch.no_grad():
                    q.eval()(xd)
                q.train()

            times[where] = {"qat_step": _median_ms(step, reps, sync),
                            "emulator": _median_ms(emulate, reps, sync)}
        row: Dict[str, Any] = {"network": f"{inp}-{hid}-{out}", "timesteps": steps, "batch": batch}
        for key in ("qat_step", "emulator"):
            cpu_ms, dev_ms = times["cpu"][key], times[str(device)][key]
            ratios = [c / d for c, d in zip(cpu_ms, dev_ms)]
            row[key] = {"cpu_ms": statistics.median(cpu_ms), "device_ms": statistics.median(dev_ms),
                        "speedup": statistics.median(ratios), "ci": bootstrap_median(ratios)}
        row["emulator_samples_per_s_device"] = batch / (row["emulator"]["device_ms"] / 1e3)
        rows.append(row)
    return rows


def markdown(r: Dict[str, Any]) -> str:
    lines = ["# The GPU path, run", "",
             f"Generated by `benchmarks/gpu_check.py` ({r['date']}) on {r['card']} against "
             f"{r['cpu_cores']} CPU cores of the same machine ({r['cpu']}); torch {r['torch']}.", "",
             "## Integers: the device against the CPU", "",
             "| network | samples | identical | differing values |", "|---|---|---|---|"]
    lines += [f"| {x['network']} | {x['samples']} | {'yes' if x['identical'] else 'NO'} | "
              f"{x['differing_values']} |" for x in r["integers"]]
    lines += ["", "## Every stage on the device", "", "| stage | seconds | test accuracy |",
              "|---|---|---|"]
    lines += [f"| {x['stage']} | {x['seconds']:.1f} | {x['accuracy']:.4f} |" for x in r["stages"]]
    lines += ["", "## Speed: the device against the CPU (median ms; speed-up with its 95% "
              "bootstrap interval)", "",
              "| network | T | batch | QAT step CPU | QAT step device | speed-up | emulator CPU | "
              "emulator device | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["speed"]:
        q, e = x["qat_step"], x["emulator"]
        lines.append(f"| {x['network']} | {x['timesteps']} | {x['batch']} | {q['cpu_ms']:.1f} | "
                     f"{q['device_ms']:.1f} | {q['speedup']:.2f} [{q['ci'][0]:.2f}, {q['ci'][1]:.2f}] "
                     f"| {e['cpu_ms']:.1f} | {e['device_ms']:.1f} | {e['speedup']:.2f} "
                     f"[{e['ci'][0]:.2f}, {e['ci'][1]:.2f}] |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from neurokd.fileio import atomic_path, write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer samples, epochs and repeats")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU here; run it where one is lent, or with "
              "--device cpu to check the script", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU (standing in)"
    r = {"date": time.strftime("%Y-%m-%d"), "card": card, "device": str(device),
         "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
         "torch": torch.__version__, "quick": args.quick}
    r["integers"] = integers(device, args.quick)
    r["stages"] = stages(str(device), args.quick)
    r["speed"] = speed(device, 3 if args.quick else 15)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "gpu_check.json", r)
    with atomic_path(out / "gpu_check.md") as md:
        md.write_text(markdown(r))
    print(markdown(r))
    return 0 if all(x["identical"] for x in r["integers"]) else 1


if __name__ == "__main__":
    sys.exit(main())
