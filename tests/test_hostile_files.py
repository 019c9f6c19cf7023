"""Hostile files, round two: HDF5 files that reach outside themselves (external storage, external
and soft links, virtual datasets), small files that declare gigabytes, graphs whose fields are not
numbers, and NaN or infinite values that must never be trained on, saved or exported. Each case
is refused with one line before anything is read or allocated; nothing is left behind."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.cli import main
from neurokd.config import build_config
from neurokd.interop import nir as nir_io
from neurokd.deploy.export import export_netx, read_meta
from neurokd.deploy.lava_run import count_spiking_layers
from neurokd.errors import NeurokdError
from neurokd.h5safe import check_hdf5
from neurokd.models.checkpoint import load_checkpoint, save_checkpoint
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import ArchSpec
from neurokd.training import fit
from tests.conftest import REPO

# Bytes no weight would hold by chance: what a hostile file tries to smuggle into a result.
SECRET = bytes(range(48, 96)) * 64  # 3072 bytes; as float32 these are finite, distinct values


def secret_file(folder: Path) -> Path:
    path = folder / "secret.bin"
    path.write_bytes(SECRET)
    return path


def digits_nir(path: Path) -> Path:
    """A valid 64-32-10 NIR graph (Linear + LIF twice), as neurokd's import takes it."""
    rng = np.random.default_rng(0)

    def lif(n):
        return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    nodes = {"in": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Linear(weight=rng.normal(0, 0.5, (32, 64)).astype(np.float32)),
             "lif1": lif(32),
             "fc2": nir.Linear(weight=rng.normal(0, 0.5, (10, 32)).astype(np.float32)),
             "lif2": lif(10),
             "out": nir.Output(output_type={"output": np.array([10])})}
    names = list(nodes)
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])),
                                      type_check=False))
    return path


def replace(group: h5py.Group, name: str, make) -> None:
    del group[name]
    make(group, name)


def external_storage(source: Path, shape, dtype="f4"):
    def make(group, name):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        group.create_dataset(name, shape=shape, dtype=dtype, external=[(str(source), 0, nbytes)])
    return make


def external_link(source: Path, target: str):
    def make(group, name):
        group[name] = h5py.ExternalLink(str(source), target)
    return make


def virtual(source: Path, target: str, shape, dtype="f4"):
    def make(group, name):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(str(source), target, shape=shape)
        group.create_virtual_dataset(name, layout)
    return make


def soft_link(target: str):
    def make(group, name):
        group[name] = h5py.SoftLink(target)
    return make


def other_hdf5(folder: Path, shape=(10, 32)) -> Path:
    path = folder / "other.h5"
    with h5py.File(path, "w") as h:
        h["w"] = np.frombuffer(SECRET[:4 * int(np.prod(shape))], dtype="f4").reshape(shape)
    return path


def tampered_nir(tmp_path: Path, how: str) -> Path:
    path = digits_nir(tmp_path / f"{how}.nir")
    secret = secret_file(tmp_path)
    makers = {"external": external_storage(secret, (10, 32)),
              "extlink": external_link(other_hdf5(tmp_path), "/w"),
              "virtual": virtual(other_hdf5(tmp_path), "/w", (10, 32)),
              "softlink": soft_link("/node/nodes/fc1/weight")}
    with h5py.File(path, "a") as h:
        replace(h["node/nodes/fc2"], "weight", makers[how])
    return path


