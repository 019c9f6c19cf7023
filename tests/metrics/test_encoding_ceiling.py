"""The encoding ceiling: classical receivers fed each encoder's decoded input."""

import numpy as np

from neurokd.data.radio import load_sensing, load_symbols
from neurokd.metrics.encoding import decoded_iq, ml_from_features, sensing_ceiling, symbols_ceiling
from neurokd.radio.mimo import ml_detect
from neurokd.radio.ofdm import constellation, detector_inputs


def test_decoding_returns_the_samples_within_half_a_level():
    rng = np.random.default_rng(0)
    iq = (rng.normal(size=(50, 64)) + 1j * rng.normal(size=(50, 64))) * 0.5
    a = 3.0
    inside = (np.abs(iq.real) < a) & (np.abs(iq.imag) < a)
    for name, half in (("signed8", a / 254), ("direct8", a / 510), ("direct", a / 30)):
        err = decoded_iq(iq, a, name, 4) - iq
        assert np.abs(err.real[inside]).max() <= half + 1e-9, name
        assert np.abs(err.imag[inside]).max() <= half + 1e-9, name
    # Bernoulli spikes: unbiased, but noisy
    err = decoded_iq(iq, a, "rate", 16, seed=1) - np.clip(iq.real, -a, a) - 1j * np.clip(iq.imag, -a, a)
    assert abs(err.real.mean()) < 0.02 and err.real.std() > 0.1


def test_ml_from_the_features_decides_as_ls_ml_does():
    ds = load_symbols(n_subframes=40, ebn0_db=[0.0, 10.0])
    m = ds.test.meta
    feats = detector_inputs(m["h_ls"].astype(complex), m["y"].astype(complex), m["stream"])
    mine = ml_from_features(feats, constellation("qpsk") / np.sqrt(2))
    ref = ml_detect(m["y"].astype(complex), m["h_ls"].astype(complex), m["stream"], "qpsk")
    assert np.array_equal(mine, ref)
    r = symbols_ceiling(feats, ds.test.y, ds.test.snr, 4.0, "qpsk", ["signed8", "rate"], 16)
    assert r["raw"]["ber"][1] < r["raw"]["ber"][0]
    assert abs(r["signed8"]["ber"][1] - r["raw"]["ber"][1]) <= 0.01  # 8 signed bits lose ~nothing
    assert r["rate"]["ber"][1] > 2 * r["raw"]["ber"][1]  # Bernoulli coding does


def test_bernoulli_coding_costs_the_energy_detector_and_signed8_does_not():
    ds = load_sensing(n_frames=6000)
    parts = [ds.train, ds.val, ds.test]
    iq = np.concatenate([p.iq for p in parts])
    y, snr = np.concatenate([p.y for p in parts]), np.concatenate([p.snr for p in parts])
    r = sensing_ceiling(iq, y, snr, 4 * np.sqrt(0.5), ["rate", "signed8"], 16)
    for row in r.values():
        assert row["pfa"] <= 0.1 + 1e-9 and row["snr_at_pd"] is not None
    assert abs(r["signed8"]["snr_at_pd"] - r["raw"]["snr_at_pd"]) < 0.2
    assert r["rate"]["snr_at_pd"] - r["raw"]["snr_at_pd"] > 0.5
