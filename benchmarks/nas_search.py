"""What ``neurokd search`` hands a user, judged at equal chip budget (issue 14).

Per dataset and core budget, four picks:

* **searched**: ``neurokd search --candidates 500 --train-top 3 --workers 2`` as a user runs it
  (the command's wall time is measured: proxy scoring plus training the 3 best-ranked briefly);
* **default**: the student spec ``train-snn`` builds without ``--spec``;
* **random-K**: K = 3 random architectures that fit the budget, trained as ``--train-top``
  trains, the best by validation accuracy (the search without its proxy);
* **table best**: the best architecture of the ground-truth table (``nas_correlation.py``) that
  fits the budget (an oracle: it needed the whole table trained).

Each pick is then trained with the ground truth's own protocol (same split, three seeds, to
convergence), so its accuracy is comparable with the table: mean over seeds, 95% t-interval, and
its percentile among the table's architectures (all of them, and those within the budget).

    python benchmarks/nas_search.py --datasets digits --jobs 2

Writes results/nas_search.json and nas_search.md.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

import nas_correlation as truth
from common import ROOT, parser, t_interval
from neurokd import pipeline
from neurokd.config import build_config
from neurokd.fileio import atomic_path, write_json
from neurokd.hardware import load_profile
from neurokd.models.spec import spec_from_dict
from neurokd.nas.resources import Budget, summary
from neurokd.nas.search import _feasible, best_trained, train_candidates
from neurokd.nas.space import SearchSpace, describe

BUDGET_CORES = [4]
K = 3
CANDIDATES = 500
TRAIN_EPOCHS = 5  # --train-top's default


def cores_of(spec, profile) -> int:
    return int(summary(spec, profile, truth.SPACE.timesteps)["cores"])


def synops_of(spec, profile) -> int:
    """The resource model's bound at the ground truth's T (every input spiking every step)."""
    return int(summary(spec, profile, truth.SPACE.timesteps)["synops"])


def run_search_cli(dataset: str, cores: int, work: Path) -> Dict[str, Any]:
    out = work / f"search_{dataset}_{cores}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "neurokd", "search", "--dataset", dataset,
                          "--max-cores", str(cores), "--candidates", str(CANDIDATES),
                          "--train-top", str(K), "--workers", "2", "--no-progress",
                          "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"neurokd search failed:\n{res.stderr[-3000:]}")
    summary = json.loads((out / "search.json").read_text())
    return {"spec": summary["chosen_spec"], "wall_seconds": wall,
            "search_seconds": summary["seconds"], "train_top_seconds": summary["train_top"]["seconds"],
            "trained": summary["train_top"]["candidates"]}


def random_k(dataset: str, cores: int, work: Path, seed: int = 0) -> Dict[str, Any]:
    """K random feasible architectures of the search's space, trained as --train-top trains."""
    cfg = build_config(overrides=[f"data.dataset={dataset}", f"seed={seed}"])
    ds = pipeline.load_data(cfg)
    space, profile = SearchSpace(), load_profile(cfg.hardware)
    rng, seen = random.Random(1000 + seed), set()
    cands = [_feasible(space, rng, ds.input_shape, ds.num_classes, profile, Budget(cores), seen)
             for _ in range(K)]
    t0 = time.perf_counter()
    trained = train_candidates(cands, ds, cfg, space.timesteps, TRAIN_EPOCHS, work / f"random_{cores}")
    best = best_trained(trained)
    return {"spec": cands[best].spec.model_dump(), "wall_seconds": time.perf_counter() - t0,
            "trained": trained}


def final_accuracy(name: str, picks: Dict[str, Dict], jobs: int) -> Dict[str, List[float]]:
    """Train every pick with the ground truth's protocol (three seeds, to convergence)."""
    base = truth.BUDGETS[name]
    ds = pipeline.load_data(build_config(overrides=base))
    truth._WORKER.update(base=base, ds=ds)
    jobs_list = [(pick["spec"], s) for pick in picks.values() for s in truth.TRUTH_SEEDS]
    with mp.get_context("fork").Pool(jobs, initializer=truth._ignore_sigint) as pool:
        results = pool.map(truth._train_cell, jobs_list)
    out: Dict[str, List[float]] = {}
    for (label, _), i in zip(picks.items(), range(0, len(results), len(truth.TRUTH_SEEDS))):
        out[label] = [r["acc"] for r in results[i:i + len(truth.TRUTH_SEEDS)]]
    return out


def percentile(value: float, population: np.ndarray) -> float:
    return float((population <= value).mean() * 100) if len(population) else float("nan")


def run_dataset(name: str, out: Path, jobs: int) -> Dict[str, Any]:
    profile = load_profile("loihi2")
    table = truth.read_table(truth.table_path(out, name))
    if not table:
        raise SystemExit(f"no ground-truth table for {name}: run nas_correlation.py first")
    specs = [spec_from_dict(json.loads(r["spec"])) for r in table]
    means = np.array([np.mean([float(r[f"acc_seed{s}"]) for s in truth.TRUTH_SEEDS]) for r in table])
    cores = np.array([cores_of(s, profile) for s in specs])
    result: Dict[str, Any] = {"table_architectures": len(table), "budgets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in BUDGET_CORES:
            picks: Dict[str, Dict[str, Any]] = {}
            picks["searched"] = run_search_cli(name, budget, Path(tmp))
            cfg = build_config(overrides=[f"data.dataset={name}"])
            default = pipeline.student_spec(cfg, pipeline.load_data(cfg))
            picks["default spec"] = {"spec": default.model_dump(), "wall_seconds": 0.0}
            picks[f"random-{K}"] = random_k(name, budget, Path(tmp))
            inside = np.flatnonzero(cores <= budget)
            best = int(inside[np.argmax(means[inside])])
            picks["table best"] = {"spec": specs[best].model_dump(), "wall_seconds": None,
                                   "table_mean": float(means[best])}
            accs = final_accuracy(name, picks, jobs)
            rows = {}
            for label, pick in picks.items():
                spec = spec_from_dict(pick["spec"])
                a = np.array(accs[label])
                rows[label] = {
                    "arch": describe(spec), "cores": cores_of(spec, profile),
                    "synops_upper": synops_of(spec, profile), "accuracy_per_seed": a.tolist(),
                    "accuracy_mean": float(a.mean()), "ci": t_interval(a),
                    "percentile_table": percentile(float(a.mean()), means),
                    "percentile_within_budget": percentile(float(a.mean()), means[inside]),
                    "wall_seconds": pick.get("wall_seconds"),
                    **({k: pick[k] for k in ("search_seconds", "train_top_seconds") if k in pick})}
            s = np.array(accs["searched"])
            rows["searched"]["minus_default"] = {
                "mean": float((s - np.array(accs["default spec"])).mean()),
                "ci": t_interval(s - np.array(accs["default spec"]))}
            rows["searched"]["minus_random"] = {
                "mean": float((s - np.array(accs[f"random-{K}"])).mean()),
                "ci": t_interval(s - np.array(accs[f"random-{K}"]))}
            result["budgets"][str(budget)] = {"max_cores": budget, "within_budget": int(len(inside)),
                                              "table_p90": float(np.percentile(means, 90)),
                                              "rows": rows}
    return result


def markdown(results: Dict[str, Any]) -> str:
    lines = ["# What `neurokd search` hands a user, at equal chip budget", "",
             f"Generated by `benchmarks/nas_search.py` ({results['date']}; {results['machine']}). "
             f"`searched`: `neurokd search --candidates {CANDIDATES} --train-top {K} --workers 2` "
             f"(wall time of the whole command). Every pick then trained with the ground truth's "
             f"protocol (seeds {truth.TRUTH_SEEDS}, to convergence, the table's split): mean test "
             "accuracy, 95% t-interval over seeds, percentile among the table's architectures.", ""]
    for name, r in results["datasets"].items():
        for budget, b in r["budgets"].items():
            lines += [f"## {name}, at most {budget} cores", "",
                      f"{r['table_architectures']} architectures in the table, {b['within_budget']} "
                      f"within the budget; the table's 90th percentile: {b['table_p90']:.4f}.", "",
                      "| pick | architecture | cores | synops (bound) | accuracy | 95% CI | percentile "
                      "(table / within budget) | wall time |", "|---|---|---|---|---|---|---|---|"]
            for label, row in b["rows"].items():
                wall = "—" if row["wall_seconds"] is None else f"{row['wall_seconds']:.0f} s"
                lines.append(f"| {label} | {row['arch']} | {row['cores']} | {row['synops_upper']:,} | "
                             f"{row['accuracy_mean']:.4f} | [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}] | "
                             f"{row['percentile_table']:.0f} / {row['percentile_within_budget']:.0f} | "
                             f"{wall} |")
            s = b["rows"]["searched"]
            lines += ["", f"searched − default: {s['minus_default']['mean']:+.4f} "
                      f"[{s['minus_default']['ci'][0]:+.4f}, {s['minus_default']['ci'][1]:+.4f}]; "
                      f"searched − random-{K}: {s['minus_random']['mean']:+.4f} "
                      f"[{s['minus_random']['ci'][0]:+.4f}, {s['minus_random']['ci'][1]:+.4f}] "
                      "(paired by seed).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    import platform

    ap = parser(__doc__, ["digits"], None)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = {"date": time.strftime("%Y-%m-%d"),
               "machine": f"{os.cpu_count()} cores ({platform.machine()}), CPU only", "datasets": {}}
    for name in args.datasets:
        results["datasets"][name] = run_dataset(name, out, args.jobs)
        write_json(out / "nas_search.json", results)
        with atomic_path(out / "nas_search.md") as md:
            md.write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
