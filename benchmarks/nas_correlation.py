"""How well do training-free proxies rank SNN architectures? (not part of the test suite)

**The ground truth.** Samples architectures uniformly from the default search space (fixed T)
and trains each to convergence (early stopping on validation accuracy, a generous epoch cap)
with three seeds, on a split that does not saturate. Each (architecture, seed) is one cell:
cells run in parallel processes (``--jobs``, one thread each), and every finished cell is stored
at once under ``results/nas_truth_cells/<dataset>/``, so an interrupted run resumes where it
stopped; a cell trained under another budget is trained again. The table of architectures whose
every seed is done is ``results/nas_truth_<dataset>.csv`` (accuracy, validation accuracy and
epochs per seed, training seconds), so proxies can be re-scored without retraining. The radio
table ``sensing`` ranks by detection, in its own unit: each of its cells also holds ``score``, the
mean over SNRs of Pd at Pfa 0.1 on the test frames, and ``auc``; its ``acc_seed`` columns hold
that score.

**The proxies.** Every registered proxy (and rank averages of pairs) is scored on every
architecture; per dataset the script reports Kendall τ-b against the mean trained accuracy with a
bootstrap 95% interval, the noise ceiling (τ between two seeds' accuracies, the mean over seed
pairs: no proxy can rank better than the ground truth ranks itself), the top-10% hit rate, the
regret of the proxy's top pick, seconds per architecture, and a paired bootstrap of the best
proxy against ``params`` and against ``synops``.

    python benchmarks/nas_correlation.py --datasets digits --archs 150 --jobs 2
    python benchmarks/nas_correlation.py --datasets sensing --archs 150 --max-new 20 --jobs 2
    python benchmarks/nas_correlation.py --score-only        # re-score the stored tables

Writes results/nas_correlation.json and nas_correlation.md. (``results/nas_archs_<dataset>.csv``
hold the earlier ground truth: 2-4 epochs, two seeds, noise ceiling τ ≈ 0.5.)
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from common import parser, write_results
from neurokd import pipeline
from neurokd.config import build_config
from neurokd.fileio import atomic_path, write_json
from neurokd.hardware import load_profile
from neurokd.models.spec import spec_from_dict
from neurokd.nas.proxies import PROXIES, score_arch
from neurokd.metrics.radio import radio_receivers
from neurokd.metrics.resources import summary
from neurokd.nas.search import encoded_batches_for_search
from neurokd.nas.space import SearchSpace, arch_key, describe

SPACE = SearchSpace(timesteps=8)
TRUTH_SEEDS = [0, 1, 2]  # training seeds of the ground truth
PROXY_SEEDS = [0, 1]  # initialisation seeds every proxy averages over
# The ground truth: every architecture trained to convergence (early stopping on validation
# accuracy) on a split that leaves room between architectures. The cap is rarely reached; the
# table records each run's epochs, so it can be checked.
BUDGETS: Dict[str, List[str]] = {
    "digits": ["data.dataset=digits", "data.split_seed=0", "data.val_fraction=0.3",
               "data.test_fraction=0.5", "student.epochs=80", "student.patience=10",
               "student.timesteps=8"],
    # The 10k MNIST test images alone (the files ../shared/data/mnist holds), split by seed: 3000
    # to train, 1000 to validate, 6000 to test, so that the test set's own noise stays small. The
    # learning rate decays to 0 by a cosine over 20 epochs and the best validation epoch is kept
    # (no patience cut): with a constant rate and patience 8, three seeds of d64-d10 spread over
    # 2.2 points (0.910-0.932); with the cosine, over 0.24.
    "mnist": ["data.dataset=mnist", "data.split_seed=0", "data.val_fraction=0.1",
              "data.test_fraction=0.6", "student.epochs=20", "student.patience=20",
              "student.schedule=cosine", "student.timesteps=8"],
    # Spectrum sensing (radio): 8000 generated frames of 128 I/Q samples (QPSK, 16-QAM and OFDM
    # users, AWGN, 13 SNRs from -20 to +4 dB), 4000 to train, 1200 to validate, 2800 to test.
    # Ranked by its detection unit, not accuracy: the mean over SNRs of Pd at Pfa 0.1 on the test
    # frames (SCORES). 10 epochs of cosine decay from lr 1e-3 (the dataset's preset rate).
    "sensing": ["data.dataset=sensing", "data.split_seed=0", "data.radio={n_frames: 8000}",
                "data.val_fraction=0.15", "data.test_fraction=0.35", "student.epochs=10",
                "student.patience=10", "student.schedule=cosine", "student.timesteps=8",
                "student.lr=1e-3"],
}
# What a table ranks, where it is not the test accuracy: the cell's key and what it means.
SCORES: Dict[str, str] = {"sensing": "mean over SNRs of Pd at Pfa 0.1 (test frames)"}
# The part of the space a dataset's table samples: architectures over this many estimated cores
# are drawn again. On mnist's 28x28 inputs the space's stride-1 convolutions make networks of up
# to 50k neurons that train for minutes per epoch on one CPU thread (slayer's dynamics cost per
# neuron); at most 4 cores (46% of the space) keeps 450 runs inside a 2-core machine's day, and
# is the budget nas_search.py searches at.
MAX_CORES: Dict[str, int] = {"mnist": 4}
# Rank averages scored beside the single proxies: the gradient score with each of the two
# baselines and with synflow, and synops with the gradient scores (the wide variants included).
COMBINATIONS = [("grad_stats", "params"), ("grad_stats", "synops"), ("grad_stats", "synflow"),
                ("synops", "gradsign"), ("synops", "jacob_cov_wide"), ("synops", "snip_wide")]
TIMED = 20  # architectures on which each proxy is also timed alone
FIELDS = (["key", "arch", "spec"] + [f"acc_seed{s}" for s in TRUTH_SEEDS]
          + [f"val_seed{s}" for s in TRUTH_SEEDS] + [f"epochs_seed{s}" for s in TRUTH_SEEDS]
          + ["train_seconds"] + [f"best_epoch_seed{s}" for s in TRUTH_SEEDS])


def table_path(out: Path, name: str) -> Path:
    return out / f"nas_truth_{name}.csv"


def cell_path(out: Path, name: str, key: str, seed: int) -> Path:
    import hashlib

    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return out / "nas_truth_cells" / name / f"{digest}_s{seed}.json"


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


def sample_archs(ds, n: int, seed: int = 0, max_cores: Optional[int] = None) -> List:
    """``n`` distinct architectures drawn uniformly from the space (those over ``max_cores``
    estimated cores drawn again)."""
    rng = random.Random(seed)
    profile = load_profile("loihi2")
    seen, specs = set(), []
    while len(specs) < n:
        spec = SPACE.sample(rng, ds.input_shape, ds.num_classes)
        if max_cores is not None and summary(spec, profile, SPACE.timesteps)["cores"] > max_cores:
            continue
        if arch_key(spec) not in seen:
            seen.add(arch_key(spec))
            specs.append(spec)
    return specs


WORKER: Dict = {}  # the dataset and budget, set before the workers fork


def train_cell(job) -> Dict:
    """One (architecture, seed) cell of the ground truth, in a worker process."""
    import tempfile

    from neurokd.fileio import write_yaml

    spec_dict, seed = job
    base, ds = WORKER["base"], WORKER["ds"]
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.yaml"
        write_yaml(spec_file, spec_dict)
        t0 = time.perf_counter()
        cfg = build_config(overrides=base + [f"student.spec={spec_file}", f"seed={seed}"])
        model, m = pipeline.train_snn(cfg, ds, progress=False)
        extra = detection(model, cfg, ds) if ds.task == "detection" else {}
    return {"seed": seed, "acc": m["snn_accuracy"], "val": m["snn_val_accuracy"],
            "epochs": m["snn_epochs"], "best_epoch": m["snn_best_epoch"], **extra,
            "seconds": time.perf_counter() - t0, "budget": BUDGETS[WORKER["name"]]}


def detection(model, cfg, ds) -> Dict[str, float]:
    """A sensing student's detection figures on the test frames: ``score``, the mean over SNRs of
    Pd at Pfa 0.1 (thresholds set on the H0 test frames, ties randomised), and the pooled AUC."""
    from neurokd.metrics.radio import sensing_report

    meta = {"encoder": cfg.student.encoder, "timesteps": cfg.student.timesteps}
    scores = radio_receivers(ds, {"snn": (model, meta)}, cfg.seed)
    row = sensing_report(ds, scores)["receivers"]["snn"]
    return {"score": float(np.mean(list(row["pfa_0.1"]["pd"].values()))), "auc": float(row["auc"])}


def score_of(cell: Dict) -> float:
    """What the table ranks a cell by: its ``score`` where the dataset has one (SCORES), else
    its test accuracy."""
    return float(cell.get("score", cell["acc"]))


def train_missing(name: str, data_dir, n: int, out: Path, max_new: int, jobs: int) -> List[Dict]:
    """Train the (architecture, seed) cells not stored yet, ``jobs`` processes at once (one
    thread each, the package's ``neurokd.parallel.Workers``); every finished cell is written at
    once, so an interrupted run resumes there. Returns the table rows of the architectures whose
    every seed is done."""
    from neurokd.parallel import Workers

    base = BUDGETS[name] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    ds = pipeline.load_data(build_config(overrides=base), log=print)
    specs = sample_archs(ds, n, max_cores=MAX_CORES.get(name))
    budget = BUDGETS[name]  # stored with each cell; the data folder is not part of it
    todo, archs = [], 0
    for spec in specs:
        key = arch_key(spec)
        missing = [s for s in TRUTH_SEEDS if not _cell_done(out, name, key, s, budget)]
        if missing and archs < max_new:
            archs += 1
            todo += [(spec.model_dump(), s) for s in missing]
    if todo:
        print(f"[{name}] training {len(todo)} cells of {archs} architectures, {jobs} at once",
              flush=True)
        WORKER.update(base=base, ds=ds, name=name)
        t0, done = time.perf_counter(), 0
        with Workers(jobs) as workers:
            for job, res in zip(todo, workers.imap(train_cell, todo)):
                key = arch_key(spec_from_dict(job[0]))
                write_json(cell_path(out, name, key, job[1]), {"key": key, **res})
                done += 1
                left = (time.perf_counter() - t0) / done * (len(todo) - done)
                print(f"[{name}] {done}/{len(todo)} {describe(spec_from_dict(job[0])):32s} seed "
                      f"{job[1]}: {res['acc']:.4f} after {res['epochs']} epochs, "
                      f"{res['seconds']:.0f} s; about {left / 60:.0f} min left", flush=True)
    rows = []
    for spec in specs:
        key = arch_key(spec)
        cells = [read_cell(out, name, key, s, budget) for s in TRUTH_SEEDS]
        if any(c is None for c in cells):
            continue
        row = {"key": key, "arch": describe(spec), "spec": json.dumps(spec.model_dump()),
               "train_seconds": sum(c["seconds"] for c in cells)}
        for s, c in zip(TRUTH_SEEDS, cells):
            row.update({f"acc_seed{s}": score_of(c), f"val_seed{s}": c["val"],
                        f"epochs_seed{s}": c["epochs"], f"best_epoch_seed{s}": c["best_epoch"]})
        rows.append(row)
    write_table(table_path(out, name), rows)
    return rows


def read_cell(out: Path, name: str, key: str, seed: int, base: List[str]):
    path = cell_path(out, name, key, seed)
    if not path.is_file():
        return None
    cell = json.loads(path.read_text())
    return cell if cell.get("budget") == base and cell.get("key") == key else None


def _cell_done(out: Path, name: str, key: str, seed: int, base: List[str]) -> bool:
    return read_cell(out, name, key, seed, base) is not None


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b, variant="b").statistic)


def rank_average(*cols: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.mean([rankdata(c) for c in cols], axis=0)


def reliability(per_seed: np.ndarray) -> Dict[str, float]:
    """How well the table ranks itself, from its (architectures × seeds) accuracies.

    ``seed_vs_rest_tau``: τ of one seed against the mean of the others (mean over seeds).
    ``icc_single`` / ``icc_mean``: the share of the variance of one seed's accuracy (of the mean
    over the k seeds) that lies between architectures (one-way random-effects ANOVA, ICC(1) and
    ICC(k)). ``ceiling_mean_tau``: the τ an ideal proxy (one that knows each architecture's
    expected accuracy) would reach against the k-seed mean the proxies are judged on, were the
    accuracies normal: (2/π)·arcsin(√ICC(k)). Seed against seed (the noise ceiling) is lower,
    since both sides of it carry noise."""
    n, k = per_seed.shape
    rest = [kendall(per_seed[:, s], np.delete(per_seed, s, axis=1).mean(1)) for s in range(k)]
    within = float(per_seed.var(axis=1, ddof=1).mean())
    between = float(per_seed.mean(1).var(ddof=1)) - within / k
    icc1 = between / (between + within) if between > 0 else 0.0
    icck = between / (between + within / k) if between > 0 else 0.0
    return {"seed_vs_rest_tau": float(np.mean(rest)), "within_seed_std": float(np.sqrt(within)),
            "between_arch_std": float(np.sqrt(max(between, 0.0))), "icc_single": icc1,
            "icc_mean": icck,
            "ceiling_mean_tau": float(2 / np.pi * np.arcsin(np.sqrt(icck)))}


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
        s = score_arch(spec, profile, batches, PROXY_SEEDS)
        seconds.append(time.perf_counter() - t0)
        for p in scores:
            scores[p].append(s[p])
    # Each proxy alone (one probe of the network plus its own reduction), on the first architectures.
    alone: Dict[str, float] = {}
    timed = [spec_from_dict(json.loads(r["spec"])) for r in rows[:TIMED]]
    for p in scores:
        t0 = time.perf_counter()
        for spec in timed:
            score_arch(spec, profile, batches, PROXY_SEEDS, [p])
        alone[p] = (time.perf_counter() - t0) / len(timed)
    per_seed = np.array([[float(r[f"acc_seed{s}"]) for s in TRUTH_SEEDS] for r in rows])
    acc = per_seed.mean(axis=1)
    pairs = [(i, j) for i in range(len(TRUTH_SEEDS)) for j in range(i + 1, len(TRUTH_SEEDS))]
    pair_taus = [kendall(per_seed[:, i], per_seed[:, j]) for i, j in pairs]
    epochs = np.array([[float(r[f"epochs_seed{s}"]) for s in TRUTH_SEEDS] for r in rows])
    cols = {p: np.array(v) for p, v in scores.items()}
    for a, b in COMBINATIONS:
        cols[f"rank({a}+{b})"] = rank_average(cols[a], cols[b])
        alone[f"rank({a}+{b})"] = alone[a] + alone[b]
    n = len(rows)
    gen = np.random.default_rng(0)
    idx = [gen.integers(0, n, n) for _ in range(boot)]
    top = max(1, n // 10)
    true_top = set(np.argsort(-acc)[:top])
    cap = int(next(o.split("=")[1] for o in BUDGETS[name] if o.startswith("student.epochs=")))
    out: Dict = {"n_architectures": n, "seeds": TRUTH_SEEDS,
                 # seed against seed, averaged over the pairs: no proxy can rank a single run's
                 # accuracy better than another seed of the same architecture does
                 "noise_ceiling_tau": float(np.mean(pair_taus)), "noise_ceiling_pairs": pair_taus,
                 "reliability": reliability(per_seed),
                 "accuracy_range": [float(acc.min()), float(acc.max())],
                 "budget": BUDGETS[name], "epochs_mean": float(epochs.mean()),
                 "epochs_at_cap": float((epochs >= cap).mean()),
                 **({"best_epoch_mean": float(np.mean([[float(r[f"best_epoch_seed{s}"])
                                                        for s in TRUTH_SEEDS] for r in rows]))}
                    if rows and rows[0].get(f"best_epoch_seed{TRUTH_SEEDS[0]}") else {}),
                 "train_hours": float(sum(float(r["train_seconds"]) for r in rows) / 3600),
                 # one probe per batch and seed serves every proxy: this is the time for all of them
                 "seconds_per_arch": float(np.mean(seconds)), "proxies": {}}
    for p, col in cols.items():
        taus = [kendall(col[i], acc[i]) for i in idx]
        pick = int(np.argmax(col))
        out["proxies"][p] = {
            "tau": kendall(col, acc), "ci": [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))],
            "top10_hit_rate": len(set(np.argsort(-col)[:top]) & true_top) / top,
            "regret": float(acc.max() - acc[pick]), "seconds_per_arch": alone[p]}
    out["best_proxy"] = best = max(out["proxies"], key=lambda p: out["proxies"][p]["tau"])
    for baseline in ("params", "synops"):  # paired bootstrap: the same resamples for both
        diff = [kendall(cols[best][i], acc[i]) - kendall(cols[baseline][i], acc[i]) for i in idx]
        out[f"best_minus_{baseline}"] = {
            "mean": float(np.mean(diff)),
            "ci": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
            "p_not_better": float(np.mean(np.array(diff) <= 0))}
    return out


# The table each fixed-width variant's width was chosen on (benchmarks/nas_probe_choices.py):
# its τ there is in-sample, and only the other tables test the choice.
TUNED_ON = {"snip_wide": "digits", "jacob_cov_wide": "digits"}


def in_sample(proxy: str, table: str) -> bool:
    """Whether ``table`` chose a setting of ``proxy`` (or of either half of a rank(a+b))."""
    parts = proxy[5:-1].split("+") if proxy.startswith("rank(") else [proxy]
    return any(TUNED_ON.get(part) == table for part in parts)


def stopping(r: Dict) -> str:
    """How the table's runs ended: stopped early (patience) or trained for a fixed cosine."""
    best = (f", the kept (best validation) epoch {r['best_epoch_mean']:.1f} on average"
            if "best_epoch_mean" in r else "")
    if "student.schedule=cosine" in r["budget"]:
        return (f"every run trained its {r['epochs_mean']:.0f} epochs of cosine decay{best}")
    return (f"{r['epochs_mean']:.1f} epochs on average, {100 * r['epochs_at_cap']:.0f}% of runs "
            f"stopped by the epoch cap{best}")


