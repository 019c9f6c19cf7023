"""Seeded, offline frame generation for spectrum sensing and modulation classification.

One ``numpy.random.Generator`` seeded with ``cfg.seed`` drives every draw, in a fixed order, so one
configuration always gives the same bytes. A received frame is

.. math::

    r_t = \\sqrt{\\mathrm{SNR}}\\; e^{j(2\\pi f t + \\varphi)} \\sum_p g_p\\, s(t - d_p - \\tau) + w_t,
    \\qquad w_t \\sim \\mathcal{CN}(0, \\sigma^2),

with :math:`s` a unit-power waveform (:mod:`neurokd.radio.waveforms`) cut at a random start,
:math:`\\tau \\sim U[0, 1)` a fractional timing offset (zero for rectangular pulses, which a
fractional delay would ring), :math:`(d_p, g_p)` the channel's paths
(:mod:`neurokd.radio.channels`), :math:`f \\sim U[-f_{max}, f_{max}]` cycles/sample,
:math:`\\varphi \\sim U[0, 2\\pi)`, and :math:`\\sigma^2 = 10^{u/10}`,
:math:`u \\sim U(-\\delta, \\delta)` dB (the nominal noise power is 1).

SNR is :math:`E_s/N_0` per complex sample: the transmitted signal's average power over the
*nominal* noise power, :math:`\\mathrm{SNR} = E|s|^2 / 1`. Through ``rayleigh3`` it is the average
SNR (the channel has unit average power gain; each frame's own SNR fades around it). With noise
uncertainty the frame's true SNR is the nominal one minus ``u`` dB; detectors still assume
:math:`\\sigma^2 = 1`.

Sensing: each frame is H0 (noise only, label 0) or H1 (signal plus noise, label 1), 50/50, on an SNR
grid point (H0 frames carry a grid point too, drawn the same way, so every SNR stratum holds both
hypotheses; no signal is present in them). Modulation: label ``i`` is ``cfg.signals[i]``. Labels,
SNRs and waveforms are assigned evenly (``arange(n) % cells``, then shuffled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from neurokd.radio.channels import (SINC_HALF, apply_fir, channel_paths, complex_noise, fir_taps,
                                    max_channel_delay, rotate)
from neurokd.radio.config import RadioConfig
from neurokd.radio.waveforms import CONSTELLATIONS, DISPLAY, WAVEFORMS, WaveformParams

SENSING_CLASSES: Tuple[str, str] = ("H0 noise", "H1 signal")


@dataclass(frozen=True)
class RadioFrames:
    """Generated frames and, per frame, everything a metric needs.

    ``iq``: complex64 ``(n, L)``; ``label``: int64; ``snr_db``: float32 nominal SNR;
    ``waveform``: int64 index into ``waveforms`` (-1: noise only); ``noise_power``: float32 true
    :math:`\\sigma^2` (nominal 1). With ``keep_parts``, ``signal`` and ``noise`` hold the two terms
    of ``iq`` (complex128).
    """

    iq: np.ndarray
    label: np.ndarray
    snr_db: np.ndarray
    waveform: np.ndarray
    noise_power: np.ndarray
    class_names: Tuple[str, ...]
    waveforms: Tuple[str, ...]
    signal: Optional[np.ndarray] = None
    noise: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.label)


def waveform_params(cfg: RadioConfig) -> WaveformParams:
    return WaveformParams(sps=cfg.samples_per_symbol, rolloff=cfg.rolloff, span=cfg.rrc_span,
                          pulse=cfg.pulse, n_fft=cfg.ofdm_subcarriers, active=cfg.ofdm_active,
                          cp=cfg.ofdm_cp)


def balanced(gen: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """``n`` cell indices in ``[0, cells)``, as even as ``n`` allows, in random order."""
    return gen.permutation(np.arange(n) % cells)


def received_signal(gen: np.random.Generator, cfg: RadioConfig, waveform: np.ndarray) -> np.ndarray:
    """Unit-power waveforms through timing offset, channel, carrier offset and phase: ``(n, L)``.

    ``waveform`` holds indices into ``cfg.signals``, one per frame.
    """
    n, length = len(waveform), cfg.frame_length
    p = waveform_params(cfg)
    max_delay = max_channel_delay(cfg.channel) + 1.0  # channel delay plus fractional timing
    n_taps = 2 * SINC_HALF + 1 + int(np.ceil(max_delay))
    raw = np.zeros((n, length + n_taps - 1), dtype=np.complex128)
    for i, name in enumerate(cfg.signals):
        rows = np.flatnonzero(waveform == i)
        if len(rows):
            raw[rows] = WAVEFORMS[name](gen, len(rows), raw.shape[1], p)
    rect = np.array([cfg.pulse == "rect" and name in CONSTELLATIONS for name in cfg.signals])
    tau = gen.uniform(0.0, 1.0, n) * ~rect[waveform]
    delays, gains = channel_paths(gen, cfg.channel, n)
    y = apply_fir(raw, fir_taps(delays + tau[:, None], gains, max_delay))
    cfo = gen.uniform(-cfg.max_cfo, cfg.max_cfo, n)
    phase = gen.uniform(0.0, 2 * np.pi, n)
    return rotate(y, cfo, phase)


def _frames(gen: np.random.Generator, cfg: RadioConfig, label: np.ndarray, waveform: np.ndarray,
            snr_db: np.ndarray, class_names: Tuple[str, ...], keep_parts: bool) -> RadioFrames:
    n, length = len(label), cfg.frame_length
    present = np.flatnonzero(waveform >= 0)
    signal = np.zeros((n, length), dtype=np.complex128)
    if len(present):
        amp = np.sqrt(10.0 ** (snr_db[present] / 10.0))
        signal[present] = amp[:, None] * received_signal(gen, cfg, waveform[present])
    u = cfg.noise_uncertainty_db
    noise_db = gen.uniform(-u, u, n) if u > 0 else np.zeros(n)
    noise_power = 10.0 ** (noise_db / 10.0)
    noise = complex_noise(gen, (n, length), noise_power)
    return RadioFrames(
        iq=(signal + noise).astype(np.complex64), label=label.astype(np.int64),
        snr_db=snr_db.astype(np.float32), waveform=waveform.astype(np.int64),
        noise_power=noise_power.astype(np.float32), class_names=class_names,
        waveforms=tuple(cfg.signals), signal=signal if keep_parts else None,
        noise=noise if keep_parts else None)


def generate_sensing(cfg: RadioConfig, keep_parts: bool = False) -> RadioFrames:
    """``cfg.n_frames`` sensing frames: H0/H1 50/50, SNRs and H1 waveforms evenly assigned."""
    gen = np.random.default_rng(cfg.seed)
    grid = np.asarray(cfg.snr_db)
    cell = balanced(gen, cfg.n_frames, 2 * len(grid))
    label = cell % 2
    snr_db = grid[cell // 2]
    waveform = np.full(cfg.n_frames, -1)
    h1 = np.flatnonzero(label == 1)
    waveform[h1] = balanced(gen, len(h1), len(cfg.signals))
    return _frames(gen, cfg, label, waveform, snr_db, SENSING_CLASSES, keep_parts)


def generate_modulation(cfg: RadioConfig, keep_parts: bool = False) -> RadioFrames:
    """``cfg.n_frames`` frames, one class per signal, evenly over (class, SNR) cells."""
    gen = np.random.default_rng(cfg.seed)
    grid = np.asarray(cfg.snr_db)
    k = len(cfg.signals)
    cell = balanced(gen, cfg.n_frames, k * len(grid))
    label = cell % k
    names = tuple(DISPLAY[s] for s in cfg.signals)
    return _frames(gen, cfg, label, label, grid[cell // k], names, keep_parts)


def generate(cfg: RadioConfig, keep_parts: bool = False) -> RadioFrames:
    """Frames for ``cfg.task``."""
    fn = generate_sensing if cfg.task == "sensing" else generate_modulation
    return fn(cfg, keep_parts)
