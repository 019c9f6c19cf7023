"""Classical spectrum-sensing baseline: the energy detector, simulated and in closed form.

Test statistic over a frame of :math:`N` complex samples, with the *nominal* noise power
:math:`\\sigma^2` (the detector's assumption, whatever the true power):

.. math::

    T = \\frac{1}{\\sigma^2}\\sum_{t=1}^{N} |r_t|^2 .

Theory, for known noise power (:math:`r_t = s_t + w_t`, :math:`w_t \\sim \\mathcal{CN}(0, \\sigma^2)`):
each :math:`2|w_t|^2/\\sigma^2` is :math:`\\chi^2_2`, so under H0 :math:`2T \\sim \\chi^2_{2N}`; under
H1 with a deterministic signal of energy :math:`\\sum|s_t|^2 = N\\,\\mathrm{SNR}\\,\\sigma^2`,
:math:`2T \\sim \\chi'^2_{2N}(\\lambda)` (noncentral) with :math:`\\lambda = 2N\\,\\mathrm{SNR}`. Hence

.. math::

    \\gamma = \\tfrac12 F^{-1}_{\\chi^2_{2N}}(1 - P_{fa}),\\qquad
    P_d = 1 - F_{\\chi'^2_{2N}(2N\\,\\mathrm{SNR})}(2\\gamma) .

The curve is exact for a constant-envelope signal in AWGN (any frame carries the same energy);
for signals whose frame energy varies (RRC-shaped QAM, OFDM) or under fading it is the
deterministic-energy approximation. Noise uncertainty is not in it: the simulated detector then
falls short of it at a fixed threshold (the SNR wall).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from neurokd.errors import NeurokdError


def _check_pfa(pfa: float) -> None:
    if not 0 < pfa < 1:
        raise NeurokdError(f"the false-alarm rate must lie in (0, 1), got {pfa}")


def energy_scores(iq: np.ndarray, noise_power: float = 1.0) -> np.ndarray:
    """:math:`T = \\sum_t |r_t|^2 / \\sigma^2` of each frame (rows of ``iq``), float64."""
    if not noise_power > 0:
        raise NeurokdError(f"the nominal noise power must be positive, got {noise_power}")
    r = np.asarray(iq)
    return np.sum(r.real.astype(np.float64) ** 2 + r.imag.astype(np.float64) ** 2, axis=-1) / noise_power


def energy_detector_threshold(pfa: float, n: int) -> float:
    """Threshold :math:`\\gamma` on :math:`T` for false-alarm rate ``pfa`` over ``n`` complex samples:
    :math:`P(T > \\gamma \\mid H_0) = P_{fa}`, i.e.
    :math:`\\gamma = \\frac12 F^{-1}_{\\chi^2_{2n}}(1-P_{fa})`."""
    _check_pfa(pfa)
    if n <= 0:
        raise NeurokdError(f"the frame length must be positive, got {n}")
    return float(stats.chi2.isf(pfa, 2 * n) / 2)


def energy_detector_pd_theory(snr_db, pfa: float, n: int) -> np.ndarray:
    """Detection probability at ``snr_db`` (scalar or array) for a deterministic-energy signal in
    AWGN: :math:`P_d = Q_{\\chi'^2_{2n}(\\lambda)}(2\\gamma)`,
    :math:`\\lambda = 2n\\cdot10^{\\mathrm{SNR}/10}`."""
    gamma = energy_detector_threshold(pfa, n)
    snr = 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0)
    return stats.ncx2.sf(2 * gamma, 2 * n, 2 * n * snr)


def empirical_threshold(scores_h0: np.ndarray, pfa: float) -> float:
    """Threshold from H0 scores for the rule *detect when score > threshold*.

    With :math:`k = \\lfloor P_{fa} n_0 \\rfloor`, the threshold is the :math:`(k+1)`-th largest H0
    score, so at most :math:`k` H0 scores lie above it: the achieved rate is :math:`\\le P_{fa}`
    (:math:`= k/n_0` without ties).
    """
    _check_pfa(pfa)
    s = np.sort(np.asarray(scores_h0, dtype=np.float64).ravel())[::-1]
    if len(s) == 0:
        raise NeurokdError("no H0 scores to set a threshold from")
    return float(s[int(np.floor(pfa * len(s)))])