def markdown(results: Dict) -> str:
    lines = ["# Training-free proxies against trained accuracy", "",
             f"Generated by `benchmarks/nas_correlation.py` ({results['date']}); search space T = "
             f"{SPACE.timesteps}. The ground truth: every architecture trained to convergence "
             f"(early stopping) with seeds {TRUTH_SEEDS}; τ: Kendall τ-b against the mean test "
             "accuracy over the seeds, with a bootstrap 95% interval over architectures. Machine: "
             f"{results.get('machine', 'not recorded')}.", ""]
    for name, r in results["datasets"].items():
        if "seeds" not in r:
            continue  # a table of the earlier short-budget ground truth
        ranked = (f"Ranked by the {SCORES[name]}, not by accuracy: the range, the noise ceiling, "
                  "τ and the regret below are in that unit. " if name in SCORES else "")
        lines += [f"## {name}", "",
                  f"{ranked}{r['n_architectures']} architectures, "
                  f"{'scores' if name in SCORES else 'accuracies'} "
                  f"{r['accuracy_range'][0]:.3f}–{r['accuracy_range'][1]:.3f}; budget "
                  f"`{' '.join(r['budget'])}`: {stopping(r)}, "
                  f"{r['train_hours']:.1f} CPU hours. **Noise ceiling** (seed against seed, mean "
                  f"over pairs) τ = {r['noise_ceiling_tau']:.3f} "
                  f"({', '.join(f'{t:.3f}' for t in r['noise_ceiling_pairs'])}). Scoring "
                  f"{r['seconds_per_arch']:.2f} s per architecture (all proxies from one probe, one "
                  f"thread; 's/arch alone': one proxy by itself, on the first {TIMED}).", ""]
        rel = r.get("reliability")
        if rel:
            lines += [f"How well the table ranks itself: one seed against the mean of the others "
                      f"τ = {rel['seed_vs_rest_tau']:.3f}; seed-to-seed standard deviation "
                      f"{rel['within_seed_std']:.4f} against {rel['between_arch_std']:.4f} between "
                      f"architectures, so ICC = {rel['icc_single']:.2f} for one seed and "
                      f"{rel['icc_mean']:.2f} for the mean of {len(r['seeds'])}; an ideal proxy "
                      f"would reach about τ = {rel['ceiling_mean_tau']:.2f} against that mean "
                      "(normal model, `reliability` in nas_correlation.py).", ""]
        for baseline in ("params", "synops"):
            g = r.get(f"best_minus_{baseline}")
            if g and r["best_proxy"] != baseline:
                lines.append(f"- best proxy ({r['best_proxy']}) − {baseline}: Δτ = {g['mean']:+.3f} "
                             f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] (paired bootstrap; "
                             f"P(not better) = {g['p_not_better']:.3f})")
        lines += ["", "| proxy | τ | 95% CI | top-10% hit rate | regret | s/arch alone |",
                  "|---|---|---|---|---|---|"]
        tuned = [p for p in r["proxies"] if in_sample(p, name)]
        for p, s in sorted(r["proxies"].items(), key=lambda kv: -kv[1]["tau"]):
            mark = " †" if p in tuned else ""
            lines.append(f"| {p}{mark} | {s['tau']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | "
                         f"{s['top10_hit_rate']:.2f} | {s['regret']:.4f} | {s.get('seconds_per_arch', float('nan')):.2f} |")
        if tuned:
            held = [n for n, o in results["datasets"].items() if n != name and "seeds" in o]
            lines += ["", "† its surrogate width was chosen on this table "
                          "(`nas_probe_choices.py`), so its τ here is in-sample"
                      + (f"; {', '.join(held)} did not choose it." if held else ".")]
        lines.append("")
    return "\n".join(lines + across(results))


