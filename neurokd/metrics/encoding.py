"""What an input encoding leaves of a radio signal: the classical receiver fed the decoded input.

Before any training, an SNN student can do no better than the information its first layer
receives. Here each encoder's output is decoded back to complex samples (the mean over the ``T``
steps, rescaled by the full scale) and handed to the task's classical receiver, so the loss of
the encoding alone is measured in the task's units:

- sensing: the energy detector on the decoded frames; the SNR (dB) where Pd reaches 0.9 at the
  target Pfa (threshold from the decoded noise-only frames), and the mean Pd;
- symbols: maximum-likelihood detection from the decoded detector features
  (:func:`~neurokd.radio.ofdm.detector_inputs`: every ML metric is linear in them); the BER per
  Eb/N0 and the Eb/N0 at BER 1e-2.

``raw`` is the receiver on the undecoded (unclipped) samples: the ceiling of every encoding.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np
import torch

from neurokd.data.encoders import get_encoder
from neurokd.data.radio import iq_input
from neurokd.errors import NeurokdError
from neurokd.radio import metrics as rm
from neurokd.radio.detectors import energy_scores


def decoded_iq(iq: np.ndarray, full_scale: np.ndarray | float, encoder: str, timesteps: int,
               seed: int = 0) -> np.ndarray:
    """Complex samples ``(n, L)`` → what ``encoder`` delivers in ``timesteps`` steps, decoded
    back to complex samples: signed encoders read the ``I, Q`` layout, the others the split
    ``I+, I-, Q+, Q-`` one (:mod:`neurokd.data.radio`)."""
    enc = get_encoder(encoder)
    x = iq_input(iq, full_scale, "signed" if enc.signed else "split")
    g = torch.Generator().manual_seed(seed)
    top = enc.input_range[1]
    mean = np.empty(x.shape, dtype=np.float64)
    for i in range(0, len(x), 4096):  # a bounded working set for long recordings
        frames = enc(torch.as_tensor(x[i:i + 4096]), timesteps, g)
        mean[i:i + 4096] = frames.to(torch.float64).mean(-1).numpy() / top
    a = np.broadcast_to(np.asarray(full_scale, dtype=np.float64), (len(iq),))[:, None]
    m = mean[:, :, 0, :]
    if enc.signed:
        return a * (m[:, 0] + 1j * m[:, 1])
    return a * ((m[:, 0] - m[:, 1]) + 1j * (m[:, 2] - m[:, 3]))


def sensing_ceiling(iq: np.ndarray, label: np.ndarray, snr_db: np.ndarray, full_scale: float,
                    encoders: Sequence[str], timesteps: int, pfa: float = 0.1,
                    target_pd: float = 0.9, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """The energy detector on each encoder's decoded frames (and ``raw``). ``label`` 0: noise
    only. Per encoder: ``pd`` per SNR, the measured ``pfa``, ``snr_at_pd`` and ``mean_pd``."""
    h0 = label == 0
    if not h0.any() or h0.all():
        raise NeurokdError("the sensing ceiling needs noise-only and signal frames")
    out: Dict[str, Dict[str, Any]] = {}
    for name in ["raw", *encoders]:
        r = iq if name == "raw" else decoded_iq(iq, full_scale, name, timesteps, seed)
        s = energy_scores(r)
        # rate-coded frames decode to a few discrete energies: the randomised test reaches the Pfa
        det = rm.pd_at_pfa(s[h0], rm.group_by_snr(s[~h0], snr_db[~h0]), pfa, randomize_ties=True)
        out[name] = {"snr_db": det.snr_db.tolist(), "pd": det.pd.tolist(), "pfa": det.pfa_achieved,
                     "snr_at_pd": rm.snr_at_pd(det.snr_db, det.pd, target_pd),
                     "mean_pd": float(np.mean(det.pd))}
    return out


def ml_from_features(feats: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maximum-likelihood decision on the wanted (first) stream of 2×2 detector features
    ``[z_1, z_2, G_11 + iG_22, G_12]``: the pair ``(x_1, x_2)`` of ``points`` (the constellation
    at each stream's power)
    minimising :math:`-2\\,\\mathrm{Re}(x^H z) + x^H G x`; returns the index of ``x_1``."""
    if feats.shape[1] != 4:
        raise NeurokdError(f"ML from features is written for 2x2 MIMO (4 features), got {feats.shape[1]}")
    z1, z2, d, g12 = (feats[:, k][:, None, None] for k in range(4))
    x1, x2 = points[None, :, None], points[None, None, :]
    metric = (-2 * np.real(np.conj(x1) * z1 + np.conj(x2) * z2) + d.real * np.abs(x1) ** 2
              + d.imag * np.abs(x2) ** 2 + 2 * np.real(np.conj(x1) * g12 * x2))
    best = metric.reshape(len(feats), -1).argmin(1)
    return best // len(points)


def symbols_ceiling(features: np.ndarray, label: np.ndarray, ebn0_db: np.ndarray,
                    full_scale: float, modulation: str, encoders: Sequence[str], timesteps: int,
                    seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """ML detection from each encoder's decoded detector features (and ``raw``). Per encoder:
    ``ber`` per Eb/N0 and ``ebn0_at_ber`` (BER 1e-2)."""
    from neurokd.metrics.radio import BER_TARGET, ebn0_at_ber
    from neurokd.radio.ofdm import bit_errors, bits_per_symbol, constellation

    # each of the 2 streams carries half the transmit power (neurokd.radio.mimo.ml_detect)
    points, k = constellation(modulation) / np.sqrt(2), bits_per_symbol(modulation)
    grid = np.unique(ebn0_db)
    out: Dict[str, Dict[str, Any]] = {}
    for name in ["raw", *encoders]:
        f = features if name == "raw" else decoded_iq(features, full_scale, name, timesteps, seed)
        errors = bit_errors(ml_from_features(f, points), label)
        ber = [float(errors[ebn0_db == e].sum() / (k * np.sum(ebn0_db == e))) for e in grid]
        out[name] = {"ebn0_db": grid.tolist(), "ber": ber,
                     "ebn0_at_ber": ebn0_at_ber(grid, ber, BER_TARGET)}
    return out

