"""Classical MIMO detectors and the textbook bit-error curves they are tested against.

Every detector decides one stream of one resource element per sample, from the received vector
``y`` ``(n, n_rx)``, a channel matrix ``h`` ``(n, n_rx, n_tx)`` (true or estimated) and the noise
power ``n0`` ``(n,)``, and returns the index of the decided constellation point (its bits, see
:func:`neurokd.radio.ofdm.constellation`).

- :func:`lmmse_detect`: :math:`W = (H^H H + N_0/E_s\\, I)^{-1} H^H`, :math:`\\tilde x = W y`, each
  stream divided by its gain :math:`(WH)_{tt}` (the unbiased LMMSE estimate; without it 16-QAM's
  outer points are pulled inwards) and sliced to the nearest point. :math:`E_s = 1/n_{tx}`.
- :func:`ml_detect`: :math:`\\arg\\min_x \\lVert y - Hx \\rVert^2` over all :math:`M^{n_{tx}}`
  symbol vectors, the wanted stream's component of the winner.

Theory (``gamma`` is :math:`E_b/N_0`, linear): Gray QPSK in AWGN,
:math:`P_b = Q(\\sqrt{2\\gamma})`; Gray 16-QAM in AWGN,
:math:`P_b = \\tfrac34 Q(\\sqrt{4\\gamma/5}) + \\tfrac12 Q(3\\sqrt{4\\gamma/5}) - \\tfrac14 Q(5\\sqrt{4\\gamma/5})`;
QPSK with :math:`L`-branch maximum-ratio combining in Rayleigh fading (one stream, :math:`L`
receive antennas, where LMMSE and ML both reduce to MRC),
:math:`P_b = \\left(\\tfrac{1-\\mu}{2}\\right)^L \\sum_{k<L} \\binom{L-1+k}{k}
\\left(\\tfrac{1+\\mu}{2}\\right)^k`, :math:`\\mu = \\sqrt{\\gamma/(1+\\gamma)}`.
"""

from __future__ import annotations

from math import comb
from typing import Dict

import numpy as np
from scipy.special import erfc

from neurokd.radio.ofdm import constellation, single_threaded

CHUNK = 4096


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * erfc(np.asarray(x, dtype=np.float64) / np.sqrt(2))


def slice_nearest(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the point nearest to each value of ``x``."""
    return np.abs(np.asarray(x)[..., None] - points).argmin(-1)


@single_threaded
def lmmse_detect(y: np.ndarray, h: np.ndarray, n0: np.ndarray, stream: np.ndarray,
                 modulation: str) -> np.ndarray:
    n_tx = h.shape[2]
    es = 1.0 / n_tx
    hh = np.conj(np.swapaxes(h, 1, 2))
    gram = hh @ h + (np.asarray(n0) / es)[:, None, None] * np.eye(n_tx)
    w = np.linalg.solve(gram, hh)  # (n, n_tx, n_rx)
    x = (w @ y[:, :, None])[:, :, 0]
    gain = np.einsum("ntr,nrt->nt", w, h)
    pick = np.arange(len(y)), np.asarray(stream)
    pts = constellation(modulation) / np.sqrt(n_tx)
    return slice_nearest(x[pick] / gain[pick], pts)


@single_threaded
def ml_detect(y: np.ndarray, h: np.ndarray, stream: np.ndarray, modulation: str) -> np.ndarray:
    n_tx = h.shape[2]
    pts = constellation(modulation) / np.sqrt(n_tx)
    m = len(pts)
    combos = np.stack(np.meshgrid(*[np.arange(m)] * n_tx, indexing="ij"), -1).reshape(-1, n_tx)
    cand = pts[combos]  # (M^n_tx, n_tx)
    out = np.empty(len(y), dtype=np.int64)
    for start in range(0, len(y), CHUNK):
        sl = slice(start, start + CHUNK)
        pred = np.einsum("nrt,ct->ncr", h[sl], cand)
        dist = (np.abs(y[sl, None, :] - pred) ** 2).sum(-1)
        best = dist.argmin(1)
        out[sl] = combos[best, np.asarray(stream)[sl]]
    return out


def ber_awgn_theory(ebn0_db, modulation: str) -> np.ndarray:
    g = 10.0 ** (np.asarray(ebn0_db, dtype=np.float64) / 10.0)
    if modulation == "qpsk":
        return _q(np.sqrt(2 * g))
    a = np.sqrt(4 * g / 5)
    return 0.75 * _q(a) + 0.5 * _q(3 * a) - 0.25 * _q(5 * a)


def ber_rayleigh_mrc_qpsk_theory(ebn0_db, branches: int) -> np.ndarray:
    g = 10.0 ** (np.asarray(ebn0_db, dtype=np.float64) / 10.0)
    mu = np.sqrt(g / (1 + g))
    return ((1 - mu) / 2) ** branches * sum(comb(branches - 1 + k, k) * ((1 + mu) / 2) ** k
                                            for k in range(branches))


def theory_curve(radio: Dict, ebn0_db) -> np.ndarray | None:
    """The exact textbook BER for a generator config, where one exists: AWGN (identity channel,
    any antennas, true channel) or QPSK with one stream through Rayleigh fading (MRC); else None.
    Only for the linear amplifier."""
    if radio.get("pa", "none") != "none":
        return None
    if radio.get("channel") == "awgn":
        return ber_awgn_theory(ebn0_db, radio["modulation"])
    if radio.get("n_tx") == 1 and radio.get("modulation") == "qpsk":
        return ber_rayleigh_mrc_qpsk_theory(ebn0_db, int(radio["n_rx"]))
    return None