def across(results: Dict) -> List[str]:
    """Each proxy's τ on every converged table side by side, ordered by the worst of them: a
    default must rank well on data it was not chosen on. An in-sample τ (†) is left out of the
    worst and the mean."""
    tables = {n: r for n, r in results["datasets"].items() if "seeds" in r}
    if len(tables) < 2:
        return []
    names = list(tables)
    common = [p for p in tables[names[0]]["proxies"] if all(p in r["proxies"] for r in tables.values())]
    held = {p: [tables[n]["proxies"][p]["tau"] for n in names if not in_sample(p, n)]
            for p in common}
    lines = ["## Across tables", "",
             "τ on each table; worst and mean over the tables that did not choose the proxy "
             "(an in-sample τ, †, is left out).", "",
             "| proxy | " + " | ".join(names) + " | worst | mean |",
             "|---|" + "---|" * (len(names) + 2)]
    for p in sorted(common, key=lambda p: -min(held[p])):
        cells = [f"{tables[n]['proxies'][p]['tau']:.3f}"
                 + (" †" if in_sample(p, n) else "") for n in names]
        lines.append(f"| {p} | " + " | ".join(cells)
                     + f" | {min(held[p]):.3f} | {float(np.mean(held[p])):.3f} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = parser(__doc__, list(BUDGETS), None)
    ap.add_argument("--archs", type=int, default=150)
    ap.add_argument("--max-new", type=int, default=10**9, help="train at most this many new "
                                                               "architectures per dataset this run")
    ap.add_argument("--score-only", action="store_true", help="only score the stored tables")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="cells trained at once, one process and one thread each")
    args = ap.parse_args(argv)
    import platform

    machine = f"{os.cpu_count()} cores ({platform.machine()}), CPU only"
    out = Path(args.out)
    path = out / "nas_correlation.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = machine
    for name in args.datasets:
        data_dir = args.mnist_dir if name == "mnist" else None
        rows = (read_table(table_path(out, name)) if args.score_only
                else train_missing(name, data_dir, args.archs, out, args.max_new, args.jobs))
        if len(rows) < 10:
            print(f"[{name}] {len(rows)} architectures trained: too few to rank; skipped")
            continue
        scored = evaluate(name, data_dir, rows)
        # read again just before writing: a run on another dataset may have written meanwhile
        if path.is_file():
            results["datasets"] = json.loads(path.read_text())["datasets"]
        results["datasets"][name] = scored
        write_results(out, "nas_correlation", results, markdown)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
