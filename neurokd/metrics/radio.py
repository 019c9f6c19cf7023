"""Radio results in a radio engineer's units, for any set of receivers scored on the same frames.

``sensing``: every detector gives one score per test frame (larger: more likely H1). The threshold
is set on the H0 test frames for each target false-alarm rate (0.1 and 0.01), with the randomised
Neyman-Pearson rule at ties (spike counts are discrete), so every receiver is compared at the same
false-alarm rate; Pd is reported per SNR with the achieved Pfa, with the SNR where Pd reaches 0.9
and the ROC AUC. The energy
detector runs on the same frames with the nominal noise power; its exact theory curve is drawn when
it applies (AWGN, known noise power).

``modulation``: every classifier gives one predicted class per test frame; accuracy is reported per
SNR, with the mean over SNR >= 0 dB and the confusion matrix at SNR >= 0 dB.

``symbols``: every detector decides one constellation point per test sample (one stream of one
resource element); its index is the point's Gray-coded bits, so uncoded BER and SER per Eb/N0 follow,
with the Eb/N0 where BER reaches 1e-2, beside the classical receivers (least-squares channel
estimate with LMMSE or ML detection; LMMSE and ML with the true channel).

A spiking receiver's score comes from its output spikes (:func:`spike_score`), so the chip's
output alone decides, as it would on Loihi.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.data.datasets import Dataset, Split
from neurokd.errors import NeurokdError
from neurokd.radio import metrics as rm
from neurokd.radio import plots as rp
from neurokd.radio.detectors import energy_detector_pd_theory, energy_scores
from neurokd.training import Prepare, encoded_batches, identity, make_prepare

PFAS = (0.1, 0.01)
PD_TARGET = 0.9
ENERGY = "energy detector"


def spike_score(spikes: np.ndarray) -> np.ndarray:
    """Detection score of a two-output spiking detector from its output spikes ``(N, 2, W)``:
    the spike-count margin of the H1 neuron over the H0 neuron, plus a tie-break below one count
    that favours earlier spikes (the margin of :math:`\\sum_t (W - t)\\,s_t / W^2`). Counts alone
    take a few dozen values, so thresholds for a small Pfa would fall between them."""
    s = np.asarray(spikes, dtype=np.float64)
    if s.ndim != 3 or s.shape[1] != 2:
        raise NeurokdError(f"a detection score needs two output neurons, got spikes {s.shape}")
    w = s.shape[-1]
    counts = s.sum(-1)
    early = (s * (w - np.arange(w))).sum(-1) / (w * w + 1)
    return (counts[:, 1] - counts[:, 0]) + (early[:, 1] - early[:, 0])


def theory_applies(ds: Dataset) -> bool:
    """The energy detector's χ² theory is exact for AWGN with known noise power."""
    r = ds.radio or {}
    return r.get("channel") == "awgn" and float(r.get("noise_uncertainty_db", 0.0)) == 0.0


def _require(split: Split, what: str) -> None:
    if split.snr is None or (what == "iq" and split.iq is None):
        raise NeurokdError(f"a radio report needs each test sample's SNR{' and I/Q frame' if what == 'iq' else ''}; "
                           "this dataset has none (use sensing or modulation)")


