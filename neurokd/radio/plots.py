"""Radio plots: Pd against SNR (with the energy detector's theory curve), ROC, accuracy against SNR,
confusion matrix. Each writes one PNG atomically and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from neurokd.plotting import pyplot, save_figure
from neurokd.radio.detectors import energy_detector_pd_theory


def pd_vs_snr(curves: Mapping[str, Tuple[Sequence[float], Sequence[float]]], pfa: float,
              path: str | Path, frame_length: Optional[int] = None) -> Path:
    """Pd against SNR at one Pfa, one line per detector (``{name: (snr_db, pd)}``); with
    ``frame_length``, the energy detector's theory curve for ``N = frame_length`` as well."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    lo, hi = np.inf, -np.inf
    for name, (snr, pd) in curves.items():
        ax.plot(snr, pd, marker="o", ms=4, label=name)
        lo, hi = min(lo, float(np.min(snr))), max(hi, float(np.max(snr)))
    if frame_length is not None and np.isfinite(lo):
        s = np.linspace(lo, hi, 200)
        ax.plot(s, energy_detector_pd_theory(s, pfa, frame_length), color="black", ls="--", lw=1,
                label=f"energy detector, theory (N = {frame_length})")
    ax.set(xlabel="SNR (dB)", ylabel="probability of detection", ylim=(-0.02, 1.02),
           title=f"Pd at Pfa = {pfa:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def roc(curves: Mapping[str, Tuple[Sequence[float], Sequence[float]]], path: str | Path,
        title: str = "ROC") -> Path:
    """ROC curves ``{name: (pfa, pd)}`` on linear axes, with the chance diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    for name, (pfa, pd) in curves.items():
        ax.plot(pfa, pd, label=name)
    ax.plot([0, 1], [0, 1], color="tab:gray", lw=1, ls=":")
    ax.set(xlabel="probability of false alarm", ylabel="probability of detection",
           xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def accuracy_vs_snr(curves: Mapping[str, Mapping[float, float]], path: str | Path,
                    num_classes: Optional[int] = None) -> Path:
    """Accuracy against SNR, one line per model (``{name: {snr: accuracy}}``); with
    ``num_classes``, the chance level as a dotted line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for name, acc in curves.items():
        snr = sorted(acc)
        ax.plot(snr, [acc[s] for s in snr], marker="o", ms=4, label=name)
    if num_classes:
        ax.axhline(1 / num_classes, color="tab:gray", lw=1, ls=":", label="chance")
    ax.set(xlabel="SNR (dB)", ylabel="accuracy", ylim=(0, 1.02), title="Accuracy against SNR")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path,
              title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (true class in rows), each cell's share written in it."""
    plt = pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    return save_figure(fig, path)


def ber_vs_ebn0(curves: Mapping[str, Tuple[Sequence[float], Sequence[float], Sequence[float]]],
                path: str | Path, theory: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
                title: str = "", floor: Optional[float] = None) -> Path:
    """Uncoded BER (left) and SER (right) against Eb/N0 on log axes, one line per receiver
    (``{name: (ebn0_db, ber, ser)}``); classical receivers dashed; ``theory`` (Eb/N0, BER) in black;
    ``floor``: one error in the test bits per point, below which a measured zero is drawn."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0))
    classical = ("LS + ", "LMMSE", "ML, ")
    for name, (ebn0, ber, ser) in curves.items():
        style = dict(ls="--", lw=1.2) if name.startswith(classical) else dict(lw=1.8)
        for ax, v in zip(axes, (ber, ser)):
            v = np.asarray(v, dtype=np.float64)
            shown = np.where(v > 0, v, np.nan)
            ax.semilogy(ebn0, shown, marker="o", ms=3, label=name, **style)
    if theory is not None:
        axes[0].semilogy(theory[0], theory[1], color="black", lw=1, label="theory")
    for ax, what in zip(axes, ("bit", "symbol")):
        ax.set(xlabel="Eb/N0 (dB)", ylabel=f"{what} error rate")
        if floor is not None:
            ax.axhline(floor, color="tab:gray", lw=0.8, ls=":")
            ax.set_ylim(bottom=floor / 2)
        ax.grid(alpha=0.3, which="both")
    axes[0].axhline(1e-2, color="tab:red", lw=0.8, ls=":")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
