"""Radio workloads: generator properties, the energy detector against its theory, radio metrics,
RadioML readers (including hostile files), config errors and the registered datasets."""

import hashlib
import io
import os
import pickle
import pickletools
import struct
from fractions import Fraction

import numpy as np
import pytest

from neurokd.data import load_dataset
from neurokd.data.radio import clipped_fraction, sensing_full_scale
from neurokd.errors import NeurokdError
from neurokd.radio import metrics as M
from neurokd.radio.channels import CHANNELS, apply_fir, channel_paths, fir_taps
from neurokd.radio.config import radio_config
from neurokd.radio.detectors import (empirical_threshold, energy_detector_pd_theory,
                                     energy_detector_threshold, energy_scores)
from neurokd.radio.generate import generate, received_signal
from neurokd.radio.radioml import RADIOML2018_CLASSES, read_radioml2016, read_radioml2018
from neurokd.radio.waveforms import (CONSTELLATIONS, WAVEFORMS, WaveformParams, ofdm_bins,
                                     ofdm_modulate, rrc_taps)

ALL = list(WAVEFORMS)


def digest(frames) -> str:
    h = hashlib.sha256()
    for a in (frames.iq, frames.label, frames.snr_db, frames.waveform, frames.noise_power):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- generator
@pytest.mark.parametrize("task", ["sensing", "modulation"])
def test_same_config_and_seed_give_the_same_bytes(task):
    opts = dict(task=task, n_frames=900, channel="rayleigh3", noise_uncertainty_db=1.0)
    a, b = generate(radio_config(**opts)), generate(radio_config(**opts))
    c = generate(radio_config(**opts, seed=1))
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    assert a.iq.dtype == np.complex64 and a.iq.shape == (900, 128)


def test_measured_snr_equals_the_nominal_for_every_waveform():
    cfg = radio_config(task="modulation", signals=ALL, snr_db=[-10.0, 0.0, 10.0],
                       n_frames=len(ALL) * 3 * 160)
    f = generate(cfg, keep_parts=True)
    for w, name in enumerate(f.waveforms):
        for snr in cfg.snr_db:
            m = (f.waveform == w) & (f.snr_db == snr)
            measured = 10 * np.log10(np.mean(np.abs(f.signal[m]) ** 2) / np.mean(np.abs(f.noise[m]) ** 2))
            assert abs(measured - snr) < 0.15, (name, snr, measured)
    assert np.allclose(f.noise_power, 1.0)
    assert np.allclose(f.iq, f.signal + f.noise, atol=1e-5)


def test_sensing_is_balanced_and_h0_frames_hold_no_signal():
    f = generate(radio_config(task="sensing", n_frames=2600), keep_parts=True)
    assert np.mean(f.label) == 0.5
    assert set(np.unique(f.snr_db)) == set(range(-20, 5, 2))
    h0 = f.label == 0
    assert np.all(f.signal[h0] == 0) and np.all(f.waveform[h0] == -1)
    assert np.all(np.abs(f.signal[~h0]).sum(axis=1) > 0)
    assert np.bincount(f.waveform[~h0]).tolist() == [434, 433, 433]


def test_constellations_and_waveforms_have_unit_average_power():
    for name, pts in CONSTELLATIONS.items():
        assert abs(np.mean(np.abs(pts) ** 2) - 1) < 1e-12, name
    gen = np.random.default_rng(0)
    for name, make in WAVEFORMS.items():
        x = make(gen, 1500, 256, WaveformParams())
        assert abs(np.mean(np.abs(x) ** 2) - 1) < 0.02, name
    for name in ("gfsk", "cpfsk"):  # continuous phase: constant envelope
        assert np.allclose(np.abs(WAVEFORMS[name](gen, 10, 200, WaveformParams())), 1)
    rect = WAVEFORMS["qpsk"](gen, 10, 200, WaveformParams(pulse="rect"))
    assert np.allclose(np.abs(rect), 1)


def test_rrc_pulse_is_nyquist_at_the_matched_filter_output():
    sps = 8
    h = rrc_taps(0.35, sps, 10)
    assert abs(np.sum(h ** 2) - 1) < 1e-12
    p = np.convolve(h, h[::-1])
    c = len(h) - 1
    assert abs(p[c] - 1) < 1e-12
    isi = np.delete(p[c % sps::sps], c // sps)
    assert np.max(np.abs(isi)) < 0.01
    # half a symbol off the sampling instants the pulse overlaps its neighbours heavily
    assert np.max(np.abs(p[c % sps + sps // 2::sps])) > 0.3


def test_cpfsk_advances_the_phase_by_pi_h_per_symbol():
    x = WAVEFORMS["cpfsk"](np.random.default_rng(2), 20, 128, WaveformParams())
    steps = np.angle(x[:, 8:] * np.conj(x[:, :-8]))  # one symbol apart
    # within a symbol the phase changes by ±π/2 (h = 0.5); straddling two symbols by less
    assert np.isclose(np.max(np.abs(steps)), np.pi / 2)


def test_ofdm_cyclic_prefix_repeats_the_symbol_tail_and_fft_recovers_the_data():
    n_fft, cp, active = 64, 16, 52
    gen = np.random.default_rng(3)
    grid = np.zeros((5, 4, n_fft), dtype=np.complex128)
    bins = ofdm_bins(n_fft, active)
    assert len(bins) == active and 0 not in bins
    grid[:, :, bins] = CONSTELLATIONS["qpsk"][gen.integers(0, 4, (5, 4, active))]
    x = ofdm_modulate(grid, n_fft, cp).reshape(5, 4, n_fft + cp)
    assert np.array_equal(x[..., :cp], x[..., -cp:])
    body = np.fft.fft(x[..., cp:], axis=-1) * np.sqrt(active) / n_fft
    assert np.allclose(body, grid)
    assert np.allclose(np.mean(np.abs(x[..., cp:]) ** 2, axis=-1), 1)  # Parseval, |X| = 1 on 52 bins


def test_fractional_delay_matches_a_delayed_tone():
    t = np.arange(200)
    f = 0.06
    x = np.exp(2j * np.pi * f * t)[None]
    for d in (0.0, 0.9, 1.7):
        taps = fir_taps(np.array([[d]]), np.array([[1.0 + 0j]]), max_delay=2.0)
        y = apply_fir(x, taps)
        k = taps.shape[1]
        # y_t = x(t + H - d) with H = 12 and the input K - 1 samples ahead of the output
        ref = np.exp(2j * np.pi * f * (np.arange(y.shape[1]) + k - 1 - 12 - d))
        assert np.max(np.abs(y - ref)) < 1e-3, d


def test_rayleigh_channel_has_unit_average_power_gain_and_fades():
    gen = np.random.default_rng(4)
    delays, gains = channel_paths(gen, "rayleigh3", 40_000)
    assert np.array_equal(delays[0], CHANNELS["rayleigh3"][0])
    tap_power = np.mean(np.abs(gains) ** 2, axis=0)
    assert np.allclose(tap_power, np.array([1.0, 0.64, 0.09]) / 1.73, atol=0.01)
    assert abs(np.sum(tap_power) - 1) < 0.02
    cfg = radio_config(task="modulation", signals=["qpsk"], channel="rayleigh3", n_frames=8000)
    y = received_signal(np.random.default_rng(5), cfg, np.zeros(8000, dtype=np.int64))
    frame_gain = np.mean(np.abs(y) ** 2, axis=1)
    assert abs(np.mean(frame_gain) - 1) < 0.03
    assert np.std(frame_gain) > 0.5  # each frame fades on its own
    plain = radio_config(task="modulation", signals=["qpsk"], n_frames=8000)
    awgn = received_signal(np.random.default_rng(5), plain, np.zeros(8000, dtype=np.int64))
    assert np.std(np.mean(np.abs(awgn) ** 2, axis=1)) < 0.2


def test_noise_uncertainty_spans_plus_minus_one_db():
    f = generate(radio_config(task="sensing", n_frames=3000, noise_uncertainty_db=1.0), keep_parts=True)
    db = 10 * np.log10(f.noise_power.astype(np.float64))
    assert db.min() >= -1.0 and db.max() <= 1.0
    assert db.min() < -0.97 and db.max() > 0.97 and abs(db.mean()) < 0.05
    measured = np.mean(np.abs(f.noise) ** 2, axis=1)  # each frame's noise power, ±9 % (N = 128)
    assert abs(np.mean(measured / f.noise_power) - 1) < 0.01
    slope = np.polyfit(f.noise_power, measured, 1)[0]
    assert abs(slope - 1) < 0.05
    fixed = generate(radio_config(task="sensing", n_frames=100))
    assert np.all(fixed.noise_power == 1)


# ---------------------------------------------------------------- energy detector
def test_energy_detector_theory_closed_forms():
    # N = 1: 2T ~ chi2(2), so P(T > g) = exp(-g)
    assert energy_detector_threshold(0.1, 1) == pytest.approx(np.log(10), rel=1e-12)
    assert float(energy_detector_pd_theory(-80.0, 0.05, 128)) == pytest.approx(0.05, abs=1e-6)
    pd = energy_detector_pd_theory(np.arange(-20.0, 6.0, 2.0), 0.01, 128)
    assert np.all(np.diff(pd[:9]) > 0) and pd[0] > 0.01 and pd[-1] > 0.999
    assert energy_scores(np.array([[1 + 1j, 2.0]]), 2.0)[0] == pytest.approx(3.0)


ORACLE_SNRS = [-12.0, -9.0, -7.0, -5.0]


@pytest.fixture(scope="module")
def oracle_frames():
    """QPSK with rectangular pulses in AWGN, known noise power: 20 000 H0 frames, 5 000 H1 frames
    per SNR. Its envelope is constant, so every frame carries exactly N·SNR of energy and the
    noncentral chi-square law is exact (an RRC-shaped or OFDM frame's energy varies with its data,
    which the theory leaves out)."""
    cfg = radio_config(task="sensing", signals=["qpsk"], pulse="rect", snr_db=ORACLE_SNRS,
                       n_frames=40_000, seed=1)
    f = generate(cfg)
    return energy_scores(f.iq), f.label, f.snr_db, cfg.frame_length


@pytest.mark.parametrize("pfa", [0.1, 0.01])
def test_simulated_energy_detector_matches_the_theory_curve(oracle_frames, pfa):
    t, label, snr_db, n = oracle_frames
    gamma = energy_detector_threshold(pfa, n)
    h0 = label == 0

    def interval(mask):
        return M.binomial_interval(int(np.sum(t[mask] > gamma)), int(mask.sum()), 0.99)

    lo, hi = interval(h0)
    assert lo <= pfa <= hi
    for snr in ORACLE_SNRS:
        lo, hi = interval((label == 1) & (snr_db == snr))
        assert lo <= float(energy_detector_pd_theory(snr, pfa, n)) <= hi, snr
        if snr == -7.0:  # the check can fail: the curve 0.5 dB off lies outside the interval
            for shift in (-0.5, 0.5):
                assert not lo <= float(energy_detector_pd_theory(snr + shift, pfa, n)) <= hi
    # the empirical threshold (set on H0 scores) reproduces the same curve
    det = M.pd_at_pfa(t[h0], M.group_by_snr(t[~h0], snr_db[~h0]), pfa)
    assert 0.8 * pfa < det.pfa_achieved <= pfa
    assert np.allclose(det.pd, energy_detector_pd_theory(det.snr_db, pfa, n), atol=0.03)


# ---------------------------------------------------------------- metrics
def test_pd_at_pfa_hand_computed():
    h0 = np.arange(10.0)  # 0..9
    det = M.pd_at_pfa(h0, {5.0: [10, 11], 0.0: [6, 7, 8, 9]}, 0.2)
    assert det.threshold == 7.0 and det.pfa_achieved == 0.2
    assert det.snr_db.tolist() == [0.0, 5.0] and det.pd.tolist() == [0.5, 1.0]
    assert det.n.tolist() == [4, 2]
    assert empirical_threshold(h0, 0.05) == 9.0  # floor(0.5) = 0 scores may pass: the maximum


def test_snr_at_pd_interpolates_in_db():
    assert M.snr_at_pd([-10, -5, 0], [0.2, 0.6, 0.95], 0.9) == pytest.approx(-5 + 0.3 * 5 / 0.35)
    assert M.snr_at_pd([-10, -5, 0], [0.2, 0.9, 0.95], 0.9) == -5.0
    assert M.snr_at_pd([-10, -5, 0], [0.2, 0.6, 0.85], 0.9) is None
    assert M.snr_at_pd([-10, -5], [0.95, 0.99], 0.9) == -10.0
    with pytest.raises(NeurokdError, match="increase"):
        M.snr_at_pd([0, -5], [0.1, 0.2])


def test_roc_auc_counts_ties_half_and_matches_the_curve():
    h0, h1 = [1.0, 2.0, 3.0], [2.0, 4.0]
    # pairs (h1 > h0): 2 beats 1, ties 2, loses to 3 -> 1.5; 4 beats all -> 3; 4.5 / 6
    assert M.roc_auc(h0, h1) == pytest.approx(0.75)
    pfa, pd = M.roc_curve(h0, h1)
    assert pfa.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1])
    assert pd.tolist() == pytest.approx([0, 0.5, 0.5, 1, 1])
    assert np.trapz(pd, pfa) == pytest.approx(0.75)
    assert M.roc_auc([0, 0], [0, 0]) == 0.5 and M.roc_auc([0], [1]) == 1.0


def test_accuracy_per_snr_confusion_and_mean_above_zero_db():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 1, 0, 2, 2])
    s = np.array([-2.0, -2.0, -2.0, 4.0, 4.0, 2.0])
    assert M.accuracy_per_snr(y, p, s) == {-2.0: pytest.approx(2 / 3), 2.0: 1.0, 4.0: 0.5}
    assert M.mean_accuracy_snr_ge(y, p, s, 0) == pytest.approx(0.75)
    assert M.mean_accuracy_snr_ge(y, p, s, 10) is None
    cm = M.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    with pytest.raises(NeurokdError, match="class indices"):
        M.confusion_matrix([0, 3], [0, 0], 3)
    assert M.binomial_interval(0, 10)[0] == 0 and M.binomial_interval(10, 10)[1] == 1


