"""The radio datasets through every stage: teacher, student, QAT, conversion, search, netx, Lava."""

import json

import numpy as np
import pytest

from neurokd.radio import metrics as rm
from tests.conftest import run_cli

SMALL = ["--set", "data.radio={n_frames: 900}", "--set", "teacher.epochs=4", "--set",
         "student.epochs=2", "--set", "student.hidden=32", "--no-progress"]

CONV_SPEC = """
input_shape: [5, 1, 128]
layers:
  - {type: conv, channels: 4, kernel: [1, 8], stride: [1, 4], padding: [0, 2]}
  - {type: flatten}
  - {type: dense, units: 16}
  - {type: dense, units: 2}
"""


def test_randomised_threshold_reaches_the_target_false_alarm_rate():
    # H0 scores: six 0s, three 1s, one 2. Pfa 0.2: threshold 1 (one score above, 0.1), and a
    # score of exactly 1 detects with q = (0.2 - 0.1) / 0.3 = 1/3.
    h0 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2], dtype=float)
    h1 = {0.0: np.array([1, 1, 2, 2, 0, 0], dtype=float)}
    plain = rm.pd_at_pfa(h0, h1, 0.2)
    assert plain.threshold == 1 and plain.pfa_achieved == pytest.approx(0.1)
    assert plain.pd[0] == pytest.approx(2 / 6)
    det = rm.pd_at_pfa(h0, h1, 0.2, randomize_ties=True)
    assert det.tie_probability == pytest.approx(1 / 3) and det.pfa_achieved == pytest.approx(0.2)
    assert det.pd[0] == pytest.approx(2 / 6 + (1 / 3) * (2 / 6))


