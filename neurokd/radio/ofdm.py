"""Seeded, offline MIMO-OFDM subframes for symbol detection.

One ``numpy.random.Generator`` seeded with ``cfg.seed`` drives every draw, in a fixed order.

**Transmitter.** Each of the ``n_tx`` antennas sends its own stream of Gray-mapped QPSK or 16-QAM
symbols (:func:`constellation`: point ``i`` carries the bits of the integer ``i``, most
significant bit first) at average energy :math:`1/n_{tx}` per subcarrier, so the total transmitted
energy per subcarrier is 1. A subframe is ``pilot_symbols`` pilot OFDM symbols and then
``data_symbols`` data OFDM symbols. Pilots sit on every ``pilot_spacing``-th subcarrier (and on the
last one, so interpolation never extrapolates); the other subcarriers of a pilot symbol are empty.
Antenna :math:`t` sends :math:`P_{t,j,k} = q_k\\, e^{-2\\pi i\\, t j / n_p} / \\sqrt{n_{tx}}` in pilot
symbol :math:`j` on pilot subcarrier :math:`k`: a DFT cover code across the :math:`n_p` pilot
symbols keeps the antennas orthogonal (:math:`P_k P_k^H = (n_p / n_{tx}) I`), and
:math:`q_k = e^{-i\\pi k^2 / N}` is a Zadoff-Chu sequence the receiver knows (with pilots on every
subcarrier its OFDM symbol has a constant envelope, so the amplifier compresses it without
distortion; a periodic pilot sequence would put all its energy in a few time-domain peaks).

**Amplifier.** With ``pa="rapp"`` each antenna's time-domain OFDM signal
:math:`x = \\sqrt{N}\\,\\mathrm{IFFT}(X)` passes a Rapp amplifier (AM/AM only),

.. math::

    g(x) = \\frac{x}{\\left(1 + (|x| / A_{sat})^{2p}\\right)^{1/(2p)}},\\qquad
    A_{sat} = 10^{b/20}\\, \\sqrt{1 / n_{tx}},

with smoothness :math:`p` (``pa_smoothness``) and input back-off :math:`b` (``pa_backoff_db``) of
the saturation level over the nominal RMS of one antenna's signal. The amplifier is memoryless,
so it maps the cyclic prefix onto the prefix of its own output and the prefix stays cyclic.

**Channel.** Block fading: one channel per subframe. ``rayleigh``: for every antenna pair
``channel_taps`` independent taps :math:`h_l \\sim \\mathcal{CN}(0, p_l)`,
:math:`p_l \\propto e^{-l / d}` (``pdp_decay`` :math:`d`), :math:`\\sum_l p_l = 1`, so every
subcarrier's gain is :math:`\\mathcal{CN}(0, 1)`; ``awgn``: the identity (stream :math:`t` reaches
antenna :math:`t` alone). Because the channel is no longer than the cyclic prefix plus one sample
(checked by the config), the receiver's FFT after removing the prefix sees exactly
:math:`Y_k = H_k X_k + W_k` per subcarrier, :math:`H_k = \\sum_l h_l e^{-2\\pi i kl/N}`, which the
generator computes directly (a test compares it with the time-domain convolution).

**Noise and Eb/N0.** :math:`W_k \\sim \\mathcal{CN}(0, N_0 I)`, with
:math:`E_b/N_0 = 1 / (n_{tx} \\log_2 M \\; N_0)`: the energy per subcarrier (1, at the transmitter
and, on average, at each receive antenna) over the bits it carries, per data bit, not counting
the cyclic prefix and pilots (the convention under which the textbook AWGN curves apply).

**Receiver side.** The least-squares channel estimate on each pilot subcarrier,
:math:`\\hat H_k = Y^{(p)}_k P_k^H\\, n_{tx} / n_p`, interpolated linearly in frequency (real and
imaginary parts) to every subcarrier.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Tuple

import numpy as np
from threadpoolctl import threadpool_limits

from neurokd.radio.config import SymbolsConfig


def single_threaded(fn: Callable) -> Callable:
    """Run ``fn`` with one BLAS thread. Its linear algebra is millions of 2×2 to 4×4 products and
    solves, which threads only slow down: on the 2-core machine with both cores busy, the
    receiver tests took 563 s with numpy's default threads and 12 s with one."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