def sensing_report(ds: Dataset, scores: Mapping[str, np.ndarray], out_dir: Optional[Path] = None,
                   pfas: Sequence[float] = PFAS) -> Dict[str, Any]:
    """Pd per SNR at each Pfa, SNR at Pd 0.9 and AUC of the energy detector and of ``scores``
    (``{receiver: score per test frame}``); writes ``pd_vs_snr_pfa*.png`` and ``roc.png``."""
    test = ds.test
    _require(test, "iq")
    all_scores = {ENERGY: energy_scores(test.iq, 1.0), **{k: np.asarray(v) for k, v in scores.items()}}
    h0_mask, h1_mask = test.y == 0, test.y == 1
    out: Dict[str, Any] = {"pfa_targets": list(pfas), "frames": int(len(test)),
                           "frame_length": int(test.iq.shape[1]), "theory": theory_applies(ds),
                           "receivers": {}}
    curves: Dict[float, Dict[str, Any]] = {p: {} for p in pfas}
    roc_curves = {}
    for name, sc in all_scores.items():
        if sc.shape != (len(test),):
            raise NeurokdError(f"receiver {name!r}: {sc.shape} scores for {len(test)} test frames")
        by_snr = rm.group_by_snr(sc[h1_mask], test.snr[h1_mask])
        row: Dict[str, Any] = {"auc": rm.roc_auc(sc[h0_mask], sc[h1_mask])}
        for p in pfas:
            det = rm.pd_at_pfa(sc[h0_mask], by_snr, p, randomize_ties=True)
            key = f"pfa_{p:g}"
            row[key] = det.as_dict()
            row[key]["snr_at_pd90_db"] = rm.snr_at_pd(det.snr_db, det.pd, PD_TARGET)
            curves[p][f"{name} (Pfa {det.pfa_achieved:.3f})"] = (det.snr_db, det.pd)
        row["snr_at_pd90_db"] = row[f"pfa_{pfas[0]:g}"]["snr_at_pd90_db"]
        out["receivers"][name] = row
        roc_curves[name] = rm.roc_curve(sc[h0_mask], sc[h1_mask])
    if out["theory"]:
        grid = np.unique(test.snr)
        out["energy_detector_theory"] = {
            f"pfa_{p:g}": {f"{s:g}": float(v) for s, v in
                           zip(grid, energy_detector_pd_theory(grid, p, out["frame_length"]))}
            for p in pfas}
    if out_dir is not None:
        for p in pfas:
            rp.pd_vs_snr(curves[p], p, Path(out_dir) / f"pd_vs_snr_pfa{p:g}.png",
                         frame_length=out["frame_length"] if out["theory"] else None)
        rp.roc(roc_curves, Path(out_dir) / "roc.png", title="ROC, all SNRs pooled")
    return out


def modulation_report(ds: Dataset, predictions: Mapping[str, np.ndarray],
                      out_dir: Optional[Path] = None, confusion_of: Optional[str] = None
                      ) -> Dict[str, Any]:
    """Accuracy per SNR and mean accuracy at SNR >= 0 dB of each classifier in ``predictions``
    (``{name: predicted class per test frame}``); the confusion matrix (SNR >= 0 dB) of
    ``confusion_of`` (default: the first). Writes ``accuracy_vs_snr.png`` and ``confusion.png``."""
    test = ds.test
    _require(test, "snr")
    names = ds.class_names or [str(i) for i in range(ds.num_classes)]
    out: Dict[str, Any] = {"frames": int(len(test)), "classes": names, "receivers": {}}
    curves = {}
    for name, pred in predictions.items():
        pred = np.asarray(pred)
        if pred.shape != (len(test),):
            raise NeurokdError(f"classifier {name!r}: {pred.shape} predictions for {len(test)} frames")
        per = rm.accuracy_per_snr(test.y, pred, test.snr)
        out["receivers"][name] = {
            "accuracy": float((pred == test.y).mean()),
            "mean_accuracy_snr_ge_0": rm.mean_accuracy_snr_ge(test.y, pred, test.snr, 0.0),
            "accuracy_per_snr": {f"{s:g}": float(a) for s, a in per.items()}}
        curves[name] = per
    chosen = confusion_of or next(iter(predictions), None)
    if chosen is not None:
        keep = test.snr >= 0
        matrix = rm.confusion_matrix(test.y[keep], np.asarray(predictions[chosen])[keep], ds.num_classes)
        out["confusion_snr_ge_0"] = {"receiver": chosen, "matrix": matrix.tolist()}
    if out_dir is not None:
        rp.accuracy_vs_snr(curves, Path(out_dir) / "accuracy_vs_snr.png", num_classes=ds.num_classes)
        if chosen is not None:
            rp.confusion(matrix, names, Path(out_dir) / "confusion.png",
                         title=f"{chosen}, SNR >= 0 dB")
    return out


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """A few console lines of a sensing or modulation report: each receiver's headline figures."""
    lines = []
    for name, row in report["receivers"].items():
        if "auc" in row:
            cells = []
            for p in report["pfa_targets"]:
                d = row[f"pfa_{p:g}"]
                snr = d["snr_at_pd90_db"]
                cells.append(f"Pd 0.9 at {'never' if snr is None else f'{snr:.1f} dB'} "
                             f"(Pfa {d['pfa_achieved']:.3f})")
            lines.append(f"{name}: AUC {row['auc']:.3f}; " + "; ".join(cells))
        elif "ber_per_ebn0" in row:
            e = row["ebn0_at_ber_1e-2_db"]
            b20 = row["ber_at_20db"]
            lines.append(f"{name}: BER 1e-2 at {'never' if e is None else f'{e:.1f} dB'} Eb/N0"
                         + ("" if b20 is None else f"; BER at 20 dB {b20:.2e}"))
        else:
            mean = row["mean_accuracy_snr_ge_0"]
            lines.append(f"{name}: accuracy {row['accuracy']:.4f}, mean over SNR >= 0 dB "
                         f"{'n/a' if mean is None else f'{mean:.4f}'}")
    return lines


# ---------------------------------------------------------------- symbol detection
BER_TARGET = 1e-2
LS_LMMSE = "LS + LMMSE"
CLASSICAL_SYMBOL_RECEIVERS = (LS_LMMSE, "LS + ML", "LMMSE, true channel", "ML, true channel")


def classical_symbol_decisions(ds: Dataset) -> Dict[str, np.ndarray]:
    """Each classical receiver's decided symbol index per test sample (see :mod:`neurokd.radio.mimo`)."""
    from neurokd.radio.mimo import lmmse_detect, ml_detect

    m = ds.test.meta or {}
    if not {"y", "h", "h_ls", "n0", "stream"} <= set(m):
        raise NeurokdError("a symbol-detection report needs the received vectors and channels of "
                           "each test sample; this dataset has none (use symbols)")
    mod = ds.radio["modulation"]
    y, h, h_ls = (m[k].astype(np.complex128) for k in ("y", "h", "h_ls"))
    return {LS_LMMSE: lmmse_detect(y, h_ls, m["n0"], m["stream"], mod),
            "LS + ML": ml_detect(y, h_ls, m["stream"], mod),
            "LMMSE, true channel": lmmse_detect(y, h, m["n0"], m["stream"], mod),
            "ML, true channel": ml_detect(y, h, m["stream"], mod)}


def ebn0_at_ber(ebn0_db, ber, target: float = BER_TARGET) -> Optional[float]:
    """The Eb/N0 (dB) where ``ber`` first falls to ``target``, interpolated linearly in
    :math:`\\log_{10}` BER between grid points (a BER of 0 counts as :math:`10^{-12}`); None if it
    never does on the grid."""
    lg = -np.log10(np.maximum(np.asarray(ber, dtype=np.float64), 1e-12))
    return rm.snr_at_pd(ebn0_db, lg, -np.log10(target))


