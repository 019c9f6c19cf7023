"""What each input encoding leaves of the radio signal, before any training (not part of the test suite).

The classical receiver is fed each encoder's input decoded back to complex samples
(``neurokd.metrics.encoding``): the energy detector for sensing (SNR at Pd 0.9, Pfa 0.1, in
AWGN; mean Pd over the SNR grid with ±1 dB noise uncertainty), ML detection from the detector
features (``Ĥᴴy, ĤᴴĤ``) for 2×2 MIMO-OFDM symbols (Eb/N0 at BER 1e-2, with and without the Rapp
amplifier). No student can do better than the receiver on its own input, so each row is that
encoding's ceiling. Encoders: ``rate`` (Bernoulli, split I+/I-/Q+/Q- channels), ``direct`` and
``direct8`` (4- and 8-bit graded, split), ``signed8`` (signed 8-bit graded, the I/Q as it is);
``raw``: the receiver on the undecoded samples. Modulation has no classical receiver here.

One cell per (task, generator seed, T); seeds draw new frames and new Bernoulli spikes.

    python benchmarks/encoding_ceiling.py              # every task, 3 seeds, T = 16 and 32
    python benchmarks/encoding_ceiling.py --summarize  # the table again, from the stored cells
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Cell, CellBenchmark, cell_options, parser, t_interval  # noqa: E402

ENCODERS = ["rate", "direct", "direct8", "signed8"]
TIMESTEPS = [16, 32]
# the frames of benchmarks/rf.py's tasks
TASKS: Dict[str, Dict[str, Any]] = {
    "sensing": {"dataset": "sensing", "radio": {"n_frames": 10000}, "figure": "snr_at_pd"},
    "sensing_nu": {"dataset": "sensing", "radio": {"n_frames": 10000, "noise_uncertainty_db": 1.0},
                   "figure": "mean_pd"},
    "symbols": {"dataset": "symbols", "radio": {}, "figure": "ebn0_at_ber"},
    "symbols_pa": {"dataset": "symbols", "radio": {"pa": "rapp"}, "figure": "ebn0_at_ber"},
}
FIGURES = {"snr_at_pd": "SNR (dB) at Pd 0.9, Pfa 0.1 (lower is better)",
           "mean_pd": "mean Pd at Pfa 0.1 over the SNR grid (higher is better)",
           "ebn0_at_ber": "Eb/N0 (dB) at BER 1e-2 (lower is better; — never on the grid)"}


def ceiling_cell(config: Dict[str, Any], deps: Dict) -> Dict[str, Any]:
    from neurokd.data.datasets import load_dataset
    from neurokd.metrics.encoding import sensing_ceiling, symbols_ceiling
    from neurokd.radio.ofdm import detector_inputs

    task = TASKS[config["task"]]
    ds = load_dataset(task["dataset"], seed=0, generator_seed=config["seed"], **task["radio"])
    parts = [ds.train, ds.val, ds.test]
    if task["dataset"] == "sensing":
        iq = np.concatenate([p.iq for p in parts])
        y, snr = np.concatenate([p.y for p in parts]), np.concatenate([p.snr for p in parts])
        scale = ds.radio["full_scale"] * np.sqrt(0.5)  # the nominal noise's, as the dataset's
        return sensing_ceiling(iq, y, snr, scale, ENCODERS, config["timesteps"], seed=config["seed"])
    meta = {k: np.concatenate([p.meta[k] for p in parts]) for k in ("h_ls", "y", "stream")}
    feats = detector_inputs(meta["h_ls"].astype(complex), meta["y"].astype(complex), meta["stream"])
    y, ebn0 = np.concatenate([p.y for p in parts]), np.concatenate([p.snr for p in parts])
    return symbols_ceiling(feats, y, ebn0, ds.radio["full_scale"], ds.radio["modulation"], ENCODERS,
                           config["timesteps"], seed=config["seed"])


def plan(task: str, seeds: List[int]) -> List[Cell]:
    return [Cell(f"{task}-s{s}-T{t}", ceiling_cell, {"task": task, "seed": s, "timesteps": t,
                                                    "encoders": ENCODERS, **TASKS[task]})
            for s in seeds for t in TIMESTEPS]


def _stat(values: List[Any]) -> Dict[str, Any]:
    v = [x for x in values if x is not None]
    return {"mean": float(np.mean(v)) if v else None, "n": len(v), "of": len(values),
            "ci95": t_interval(np.array(v)) if len(v) > 1 else None}


def summarize(task: str, results: Dict[str, Dict[str, Any]], seeds: List[int]) -> Dict[str, Any]:
    figure = TASKS[task]["figure"]
    rows: Dict[str, Dict[str, Any]] = {}
    for t in TIMESTEPS:
        for name in ["raw", *ENCODERS]:
            if name == "raw" and t != TIMESTEPS[0]:
                continue
            label = name if name == "raw" else f"{name}, T = {t}"
            rows[label] = _stat([results[f"{task}-s{s}-T{t}"][name].get(figure) for s in seeds])
    return {"figure": figure, "rows": rows}


def _fmt(stat: Dict[str, Any], figure: str) -> str:
    if stat["mean"] is None:
        return "—"
    digits = 3 if figure == "mean_pd" else 2
    text = f"{stat['mean']:.{digits}f}"
    if stat["ci95"] is not None:
        text += f" [{stat['ci95'][0]:.{digits}f}, {stat['ci95'][1]:.{digits}f}]"
    if stat["n"] < stat["of"]:
        text += f" ({stat['of'] - stat['n']} of {stat['of']} seeds never reach it)"
    return text


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# Encoding ceilings: the classical receiver on each encoder's decoded input", "",
             f"{results.get('date', '')}; {len(results.get('seeds', []))} generator seeds, mean "
             "[95% t-interval]; machine: " + results.get("machine", "?") + " (CPU only, numpy).",
             "No training: each figure is what the task's receiver reaches from the input a "
             "student's first layer would receive. `raw`: the receiver on the undecoded samples.", ""]
    for task, r in results.get("datasets", {}).items():
        lines += [f"## {task}: {FIGURES[r['figure']]}", "", "| input | figure |", "|---|---|"]
        lines += [f"| {label} | {_fmt(stat, r['figure'])} |" for label, stat in r["rows"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = cell_options(parser(__doc__, list(TASKS), 3))
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    bench = CellBenchmark("encoding_ceiling", lambda task: plan(task, seeds),
                          lambda task, res: summarize(task, res, seeds), markdown,
                          extra={"machine": f"{platform.machine()}, {os.cpu_count()} CPUs"})
    return bench.main(args, args.datasets, seeds)


if __name__ == "__main__":
    sys.exit(main())
