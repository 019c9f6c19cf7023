"""MIMO-OFDM symbol detection: the generator's model, the classical receivers against the textbook
curves, the dataset's layout and its refusals."""

import numpy as np
import pytest

from neurokd.data.datasets import load_dataset
from neurokd.errors import NeurokdError
from neurokd.radio.config import symbols_config
from neurokd.radio.mimo import (ber_awgn_theory, ber_rayleigh_mrc_qpsk_theory, lmmse_detect,
                                ml_detect, theory_curve)
from neurokd.radio.ofdm import (bit_errors, constellation, detector_inputs, frequency_response,
                                generate_symbols, pilot_matrix, rapp, resource_elements)
from neurokd.metrics.radio import ebn0_at_ber, symbols_report


def _bers(cfg, detect):
    """BER per Eb/N0 point of ``detect(y, h, h_ls, n0, stream, modulation)`` with the bit count."""
    fr = generate_symbols(cfg)
    f, d, k, s, lab = resource_elements(fr, np.arange(len(fr)))
    pred = detect(fr.y[f, d, k], fr.h[f, k], fr.h_ls[f, k], fr.n0[f], s, cfg.modulation)
    bits = {"qpsk": 2, "16qam": 4}[cfg.modulation]
    errors = bit_errors(pred, lab)
    ebn0 = fr.ebn0_db[f]
    return np.array([errors[ebn0 == e].sum() for e in cfg.ebn0_db]), \
        np.array([(ebn0 == e).sum() * bits for e in cfg.ebn0_db])


def _deviation(errors, n, theory, effective):
    """|p̂ - p| in standard errors of the theory, computed on an effective number of independent
    trials (fading makes neighbouring bits share a channel)."""
    se = np.sqrt(theory * (1 - theory) / effective)
    return np.abs(errors / n - theory) / np.maximum(se, 1e-12)


def test_constellations_are_gray_coded_and_unit_energy():
    for mod, k in (("qpsk", 2), ("16qam", 4)):
        pts = constellation(mod)
        assert len(pts) == 2 ** k
        assert np.mean(np.abs(pts) ** 2) == pytest.approx(1.0)
        d = np.abs(pts[:, None] - pts[None])
        dmin = d[d > 1e-9].min()
        near = np.argwhere(np.abs(d - dmin) < 1e-9)
        # every pair of nearest neighbours differs in exactly one bit
        assert set(bit_errors(near[:, 0], near[:, 1]).tolist()) == {1}
    assert bit_errors(np.array([0b1011]), np.array([0b0110])).tolist() == [3]


def test_pilots_are_orthogonal_across_antennas():
    cfg = symbols_config(n_tx=3, n_rx=3, pilot_symbols=4, pilot_spacing=4)
    p = pilot_matrix(cfg)  # (pilot subcarriers, n_tx, n_p)
    gram = p @ np.conj(np.swapaxes(p, 1, 2))
    assert np.allclose(gram, np.eye(3)[None] * 4 / 3)
    assert p.shape[0] == 17  # 0, 4, ..., 60 and the last subcarrier, 63


def test_frequency_domain_model_equals_time_domain_convolution_with_cyclic_prefix():
    cfg = symbols_config(n_subframes=16, pa="rapp", pa_backoff_db=1.0)
    gen = np.random.default_rng(3)
    n, cp = cfg.subcarriers, cfg.cp
    x_f = gen.standard_normal(n) + 1j * gen.standard_normal(n)
    taps = (gen.standard_normal(cfg.channel_taps) + 1j * gen.standard_normal(cfg.channel_taps))
    t = np.fft.ifft(x_f) * np.sqrt(n)
    amp = rapp(np.concatenate([t[-cp:], t]), 0.8, 2.0)  # the amplifier sees the prefix too
    rx = np.convolve(amp, taps)[cp:cp + n]  # the receiver drops the prefix
    y_f = np.fft.fft(rx) / np.sqrt(n)
    h = frequency_response(taps[None, None, :], n)[:, 0, 0]
    expect = h * np.fft.fft(rapp(t, 0.8, 2.0)) / np.sqrt(n)
    assert np.allclose(y_f, expect)


def test_same_config_same_frames_and_seed_changes_them():
    cfg = symbols_config(n_subframes=32)
    a, b = generate_symbols(cfg), generate_symbols(cfg)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.symbols, b.symbols)
    c = generate_symbols(symbols_config(n_subframes=32, seed=1))
    assert not np.allclose(a.y, c.y)


def _lmmse_true(y, h, h_ls, n0, s, mod):
    return lmmse_detect(y, h, n0, s, mod)


def _ml_true(y, h, h_ls, n0, s, mod):
    return ml_detect(y, h, s, mod)


