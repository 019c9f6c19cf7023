import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from neurokd.cli import main
from tests.conftest import TINY, run_cli, write_idx

DEMO_KEYS = {"teacher_accuracy", "snn_accuracy", "lava_accuracy", "lava_samples", "lava_spike_match",
             "lava_prediction_agreement", "backend"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out), "--no-progress", *TINY]) == 0
    return out


@pytest.mark.lava
def test_demo_writes_a_whole_run_directory(demo_run, capsys):
    names = {p.name for p in demo_run.iterdir()}
    assert {"config.yaml", "teacher.pt", "snn.pt", "network.net", "metrics.json",
            "training_curves.png", "spike_raster.png"} <= names
    assert not [n for n in names if n.endswith(".partial")]
    m = json.loads((demo_run / "metrics.json").read_text())
    assert DEMO_KEYS <= set(m)
    assert m["lava_samples"] == 24 and m["backend"] == "sim"
    assert m["lava_spike_match"] == 1.0 and m["lava_prediction_agreement"] == 1.0
    assert m["teacher_accuracy"] > 0.5 and m["snn_accuracy"] > 0.3
    assert not list(demo_run.parent.glob(".*partial"))


@pytest.mark.lava
def test_stage_commands_on_the_demo_outputs(demo_run, tmp_path, capsys):
    net = tmp_path / "again.net"
    assert main(["export", "--snn", str(demo_run / "snn.pt"), "--out", str(net)]) == 0
    assert main(["run-lava", "--net", str(net), "--samples", "12", "--metrics",
                 str(tmp_path / "lava.json"), "--backend", "sim"]) == 0
    lava = json.loads((tmp_path / "lava.json").read_text())
    assert lava["lava_samples"] == 12 and 0.0 <= lava["lava_accuracy"] <= 1.0
    assert main(["verify", "--snn", str(demo_run / "snn.pt"), "--net", str(net), "--samples", "12",
                 "--metrics", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["lava_spike_match"] == 1.0
    # verify without --net exports afresh into a temporary folder
    capsys.readouterr()
    assert main(["verify", "--snn", str(demo_run / "snn.pt"), "--samples", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["lava_spike_match"] == 1.0 and result["lava_samples"] == 8


@pytest.mark.lava
def test_verify_fails_loudly_when_network_and_checkpoint_differ(demo_run, tmp_path, capsys):
    from neurokd.models.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(demo_run / "snn.pt")
    sd = {k: (v * 1.5 if k.endswith("weight") else v) for k, v in payload["state_dict"].items()}
    save_checkpoint(tmp_path / "other.pt", "snn", payload["arch"], sd, payload["meta"])
    code = main(["verify", "--snn", str(tmp_path / "other.pt"), "--net", str(demo_run / "network.net"),
                 "--samples", "12"])
    assert code == 1
    assert "differ between PyTorch and Lava" in capsys.readouterr().err


def test_train_commands_write_their_checkpoints(tmp_path, capsys):
    assert main(["train-teacher", "--out", str(tmp_path / "t"), "--no-progress", *TINY,
                 "--teacher-model", "cnn", "--set", "teacher.hidden=[4, 8]"]) == 0
    assert (tmp_path / "t" / "teacher.pt").is_file()
    from neurokd.pipeline import load_teacher

    assert load_teacher(tmp_path / "t" / "teacher.pt")(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert main(["train-snn", "--out", str(tmp_path / "s"), "--no-progress", *TINY, "-T", "4"]) == 0
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert 0 <= m["snn_accuracy"] <= 1


def test_one_checkpoint_gets_one_accuracy_from_train_snn_and_quantize(tmp_path, capsys):
    """quantize reports the float accuracy of the checkpoint it was given: the very number
    train-snn recorded for it (same model, test split, encoding seed and batches)."""
    snn = tmp_path / "s"
    assert main(["train-snn", "--out", str(snn), "--no-progress", *TINY]) == 0
    trained = json.loads((snn / "metrics.json").read_text())
    assert main(["quantize", "--snn", str(snn / "snn.pt"), "--method", "ptq", "--out",
                 str(tmp_path / "q"), "--no-progress"]) == 0
    quantized = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert quantized["float_snn_accuracy"] == trained["snn_accuracy"]
    assert 0.0 <= quantized["float_unrounded_accuracy"] <= 1.0  # another network, named apart
    assert "float_snn_accuracy is the checkpoint as train-snn evaluated it" in capsys.readouterr().out


def test_training_into_a_pipe_prints_a_line_per_epoch(tmp_path):
    """stdout is a pipe here, as in `neurokd ... | tee log` or under a job scheduler: no bars, one
    line per epoch with its values and the time left, flushed line by line."""
    import re

    r = run_cli("train-snn", "--out", "s", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    epochs = re.findall(r"^snn: epoch (\d+)/4: loss ([\d.]+), validation accuracy ([\d.]+) "
                        r"\(best [\d.]+ at [a-z ]+\d*\), [\d.]+ s; (about [\dminh ]+ s? ?left|done)$",
                        r.stdout, flags=re.M)
    assert [int(e[0]) for e in epochs] == list(range(1, m["snn_epochs"] + 1))
    assert all(0.0 <= float(e[2]) <= 1.0 and float(e[1]) > 0 for e in epochs)
    assert max(float(e[2]) for e in epochs) == round(m["snn_val_accuracy"], 4)
    assert f"snn: best validation accuracy {m['snn_val_accuracy']:.4f} at epoch" in r.stdout
    assert "\r" not in r.stdout + r.stderr  # no progress bar redraws


def test_each_training_command_offers_its_own_options(tmp_path, capsys):
    """--help lists what a command uses and nothing else; --epochs sets the epochs of the model
    the command trains."""
    from neurokd.cli import build_parser
    from neurokd.cli.commands import _config

    def helptext(command):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        return " ".join(capsys.readouterr().out.split())  # as one line, whatever the wrapping

    teacher, snn, distill = helptext("train-teacher"), helptext("train-snn"), helptext("distill")
    assert "--teacher-model" in teacher and not {"--timesteps", "--encoder", "--spec"} & set(teacher.split())
    assert "--teacher-model" not in snn and "--spec YAML" in snn
    assert "--student" not in distill and "--teacher-model" not in distill and "--spec YAML" in distill
    assert "(student.epochs, default 60" in snn and "(teacher.epochs, default 100" in teacher
    search = helptext("search")
    assert "(default 100)" in search and "(default 1)" in search and "aging evolution" in search
    from neurokd.models.spec import default_spec, save_spec

    spec = str(save_spec(tmp_path / "x.yaml", default_spec((1, 8, 8), 10, 16)))
    parser = build_parser()
    for argv, key, value in [(["train-teacher", "--epochs", "7"], "teacher", 7),
                             (["train-snn", "--epochs", "7"], "student", 7),
                             (["demo", "--epochs", "7", "--teacher-epochs", "9"], "student", 7),
                             (["demo", "--teacher-epochs", "9"], "teacher", 9),
                             (["distill", "--student", spec, "--epochs", "3"], "student", 3)]:
        args = parser.parse_args([*argv, "--out", "o"])
        assert getattr(_config(args), key).epochs == value, argv
    args = parser.parse_args(["distill", "--student", spec, "--out", "o"])  # the old spelling
    assert _config(args).student.spec == spec


@pytest.mark.lava
def test_distill_then_verify(demo_run, tmp_path, capsys):
    out = tmp_path / "co"
    assert main(["distill", "--teacher", str(demo_run / "teacher.pt"), "--method", "colearn",
                 "--out", str(out), "--no-progress", *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "colearn" and "teacher_accuracy_after" in m
    assert (out / "teacher.pt").is_file() and (out / "snn.pt").is_file()
    assert main(["verify", "--snn", str(out / "snn.pt"), "--samples", "10"]) == 0
    code = main(["distill", "--method", "kd", "--out", str(tmp_path / "x"), *TINY])
    assert code == 2 and "needs a teacher checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.lava
def test_demo_on_an_mnist_folder(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out),
                 "--no-progress", *TINY, "--set", "lava.samples=10"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "mnist" and m["lava_spike_match"] == 1.0
    assert "split by seed" in m["data_notes"][0]
    assert "only the test files" in capsys.readouterr().out


def _bad_idx(folder, kind):
    folder.mkdir()
    images = np.zeros((20, 28, 28))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    labels = write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    raw = labels.read_bytes()
    labels.write_bytes(raw[:-3] if kind == "truncated" else b"\x00\x00\x07\x01" + raw[4:])
    return folder


@pytest.mark.parametrize("args, message", [
    (["demo", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["demo", "--teacher-model", "resnet"], "unknown teacher model 'resnet'"),
    (["demo", "--encoder", "morse"], "unknown encoder 'morse'"),
    (["demo", "-T", "0"], "student.timesteps: Input should be greater than 0"),
    (["demo", "-T", "-3"], "student.timesteps"),
    (["demo", "--set", "student.hidden=-4"], "student.hidden"),
    (["demo", "--set", "teacher.batch_size=0"], "teacher.batch_size"),
    (["demo", "--samples", "0"], "--samples must be positive"),
    (["demo", "--epochs", "0"], "--epochs must be positive"),
    (["demo", "--teacher-epochs", "-1"], "--teacher-epochs must be positive"),
    (["demo", "--set", "teacher.colour=red"], "teacher.colour: unknown key"),
    (["demo", "--dataset", "mnist"], "needs --data-dir"),
    (["demo", "--dataset", "mnist", "--data-dir", "{tmp}/nowhere"], "no such directory"),
    (["demo", "--dataset", "mnist", "--data-dir", "{truncated}"], "truncated"),
    (["demo", "--dataset", "mnist", "--data-dir", "{magic}"], "wrong magic number"),
    (["demo", "--config", "{tmp}/missing.yaml"], "no such file"),
    (["demo", "--config", "{unknown_key_config}"], "data.shuffle: unknown key"),
    (["demo", "--spec", "{tmp}/nospec.yaml"], "no such file"),
    (["export", "--snn", "{junk}", "--out", "{tmp}/x.net"], "not a neurokd checkpoint"),
    (["verify", "--snn", "{junk}"], "not a neurokd checkpoint"),
    (["run-lava", "--net", "{plain_h5}"], "not a netx network"),
    (["run-lava", "--net", "{junk}"], "not an HDF5 file"),
    (["export", "--snn", "{teacher_ckpt}", "--out", "{tmp}/x.net"], "expected a snn checkpoint"),
])
def test_bad_input_gets_one_line_and_leaves_nothing(args, message, tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"garbage" * 10)
    with h5py.File(tmp_path / "plain.h5", "w") as h:
        h.create_dataset("x", data=np.zeros(2))
    (tmp_path / "cfg.yaml").write_text("data:\n  shuffle: true\n")
    from neurokd.models.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "teacher.pt", "teacher", {}, {}, {})
    fill = {"tmp": str(tmp_path), "junk": str(tmp_path / "junk.pt"),
            "plain_h5": str(tmp_path / "plain.h5"), "unknown_key_config": str(tmp_path / "cfg.yaml"),
            "teacher_ckpt": str(tmp_path / "teacher.pt")}
    if "{truncated}" in args or "{magic}" in args:
        key = "truncated" if "{truncated}" in args else "magic"
        fill[key] = str(_bad_idx(tmp_path / key, key))
    args = [a.format(**fill) for a in args]
    out = tmp_path / "run"
    if args[0] == "demo":
        args += ["--out", str(out), "--no-progress"]
    before = set(tmp_path.iterdir())
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("neurokd: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no half-written run directory or file


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_console_script_errors_carry_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neurokd", "demo", "--dataset", "nope", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]]
    assert "unknown dataset 'nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["demo", "train-teacher", "train-snn", "distill", "export",
                                     "run-lava", "verify"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: neurokd " + command in capsys.readouterr().out


def test_every_package_of_the_source_tree_is_listed_for_installation():
    """pyproject lists packages by hand; one left out works in an editable install and is missing
    from a wheel."""
    import tomli  # pytest depends on it under Python 3.10

    from tests.conftest import REPO

    listed = set(tomli.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "neurokd").rglob("__init__.py")}
    assert found and found <= listed, f"not listed in pyproject.toml: {sorted(found - listed)}"
