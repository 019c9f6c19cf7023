"""Helpers shared by the benchmark scripts: confidence intervals and per-dataset result files."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np


def t_interval(x: np.ndarray) -> List[float]:
    """95% Student-t interval of the mean of ``x`` (e.g. paired differences over seeds)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return [float("nan"), float("nan")]
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


ROOT = Path(__file__).resolve().parents[1]


def parser(doc: str, datasets: List[str], seeds: Optional[int]) -> argparse.ArgumentParser:
    """The options every benchmark shares: --datasets, --seeds (unless None), --mnist-dir, --out."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(datasets), choices=list(datasets))
    if seeds is not None:
        ap.add_argument("--seeds", type=int, default=seeds)
    ap.add_argument("--mnist-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return ap


def keep_other_datasets(path: Path, results: Dict, running: List[str]) -> Dict:
    """Results of datasets not run now are kept from an earlier run with the same seeds."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("seeds") == results["seeds"]:
            for name, r in old.get("datasets", {}).items():
                if name not in running:
                    results["datasets"][name] = r
    return results


def run_benchmark(stem: str, out: Path, datasets: List[str], seeds: List[int],
                  run_one: Callable[[str, Path], Dict], markdown: Callable[[Dict], str],
                  plot: Optional[Callable[[Dict, Path], None]] = None, **extra) -> Dict:
    """Run ``run_one(dataset, workdir)`` for each dataset and write ``<stem>.json`` and
    ``<stem>.md`` (and ``<stem>.png`` with ``plot``) in ``out`` after every dataset, so that a long
    run interrupted later keeps what it has; other datasets' results are kept from an earlier run
    with the same seeds."""
    from neurokd.fileio import atomic_path, write_json

    results = {"date": time.strftime("%Y-%m-%d"), "seeds": seeds, "datasets": {}, **extra}
    results = keep_other_datasets(out / f"{stem}.json", results, datasets)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            started = time.time()
            results["datasets"][name] = run_one(name, Path(tmp))
            results["datasets"][name].update(date=time.strftime("%Y-%m-%d"),
                                             seconds=time.time() - started)
            results["seconds"] = time.time() - t0
            write_json(out / f"{stem}.json", results)
            with atomic_path(out / f"{stem}.md") as md:
                md.write_text(markdown(results))
            if plot is not None:
                plot(results, out / f"{stem}.png")
    print(markdown(results))
    return results