def test_plots_are_written(tmp_path):
    from neurokd.radio import plots

    paths = [
        plots.pd_vs_snr({"energy": ([-10, -5, 0], [0.2, 0.6, 0.99])}, 0.1, tmp_path / "pd.png", 128),
        plots.roc({"energy": M.roc_curve([1, 2, 3], [2, 4])}, tmp_path / "roc.png"),
        plots.accuracy_vs_snr({"snn": {-10.0: 0.2, 0.0: 0.8}}, tmp_path / "acc.png", 8),
        plots.confusion(np.array([[3, 1], [0, 4]]), ["H0 noise", "H1 signal"], tmp_path / "cm.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["acc.png", "cm.png", "pd.png", "roc.png"]


# ---------------------------------------------------------------- RadioML readers
class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (SHORT_BINSTRING/BINSTRING), as RadioML 2016's
    pickle (written by Python 2's cPickle) holds them."""

    def save_bytes(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def _radioml2016(path, py2=True):
    gen = np.random.default_rng(6)
    data = {(m, s): gen.standard_normal((3, 2, 128)).astype(np.float32)
            for m in ("QPSK", "BPSK", "QAM16") for s in (-2, 0, 18)}
    if py2:
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump({(m.encode(), s): v for (m, s), v in data.items()})
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(data, protocol=2))
    return data


@pytest.mark.parametrize("py2", [True, False])
def test_radioml2016_reads_arrays_labels_and_snrs(tmp_path, py2):
    data = _radioml2016(tmp_path / "rml.pkl", py2)
    rml = read_radioml2016(tmp_path / "rml.pkl")
    assert rml.class_names == ["BPSK", "QAM16", "QPSK"]
    assert rml.iq.shape == (27, 128) and rml.iq.dtype == np.complex64
    for i in range(len(rml)):
        x = data[(rml.class_names[rml.label[i]], int(rml.snr_db[i]))]
        assert any(np.array_equal(rml.iq[i], r[0] + 1j * r[1]) for r in x)
    sel = read_radioml2016(tmp_path / "rml.pkl", classes=["QPSK", "BPSK"], snr_range=(0, 20), limit=5)
    assert sel.class_names == ["QPSK", "BPSK"] and len(sel) == 5
    assert set(sel.snr_db.tolist()) <= {0.0, 18.0} and set(sel.label.tolist()) == {0, 1}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_radioml2016_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({("QPSK", 0): _Evil(marker)}, protocol=2))
    with pytest.raises(NeurokdError, match=r"refused.*(posix|os)\.system") as err:
        read_radioml2016(bad)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    # the refused file really calls a shell command: its opcodes import system and call it
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(bad.read_bytes())]
    assert ("GLOBAL", f"{os.system.__module__} system") in ops and ("REDUCE", None) in ops


def test_radioml2016_refuses_foreign_classes_and_bad_keys(tmp_path):
    bad = tmp_path / "foreign.pkl"
    bad.write_bytes(pickle.dumps({("QPSK", 0): Fraction(1, 3)}, protocol=2))
    with pytest.raises(NeurokdError, match=r"refused.*fractions\.Fraction"):
        read_radioml2016(bad)
    arr = np.zeros((2, 2, 128), np.float32)
    for key, msg in [(("FOO", 0), "unknown modulation 'FOO'"), (("QPSK", 2.0), "integer SNR"),
                     (("QPSK",), "pair")]:
        (tmp_path / "k.pkl").write_bytes(pickle.dumps({key: arr}, protocol=2))
        with pytest.raises(NeurokdError, match=msg):
            read_radioml2016(tmp_path / "k.pkl")
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({("QPSK", 0): np.zeros((2, 3, 128))}, protocol=2))
    with pytest.raises(NeurokdError, match=r"\(n, 2, L\)"):
        read_radioml2016(tmp_path / "s.pkl")
    (tmp_path / "t.pkl").write_bytes(b"\x80\x02}q\x00")  # truncated
    with pytest.raises(NeurokdError, match="not a readable pickle"):
        read_radioml2016(tmp_path / "t.pkl")