@pytest.mark.parametrize("mod", ["qpsk", "16qam"])
def test_receivers_reproduce_the_awgn_textbook_curves(mod):
    grid = [0.0, 3.0, 6.0, 8.0]
    cfg = symbols_config(channel="awgn", modulation=mod, ebn0_db=grid, n_subframes=64)
    theory = ber_awgn_theory(grid, mod)
    for detect in (_lmmse_true, _ml_true):
        errors, n = _bers(cfg, detect)
        assert np.all(_deviation(errors, n, theory, n) <= 4.5)  # AWGN: every bit is independent


@pytest.mark.parametrize("n_rx", [1, 2])
def test_receivers_reproduce_rayleigh_mrc_theory(n_rx):
    """One QPSK stream, ``n_rx`` antennas, 8-tap Rayleigh: LMMSE and ML are MRC, whose BER is
    exact. Subcarriers of one subframe share the channel's 8 taps, so about 8 independent fades
    per antenna pair and subframe count as the effective trials."""
    grid = [0.0, 5.0, 10.0, 15.0]
    cfg = symbols_config(n_tx=1, n_rx=n_rx, ebn0_db=grid, n_subframes=1600, data_symbols=1)
    theory = ber_rayleigh_mrc_qpsk_theory(grid, n_rx)
    assert theory_curve(cfg.model_dump(), grid) == pytest.approx(theory)
    for detect in (_lmmse_true, _ml_true):
        errors, n = _bers(cfg, detect)
        assert np.all(_deviation(errors, n, theory, cfg.n_subframes / len(grid) * 8) <= 4.5)


def test_ml_beats_lmmse_and_the_estimate_costs_in_2x2_rayleigh():
    grid = [10.0, 16.0]
    cfg = symbols_config(ebn0_db=grid, n_subframes=400)
    ml, n = _bers(cfg, _ml_true)
    lmmse, _ = _bers(cfg, _lmmse_true)
    ls_lmmse, _ = _bers(cfg, lambda y, h, h_ls, n0, s, mod: lmmse_detect(y, h_ls, n0, s, mod))
    # ML has diversity 2 against LMMSE's 1: several times fewer errors at 10 and 16 dB
    assert np.all(ml * 3 < lmmse)
    # the least-squares estimate from two pilot symbols costs errors against the true channel
    assert np.all(ls_lmmse > lmmse)


def test_detector_inputs_are_the_ml_sufficient_statistics_with_the_wanted_stream_first():
    gen = np.random.default_rng(0)
    n = 200
    h = gen.standard_normal((n, 2, 2)) + 1j * gen.standard_normal((n, 2, 2))
    y = gen.standard_normal((n, 2)) + 1j * gen.standard_normal((n, 2))
    a = detector_inputs(h, y, np.zeros(n, dtype=int))
    b = detector_inputs(h, y, np.ones(n, dtype=int))
    # stream 1 first: z swapped, the packed diagonal swapped, the off-diagonal conjugated
    assert np.allclose(a[:, 0], b[:, 1]) and np.allclose(a[:, 1], b[:, 0])
    assert np.allclose(a[:, 2].real, b[:, 2].imag) and np.allclose(a[:, 3], np.conj(b[:, 3]))
    assert np.allclose(a[:, 2].real + a[:, 2].imag, 4.0)  # trace of G / c² = n_rx n_tx
    assert np.allclose(detector_inputs(7.0 * h, 7.0 * y, np.zeros(n, dtype=int)), a)
    # maximum likelihood from the features alone equals ML from (y, H)
    z = a[:, :2]
    g = np.empty((n, 2, 2), dtype=complex)
    g[:, 0, 0], g[:, 1, 1] = a[:, 2].real, a[:, 2].imag
    g[:, 0, 1], g[:, 1, 0] = a[:, 3], np.conj(a[:, 3])
    pts = constellation("qpsk") / np.sqrt(2)
    combos = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    x = pts[combos]  # (16, 2)
    metric = (-2 * np.real(np.einsum("ct,nt->nc", np.conj(x), z))
              + np.real(np.einsum("ct,ntu,cu->nc", np.conj(x), g, x)))
    from_features = combos[metric.argmin(1), 0]
    assert np.array_equal(from_features, ml_detect(y, h, np.zeros(n, dtype=int), "qpsk"))


