"""Complex baseband waveforms at unit average power, one frame per row.

Every generator has the signature ``(gen, n, length, p) -> (n, length) complex128`` where ``gen``
is a seeded ``numpy.random.Generator`` and ``p`` a :class:`WaveformParams`. A frame is cut from a
longer stream at a random start, so the frames carry a random timing offset (an integer number of
samples within one symbol or OFDM symbol); :mod:`neurokd.radio.channels` adds the fractional part.

Linear modulations (BPSK, QPSK, 8PSK, 16QAM, 64QAM, PAM4) use a root-raised-cosine pulse,

.. math::

    h(t) = \\frac{\\sin(\\pi t(1-\\beta)) + 4\\beta t\\cos(\\pi t(1+\\beta))}
                {\\pi t\\,(1 - (4\\beta t)^2)},\\qquad t \\text{ in symbol periods},

scaled so that :math:`\\sum_k h_k^2 = 1`; the transmitted signal
:math:`s_n = \\sqrt{\\mathrm{sps}}\\sum_m a_m h_{n - m\\,\\mathrm{sps}}` then has
:math:`E|s_n|^2 = E|a_m|^2 = 1` (unit-power constellations). With ``pulse="rect"`` the pulse is a
rectangle one symbol long and :math:`|s_n| = |a_m|`: QPSK then has a constant envelope.

OFDM: ``n_fft`` subcarriers of which ``active`` (split evenly around an unused DC bin, the rest
guard bins, as in IEEE 802.11a's 52 of 64) carry QPSK;
:math:`x = \\frac{N}{\\sqrt{N_a}}\\,\\mathrm{IFFT}_N(X)` has unit power, and the last ``cp``
samples are repeated in front of each symbol (cyclic prefix).

Continuous-phase FSK (binary, symbols :math:`a_m = \\pm 1`): the phase
:math:`\\phi_n = \\frac{\\pi h}{\\mathrm{sps}}\\sum_{k \\le n} f_k` integrates a frequency pulse
:math:`f` that is the rectangular NRZ sequence (CPFSK, index ``CPFSK_INDEX``) or that sequence
through a Gaussian filter of bandwidth-time product ``GFSK_BT`` (GFSK, index ``GFSK_INDEX``,
GMSK-like), so each symbol advances the phase by :math:`\\pi h a_m`; :math:`s_n = e^{j\\phi_n}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from scipy.signal import upfirdn

# Binary continuous-phase FSK: modulation indices and the Gaussian filter's bandwidth-time product.
CPFSK_INDEX = 0.5
GFSK_INDEX = 0.5
GFSK_BT = 0.35
GAUSS_SPAN = 4  # symbols covered by the truncated Gaussian frequency filter


@dataclass(frozen=True)
class WaveformParams:
    """Pulse and OFDM parameters shared by every generator."""

    sps: int = 8
    rolloff: float = 0.35
    span: int = 10  # RRC length in symbols (taps: span * sps + 1)
    pulse: str = "rrc"  # "rrc" or "rect"
    n_fft: int = 64
    active: int = 52
    cp: int = 16


# (gen, n, length, params) -> (n, length) complex128 frames at unit average power
WaveformFn = Callable[[np.random.Generator, int, int, WaveformParams], np.ndarray]


def _qam(m: int) -> np.ndarray:
    side = int(round(np.sqrt(m)))
    levels = np.arange(-(side - 1), side, 2, dtype=np.float64)
    pts = (levels[:, None] + 1j * levels[None, :]).ravel()
    return pts / np.sqrt(np.mean(np.abs(pts) ** 2))


def _psk(m: int, offset: float = 0.0) -> np.ndarray:
    return np.exp(1j * (2 * np.pi * np.arange(m) / m + offset))


def _pam(m: int) -> np.ndarray:
    levels = np.arange(-(m - 1), m, 2, dtype=np.float64)
    return (levels / np.sqrt(np.mean(levels ** 2))).astype(np.complex128)


CONSTELLATIONS: Dict[str, np.ndarray] = {
    "bpsk": _psk(2),
    "qpsk": _psk(4, np.pi / 4),
    "8psk": _psk(8),
    "16qam": _qam(16),
    "64qam": _qam(64),
    "pam4": _pam(4),
}


def rrc_taps(rolloff: float, sps: int, span: int) -> np.ndarray:
    """Root-raised-cosine taps, ``span * sps + 1`` of them, with unit energy :math:`\\sum h^2 = 1`.

    The special points are :math:`h(0) = 1 - \\beta + 4\\beta/\\pi` and
    :math:`h(\\pm\\frac{1}{4\\beta}) = \\frac{\\beta}{\\sqrt2}\\big[(1+\\frac2\\pi)\\sin\\frac{\\pi}{4\\beta}
    + (1-\\frac2\\pi)\\cos\\frac{\\pi}{4\\beta}\\big]`.
    """
    b = float(rolloff)
    t = np.arange(-span * sps // 2, span * sps // 2 + 1) / sps
    h = np.empty_like(t)
    for i, ti in enumerate(t):
        if abs(ti) < 1e-12:
            h[i] = 1 - b + 4 * b / np.pi
        elif abs(abs(4 * b * ti) - 1) < 1e-9:
            h[i] = b / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * b))
                                     + (1 - 2 / np.pi) * np.cos(np.pi / (4 * b)))
        else:
            h[i] = ((np.sin(np.pi * ti * (1 - b)) + 4 * b * ti * np.cos(np.pi * ti * (1 + b)))
                    / (np.pi * ti * (1 - (4 * b * ti) ** 2)))
    return h / np.sqrt(np.sum(h ** 2))


def gaussian_taps(bt: float, sps: int, span: int = GAUSS_SPAN) -> np.ndarray:
    """Gaussian frequency filter :math:`g(t) \\propto \\exp(-2\\pi^2 B^2 t^2/\\ln 2)`, :math:`B = BT/T`,
    ``span * sps + 1`` taps with unit DC gain :math:`\\sum g = 1`."""
    t = np.arange(-span * sps // 2, span * sps // 2 + 1) / sps
    g = np.exp(-2 * np.pi ** 2 * bt ** 2 * t ** 2 / np.log(2))
    return g / g.sum()


def _cut(gen: np.random.Generator, stream: np.ndarray, first: int, period: int, length: int
         ) -> np.ndarray:
    """Rows of ``stream`` from a random start in ``[first, first + period)``, ``length`` long."""
    start = first + gen.integers(0, period, size=len(stream))
    return np.take_along_axis(stream, start[:, None] + np.arange(length)[None, :], axis=1)


def linear(points: np.ndarray) -> WaveformFn:
    """A generator of linearly modulated frames on the constellation ``points``."""

    def make(gen: np.random.Generator, n: int, length: int, p: WaveformParams) -> np.ndarray:
        if p.pulse == "rect":
            n_sym = length // p.sps + 2
            syms = points[gen.integers(0, len(points), size=(n, n_sym))]
            return _cut(gen, np.repeat(syms, p.sps, axis=1), 0, p.sps, length)
        taps = rrc_taps(p.rolloff, p.sps, p.span) * np.sqrt(p.sps)
        n_sym = length // p.sps + 2 * p.span + 2
        syms = points[gen.integers(0, len(points), size=(n, n_sym))]
        stream = upfirdn(taps, syms, up=p.sps, axis=1)
        # skip the filter's start-up transient: the first len(taps) - 1 samples
        return _cut(gen, stream, len(taps) - 1, p.sps, length)

    return make


def ofdm_modulate(symbols: np.ndarray, n_fft: int, cp: int) -> np.ndarray:
    """Frequency-domain symbols ``(..., n_sym, n_fft)`` → time samples ``(..., n_sym * (n_fft + cp))``.

    :math:`x = \\frac{N}{\\sqrt{N_a}}\\,\\mathrm{IFFT}_N(X)`, with :math:`N_a` the number of
    non-zero bins per symbol, then the cyclic prefix ``x[N - cp:]`` is put in front of ``x``.
    """
    active = max(1, int(np.count_nonzero(symbols[(0,) * (symbols.ndim - 1)])))
    x = np.fft.ifft(symbols, axis=-1) * (n_fft / np.sqrt(active))
    with_cp = np.concatenate([x[..., n_fft - cp:], x], axis=-1) if cp else x
    return with_cp.reshape(*symbols.shape[:-2], -1)


def ofdm_bins(n_fft: int, active: int) -> np.ndarray:
    """FFT bins carrying data: ``active / 2`` on each side of DC, DC itself unused."""
    half = active // 2
    return np.concatenate([np.arange(1, half + 1), np.arange(n_fft - half, n_fft)])


def ofdm(gen: np.random.Generator, n: int, length: int, p: WaveformParams) -> np.ndarray:
    """OFDM frames, QPSK on every active subcarrier, starting anywhere within an OFDM symbol."""
    sym_len = p.n_fft + p.cp
    n_sym = length // sym_len + 2
    bins = ofdm_bins(p.n_fft, p.active)
    grid = np.zeros((n, n_sym, p.n_fft), dtype=np.complex128)
    grid[:, :, bins] = CONSTELLATIONS["qpsk"][gen.integers(0, 4, size=(n, n_sym, len(bins)))]
    return _cut(gen, ofdm_modulate(grid, p.n_fft, p.cp), 0, sym_len, length)


def cpm(index: float, bt: Optional[float]) -> WaveformFn:
    """A generator of binary continuous-phase FSK frames (Gaussian-filtered if ``bt`` is given)."""

    def make(gen: np.random.Generator, n: int, length: int, p: WaveformParams) -> np.ndarray:
        n_sym = length // p.sps + GAUSS_SPAN + 3
        bits = 2.0 * gen.integers(0, 2, size=(n, n_sym)) - 1.0
        freq = np.repeat(bits, p.sps, axis=1)
        first = 0
        if bt is not None:
            g = gaussian_taps(bt, p.sps)
            freq = upfirdn(g, freq, up=1, axis=1)
            first = len(g) - 1
        phase = np.pi * index / p.sps * np.cumsum(freq, axis=1)
        return _cut(gen, np.exp(1j * phase), first, p.sps, length)

    return make


WAVEFORMS: Dict[str, WaveformFn] = {
    **{name: linear(pts) for name, pts in CONSTELLATIONS.items()},
    "gfsk": cpm(GFSK_INDEX, GFSK_BT),
    "cpfsk": cpm(CPFSK_INDEX, None),
    "ofdm": ofdm,
}

# How each waveform is written in reports and plots.
DISPLAY: Dict[str, str] = {
    "bpsk": "BPSK", "qpsk": "QPSK", "8psk": "8PSK", "16qam": "16QAM", "64qam": "64QAM",
    "pam4": "PAM4", "gfsk": "GFSK", "cpfsk": "CPFSK", "ofdm": "OFDM",
}

SYMBOL_WAVEFORMS: Tuple[str, ...] = tuple(n for n in WAVEFORMS if n != "ofdm")