def _radioml2018(path, drop=None, y_classes=24):
    import h5py

    snrs = (-10, 0, 10)
    n = 24 * len(snrs) * 2  # class by class, SNR by SNR, 2 frames each
    label = np.repeat(np.arange(24), len(snrs) * 2)
    snr = np.tile(np.repeat(snrs, 2), 24)
    x = np.random.default_rng(7).standard_normal((n, 1024, 2)).astype(np.float32)
    y = np.eye(24, dtype=np.int64)[label][:, :y_classes]
    with h5py.File(path, "w") as fh:
        for key, value in (("X", x), ("Y", y), ("Z", snr[:, None].astype(np.int64))):
            if key != drop:
                fh.create_dataset(key, data=value)
    return x, label, snr


def test_radioml2018_reads_a_bounded_selection(tmp_path):
    x, label, snr = _radioml2018(tmp_path / "r18.h5")
    rml = read_radioml2018(tmp_path / "r18.h5")
    assert rml.class_names == list(RADIOML2018_CLASSES) and len(rml) == len(label)
    assert np.array_equal(rml.iq, x[..., 0] + 1j * x[..., 1])
    assert np.array_equal(rml.label, label) and np.array_equal(rml.snr_db, snr)
    sel = read_radioml2018(tmp_path / "r18.h5", classes=["FM", "BPSK"], snr_range=(0, 10))
    rows = np.flatnonzero(np.isin(label, [21, 3]) & (snr >= 0))
    assert sel.class_names == ["FM", "BPSK"] and len(sel) == 8
    assert np.array_equal(sel.iq, x[rows, :, 0] + 1j * x[rows, :, 1])
    assert np.array_equal(sel.label, np.where(label[rows] == 21, 0, 1))
    few = read_radioml2018(tmp_path / "r18.h5", limit=7)
    rows = np.linspace(0, len(label) - 1, 7).round().astype(int)
    assert np.array_equal(few.iq, x[rows, :, 0] + 1j * x[rows, :, 1])
    assert np.array_equal(few.label, label[rows])


