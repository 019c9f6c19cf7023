"""Channels and impairments, as pure functions on batches of frames ``(n, length)``.

A per-frame channel is an FIR filter built from paths with fractional delays :math:`d_p` and
complex gains :math:`g_p`, each path a Kaiser-windowed sinc interpolator:

.. math::

    h_k = \\sum_p g_p\\, \\mathrm{sinc}(k - H - d_p)\\, w(k - H - d_p),\\qquad
    y_t = \\sum_{k} h_k\\, x_{t + K - 1 - k},

so that :math:`y_t = \\sum_p g_p\\, x(t + H - d_p)` for band-limited :math:`x` (``H`` the window's
half length, ``K`` the number of taps). The input must be ``K - 1`` samples longer than the output.

``rayleigh3``: three paths at delays 0, 0.9 and 1.7 samples with amplitudes 1, 0.8 and 0.3,
normalised to unit average power gain: :math:`g_p \\sim \\mathcal{CN}(0, a_p^2/\\sum_q a_q^2)`,
independent, drawn afresh for every frame, so :math:`E\\,\\sum_p |g_p|^2 = 1`. ``awgn``: one path,
:math:`g = 1`, no delay.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# name → (path delays in samples, path amplitudes before normalisation)
CHANNELS: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "awgn": ((0.0,), (1.0,)),
    "rayleigh3": ((0.0, 0.9, 1.7), (1.0, 0.8, 0.3)),
}

SINC_HALF = 12  # half length of the windowed-sinc interpolator, in samples
KAISER_BETA = 8.0


def fir_taps(delays: np.ndarray, gains: np.ndarray, max_delay: float, half: int = SINC_HALF
             ) -> np.ndarray:
    """Per-frame taps ``(n, 2 * half + 1 + ceil(max_delay))`` for paths ``delays``/``gains`` ``(n, P)``.

    ``max_delay`` bounds every delay; the window :math:`w(u) = I_0(\\beta\\sqrt{1 - (u/(H+1))^2})
    / I_0(\\beta)` is centred on each path, so no path's interpolator is cut short.
    """
    k = np.arange(2 * half + 1 + int(np.ceil(max_delay)))
    u = k[None, None, :] - half - delays[:, :, None]
    inside = np.clip(1 - (u / (half + 1)) ** 2, 0, None)
    window = np.where(np.abs(u) < half + 1, np.i0(KAISER_BETA * np.sqrt(inside)) / np.i0(KAISER_BETA), 0)
    return np.einsum("np,npk->nk", gains, np.sinc(u) * window)


def apply_fir(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Row-wise valid convolution: :math:`y_t = \\sum_k h_k x_{t + K - 1 - k}`, ``t < len(x) - K + 1``."""
    windows = sliding_window_view(x, taps.shape[1], axis=1)  # (n, length, K), a view
    return np.einsum("ntk,nk->nt", windows, taps[:, ::-1])


def channel_paths(gen: np.random.Generator, channel: str, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Delays and complex gains ``(n, P)`` of ``n`` independent realisations of ``channel``."""
    delays, amps = (np.asarray(v, dtype=np.float64) for v in CHANNELS[channel])
    d = np.broadcast_to(delays, (n, len(delays))).copy()
    if channel == "awgn":
        return d, np.ones((n, 1), dtype=np.complex128)
    power = amps ** 2 / np.sum(amps ** 2)
    g = (gen.standard_normal((n, len(amps))) + 1j * gen.standard_normal((n, len(amps)))) * np.sqrt(power / 2)
    return d, g


def max_channel_delay(channel: str) -> float:
    return float(max(CHANNELS[channel][0]))


def rotate(x: np.ndarray, cfo: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Carrier offset and phase: :math:`y_t = x_t\\, e^{j(2\\pi f t + \\varphi)}`, ``f`` in cycles/sample."""
    t = np.arange(x.shape[1])
    return x * np.exp(1j * (2 * np.pi * cfo[:, None] * t[None, :] + phase[:, None]))


def complex_noise(gen: np.random.Generator, shape: Tuple[int, int], power: np.ndarray) -> np.ndarray:
    """Circular Gaussian noise :math:`\\mathcal{CN}(0, \\sigma^2)`, one power :math:`\\sigma^2` per row."""
    w = gen.standard_normal(shape) + 1j * gen.standard_normal(shape)
    return w * np.sqrt(power / 2)[:, None]