@pytest.mark.lava
def test_sensing_demo_reports_pd_against_the_energy_detector_and_matches_lava(tmp_path):
    r = run_cli("demo", "--dataset", "sensing", "--samples", "16", "--out", "d", *SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "d"
    for name in ("pd_vs_snr_pfa0.1.png", "pd_vs_snr_pfa0.01.png", "roc.png", "network.net"):
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    assert m["lava_spike_match"] == 1.0 and m["dataset"] == "sensing"
    radio = m["radio"]
    assert set(radio["receivers"]) == {"energy detector", "DNN teacher (mlp)", "SNN (PyTorch = Lava)"}
    assert radio["theory"] is True  # AWGN, known noise power
    for row in radio["receivers"].values():
        for pfa in (0.1, 0.01):
            d = row[f"pfa_{pfa:g}"]
            assert d["pfa_achieved"] == pytest.approx(pfa, abs=0.02)  # the same Pfa for everyone
            assert len(d["pd"]) == 13 and all(0.0 <= p <= 1.0 for p in d["pd"].values())
    ed = radio["receivers"]["energy detector"]
    assert ed["pfa_0.1"]["pd"]["4"] > 0.95 and ed["auc"] > 0.7  # strong signals are found
    assert "energy detector: AUC" in r.stdout


@pytest.mark.lava
def test_modulation_through_train_quantize_and_verify(tmp_path):
    r = run_cli("train-snn", "--dataset", "modulation", "--out", "s", *SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())["radio"]
    assert m["classes"][:2] == ["BPSK", "QPSK"] and len(m["confusion_snr_ge_0"]["matrix"]) == 8
    acc = m["receivers"]["SNN"]["accuracy_per_snr"]
    assert len(acc) == 20 and all(0.0 <= a <= 1.0 for a in acc.values())
    assert (tmp_path / "s" / "accuracy_vs_snr.png").is_file() and (tmp_path / "s" / "confusion.png").is_file()
    r = run_cli("quantize", "--snn", "s/snn.pt", "--bits", "8", "--method", "ptq", "--out", "q",
                "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    q = json.loads((tmp_path / "q" / "metrics.json").read_text())["radio"]["receivers"]
    assert len(q) == 2
    r = run_cli("verify", "--snn", "q/snn.pt", "--net", "q/network.net", "--samples", "12", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0


@pytest.mark.lava
def test_one_d_cnn_teacher_converts_and_a_conv_student_trains_on_iq(tmp_path):
    (tmp_path / "conv.yaml").write_text(CONV_SPEC)
    r = run_cli("train-teacher", "--dataset", "sensing", "--teacher-model", "cnn1d", "--set",
                "teacher.hidden=[8, 8, 16]", "--out", "t", *SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--epochs", "1", "--out", "c",
                "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    radio = json.loads((tmp_path / "c" / "metrics.json").read_text())["radio"]["receivers"]
    assert any(k.startswith("converted SNN") for k in radio)
    r = run_cli("verify", "--snn", "c/snn.pt", "--net", "c/network.net", "--samples", "12", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0
    r = run_cli("train-snn", "--dataset", "sensing", "--spec", "conv.yaml", "--out", "s", *SMALL,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("verify", "--snn", "s/snn.pt", "--samples", "12", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0


def test_search_scores_one_by_k_candidates_on_iq_frames(tmp_path):
    r = run_cli("search", "--dataset", "sensing", "--candidates", "6", "--set",
                "data.radio={n_frames: 400}", "--out", "n", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec = (tmp_path / "n" / "spec.yaml").read_text()
    assert "input_shape:\n- 5\n- 1\n- 128" in spec


@pytest.mark.parametrize("override, message", [
    ("data.radio={signals: [qpsk, fm99]}", "fm99"),
    ("data.radio={channel: rician}", "unknown channel 'rician'"),
    ("data.radio={snr_db: [4, -20]}", "snr_db"),
    ("data.radio={snr_db: [100]}", "snr_db"),
])
def test_bad_radio_options_are_one_line_errors(tmp_path, override, message):
    r = run_cli("train-snn", "--dataset", "sensing", "--set", override, "--out", "x", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_training_that_ends_at_chance_says_so():
    from neurokd import pipeline
    from neurokd.data.datasets import Dataset, Split

    y = np.array([0, 0, 0, 1])
    split = Split(np.zeros((4, 1, 2, 2), dtype=np.float32), y)
    ds = Dataset("toy", split, split, split, 2, (1, 2, 2))
    said = []
    assert pipeline.warn_if_chance(0.75, ds, "snn", said.append)
    assert "at chance" in said[0] and "0.7500" in said[0]
    assert not pipeline.warn_if_chance(0.9, ds, "snn", said.append) and len(said) == 1


SYMBOLS_SMALL = ["--set", "data.radio={n_subframes: 64, ebn0_db: [0, 10, 20, 30]}", "--set",
                 "teacher.epochs=3", "--set", "student.epochs=1", "--set", "student.hidden=32",
                 "--no-progress"]


@pytest.mark.lava
def test_symbols_demo_reports_ber_beside_the_classical_receivers_and_matches_lava(tmp_path):
    r = run_cli("demo", "--dataset", "symbols", "--samples", "12", "--out", "d", *SYMBOLS_SMALL,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "d"
    assert (run / "ber_vs_ebn0.png").is_file() and (run / "network.net").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert m["lava_spike_match"] == 1.0 and m["dataset"] == "symbols"
    rec = m["radio"]["receivers"]
    assert {"LS + LMMSE", "LS + ML", "LMMSE, true channel", "ML, true channel",
            "SNN (PyTorch = Lava)"} <= set(rec)
    for row in rec.values():
        assert list(row["ber_per_ebn0"]) == ["0", "10", "20", "30"]
        assert all(0.0 <= b <= 1.0 for b in row["ber_per_ebn0"].values())
    # the textbook ordering on the same samples: ML with the true channel makes the fewest errors
    assert rec["ML, true channel"]["ber"] <= rec["LMMSE, true channel"]["ber"] <= rec["LS + LMMSE"]["ber"]
    assert "LS + LMMSE: BER 1e-2 at" in r.stdout


@pytest.mark.lava
def test_symbols_convert_to_graded_spikes_stays_lava_exact(tmp_path):
    r = run_cli("train-teacher", "--dataset", "symbols", "--out", "t", *SYMBOLS_SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--set", "student.encoder=direct8",
                "--out", "c", *SYMBOLS_SMALL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("verify", "--snn", "c/snn.pt", "--net", "c/network.net", "--samples", "16", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0