def bits_per_symbol(modulation: str) -> int:
    return {"qpsk": 2, "16qam": 4}[modulation]


def _inverse_gray(g: np.ndarray) -> np.ndarray:
    g = np.asarray(g, dtype=np.int64)
    b = g.copy()
    shift = g >> 1
    while np.any(shift):
        b ^= shift
        shift >>= 1
    return b


def constellation(modulation: str) -> np.ndarray:
    """Unit-average-energy square QAM points; point ``i`` carries the bits of ``i`` (MSB first):
    the first half of the bits picks the in-phase level, the second half the quadrature level,
    each Gray coded, so neighbours along either axis differ in one bit."""
    k = bits_per_symbol(modulation)
    half = k // 2
    side = 1 << half
    idx = np.arange(1 << k)
    i_level = 2 * _inverse_gray(idx >> half) - (side - 1)
    q_level = 2 * _inverse_gray(idx & (side - 1)) - (side - 1)
    pts = i_level + 1j * q_level
    return pts / np.sqrt(np.mean(np.abs(pts) ** 2))


def bit_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between symbol indices ``a`` and ``b`` (elementwise)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
    count = np.zeros_like(x)
    while np.any(x):
        count += x & 1
        x >>= 1
    return count


def ebn0_to_n0(ebn0_db: np.ndarray, n_tx: int, modulation: str) -> np.ndarray:
    """:math:`N_0 = 1 / (n_{tx} \\log_2 M \\cdot 10^{E_b/N_0 / 10})`."""
    return 1.0 / (n_tx * bits_per_symbol(modulation) * 10.0 ** (np.asarray(ebn0_db) / 10.0))


def rapp(x: np.ndarray, saturation: float, smoothness: float) -> np.ndarray:
    """The Rapp amplifier's AM/AM curve on complex samples (phase unchanged)."""
    p2 = 2.0 * smoothness
    return x / (1.0 + (np.abs(x) / saturation) ** p2) ** (1.0 / p2)


def pilot_subcarriers(n: int, spacing: int) -> np.ndarray:
    idx = np.arange(0, n, spacing)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def pilot_matrix(cfg: SymbolsConfig) -> np.ndarray:
    """Pilots ``(N_p, n_tx, n_p)``: per pilot subcarrier, antenna and pilot symbol."""
    k = pilot_subcarriers(cfg.subcarriers, cfg.pilot_spacing)
    q = np.exp(-1j * np.pi * k * k / cfg.subcarriers)  # Zadoff-Chu, root 1
    t = np.arange(cfg.n_tx)[:, None]
    j = np.arange(cfg.pilot_symbols)[None, :]
    cover = np.exp(-2j * np.pi * t * j / cfg.pilot_symbols) / np.sqrt(cfg.n_tx)
    return q[:, None, None] * cover[None]


def pdp(cfg: SymbolsConfig) -> np.ndarray:
    p = np.exp(-np.arange(cfg.channel_taps) / cfg.pdp_decay)
    return p / p.sum()


def channel_taps(gen: np.random.Generator, cfg: SymbolsConfig, n: int) -> np.ndarray:
    """Taps ``(n, n_rx, n_tx, L)`` of ``n`` subframes (``awgn``: one tap, the identity)."""
    if cfg.channel == "awgn":
        taps = np.zeros((n, cfg.n_rx, cfg.n_tx, 1), dtype=np.complex128)
        taps[:, np.arange(cfg.n_tx), np.arange(cfg.n_tx), 0] = 1.0
        return taps
    shape = (n, cfg.n_rx, cfg.n_tx, cfg.channel_taps)
    w = (gen.standard_normal(shape) + 1j * gen.standard_normal(shape)) / np.sqrt(2)
    return w * np.sqrt(pdp(cfg))


