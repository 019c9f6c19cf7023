"""NeuroBench's view of neurokd networks: the ``neurobench`` package's own metrics against
neurokd's counts on the same networks and spikes (not part of the test suite; ``neurobench`` is
an optional extra: ``pip install 'neurokd[neurobench]'``, or ``pip install --no-deps
neurobench`` where its heavier dependencies are not wanted: these metrics need none of them).

The shared network: a neurokd SNN's own spike trains replayed, step by step, through torch
``Linear`` layers holding its integer weights and ``ReLU`` activations that pass its spikes on,
wrapped in NeuroBench's ``TorchModel``. NeuroBench then counts what it always counts (each
connection layer's non-zero inputs times non-zero weights, MACs where the input is graded and
accumulates where it is binary; activations that are zero), and neurokd counts what
``neurokd report`` counts (``neurokd.metrics.energy``). Networks: a digits student trained on
rate-coded input (binary events), the same layers converted from a DNN with 4-bit graded input
(graded first layer), both at T = 16; and an MNIST-size student.

    python benchmarks/neurobench_check.py        # writes results/neurobench_check.{json,md}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


class Replay(nn.Module):
    """``model``'s spike trains through ``Linear`` layers of its integer weights, one call per step
    of the window (dense layers only), each layer's output spikes through a ``ReLU``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.__dict__["snn"] = model  # not a submodule: NeuroBench hooks only the layers below
        layers = []
        for i in range(model.spec.num_spiking_layers):
            w = model.chip_weights(i)
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data.copy_(w.to(torch.float32))
            layers.append(lin)
        self.linears = nn.ModuleList(layers)
        self.acts = nn.ModuleList(nn.ReLU() for _ in layers)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from neurokd.metrics.activity import layer_outputs

        x = x.reshape(x.shape[0], -1, x.shape[-1])
        outs = layer_outputs(self.snn, x)
        inputs = [x] + [o.reshape(o.shape[0], -1, o.shape[-1]) for o in outs[:-1]]
        for t in range(x.shape[-1]):
            for lin, act, inp, out in zip(self.linears, self.acts, inputs, outs):
                lin(inp[..., t])
                act(out.reshape(out.shape[0], -1, out.shape[-1])[..., t])
        return self.snn.decode(outs[-1])


def compare(name: str, model, meta: Dict[str, Any], ds, samples: int) -> Dict[str, Any]:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset

    from neurokd.metrics.energy import measure
    from neurokd.training import encoded_batches, make_prepare

    mine = measure(model, meta, ds, seed=0, samples=samples)
    prepare = make_prepare(meta["encoder"], meta["timesteps"], model.window_pad)
    xs, ys = zip(*[(xb, torch.as_tensor(yb)) for xb, yb in encoded_batches(ds.test, prepare, 0,
                                                                           limit=samples)])
    loader = DataLoader(TensorDataset(torch.cat(xs), torch.cat(ys)), batch_size=64)
    bench = Benchmark(TorchModel(Replay(model)), loader, [], [],
                      [[], [SynapticOperations, ActivationSparsity]])
    theirs = bench.run(quiet=True)
    ops = theirs["SynapticOperations"]
    nb = mine["neurobench"]
    return {"network": name, "samples": mine["samples"],
            "neurokd": {"effective_macs": nb["effective_macs"], "effective_acs": nb["effective_acs"],
                        "dense": nb["dense_ops"], "activation_sparsity": mine["activation_sparsity"]},
            "neurobench": {"effective_macs": float(ops["Effective_MACs"]),
                           "effective_acs": float(ops["Effective_ACs"]), "dense": float(ops["Dense"]),
                           "activation_sparsity": float(theirs["ActivationSparsity"])}}


def networks(mnist_dir: str):
    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.convert.dnn import convert_dnn
    from neurokd.hardware import load_profile
    from neurokd.models.cuba.quantized import QuantSpikingNet

    cfg = build_config(overrides=["student.hidden=64", "student.timesteps=16", "student.epochs=5",
                                  "teacher.hidden=[64]", "teacher.epochs=10"])
    ds = pipeline.load_data(cfg)
    snn, _ = pipeline.train_snn(cfg, ds, progress=False)
    q = QuantSpikingNet.from_snn(snn, [8, 8]).eval()
    yield "digits 64-64-10, rate input (binary), T 16", q, pipeline.snn_meta(cfg, ds), ds
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    c = build_config(base=cfg.model_dump(mode="json"), overrides=["convert.method=plain"]).convert
    conv, _ = convert_dnn(teacher, ds, 16, c, load_profile("loihi2"), progress=False)
    cfg_d = build_config(base=cfg.model_dump(mode="json"), overrides=["student.encoder=direct"])
    yield ("digits 64-64-10 converted, 4-bit graded input, T 16", conv.eval(),
           pipeline.snn_meta(cfg_d, ds), ds)
    cfg_m = build_config(overrides=["data.dataset=mnist", f"data.data_dir={mnist_dir}",
                                    "data.limit=3000", "student.hidden=128", "student.timesteps=16",
                                    "student.epochs=2"])
    ds_m = pipeline.load_data(cfg_m)
    snn_m, _ = pipeline.train_snn(cfg_m, ds_m, progress=False)
    yield ("mnist 784-128-10, rate input (binary), T 16",
           QuantSpikingNet.from_snn(snn_m, [8, 8]).eval(), pipeline.snn_meta(cfg_m, ds_m), ds_m)


def markdown(r: Dict[str, Any]) -> str:
    lines = ["# NeuroBench's counts against neurokd's", "",
             f"Generated by `benchmarks/neurobench_check.py` ({r['date']}), neurobench "
             f"{r['neurobench']}, on this 2-core CPU machine. Per inference, on {r['samples']} "
             "test samples each; NeuroBench's metrics run on the network's own spikes replayed "
             "through its integer weights (see the script).", "",
             "| network | | effective MACs | effective ACs | dense | activation sparsity |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for who in ("neurokd", "neurobench"):
            v = row[who]
            lines.append(f"| {row['network'] if who == 'neurokd' else ''} | {who} | "
                         f"{v['effective_macs']:,.2f} | {v['effective_acs']:,.2f} | "
                         f"{v['dense']:,.2f} | {v['activation_sparsity']:.6f} |")
    lines += ["", f"Equal on every network and count: **{'yes' if r['equal'] else 'NO'}** "
                  "(relative difference at most 1e-9)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import argparse
    import importlib.metadata

    from neurokd.fileio import atomic_path, write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    try:
        version = importlib.metadata.version("neurobench")
    except importlib.metadata.PackageNotFoundError:
        print("neurobench_check: the neurobench package is not installed (pip install "
              "'neurokd[neurobench]')", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    rows = [compare(name, model, meta, ds, args.samples)
            for name, model, meta, ds in networks(args.mnist_dir)]

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))

    equal = all(close(row["neurokd"][k], row["neurobench"][k]) for row in rows for k in row["neurokd"])
    r = {"date": time.strftime("%Y-%m-%d"), "neurobench": version, "samples": args.samples,
         "rows": rows, "equal": equal}
    out = Path(args.out)
    write_json(out / "neurobench_check.json", r)
    with atomic_path(out / "neurobench_check.md") as md:
        md.write_text(markdown(r))
    print(markdown(r))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
