"""Radio metrics: detection (Pd at a Pfa, ROC, the SNR a Pd needs) and classification per SNR.

Detection scores follow one rule: *detect when score > threshold*; higher scores mean "signal".
Every function takes plain arrays and returns plain values; SNRs are in dB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
from scipy import stats

from neurokd.errors import NeurokdError
from neurokd.radio.detectors import empirical_threshold


@dataclass(frozen=True)
class Detection:
    """Pd per SNR at one threshold set on H0 scores.

    ``pfa_achieved`` is the share of H0 scores above ``threshold`` (at most ``pfa_target``);
    ``pd[i]`` is the share of H1 scores above it at ``snr_db[i]``, from ``n[i]`` frames. With
    ``tie_probability`` q > 0 (the randomised test), a score equal to the threshold counts as a
    detection with probability q, and both rates are the expected ones.
    """

    threshold: float
    pfa_target: float
    pfa_achieved: float
    snr_db: np.ndarray
    pd: np.ndarray
    n: np.ndarray
    tie_probability: float = 0.0

    def as_dict(self) -> Dict[str, object]:
        return {"threshold": self.threshold, "pfa_target": self.pfa_target,
                "pfa_achieved": self.pfa_achieved, "tie_probability": self.tie_probability,
                "pd": {f"{s:g}": float(p) for s, p in zip(self.snr_db, self.pd)}}


def group_by_snr(scores: np.ndarray, snr_db: np.ndarray) -> Dict[float, np.ndarray]:
    """``{snr: scores of the frames at that SNR}``, SNRs ascending."""
    scores, snr_db = np.asarray(scores), np.asarray(snr_db)
    if scores.shape[0] != snr_db.shape[0]:
        raise NeurokdError(f"{scores.shape[0]} scores but {snr_db.shape[0]} SNRs")
    return {float(s): scores[snr_db == s] for s in np.unique(snr_db)}


def pd_at_pfa(scores_h0: np.ndarray, scores_h1_by_snr: Mapping[float, np.ndarray], pfa: float,
              randomize_ties: bool = False) -> Detection:
    """Threshold from the H0 scores for false-alarm rate ``pfa`` (see
    :func:`~neurokd.radio.detectors.empirical_threshold`), then :math:`P_d(\\mathrm{SNR}) =
    \\frac{1}{n}\\#\\{T_{H1} > \\gamma\\}` per SNR. With ``randomize_ties``, the randomised
    Neyman-Pearson test: a score equal to :math:`\\gamma` detects with probability
    :math:`q = (P_{fa} - P_0(T > \\gamma)) / P_0(T = \\gamma)`, so discrete scores (spike counts)
    reach the target Pfa; the rates reported are the expected ones (no random draw)."""
    h0 = np.asarray(scores_h0, dtype=np.float64).ravel()
    threshold = empirical_threshold(h0, pfa)
    above, at = float(np.mean(h0 > threshold)), float(np.mean(h0 == threshold))
    # At the threshold itself, detect with probability q (the randomised Neyman-Pearson test),
    # so that a score with ties (spike counts) reaches the target Pfa instead of falling short.
    q = min(1.0, max(0.0, (pfa - above) / at)) if (randomize_ties and at > 0) else 0.0
    snrs = np.array(sorted(float(s) for s in scores_h1_by_snr), dtype=np.float64)
    pd, n = [], []
    for s in snrs:
        h1 = np.asarray(scores_h1_by_snr[s], dtype=np.float64).ravel()
        if len(h1) == 0:
            raise NeurokdError(f"no H1 scores at {s:g} dB")
        pd.append(float(np.mean(h1 > threshold) + q * np.mean(h1 == threshold)))
        n.append(len(h1))
    return Detection(threshold, float(pfa), above + q * at, snrs,
                     np.array(pd), np.array(n, dtype=np.int64), q)


def snr_at_pd(snrs, pd, target: float = 0.9) -> Optional[float]:
    """The SNR (dB) where ``pd`` first reaches ``target``, by linear interpolation in dB.

    Between grid points :math:`(s_0, p_0)`, :math:`(s_1, p_1)` with :math:`p_0 < t \\le p_1`:
    :math:`s = s_0 + (t - p_0)(s_1 - s_0)/(p_1 - p_0)`. If the first point already reaches the
    target, that SNR is returned (the true value lies at or below it). ``None`` if ``pd`` never
    reaches ``target`` on the grid. ``snrs`` must increase strictly.
    """
    s = np.asarray(snrs, dtype=np.float64)
    p = np.asarray(pd, dtype=np.float64)
    if s.shape != p.shape or s.ndim != 1 or len(s) == 0:
        raise NeurokdError(f"snrs and pd must be 1-D arrays of one length, got {s.shape} and {p.shape}")
    if np.any(np.diff(s) <= 0):
        raise NeurokdError("snrs must increase strictly")
    above = np.flatnonzero(p >= target)
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(s[0])
    s0, s1, p0, p1 = s[i - 1], s[i], p[i - 1], p[i]
    return float(s0 + (target - p0) * (s1 - s0) / (p1 - p0))


def roc_auc(scores_h0: np.ndarray, scores_h1: np.ndarray) -> float:
    """Area under the ROC curve by Mann–Whitney: :math:`P(T_1 > T_0) + \\frac12 P(T_1 = T_0)`,

    :math:`\\mathrm{AUC} = (R_1 - n_1(n_1+1)/2)/(n_0 n_1)` with :math:`R_1` the sum of the H1
    scores' mid-ranks in the pooled sample (a tie counts one half).
    """
    h0 = np.asarray(scores_h0, dtype=np.float64).ravel()
    h1 = np.asarray(scores_h1, dtype=np.float64).ravel()
    if len(h0) == 0 or len(h1) == 0:
        raise NeurokdError("ROC AUC needs at least one H0 and one H1 score")
    ranks = stats.rankdata(np.concatenate([h0, h1]))
    r1 = ranks[len(h0):].sum()
    return float((r1 - len(h1) * (len(h1) + 1) / 2) / (len(h0) * len(h1)))


def roc_curve(scores_h0: np.ndarray, scores_h1: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """ROC points ``(pfa, pd)`` from (0, 0) to (1, 1), one per distinct score as threshold
    (*detect when score ≥ threshold*); its trapezoid area equals :func:`roc_auc`."""
    h0 = np.asarray(scores_h0, dtype=np.float64).ravel()
    h1 = np.asarray(scores_h1, dtype=np.float64).ravel()
    if len(h0) == 0 or len(h1) == 0:
        raise NeurokdError("a ROC curve needs at least one H0 and one H1 score")
    scores = np.concatenate([h0, h1])
    is_h1 = np.concatenate([np.zeros(len(h0)), np.ones(len(h1))])
    order = np.argsort(-scores, kind="stable")
    scores, is_h1 = scores[order], is_h1[order]
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]  # end of each tie group
    tp = np.cumsum(is_h1)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / len(h0)], np.r_[0.0, tp / len(h1)]


def accuracy_per_snr(y_true: np.ndarray, y_pred: np.ndarray, snr_db: np.ndarray) -> Dict[float, float]:
    """``{snr: share of correct predictions among the frames at that SNR}``, SNRs ascending."""
    y_true, y_pred, snr_db = (np.asarray(a) for a in (y_true, y_pred, snr_db))
    if not (y_true.shape == y_pred.shape == snr_db.shape):
        raise NeurokdError(f"labels {y_true.shape}, predictions {y_pred.shape} and SNRs "
                           f"{snr_db.shape} must have one shape")
    return {float(s): float(np.mean(y_true[snr_db == s] == y_pred[snr_db == s]))
            for s in np.unique(snr_db)}


def mean_accuracy_snr_ge(y_true: np.ndarray, y_pred: np.ndarray, snr_db: np.ndarray,
                         min_snr: float = 0.0) -> Optional[float]:
    """Mean of the per-SNR accuracies at SNR ≥ ``min_snr`` (each SNR weighs the same);
    ``None`` when no frame is that strong."""
    acc = [a for s, a in accuracy_per_snr(y_true, y_pred, snr_db).items() if s >= min_snr]
    return float(np.mean(acc)) if acc else None


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]``: frames of true class ``i`` predicted as ``j`` (int64, ``num_classes²``)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise NeurokdError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    for a in (y_true, y_pred):
        if len(a) and (a.min() < 0 or a.max() >= num_classes):
            raise NeurokdError(f"class indices must lie in 0..{num_classes - 1}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2
                       ).reshape(num_classes, num_classes).astype(np.int64)


def binomial_interval(k: int, n: int, confidence: float = 0.99) -> Tuple[float, float]:
    """Clopper–Pearson interval for a proportion with ``k`` successes in ``n`` trials:
    :math:`[B^{-1}(\\frac{\\alpha}{2}; k, n-k+1),\\ B^{-1}(1-\\frac{\\alpha}{2}; k+1, n-k)]`."""
    if n <= 0 or not 0 <= k <= n:
        raise NeurokdError(f"need 0 ≤ k ≤ n and n > 0, got k={k}, n={n}")
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi
