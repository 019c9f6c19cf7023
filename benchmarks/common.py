"""Helpers shared by the benchmark scripts: confidence intervals and per-dataset result files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List

import numpy as np


def t_interval(x: np.ndarray) -> List[float]:
    """95% Student-t interval of the mean of ``x`` (e.g. paired differences over seeds)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return [float("nan"), float("nan")]
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def keep_other_datasets(path: Path, results: Dict, running: List[str]) -> Dict:
    """Results of datasets not run now are kept from an earlier run with the same seeds."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("seeds") == results["seeds"]:
            for name, r in old.get("datasets", {}).items():
                if name not in running:
                    results["datasets"][name] = r
    return results