def frequency_response(taps: np.ndarray, n: int) -> np.ndarray:
    """``(..., n_rx, n_tx, L)`` taps → ``(..., n, n_rx, n_tx)``: :math:`H_k = \\sum_l h_l e^{-2\\pi ikl/N}`."""
    h = np.fft.fft(taps, n=n, axis=-1)
    return np.moveaxis(h, -1, -3)


@dataclass(frozen=True)
class SymbolFrames:
    """Generated subframes. Per subframe: ``ebn0_db`` and ``n0`` ``(F,)``; ``h`` the true channel
    ``(F, N, n_rx, n_tx)``; ``h_ls`` the interpolated least-squares estimate (same shape); ``y`` the
    received data subcarriers ``(F, D, N, n_rx)``; ``symbols`` the transmitted symbol indices
    ``(F, D, N, n_tx)``."""

    ebn0_db: np.ndarray
    n0: np.ndarray
    h: np.ndarray
    h_ls: np.ndarray
    y: np.ndarray
    symbols: np.ndarray
    modulation: str

    def __len__(self) -> int:
        return len(self.ebn0_db)


def transmit(cfg: SymbolsConfig, grid: np.ndarray) -> np.ndarray:
    """The frequency-domain symbols each antenna actually sends, ``grid`` ``(F, S, N, n_tx)``,
    through the amplifier when there is one."""
    if cfg.pa == "none":
        return grid
    n = cfg.subcarriers
    time = np.fft.ifft(grid, axis=2) * np.sqrt(n)
    amplified = rapp(time, 10.0 ** (cfg.pa_backoff_db / 20.0) * np.sqrt(1.0 / cfg.n_tx),
                     cfg.pa_smoothness)
    return np.fft.fft(amplified, axis=2) / np.sqrt(n)


def ls_estimate(cfg: SymbolsConfig, y_pilot: np.ndarray) -> np.ndarray:
    """Least-squares estimate from the received pilot symbols ``(F, n_p, N, n_rx)``, interpolated
    linearly to every subcarrier: ``(F, N, n_rx, n_tx)``."""
    pk = pilot_subcarriers(cfg.subcarriers, cfg.pilot_spacing)
    p = pilot_matrix(cfg)  # (Np, n_tx, n_p)
    yp = np.moveaxis(y_pilot[:, :, pk, :], 1, -1)  # (F, Np, n_rx, n_p)
    est = yp @ np.conj(np.swapaxes(p, -1, -2))[None] * (cfg.n_tx / cfg.pilot_symbols)
    if len(pk) == cfg.subcarriers:
        return est
    k = np.arange(cfg.subcarriers)
    flat = np.moveaxis(est, 1, -1).reshape(-1, len(pk))  # (F*n_rx*n_tx, Np)
    out = np.empty((len(flat), cfg.subcarriers), dtype=np.complex128)
    for r in range(len(flat)):
        out[r] = np.interp(k, pk, flat[r].real) + 1j * np.interp(k, pk, flat[r].imag)
    return np.moveaxis(out.reshape(est.shape[0], cfg.n_rx, cfg.n_tx, cfg.subcarriers), -1, 1)


@single_threaded
def generate_symbols(cfg: SymbolsConfig) -> SymbolFrames:
    """``cfg.n_subframes`` subframes, evenly over the Eb/N0 grid, in random order."""
    gen = np.random.default_rng(cfg.seed)
    f, n, s_p, s_d = cfg.n_subframes, cfg.subcarriers, cfg.pilot_symbols, cfg.data_symbols
    m = 1 << bits_per_symbol(cfg.modulation)
    grid_db = np.asarray(cfg.ebn0_db)
    ebn0 = grid_db[gen.permutation(np.arange(f) % len(grid_db))]
    n0 = ebn0_to_n0(ebn0, cfg.n_tx, cfg.modulation)
    symbols = gen.integers(0, m, size=(f, s_d, n, cfg.n_tx))
    pts = constellation(cfg.modulation) / np.sqrt(cfg.n_tx)
    grid = np.zeros((f, s_p + s_d, n, cfg.n_tx), dtype=np.complex128)
    pk = pilot_subcarriers(n, cfg.pilot_spacing)
    grid[:, :s_p, pk, :] = np.moveaxis(pilot_matrix(cfg), -1, 0)[None]
    grid[:, s_p:] = pts[symbols]
    sent = transmit(cfg, grid)
    h = frequency_response(channel_taps(gen, cfg, f), n)  # (F, N, n_rx, n_tx)
    shape = (f, s_p + s_d, n, cfg.n_rx)
    noise = (gen.standard_normal(shape) + 1j * gen.standard_normal(shape)) \
        * np.sqrt(n0 / 2)[:, None, None, None]
    received = np.einsum("fkrt,fskt->fskr", h, sent) + noise
    return SymbolFrames(ebn0_db=ebn0, n0=n0, h=h, h_ls=ls_estimate(cfg, received[:, :s_p]),
                        y=received[:, s_p:], symbols=symbols, modulation=cfg.modulation)