def test_symbols_dataset_layout_split_and_labels():
    ds = load_dataset("symbols", n_subframes=64, ebn0_db=[0.0, 10.0, 20.0, 30.0], seed=1)
    assert ds.task == "symbols" and ds.num_classes == 4 and ds.input_shape == (5, 1, 4)
    per = 2 * 64 * 2
    assert (len(ds.train) + len(ds.val) + len(ds.test)) == 64 * per
    # whole subframes per split, every Eb/N0 point in the test split
    sub = [set(s.meta["subframe"].tolist()) for s in (ds.train, ds.val, ds.test)]
    assert not (sub[0] & sub[1] or sub[0] & sub[2] or sub[1] & sub[2])
    assert set(np.unique(ds.test.snr).tolist()) == {0.0, 10.0, 20.0, 30.0}
    assert ds.test.x.min() >= 0 and ds.test.x.max() <= 1 and np.all(ds.test.x[:, 4] == 1)
    # the input decodes back to the features: I = A (I+ - I-) below full scale
    x = ds.test.x[:, :, 0]
    a = ds.radio["full_scale"]
    feats = a * ((x[:, 0] - x[:, 1]) + 1j * (x[:, 2] - x[:, 3]))
    ok = ~ds.test.meta["clipped"]
    m = ds.test.meta
    ref = detector_inputs(m["h_ls"].astype(complex), m["y"].astype(complex), m["stream"])
    assert np.allclose(feats[ok], ref[ok], atol=1e-5)
    # ML with the true channel is nearly perfect at 30 dB
    pred = ml_detect(m["y"].astype(complex), m["h"].astype(complex), m["stream"], "qpsk")
    hi = ds.test.snr == 30.0
    assert np.mean(pred[hi] == ds.test.y[hi]) > 0.99


def test_symbols_report_scores_receivers_in_bits(tmp_path):
    ds = load_dataset("symbols", n_subframes=64, ebn0_db=[0.0, 10.0, 20.0, 30.0])
    perfect, wrong = ds.test.y.copy(), ds.test.y ^ 0b11  # every bit wrong
    rep = symbols_report(ds, {"perfect": perfect, "inverted": wrong}, tmp_path)
    assert rep["receivers"]["perfect"]["ber"] == 0.0
    assert rep["receivers"]["inverted"]["ber"] == 1.0
    assert rep["receivers"]["inverted"]["ebn0_at_ber_1e-2_db"] is None
    assert rep["receivers"]["perfect"]["ebn0_at_ber_1e-2_db"] == 0.0
    assert rep["receivers"]["LS + LMMSE"]["ber_per_ebn0"]["0"] > rep["receivers"]["LS + LMMSE"]["ber_per_ebn0"]["30"]
    assert (tmp_path / "ber_vs_ebn0.png").stat().st_size > 0


def test_ebn0_at_ber_interpolates_in_log_ber():
    assert ebn0_at_ber([0, 10], [1e-1, 1e-3]) == pytest.approx(5.0)
    assert ebn0_at_ber([0, 10], [1e-1, 5e-2]) is None
    assert ebn0_at_ber([0, 10, 20], [1e-1, 1e-1, 0.0]) == pytest.approx(10 + 10 / 11)


@pytest.mark.parametrize("options, words", [
    ({"n_tx": 3, "n_rx": 2}, "n_rx (2) must be at least n_tx"),
    ({"n_tx": 5}, "n_tx"),
    ({"pilot_symbols": 1}, "pilot_symbols (1) must be at least n_tx"),
    ({"pilot_spacing": 64}, "pilot_spacing"),
    ({"channel_taps": 20}, "exceed the cyclic prefix"),
    ({"cp": 64}, "cp (64) must be shorter"),
    ({"modulation": "64qam"}, "modulation"),
    ({"subcarriers": 4}, "subcarriers"),
    ({"ebn0_db": [10.0, 5.0]}, "increase strictly"),
    ({"n_subframes": 3}, "n_subframes (3) is below"),
    ({"antennas": 2}, "unknown option"),
])
def test_impossible_configs_are_one_line_errors(options, words):
    with pytest.raises(NeurokdError, match="symbols config") as err:
        load_dataset("symbols", **options)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_too_few_subframes_to_split_is_one_line():
    with pytest.raises(NeurokdError, match="too few to split"):
        load_dataset("symbols", n_subframes=16)
    with pytest.raises(NeurokdError, match="limit 100 holds fewer subframes"):
        load_dataset("symbols", limit=100)


def test_rapp_amplifier_is_linear_when_small_and_saturates():
    x = np.array([1e-3, 0.5j, 10.0, -100.0])
    out = rapp(x, saturation=1.0, smoothness=2.0)
    assert out[0] == pytest.approx(1e-3, rel=1e-9)  # small signals pass unchanged
    assert np.angle(out[1]) == pytest.approx(np.pi / 2)  # AM/AM only: the phase is kept
    assert abs(out[2]) < 1.0 and abs(out[3]) < 1.0 and abs(out[3]) > abs(out[2])
    assert abs(rapp(np.array([1.0]), 1.0, 2.0)[0]) == pytest.approx(2 ** -0.25)


def test_the_amplifier_puts_a_floor_under_the_linear_receivers():
    """16-QAM without fading at 30 dB Eb/N0: no errors through a linear amplifier, an error floor
    through the Rapp amplifier that falls as the back-off grows."""
    def errors(**pa):
        cfg = symbols_config(channel="awgn", modulation="16qam", ebn0_db=[30.0], n_subframes=32, **pa)
        return _bers(cfg, _lmmse_true)[0][0]

    assert errors() == 0
    hard, soft = errors(pa="rapp", pa_backoff_db=0.0), errors(pa="rapp", pa_backoff_db=3.0)
    assert hard > 5 * soft > 0
