"""snntorch → NIR → neurokd → Lava, and neurokd → NIR → snntorch (not part of the test suite).

For each of a few small snntorch networks trained on digits (rate-coded windows of T = 16,
neurokd's own encoding, one seed): test accuracy in snntorch; after ``neurokd import`` (the graph
as written, simulated in float64, and the imported float slayer network); after post-training
quantization to 8 bits (the chip's integers, PyTorch = Lava); in Lava's CPU simulator on the whole
test set, with its spike match. Then the other way: the imported float network and its 8-bit
version exported with ``export --format nir``, loaded with snntorch's ``import_from_nir`` and run
on the same test windows: output spike agreement with neurokd.

    OMP_NUM_THREADS=1 python benchmarks/nir_interop.py            # about 3 minutes on one CPU core

Writes benchmarks/results/nir_interop.json and nir_interop.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

import nir
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.data.encoders import get_encoder
from neurokd.interop import nir as nir_io
from neurokd.deploy.export import read_meta
from neurokd.training import encoded_batches, seed_everything

from common import write_results  # run as a script: benchmarks/ is on the path

ROOT = Path(__file__).resolve().parents[1]
T = 16


def leaky(shape, beta=0.9):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False)


def synaptic(n, alpha=0.8, beta=0.9):
    return snn.Synaptic(alpha=torch.full((n,), alpha), beta=torch.full((n,), beta),
                        threshold=torch.ones(n), init_hidden=True, reset_mechanism="zero",
                        reset_delay=False)


NETWORKS: Dict[str, Callable[[], torch.nn.Module]] = {
    "dense LIF 64-128-10": lambda: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128, bias=False), leaky(128),
        torch.nn.Linear(128, 10, bias=False), leaky(10)),
    "dense LIF 64-128-10, biases": lambda: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128), leaky(128), torch.nn.Linear(128, 10),
        leaky(10)),
    "dense CubaLIF (Synaptic) 64-128-10": lambda: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128, bias=False), synaptic(128),
        torch.nn.Linear(128, 10, bias=False), synaptic(10)),
    "conv LIF 8c3s2-flatten-10": lambda: torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), leaky((8, 4, 4)),
        torch.nn.Flatten(), torch.nn.Linear(128, 10, bias=False), leaky(10)),
}


def reset(net: torch.nn.Module) -> None:
    for m in net.modules():
        for name in ("syn", "mem"):
            if isinstance(getattr(m, name, None), torch.Tensor):
                setattr(m, name, torch.zeros(0))


def train(net: torch.nn.Module, ds, epochs: int, seed: int) -> float:
    """Train on rate-coded windows with snntorch; returns the seconds it took."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(seed)
    enc = get_encoder("rate")
    x_all, y_all = torch.as_tensor(ds.train.x), torch.as_tensor(ds.train.y)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            x = enc(x_all[idx], T, gen)
            reset(net)
            counts = torch.stack([net(x[..., t]) for t in range(T)], -1).sum(-1)
            loss = torch.nn.functional.cross_entropy(counts, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def export_agreement(model, ds, prepare, path: Path, seed: int) -> Dict[str, float]:
    """neurokd's output spikes against snntorch's run of the exported graph, on the test set."""
    nir_io.export_nir(model, path, {"encoder": "rate", "timesteps": T})
    theirs = import_from_nir(nir.read(str(path)))
    match = agree = n = 0.0
    for xb, _ in encoded_batches(ds.test, prepare, seed=seed):
        x_nir, lag = nir_io.nir_input_window(model, xb)
        with torch.no_grad():
            ours = model(xb)
        m = nir_io.spike_agreement(ours, nir_io.snntorch_spikes(theirs, x_nir), lag)
        match += m["spike_match"] * len(xb)
        agree += m["prediction_agreement"] * len(xb)
        n += len(xb)
    return {"spike_match": match / n, "prediction_agreement": agree / n}


def run_one(name: str, build, epochs: int, seed: int, work: Path) -> Dict[str, Any]:
    cfg = build_config(overrides=[f"student.timesteps={T}", "quant.method=ptq", "quant.bits=8",
                                  f"seed={seed}"])
    ds = pipeline.load_data(cfg)
    seed_everything(seed)
    net = build()
    seconds = train(net, ds, epochs, seed)
    sample = (1, 8, 8)
    path = work / "graph.nir"
    nir.write(str(path), export_to_nir(net, torch.zeros(1, *sample), ignore_dims=[0]))
    # snntorch's own test accuracy, on the windows neurokd evaluates (first T frames)
    prepare0 = pipeline.make_prepare("rate", T, 0)
    correct = 0
    for xb, yb in encoded_batches(ds.test, prepare0, seed=seed):
        correct += int((nir_io.snntorch_spikes(net, xb).sum(-1).argmax(1).numpy() == yb).sum())
    snntorch_acc = correct / len(ds.test)
    model, meta, imported = pipeline.import_nir(path, cfg, ds)
    qmodel, qmetrics = pipeline.quantize(model, meta, cfg, ds, progress=False)
    net_path = pipeline.export_snn(qmodel, work / "network.net", meta, ds)
    start = time.perf_counter()
    lava = pipeline.verify(qmodel, net_path, ds, read_meta(net_path), len(ds.test), "sim",
                           seed=seed, progress=False)
    lava_seconds = time.perf_counter() - start
    prepare = pipeline.make_prepare("rate", T, model.window_pad)
    return {
        "train_epochs": epochs, "train_seconds": seconds,
        "snntorch_accuracy": snntorch_acc,
        "nir_reference_accuracy": imported["nir_reference_accuracy"],
        "imported_float_accuracy": imported["snn_accuracy"],
        "imported_unrounded_accuracy": imported["float_unrounded_accuracy"],
        "import_spike_match": imported["import_spike_match"],
        "quant8_accuracy": qmetrics["quant_accuracy"],
        "lava_accuracy": lava["lava_accuracy"], "lava_samples": lava["lava_samples"],
        "lava_spike_match": lava["lava_spike_match"], "lava_seconds": lava_seconds,
        "approximations": [a["kind"] for a in imported["approximations"]],
        "export_float": export_agreement(model, ds, prepare, work / "float.nir", seed),
        "export_quant8": export_agreement(qmodel, ds, prepare, work / "quant8.nir", seed),
    }


def markdown(res: Dict[str, Any]) -> str:
    lines = [
        "# NIR: snntorch → neurokd → Lava, and back",
        "",
        f"Generated by `benchmarks/nir_interop.py` ({res['date']}, {res['machine']}, OMP_NUM_THREADS=1); "
        f"digits (1078 train / 449 test), rate coding, T = {T}, seed {res['seed']}, "
        f"{res['epochs']} snntorch epochs. Accuracy on the whole test set. `reference`: the NIR "
        "graph as written, simulated in float64 (equal to snntorch's own run); `float`: after "
        "`neurokd import` (slayer's float model, 8-bit weight grid); `unrounded`: the same "
        "weights without slayer's rounding; `8-bit`: after `neurokd quantize --method ptq` "
        "(chip integers); `Lava`: Lava's CPU simulator on all test samples, with its spike match "
        "against PyTorch. Export: the imported float and 8-bit networks written with `export "
        "--format nir`, run by snntorch's `import_from_nir`: output spike-bin match and "
        "prediction agreement with neurokd.",
        "",
        "| network | snntorch | reference | float | unrounded | 8-bit | Lava | Lava match | "
        "export float: match / pred. | export 8-bit: match / pred. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["networks"].items():
        ef, eq = r["export_float"], r["export_quant8"]
        lines.append(
            f"| {name} | {r['snntorch_accuracy']:.4f} | {r['nir_reference_accuracy']:.4f} | "
            f"{r['imported_float_accuracy']:.4f} | {r['imported_unrounded_accuracy']:.4f} | "
            f"{r['quant8_accuracy']:.4f} | {r['lava_accuracy']:.4f} | "
            f"{r['lava_spike_match']:.4f} | {ef['spike_match']:.4f} / "
            f"{ef['prediction_agreement']:.4f} | {eq['spike_match']:.4f} / "
            f"{eq['prediction_agreement']:.4f} |")
    lines += ["", "Approximations the import reported (kinds, per network):", ""]
    for name, r in res["networks"].items():
        lines.append(f"- {name}: {', '.join(sorted(set(r['approximations'])))}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    res: Dict[str, Any] = {"date": datetime.date.today().isoformat(),
                           "machine": f"{platform.machine()} CPU", "seed": args.seed,
                           "epochs": args.epochs, "timesteps": T, "networks": {}}
    with tempfile.TemporaryDirectory(prefix="neurokd-nir-") as tmp:
        for i, (name, build) in enumerate(NETWORKS.items()):
            work = Path(tmp) / str(i)
            work.mkdir()
            start = time.perf_counter()
            res["networks"][name] = run_one(name, build, args.epochs, args.seed, work)
            r = res["networks"][name]
            print(f"{name}: snntorch {r['snntorch_accuracy']:.4f}, float "
                  f"{r['imported_float_accuracy']:.4f}, 8-bit {r['quant8_accuracy']:.4f}, Lava "
                  f"{r['lava_accuracy']:.4f} (match {r['lava_spike_match']:.4f}); export match "
                  f"{r['export_float']['spike_match']:.4f} / {r['export_quant8']['spike_match']:.4f}"
                  f" ({time.perf_counter() - start:.0f} s)", flush=True)
    out = Path(args.out)
    write_results(out, "nir_interop", res, markdown)
    print(markdown(res))


if __name__ == "__main__":
    main()