def test_radioml2018_errors_name_the_problem(tmp_path):
    _radioml2018(tmp_path / "noz.h5", drop="Z")
    with pytest.raises(NeurokdError, match="no dataset Z") as err:
        read_radioml2018(tmp_path / "noz.h5")
    assert "\n" not in str(err.value)
    _radioml2018(tmp_path / "y23.h5", y_classes=23)
    with pytest.raises(NeurokdError, match=r"Y must be one-hot \(n, 24\)"):
        read_radioml2018(tmp_path / "y23.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(NeurokdError, match="not an HDF5 file"):
        read_radioml2018(tmp_path / "junk.h5")
    _radioml2018(tmp_path / "ok.h5")
    with pytest.raises(NeurokdError, match="unknown class 'FOO'"):
        read_radioml2018(tmp_path / "ok.h5", classes=["FOO"])


# ---------------------------------------------------------------- config errors
@pytest.mark.parametrize("options, message", [
    ({"signals": ["qpsk", "wifi7"]}, "unknown modulation 'wifi7'"),
    ({"channel": "rician"}, "unknown channel 'rician'"),
    ({"snr_db": []}, "SNR grid is empty"),
    ({"snr_db": [0, -2, 4]}, "increase strictly"),
    ({"snr_db": [0, 0, 4]}, "increase strictly"),
    ({"snr_db": [-50, 0]}, r"\[-40, 40\] dB"),
    ({"n_frames": 0}, "n_frames"),
    ({"frame_length": 64}, "shorter than one OFDM symbol"),
    ({"signals": ["qpsk"], "frame_length": 64}, "shorter than one pulse"),
    ({"snr_db": [float("nan")]}, "snr_db"),
    ({"n_frames": True}, "expected a number"),
    ({"sps": 4}, "sps: unknown option"),
])
def test_radio_config_errors_are_one_clear_line(options, message):
    with pytest.raises(NeurokdError, match=message) as err:
        radio_config(task="sensing", **options)
    assert "\n" not in str(err.value)


def test_radio_config_resolves_task_defaults():
    s, m = radio_config(), radio_config(task="modulation")
    assert s.signals == ["qpsk", "16qam", "ofdm"] and s.snr_db[0] == -20 and s.snr_db[-1] == 4
    assert len(m.signals) == 8 and m.snr_db[-1] == 18 and len(m.snr_db) == 20
    assert radio_config(**m.model_dump()) == m


# ---------------------------------------------------------------- registered datasets
@pytest.mark.parametrize("name, classes", [("sensing", 2), ("modulation", 8)])
def test_registered_radio_datasets(name, classes):
    ds = load_dataset(name, seed=1, limit=1600)
    assert ds.num_classes == classes and len(ds.class_names) == classes
    assert ds.input_shape == (5, 1, 128)
    assert ds.task == ("detection" if name == "sensing" else "classification")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1600
    cfg = radio_config(task=name)
    for split in (ds.train, ds.val, ds.test):
        x = split.x
        assert x.dtype == np.float32 and x.shape[1:] == (5, 1, 128)
        assert np.all(x[:, 4] == 1.0)  # the constant bias channel
        assert x.min() == 0.0 and x.max() == 1.0
        assert np.all(np.minimum(x[:, 0], x[:, 1]) == 0) and np.all(np.minimum(x[:, 2], x[:, 3]) == 0)
        assert split.iq.dtype == np.complex64 and split.iq.shape == (len(split), 128)
        assert set(np.unique(split.snr)) <= set(cfg.snr_db) and split.snr.shape == (len(split),)
        # every per-sample field stayed aligned through the split: decode x back to I/Q
        i = x[:, 0, 0] - x[:, 1, 0]
        if name == "sensing":
            full = sensing_full_scale(cfg.full_scale, len(split))[:, None]
            assert np.array_equal(split.meta["waveform"] == -1, split.y == 0)
        else:
            full = cfg.full_scale * np.sqrt(np.mean(np.abs(split.iq) ** 2, axis=1) / 2)[:, None]
            assert np.array_equal(split.meta["waveform"], split.y)
        inside = np.abs(split.iq.real) < full
        assert np.allclose((i * full)[inside], split.iq.real[inside], atol=1e-5)
    if name == "sensing":  # the SNR of each frame shows in its energy
        t = ds.train
        e = energy_scores(t.iq) / 128
        assert abs(np.mean(e[(t.y == 1) & (t.snr == 4)]) - (1 + 10 ** 0.4)) < 0.2
        assert abs(np.mean(e[(t.y == 1) & (t.snr == -20)]) - 1.01) < 0.03


def test_radio_datasets_keep_frames_across_split_seeds_and_refuse_bad_options():
    a = load_dataset("modulation", seed=1, limit=400)
    b = load_dataset("modulation", seed=2, limit=400)
    rows = lambda d: np.sort(np.concatenate([d.train.iq, d.val.iq, d.test.iq])[:, 0])  # noqa: E731
    assert np.array_equal(rows(a), rows(b))
    assert not np.array_equal(a.test.iq, b.test.iq)
    c = load_dataset("modulation", seed=1, limit=400, generator_seed=5)
    assert not np.array_equal(rows(a), rows(c))
    with pytest.raises(NeurokdError, match="generated; drop --data-dir"):
        load_dataset("sensing", data_dir="/tmp")
    with pytest.raises(NeurokdError, match="unknown channel"):
        load_dataset("sensing", channel="rician")
    with pytest.raises(NeurokdError, match="set by the loader"):
        load_dataset("sensing", task="modulation")


def test_sensing_full_scale_clipping_rate_is_as_documented():
    """4σ per real component: about 2.5 % of the values clip at +4 dB, noise alone almost never."""
    f = generate(radio_config(task="sensing", snr_db=[4.0], n_frames=4000))
    full = sensing_full_scale(4.0, len(f))
    h1 = f.label == 1
    assert 0.015 < clipped_fraction(f.iq[h1], full[h1]) < 0.035
    assert clipped_fraction(f.iq[~h1], full[~h1]) < 3e-4