def symbols_report(ds: Dataset, predictions: Mapping[str, np.ndarray],
                   out_dir: Optional[Path] = None,
                   classical: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, Any]:
    """Uncoded BER and SER per Eb/N0 of the classical receivers and of ``predictions``
    (``{name: decided symbol index per test sample}``), the Eb/N0 where each reaches BER 1e-2 and
    each one's BER at 20 dB, with the textbook curve where one applies; writes ``ber_vs_ebn0.png``.
    ``classical``: the decisions of :func:`classical_symbol_decisions` on ``ds``, when the caller
    reports several sets of predictions on the same test samples (computed here otherwise)."""
    from neurokd.radio.mimo import theory_curve
    from neurokd.radio.ofdm import bit_errors, bits_per_symbol

    test = ds.test
    _require(test, "snr")
    k = bits_per_symbol(ds.radio["modulation"])
    if classical is None:
        classical = classical_symbol_decisions(ds)
    decisions = {**classical, **{n: np.asarray(p) for n, p in predictions.items()}}
    grid = np.unique(test.snr)
    at = [test.snr == g for g in grid]
    out: Dict[str, Any] = {"samples": int(len(test)), "bits": int(len(test) * k),
                           "bits_per_ebn0": [int(a.sum() * k) for a in at],
                           "ebn0_db": [float(g) for g in grid], "ber_target": BER_TARGET,
                           "receivers": {}}
    curves: Dict[str, Any] = {}
    for name, pred in decisions.items():
        if pred.shape != (len(test),):
            raise NeurokdError(f"receiver {name!r}: {pred.shape} decisions for {len(test)} samples")
        errors = bit_errors(pred, test.y)
        ber = np.array([errors[a].sum() / (a.sum() * k) for a in at])
        ser = np.array([np.mean(pred[a] != test.y[a]) for a in at])
        out["receivers"][name] = {
            "ber": float(errors.sum() / (len(test) * k)),
            "ber_per_ebn0": {f"{g:g}": float(b) for g, b in zip(grid, ber)},
            "ser_per_ebn0": {f"{g:g}": float(s) for g, s in zip(grid, ser)},
            "ebn0_at_ber_1e-2_db": ebn0_at_ber(grid, ber),
            "ber_at_20db": float(ber[grid == 20.0][0]) if np.any(grid == 20.0) else None}
        curves[name] = (grid, ber, ser)
    theory = theory_curve(ds.radio, grid)
    if theory is not None:
        out["theory_ber_per_ebn0"] = {f"{g:g}": float(b) for g, b in zip(grid, theory)}
    if out_dir is not None:
        rp.ber_vs_ebn0(curves, Path(out_dir) / "ber_vs_ebn0.png",
                       theory=None if theory is None else (grid, theory),
                       title=f"{ds.radio['n_tx']}x{ds.radio['n_rx']} {ds.radio['modulation'].upper()}, "
                             f"{ds.radio['channel']}, amplifier {ds.radio['pa']}",
                       floor=1.0 / max(min(out["bits_per_ebn0"]), 1))
    return out


@torch.no_grad()
def test_outputs(model: nn.Module, ds: Dataset, prepare: Prepare, seed: int = 0) -> np.ndarray:
    """The model's output on every test sample, encoded exactly as ``accuracy`` encodes them:
    output spikes ``(N, K, W)`` of an SNN, logits ``(N, K)`` of a DNN."""
    model.eval()
    return torch.cat([model(xb) for xb, _ in encoded_batches(ds.test, prepare, seed)]).numpy()


def radio_receivers(ds: Dataset, models: Dict[str, Tuple[nn.Module, Dict[str, Any]]], seed: int
                    ) -> Dict[str, np.ndarray]:
    """Scores (``sensing``: one detection score per frame) or predictions (``modulation``) of each
    model; ``models`` maps a receiver's name to (model, its SNN metadata, or {} for a DNN)."""
    out: Dict[str, np.ndarray] = {}
    for name, (model, meta) in models.items():
        if meta:
            prepare = make_prepare(meta["encoder"], meta["timesteps"], model.window_pad)
            spikes = test_outputs(model, ds, prepare, seed)
            out[name] = spike_score(spikes) if ds.task == "detection" else spikes.sum(-1).argmax(1)
        else:
            logits = test_outputs(model, ds, identity, seed)
            out[name] = logits[:, 1] - logits[:, 0] if ds.task == "detection" else logits.argmax(1)
    return out


def radio_report(ds: Dataset, models: Dict[str, Tuple[nn.Module, Dict[str, Any]]], out_dir: Path,
                 seed: int = 0) -> Dict[str, Any]:
    """Radio results of ``models`` beside the classical receivers, with their PNGs in ``out_dir``:
    Pd against SNR at Pfa 0.1 and 0.01, SNR at Pd 0.9 and ROC for ``sensing``; accuracy against SNR
    and the confusion matrix for ``modulation``; BER and SER against Eb/N0 for ``symbols`` (see
    :mod:`neurokd.metrics.radio`)."""
    receivers = radio_receivers(ds, models, seed)
    if ds.task == "detection":
        return sensing_report(ds, receivers, out_dir)
    if ds.task == "symbols":
        return symbols_report(ds, receivers, out_dir)
    return modulation_report(ds, receivers, out_dir)
