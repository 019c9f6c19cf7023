"""How well do training-free proxies rank SNN architectures? (not part of the test suite)

Samples architectures uniformly from the default search space (fixed T), trains each on a short
fixed budget with two seeds on a split that does not saturate, and stores the trained accuracies
in a table beside the results (``results/nas_archs_<dataset>.csv``), so that proxies can be
re-scored without retraining. The table grows: a rerun trains only the architectures it lacks,
so the work can be spread over several runs (``--max-new``).

Then every registered proxy (and rank averages of pairs) is scored on every architecture, and the
script reports, per dataset: Kendall τ-b against the mean trained accuracy with a bootstrap 95%
interval, the noise ceiling (τ between the two seeds' accuracies), the top-10% hit rate, the regret
of the proxy's top pick, seconds per architecture, and a paired bootstrap of grad_stats against
the parameter count.

    python benchmarks/nas_correlation.py --datasets digits --archs 150
    python benchmarks/nas_correlation.py --score-only        # re-score the stored table

Writes results/nas_correlation.json and nas_correlation.md.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from common import parser
from neurokd import pipeline
from neurokd.config import build_config
from neurokd.fileio import atomic_path, write_json
from neurokd.hardware import load_profile
from neurokd.models.spec import spec_from_dict
from neurokd.nas.proxies import PROXIES, score_arch
from neurokd.nas.search import encoded_batches_for_search
from neurokd.nas.space import SearchSpace, arch_key, describe

SPACE = SearchSpace(timesteps=8)
SEEDS = [0, 1]
# Short training budgets on splits that leave room between architectures.
BUDGETS: Dict[str, List[str]] = {
    "digits": ["data.dataset=digits", "data.split_seed=0", "data.val_fraction=0.3",
               "data.test_fraction=0.5", "student.epochs=4", "student.patience=4",
               "student.timesteps=8"],
    "mnist": ["data.dataset=mnist", "data.split_seed=0", "data.limit=3000", "student.epochs=2",
              "student.patience=2", "student.timesteps=8"],
}
# Rank averages scored beside the single proxies: the gradient score with each of the two
# baselines and with synflow, and the best single proxy (synops) with the gradient scores.
COMBINATIONS = [("grad_stats", "params"), ("grad_stats", "synops"), ("grad_stats", "synflow"),
                ("synops", "gradsign")]
TIMED = 20  # architectures on which each proxy is also timed alone
FIELDS = ["key", "arch", "spec", "acc_seed0", "acc_seed1", "train_seconds"]


def table_path(out: Path, name: str) -> Path:
    return out / f"nas_archs_{name}.csv"


def read_table(path: Path) -> List[Dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_table(path: Path, rows: List[Dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def sample_archs(ds, n: int, seed: int = 0) -> List:
    rng = random.Random(seed)
    seen, specs = set(), []
    while len(specs) < n:
        spec = SPACE.sample(rng, ds.input_shape, ds.num_classes)
        if arch_key(spec) not in seen:
            seen.add(arch_key(spec))
            specs.append(spec)
    return specs


def train_missing(name: str, data_dir, n: int, out: Path, max_new: int) -> List[Dict]:
    import tempfile

    from neurokd.fileio import write_yaml

    base = BUDGETS[name] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    ds = pipeline.load_data(build_config(overrides=base), log=print)
    path = table_path(out, name)
    rows = read_table(path)
    done = {r["key"] for r in rows}
    new = 0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in sample_archs(ds, n):
            key = arch_key(spec)
            if key in done or new >= max_new:
                continue
            spec_file = Path(tmp) / "spec.yaml"
            write_yaml(spec_file, spec.model_dump())
            t0 = time.perf_counter()
            accs = []
            for seed in SEEDS:
                cfg = build_config(overrides=base + [f"student.spec={spec_file}", f"seed={seed}"])
                accs.append(pipeline.train_snn(cfg, ds, progress=False)[1]["snn_accuracy"])
            rows.append({"key": key, "arch": describe(spec), "spec": json.dumps(spec.model_dump()),
                         "acc_seed0": accs[0], "acc_seed1": accs[1],
                         "train_seconds": time.perf_counter() - t0})
            new += 1
            print(f"[{name}] {len(rows)}/{n} {describe(spec):32s} {accs[0]:.4f} {accs[1]:.4f}", flush=True)
            if new % 10 == 0:
                write_table(path, rows)
    write_table(path, rows)
    return rows


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b, variant="b").statistic)


def rank_average(*cols: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.mean([rankdata(c) for c in cols], axis=0)


def evaluate(name: str, data_dir, rows: List[Dict], boot: int = 1000) -> Dict:
    base = BUDGETS[name] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    ds = pipeline.load_data(build_config(overrides=base))
    profile = load_profile("loihi2")
    batches = encoded_batches_for_search(ds, "rate", SPACE, 2, 16, seed=0)
    torch.set_num_threads(1)
    scores: Dict[str, List[float]] = {p: [] for p in PROXIES.names()}
    seconds = []
    for r in rows:
        spec = spec_from_dict(json.loads(r["spec"]))
        t0 = time.perf_counter()
        s = score_arch(spec, profile, batches, SEEDS)
        seconds.append(time.perf_counter() - t0)
        for p in scores:
            scores[p].append(s[p])
    # Each proxy alone (one probe of the network plus its own reduction), on the first architectures.
    alone: Dict[str, float] = {}
    timed = [spec_from_dict(json.loads(r["spec"])) for r in rows[:TIMED]]
    for p in scores:
        t0 = time.perf_counter()
        for spec in timed:
            score_arch(spec, profile, batches, SEEDS, [p])
        alone[p] = (time.perf_counter() - t0) / len(timed)
    acc0 = np.array([float(r["acc_seed0"]) for r in rows])
    acc1 = np.array([float(r["acc_seed1"]) for r in rows])
    acc = (acc0 + acc1) / 2
    cols = {p: np.array(v) for p, v in scores.items()}
    for a, b in COMBINATIONS:
        cols[f"rank({a}+{b})"] = rank_average(cols[a], cols[b])
        alone[f"rank({a}+{b})"] = alone[a] + alone[b]
    n = len(rows)
    gen = np.random.default_rng(0)
    idx = [gen.integers(0, n, n) for _ in range(boot)]
    top = max(1, n // 10)
    true_top = set(np.argsort(-acc)[:top])
    out: Dict = {"n_architectures": n, "noise_ceiling_tau": kendall(acc0, acc1),
                 "accuracy_range": [float(acc.min()), float(acc.max())],
                 # one probe per batch and seed serves every proxy: this is the time for all of them
                 "seconds_per_arch": float(np.mean(seconds)), "proxies": {}}
    for p, col in cols.items():
        taus = [kendall(col[i], acc[i]) for i in idx]
        pick = int(np.argmax(col))
        out["proxies"][p] = {
            "tau": kendall(col, acc), "ci": [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))],
            "top10_hit_rate": len(set(np.argsort(-col)[:top]) & true_top) / top,
            "regret": float(acc.max() - acc[pick]), "seconds_per_arch": alone[p]}
    diff = [kendall(cols["grad_stats"][i], acc[i]) - kendall(cols["params"][i], acc[i]) for i in idx]
    out["grad_stats_minus_params"] = {"mean": float(np.mean(diff)),
                                      "ci": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
                                      "p_not_better": float(np.mean(np.array(diff) <= 0))}
    out["best_proxy"] = max(out["proxies"], key=lambda p: out["proxies"][p]["tau"])
    return out


def markdown(results: Dict) -> str:
    lines = ["# Training-free proxies against trained accuracy", "",
             f"Generated by `benchmarks/nas_correlation.py` ({results['date']}); search space T = "
             f"{SPACE.timesteps}; every architecture trained with seeds {SEEDS}. τ: Kendall τ-b "
             "against the mean accuracy, with a bootstrap 95% interval over architectures.", ""]
    for name, r in results["datasets"].items():
        g = r["grad_stats_minus_params"]
        lines += [f"## {name}", "", f"{r['n_architectures']} architectures, accuracies "
                  f"{r['accuracy_range'][0]:.3f}–{r['accuracy_range'][1]:.3f}; noise ceiling "
                  f"(seed 0 against seed 1) τ = {r['noise_ceiling_tau']:.3f}; scoring "
                  f"{r['seconds_per_arch']:.2f} s per architecture (all proxies from one probe, one thread; "
                  f"'s/arch alone': one proxy by itself, on the first {TIMED}). "
                  f"grad_stats − params: Δτ = {g['mean']:+.3f} [{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}].",
                  "", "| proxy | τ | 95% CI | top-10% hit rate | regret | s/arch alone |",
                  "|---|---|---|---|---|---|"]
        for p, s in sorted(r["proxies"].items(), key=lambda kv: -kv[1]["tau"]):
            lines.append(f"| {p} | {s['tau']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | "
                         f"{s['top10_hit_rate']:.2f} | {s['regret']:.4f} | {s.get('seconds_per_arch', float('nan')):.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = parser(__doc__, list(BUDGETS), None)
    ap.add_argument("--archs", type=int, default=150)
    ap.add_argument("--max-new", type=int, default=10**9, help="train at most this many new "
                                                               "architectures per dataset this run")
    ap.add_argument("--score-only", action="store_true", help="only score the stored tables")
    args = ap.parse_args(argv)
    out = Path(args.out)
    path = out / "nas_correlation.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    results["date"] = time.strftime("%Y-%m-%d")
    for name in args.datasets:
        data_dir = args.mnist_dir if name == "mnist" else None
        rows = (read_table(table_path(out, name)) if args.score_only
                else train_missing(name, data_dir, args.archs, out, args.max_new))
        if len(rows) < 10:
            print(f"[{name}] {len(rows)} architectures trained: too few to rank; skipped")
            continue
        results["datasets"][name] = evaluate(name, data_dir, rows)
        write_json(path, results)
        with atomic_path(out / "nas_correlation.md") as md:
            md.write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
