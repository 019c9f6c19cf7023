"""Which probe settings make the training-free proxies rank SNNs best? (not part of the test suite)

The sample-wise gradient proxies (ZiCo, GradSign, gradient cosine, Jacobian covariance, SNIP) and
the spike-kernel proxies (SNASNet, SAHD, NASWOT) all look at a spiking network at
initialization through choices a dense-network proxy does not have: the width of the surrogate
gradient (only neurons the data brings near threshold pass a gradient), the time steps, how the
input is encoded, how many samples a sample-wise statistic is taken over, and how many
initializations are averaged. This script re-scores every registered proxy on the stored
ground-truth tables of ``nas_correlation.py`` (no training) under one setting at a time, the
others at the search's defaults, and reports Kendall τ-b against the trained accuracy (the mean
over the table's seeds) with a bootstrap 95% interval over architectures.

Each (dataset, setting) is stored in ``results/nas_probe_choices_cells/`` as it finishes, so an
interrupted run resumes; ``--summarize`` rebuilds the tables from the stored cells.

    python benchmarks/nas_probe_choices.py --datasets digits mnist

Writes results/nas_probe_choices.json and nas_probe_choices.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

import nas_correlation as truth
from common import parser, write_results
from neurokd import pipeline
from neurokd.config import build_config
from neurokd.fileio import write_json
from neurokd.hardware import load_profile
from neurokd.models.spec import spec_from_dict
from neurokd.nas.proxies import PROXIES, proxy_tau_grad, score_arch
from neurokd.nas.search import encoded_batches_for_search
from neurokd.nas.space import SearchSpace

# The search's defaults (``neurokd search``): the spec neuron's surrogate (tau_grad 0.03), the
# space's T, rate input, 2 batches of 16 samples, initialization seeds 0 and 1.
DEFAULT: Dict[str, Any] = {"tau_grad": None, "timesteps": truth.SPACE.timesteps, "encoder": "rate",
                           "batches": 2, "batch_size": 16, "seeds": [0, 1]}
# One change at a time from the default.
SETTINGS: Dict[str, Dict[str, Any]] = {
    "default": {},
    "surrogate tau_grad 0.1": {"tau_grad": 0.1},
    "surrogate tau_grad 0.3": {"tau_grad": 0.3},
    "surrogate tau_grad 0.5": {"tau_grad": 0.5},
    "surrogate tau_grad 1.0": {"tau_grad": 1.0},
    "surrogate tau_grad 3.0": {"tau_grad": 3.0},
    "T 16": {"timesteps": 16},
    "T 4": {"timesteps": 4},
    "direct input": {"encoder": "direct"},
    "batch 64": {"batch_size": 64},
    "batch 8": {"batch_size": 8},
    "4 batches": {"batches": 4},
    "4 init seeds": {"seeds": [0, 1, 2, 3]},
}


def swept() -> List[str]:
    """The proxies the settings apply to: all but the variants that fix their own surrogate
    width (``snip_wide`` is ``snip`` at a width this sweep covers)."""
    return [p for p in PROXIES.names() if proxy_tau_grad(p) is None]


def cell_path(out: Path, name: str, label: str) -> Path:
    import hashlib

    digest = hashlib.sha1(label.encode()).hexdigest()[:12]
    return out / "nas_probe_choices_cells" / name / f"{digest}.json"


def score_table(name: str, data_dir, rows: List[Dict], setting: Dict[str, Any]) -> Dict[str, Any]:
    """Every proxy's score on every architecture of the table under ``setting``."""
    base = truth.BUDGETS[name] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    ds = pipeline.load_data(build_config(overrides=base))
    profile = load_profile("loihi2")
    space = SearchSpace(timesteps=setting["timesteps"])
    batches = encoded_batches_for_search(ds, setting["encoder"], space, setting["batches"],
                                         setting["batch_size"], seed=0)
    torch.set_num_threads(1)
    scores: Dict[str, List[float]] = {p: [] for p in swept()}
    t0 = time.perf_counter()
    for r in rows:
        spec = spec_from_dict(json.loads(r["spec"]))
        s = score_arch(spec, profile, batches, setting["seeds"], list(scores),
                       tau_grad=setting["tau_grad"])
        for p in scores:
            scores[p].append(s[p])
    return {"scores": scores, "keys": [r["key"] for r in rows],
            "seconds_per_arch": (time.perf_counter() - t0) / max(len(rows), 1)}


