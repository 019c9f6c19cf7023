"""Plain-text results tables."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(rows: Iterable[Tuple[str, Any]], title: str = "") -> str:
    rows = [(k, _fmt(v)) for k, v in rows]
    width = max((len(k) for k, _ in rows), default=0)
    vwidth = max((len(v) for _, v in rows), default=0)
    rule = "-" * (width + vwidth + 3)
    lines = [title, rule] if title else [rule]
    lines += [f"{k.ljust(width)}   {v.rjust(vwidth)}" for k, v in rows]
    lines.append(rule)
    return "\n".join(lines)


DEMO_ROWS = [
    ("teacher_accuracy", "teacher (DNN) test accuracy"),
    ("snn_accuracy", "SNN (PyTorch) test accuracy"),
    ("lava_accuracy", "SNN on Lava accuracy"),
    ("lava_samples", "samples run on Lava"),
    ("lava_spike_match", "spike match PyTorch vs Lava"),
    ("lava_prediction_agreement", "prediction agreement"),
    ("backend", "Lava backend"),
]


def demo_table(metrics: Dict[str, Any]) -> str:
    rows = [(label, metrics[key]) for key, label in DEMO_ROWS if key in metrics]
    return table(rows, title=f"neurokd demo: {metrics.get('dataset', '')}, T = {metrics.get('timesteps', '')}")