def test_the_tampered_nir_file_really_reads_the_outside_file_through_plain_nir():
    """Proves the hostile file works against the nir package itself, so refusing it means something."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = tampered_nir(Path(folder), "external")
        graph = nir.read(str(path), type_check=False)
        stolen = np.asarray(graph.nodes["fc2"].weight, dtype="f4").tobytes()
        assert stolen == SECRET[:len(stolen)]


@pytest.mark.parametrize("how,words", [("external", "external storage"),
                                       ("extlink", "external link"),
                                       ("virtual", "virtual dataset"),
                                       ("softlink", "soft link")])
def test_nir_files_that_reach_outside_are_refused(tmp_path, capsys, how, words):
    path = tampered_nir(tmp_path, how)
    with pytest.raises(NeurokdError, match=words):
        nir_io.read_graph(path)
    with pytest.raises(NeurokdError, match=words):
        nir_io.read_nir_meta(path)
    out = tmp_path / "run"
    assert main(["import", str(path), "--out", str(out), "--set", "data.limit=200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "fc2/weight" in err
    assert SECRET[:16].decode() not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_external_storage_on_a_fifo_is_refused_without_opening_it(tmp_path):
    """Reading the FIFO would block forever: the refusal must come from the file's headers alone."""
    path = digits_nir(tmp_path / "fifo.nir")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with h5py.File(path, "a") as h:
        replace(h["node/nodes/fc2"], "weight", external_storage(fifo, (10, 32)))
    result = {}

    def attempt():
        try:
            nir_io.read_graph(path)
        except NeurokdError as exc:
            result["error"] = str(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(120)
    if worker.is_alive():  # unblock the reader so that the test process can end
        with open(fifo, "wb"):
            pass
        pytest.fail("reading the NIR file opened the FIFO its weights point to")
    assert "external storage" in result["error"]


def tiny_snn() -> SpikingNet:
    torch.manual_seed(0)
    return SpikingNet(ArchSpec(input_shape=[64], layers=[{"type": "dense", "units": 16},
                                                         {"type": "dense", "units": 10}])).eval()


@pytest.mark.parametrize("how,words", [("external", "external storage"),
                                       ("extlink", "external link"),
                                       ("virtual", "virtual dataset")])
def test_netx_files_that_reach_outside_are_refused(tmp_path, capsys, how, words):
    net = export_netx(tiny_snn(), tmp_path / f"{how}.net",
                      {"encoder": "rate", "timesteps": 8, "dataset": "digits", "num_classes": 10})
    assert read_meta(net)["timesteps"] == 8  # the untouched file is fine
    secret = secret_file(tmp_path)
    with h5py.File(net, "r") as h:
        shape, dtype = h["layer/1/weight"].shape, h["layer/1/weight"].dtype
    makers = {"external": external_storage(secret, shape, dtype),
              "extlink": external_link(other_hdf5(tmp_path, shape), "/w"),
              "virtual": virtual(other_hdf5(tmp_path, shape), "/w", shape, "f4")}
    with h5py.File(net, "a") as h:
        replace(h["layer/1"], "weight", makers[how])
    with pytest.raises(NeurokdError, match=words):
        read_meta(net)
    with pytest.raises(NeurokdError, match=words):
        count_spiking_layers(net)
    assert main(["run-lava", "--net", str(net), "--samples", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "layer/1/weight" in err


def test_a_dataset_larger_than_the_file_stores_is_refused(tmp_path):
    """67 KB declaring a 16000 × 16000 float64 weight (2 GB of fill value) is refused unread."""
    path = digits_nir(tmp_path / "huge.nir")
    with h5py.File(path, "a") as h:
        replace(h["node/nodes/fc2"], "weight",
                lambda g, n: g.create_dataset(n, shape=(16000, 16000), dtype="f8"))
    assert path.stat().st_size < 100_000
    with pytest.raises(NeurokdError, match=r"declares \(16000, 16000\) float64 .* stores 0 B"):
        nir_io.read_graph(path)
    # and a compressed dataset that expands beyond what this check allows in all
    with h5py.File(tmp_path / "zeros.h5", "w") as h:
        h.create_dataset("z", data=np.zeros((2000, 2000)), compression="gzip")
    assert check_hdf5(tmp_path / "zeros.h5") == 2000 * 2000 * 8
    with pytest.raises(NeurokdError, match="more than the 1.0 MB this machine can spare"):
        check_hdf5(tmp_path / "zeros.h5", max_bytes=1 << 20)


# ---------------------------------------------------------------- NIR fields that are not numbers
def _with(tmp_path: Path, node: str, field: str, data) -> Path:
    path = digits_nir(tmp_path / f"{node}-{field}.nir")
    with h5py.File(path, "a") as h:
        del h[f"node/nodes/{node}/{field}"]
        h[f"node/nodes/{node}"].create_dataset(field, data=data)
    return path


@pytest.mark.parametrize("node,field,data,words", [
    ("fc2", "weight", np.array([[b"ab"] * 32] * 10), "weight is stored as |S2 data, not as numbers"),
    ("fc2", "weight", np.zeros((10, 32), dtype=[("a", "f4"), ("b", "i4")]), "weight is stored as"),
    ("fc2", "weight", (np.ones((10, 32)) + 1j).astype(np.complex64),
     "weight holds complex numbers"),
    ("in", "shape", np.array(b"64"), "input shape"),
    ("in", "shape", np.array([2 ** 62, 2 ** 62]),
     "input shape [4611686018427387904, 4611686018427387904] is out of range"),
    ("in", "shape", np.array([40_000, 40_000, 6]), "9,600,000,000 values per step"),
    ("lif2", "v_threshold", np.array([b"x"] * 10), "v_threshold is stored as"),
])
def test_graph_fields_that_are_not_numbers_get_one_line(tmp_path, capsys, node, field, data, words):
    path = _with(tmp_path, node, field, data)
    with pytest.raises(NeurokdError, match=re.escape(words)):
        nir_io.parse_chain(nir_io.read_graph(path), where=str(path))
    assert main(["import", str(path), "--out", str(tmp_path / "run"), "--set", "data.limit=200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert not (tmp_path / "run").exists()


def test_a_padding_that_asks_for_more_neurons_than_a_chip_is_refused(tmp_path):
    nodes = {"in": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "conv": nir.Conv2d(input_shape=None, weight=np.ones((8, 1, 3, 3), np.float32),
                                stride=1, padding=400, dilation=1, groups=1, bias=np.zeros(8)),
             "lif": nir.LIF(tau=np.full(1, 1e-3), r=np.full(1, 10.0), v_leak=np.zeros(1),
                            v_threshold=np.ones(1), v_reset=np.zeros(1)),
             "out": nir.Output(output_type={"output": np.array([8])})}
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False)
    with pytest.raises(NeurokdError, match=r"gives \[8, 806, 806\], 5,197,088 neurons .* one Loihi 2 "
                                           r"chip holds 1,048,576"):
        nir_io.parse_chain(graph)


# ---------------------------------------------------------------- non-finite values
def nan_checkpoint(tmp_path: Path) -> Path:
    cfg = build_config(overrides=["data.limit=200", "student.hidden=16", "student.timesteps=6",
                                  "student.epochs=1"])
    ds = pipeline.load_data(cfg)
    model = SpikingNet(pipeline.student_spec(cfg, ds))
    with torch.no_grad():
        model(torch.zeros(1, *ds.input_shape, 2))
    state = model.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[3] = float("nan")
    path = tmp_path / "nan.pt"
    # written past the check, as a corrupted or hostile file would be
    torch.save({"format": "neurokd-checkpoint", "version": 1, "kind": "snn",
                "arch": {"spec": model.spec.model_dump()}, "state_dict": state,
                "meta": pipeline.snn_meta(cfg, ds)}, path)
    return path, key


def test_nan_checkpoints_are_never_written_and_never_read(tmp_path, capsys):
    path, key = nan_checkpoint(tmp_path)
    with pytest.raises(NeurokdError, match=f"{key!r} hold NaN or infinite values"):
        load_checkpoint(path)
    for argv in (["quantize", "--snn", str(path), "--hardware", "loihi2", "--bits", "8",
                  "--out", str(tmp_path / "q")],
                 ["export", "--snn", str(path), "--out", str(tmp_path / "n.net")],
                 ["export", "--snn", str(path), "--format", "nir", "--out", str(tmp_path / "n.nir")],
                 ["report", "--snn", str(path), "--out", str(tmp_path / "r")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "NaN or infinite" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]
    target = tmp_path / "again.pt"
    with pytest.raises(NeurokdError, match="not written"):
        save_checkpoint(target, "snn", {}, {"w": torch.tensor([1.0, float("inf")])}, {})
    assert not target.exists()


def test_a_diverging_loss_stops_training_with_one_line():
    from neurokd.data.datasets import Split

    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    x[5, 2] = np.inf  # one bad sample poisons its batch's loss
    split = Split(x, np.arange(64) % 2)
    model = torch.nn.Linear(4, 2)
    with pytest.raises(NeurokdError, match=r"training diverged at epoch 1, batch \d+: the loss is nan"):
        fit(model, split, split, prepare=lambda raw, gen: raw, readout=lambda m, x: m(x), epochs=2,
            batch_size=16, lr=0.01, patience=5, seed=0, progress=False)


@pytest.mark.parametrize("dt", ["1e308", "1e-320", "nan", "0"])
def test_export_nir_refuses_a_dt_whose_time_constants_would_not_be_finite(tmp_path, capsys, dt):
    cfg = build_config(overrides=["data.limit=200", "student.hidden=16", "student.timesteps=6"])
    ds = pipeline.load_data(cfg)
    model = SpikingNet(pipeline.student_spec(cfg, ds))
    with torch.no_grad():
        model(torch.zeros(1, *ds.input_shape, 2))
    ckpt = save_checkpoint(tmp_path / "snn.pt", "snn", {"spec": model.spec.model_dump()},
                           model.state_dict(), pipeline.snn_meta(cfg, ds))
    assert main(["export", "--snn", str(ckpt), "--format", "nir", "--dt", dt,
                 "--out", str(tmp_path / "x.nir")]) == 2
    err = capsys.readouterr().err
    assert "--dt must be a number of seconds from 1e-12 to 1e+06" in err
    assert not (tmp_path / "x.nir").exists()


# ---------------------------------------------------------------- one line, once
def test_a_report_takes_its_lock_before_any_work(tmp_path, capsys):
    """A second report into a directory another run holds fails at once, before loading anything."""
    import fcntl

    out = tmp_path / "rep"
    lock = tmp_path / ".rep.neurokd-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        # the checkpoint does not even exist: the lock is what must be reported
        assert main(["report", "--snn", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    finally:
        os.close(fd)
    assert "another neurokd run is writing it now" in capsys.readouterr().err


def test_a_user_module_that_exits_gets_one_line_and_status_2(tmp_path):
    (tmp_path / "quitter.py").write_text("import sys\n\ndef make():\n    sys.exit(0)\n")
    torch.save({"weight": torch.zeros(10, 64)}, tmp_path / "w.pt")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    run = subprocess.run([sys.executable, "-m", "neurokd", "convert", "--teacher", "quitter:make",
                          "--teacher-weights", str(tmp_path / "w.pt"), "--timesteps", "8", "--hardware", "loihi2", "--out", str(tmp_path / "c")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "exit" in run.stderr
    assert not (tmp_path / "c").exists()


def test_warnings_reach_the_user_as_one_line(capsys):
    import warnings

    from neurokd.cli.main import _one_line_warnings

    with _one_line_warnings():
        warnings.warn("first line\nsecond line", UserWarning)
        warnings.warn("first line\nsecond line", UserWarning)
        np.log(np.zeros(1))  # numpy's floating-point warning is not shown
    assert capsys.readouterr().err == "neurokd: warning: first line\n"