def summarize(name: str, rows: List[Dict], cells: Dict[str, Dict], boot: int = 1000) -> Dict:
    acc = np.array([np.mean([float(r[f"acc_seed{s}"]) for s in truth.TRUTH_SEEDS]) for r in rows])
    n = len(rows)
    gen = np.random.default_rng(0)
    idx = [gen.integers(0, n, n) for _ in range(boot)]
    top = max(1, n // 10)
    true_top = set(np.argsort(-acc)[:top])
    out: Dict[str, Any] = {"n_architectures": n, "settings": {}}
    for label, cell in cells.items():
        per: Dict[str, Any] = {}
        for p, col in cell["scores"].items():
            col = np.asarray(col, dtype=float)
            taus = [truth.kendall(col[i], acc[i]) for i in idx]
            per[p] = {"tau": truth.kendall(col, acc),
                      "ci": [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))],
                      "top10_hit_rate": len(set(np.argsort(-col)[:top]) & true_top) / top,
                      "regret": float(acc.max() - acc[int(np.argmax(col))])}
        out["settings"][label] = {"setting": cell["setting"], "proxies": per,
                                  "seconds_per_arch": cell["seconds_per_arch"]}
    return out


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# Probe settings of the training-free proxies", "",
             f"Generated by `benchmarks/nas_probe_choices.py` ({results['date']}; "
             f"{results['machine']}). Kendall τ-b of each proxy against the ground truth of "
             "`nas_correlation.py` (mean trained accuracy over 3 seeds), one setting changed at a "
             "time from the search's default (surrogate of the spec neuron, tau_grad 0.03; the "
             f"space's T = {truth.SPACE.timesteps}; rate input; 2 batches of 16 samples; "
             "initialization seeds 0 and 1). Bold: the best τ of a proxy's column. "
             "`params` and `synflow` do not read data and are left out.", ""]
    for name, r in results["datasets"].items():
        order = list(SETTINGS)
        settings = dict(sorted(r["settings"].items(), key=lambda kv: order.index(kv[0])
                               if kv[0] in order else len(order)))
        proxies = [p for p in next(iter(settings.values()))["proxies"]
                   if p not in ("params", "synflow")]
        best = {p: max(s["proxies"][p]["tau"] for s in settings.values()) for p in proxies}
        lines += [f"## {name} ({r['n_architectures']} architectures)", "",
                  "| setting | " + " | ".join(proxies) + " | s/arch (all proxies) |",
                  "|---|" + "---|" * (len(proxies) + 1)]
        for label, s in settings.items():
            cells = []
            for p in proxies:
                t = s["proxies"][p]["tau"]
                cells.append(f"**{t:.3f}**" if t == best[p] else f"{t:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {s['seconds_per_arch']:.2f} |")
        d = settings.get("default")
        if d:
            lines += ["", "95% intervals at the default setting: " + "; ".join(
                f"{p} [{d['proxies'][p]['ci'][0]:.3f}, {d['proxies'][p]['ci'][1]:.3f}]"
                for p in proxies) + "."]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = parser(__doc__, list(truth.BUDGETS), None)
    ap.add_argument("--summarize", action="store_true",
                    help="score nothing: rebuild the tables from the stored cells")
    args = ap.parse_args(argv)
    out = Path(args.out)
    results: Dict[str, Any] = {"date": time.strftime("%Y-%m-%d"),
                               "machine": f"{os.cpu_count()} cores ({platform.machine()}), CPU only, "
                                          "one thread", "datasets": {}}
    for name in args.datasets:
        data_dir = args.mnist_dir if name == "mnist" else None
        rows = truth.read_table(truth.table_path(out, name))
        if len(rows) < 10:
            print(f"[{name}] {len(rows)} architectures in the ground truth: too few; skipped")
            continue
        keys = [r["key"] for r in rows]
        cells: Dict[str, Dict] = {}
        for label, change in SETTINGS.items():
            setting = {**DEFAULT, **change}
            path = cell_path(out, name, label)
            stored = json.loads(path.read_text()) if path.is_file() else None
            if (stored and stored.get("setting") == setting and stored.get("keys") == keys
                    and sorted(stored["scores"]) == sorted(swept())):
                cells[label] = stored
                continue
            if args.summarize:
                continue
            print(f"[{name}] scoring {len(rows)} architectures: {label}", flush=True)
            cell = {"setting": setting, **score_table(name, data_dir, rows, setting)}
            write_json(path, cell)
            cells[label] = cell
        if cells:
            results["datasets"][name] = summarize(name, rows, cells)
    write_results(out, "nas_probe_choices", results, markdown)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
