"""RadioML 2016 and 2018 on the command line: --dataset radioml2016|radioml2018 --data-dir."""

import json
import pickle

import numpy as np

from tests.conftest import run_cli

FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "student.hidden=16",
        "--set", "student.timesteps=4", "--no-progress"]


def _rml2016(path):
    gen = np.random.default_rng(0)
    data = {(m, s): gen.standard_normal((24, 2, 128)).astype(np.float32)
            for m in ("QPSK", "BPSK", "QAM16") for s in (-10, 0, 18)}
    path.write_bytes(pickle.dumps(data, protocol=2))


def _rml2018(path):
    import h5py

    snrs = (-10, 0, 10)
    label = np.repeat(np.arange(24), len(snrs) * 4)
    snr = np.tile(np.repeat(snrs, 4), 24)
    x = np.random.default_rng(1).standard_normal((len(label), 1024, 2)).astype(np.float32)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("X", data=x)
        fh.create_dataset("Y", data=np.eye(24, dtype=np.int64)[label])
        fh.create_dataset("Z", data=snr[:, None].astype(np.int64))


def test_radioml2016_trains_with_class_and_snr_selection_and_reports_per_snr(tmp_path):
    _rml2016(tmp_path / "rml.pkl")
    r = run_cli("train-snn", "--dataset", "radioml2016", "--data-dir", "rml.pkl", "--set",
                "data.radio={classes: [QPSK, BPSK], snr_range: [0, 18]}", "--set",
                "student.encoder=signed8", "--out", "s", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "radioml2016: 96 frames of 128 samples from rml.pkl (2 classes: QPSK, BPSK" in r.stdout
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())["radio"]
    assert m["classes"] == ["QPSK", "BPSK"]
    assert sorted(float(k) for k in m["receivers"]["SNN"]["accuracy_per_snr"]) == [0.0, 18.0]
    assert (tmp_path / "s" / "accuracy_vs_snr.png").is_file()


def test_radioml2018_is_found_in_its_folder_by_its_published_name(tmp_path):
    (tmp_path / "rml").mkdir()
    _rml2018(tmp_path / "rml" / "GOLD_XYZ_OSC.0001_1024.hdf5")
    r = run_cli("train-teacher", "--dataset", "radioml2018", "--data-dir", "rml", "--set",
                "data.radio={classes: [BPSK, QPSK, 8PSK]}", "--teacher-model", "cnn1d", "--out", "t",
                *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "radioml2018: 36 frames of 1024 samples" in r.stdout
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["radio"]["classes"] == ["BPSK", "QPSK", "8PSK"]


def test_what_is_not_a_radioml_set_gets_one_line(tmp_path):
    (tmp_path / "notes.pkl").write_text("hello")
    (tmp_path / "empty").mkdir()
    _rml2016(tmp_path / "rml.pkl")
    cases = [(["--dataset", "radioml2016", "--data-dir", "notes.pkl"], "notes.pkl"),
             (["--dataset", "radioml2018", "--data-dir", "notes.pkl"], "notes.pkl"),
             (["--dataset", "radioml2016", "--data-dir", "empty"], "no RML2016.10a_dict.pkl"),
             (["--dataset", "radioml2016"], "give --data-dir FILE"),
             (["--dataset", "radioml2016", "--data-dir", "rml.pkl", "--set", "data.radio={bogus: 1}"],
              "bogus"),
             (["--dataset", "radioml2016", "--data-dir", "rml.pkl", "--set",
               "data.radio={classes: [FM]}"], "FM")]
    for extra, message in cases:
        r = run_cli("train-snn", *extra, "--out", "x", *FAST, cwd=tmp_path)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "x").exists()