@single_threaded
def detector_inputs(h_est: np.ndarray, y: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """Complex detector features per sample, the inputs of a DetNet-style detector: the matched
    filter output :math:`z = \hat H^H y` and the Gram matrix :math:`G = \hat H^H \hat H` of the
    channel estimate, which together are all that maximum-likelihood detection needs
    (:math:`\lVert y - \hat Hx \rVert^2 = \lVert y \rVert^2 - 2\,\mathrm{Re}\, x^H z + x^H G x`:
    every hypothesis' metric is linear in them). The streams are reordered with the wanted one
    first (then the others in order), so one network serves every stream, and both are divided by
    :math:`c^2 = \lVert \hat H \rVert_F^2 / (n_{rx} n_{tx})`, which makes them independent of the
    fade's overall gain (:math:`\sum_t G_{tt} = n_{rx} n_{tx}`).

    Layout, ``n_tx + ceil(n_tx / 2) + n_tx (n_tx - 1) / 2`` complex values: :math:`z_1 \dots z_{n_{tx}}`;
    the real diagonal :math:`G_{11}, G_{22}, \dots` packed two per value (real, imaginary part);
    the upper off-diagonal :math:`G_{12}, G_{13}, \dots, G_{23}, \dots` row by row. For 2×2:
    :math:`[z_1, z_2, G_{11} + iG_{22}, G_{12}]`. ``h_est`` ``(n, n_rx, n_tx)``, ``y``
    ``(n, n_rx)``, ``stream`` ``(n,)``."""
    n, n_rx, n_tx = h_est.shape
    order = np.array([[s] + [t for t in range(n_tx) if t != s] for s in range(n_tx)])
    h = np.take_along_axis(h_est, order[np.asarray(stream)][:, None, :], axis=2)
    c2 = (np.abs(h) ** 2).sum((1, 2)) / (n_rx * n_tx)
    c2 = np.where(c2 > 0, c2, 1.0)
    z = np.einsum("nrt,nr->nt", np.conj(h), y) / c2[:, None]
    g = np.einsum("nrt,nru->ntu", np.conj(h), h) / c2[:, None, None]
    diag = np.real(np.diagonal(g, axis1=1, axis2=2))
    if n_tx % 2:
        diag = np.concatenate([diag, np.zeros((n, 1))], axis=1)
    rows, cols = np.triu_indices(n_tx, 1)
    upper = g[:, rows, cols]
    return np.concatenate([z, diag[:, 0::2] + 1j * diag[:, 1::2], upper], axis=1)


def resource_elements(frames: SymbolFrames, subframes: np.ndarray) -> Tuple[np.ndarray, ...]:
    """One sample per (subframe in ``subframes``, data symbol, subcarrier, stream), in that order:
    ``(subframe, data symbol, subcarrier, stream, label)`` index arrays."""
    f = np.asarray(subframes, dtype=np.int64)
    _, d, n, t = frames.symbols.shape
    ff, dd, kk, ss = np.meshgrid(f, np.arange(d), np.arange(n), np.arange(t), indexing="ij")
    ff, dd, kk, ss = (a.ravel() for a in (ff, dd, kk, ss))
    return ff, dd, kk, ss, frames.symbols[ff, dd, kk, ss]
