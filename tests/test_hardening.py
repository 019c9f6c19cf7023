"""Hostile and careless input: checkpoints that run code, decompression bombs, bad metadata, outputs
that would destroy data. Each case gets one clear error (exit 2) and leaves nothing behind."""

import gzip
import struct
import tracemalloc
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.cli import main
from neurokd.config import build_config
from neurokd.data.idx import read_idx
from neurokd.errors import NeurokdError
from neurokd.models.checkpoint import load_checkpoint
from tests.conftest import write_idx


# ---------------------------------------------------------------- checkpoints that run code
class _Evil(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` creates (or overwrites) a file when loaded."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0]
        written = torch.from_file(state[0], True, 64)
        self.training = state[1] and written.numel() > 0

    def forward(self, x):
        return x


def hostile_checkpoint(folder: Path, target: Path) -> Path:
    path = folder / "hostile.pt"
    torch.jit.save(torch.jit.script(_Evil(str(target))), str(path))
    return path


@pytest.mark.skipif(tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 6),
                    reason="torch 2.6 closed the weights_only bypass")
def test_the_hostile_checkpoint_really_writes_files_through_plain_torch_load(tmp_path):
    """Proves the archive below is a working exploit of this torch, so refusing it means something."""
    target = tmp_path / "written-by-torch"
    path = hostile_checkpoint(tmp_path, target)
    with pytest.warns(UserWarning):
        torch.load(path, weights_only=True)
    assert target.is_file() and target.stat().st_size == 256


def test_load_checkpoint_refuses_a_torchscript_archive_and_writes_nothing(tmp_path):
    target = tmp_path / "written"
    path = hostile_checkpoint(tmp_path, target)
    with pytest.raises(NeurokdError, match="refused: the archive holds TorchScript code"):
        load_checkpoint(path)
    assert not target.exists()


@pytest.fixture(scope="module")
def snn_files(tmp_path_factory):
    """An (untrained) digits SNN checkpoint, its teacher-shaped twin and its netx network."""
    from neurokd.models.cuba.net import SpikingNet
    from neurokd.hardware import load_profile

    folder = tmp_path_factory.mktemp("snn")
    cfg = build_config(overrides=["student.hidden=16", "student.timesteps=4", "lava.samples=4"])
    ds = pipeline.load_data(cfg)
    torch.manual_seed(0)
    snn = SpikingNet(pipeline.student_spec(cfg, ds), load_profile("loihi2"))
    pipeline.save_snn(folder / "snn.pt", snn, cfg, ds)
    pipeline.export_snn(snn, folder / "network.net", pipeline.snn_meta(cfg, ds))
    return folder


HOSTILE_ENTRY_POINTS = [
    ["export", "--snn", "{evil}", "--out", "{tmp}/x.net"],
    ["verify", "--snn", "{evil}", "--samples", "2"],
    ["quantize", "--snn", "{evil}", "--out", "{tmp}/q"],
    ["quantize", "--snn", "{snn}", "--kd-from", "{evil}", "--out", "{tmp}/q"],
    ["convert", "--teacher", "{evil}", "-T", "4", "--out", "{tmp}/c"],
    ["distill", "--teacher", "{evil}", "--out", "{tmp}/d"],
    ["distill", "--teacher", "{evil}", "--method", "ensemble", "--set",
     "distill.ensemble=[{evil}]", "--out", "{tmp}/d"],
]


@pytest.mark.parametrize("argv", HOSTILE_ENTRY_POINTS, ids=lambda a: " ".join(a[:3]))
def test_every_option_that_reads_a_checkpoint_refuses_the_hostile_one(argv, tmp_path, snn_files, capsys):
    target = tmp_path / "written"
    evil = hostile_checkpoint(tmp_path, target)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(evil=evil, tmp=tmp_path, snn=snn_files / "snn.pt") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "TorchScript" in err and "Traceback" not in err
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _rezip(src: Path, dst: Path, compress: int = zipfile.ZIP_STORED, extra: str = "") -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compress) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        if extra:
            root = zin.infolist()[0].filename.split("/")[0]
            zout.writestr(f"{root}/{extra}", b"x")
    return dst


def test_archives_other_than_plain_tensors_are_refused(tmp_path, snn_files):
    good = snn_files / "snn.pt"
    assert load_checkpoint(_rezip(good, tmp_path / "same.pt"))["kind"] == "snn"  # the check is exact
    cases = [
        (_rezip(good, tmp_path / "deflated.pt", zipfile.ZIP_DEFLATED), "compressed entry"),
        (_rezip(good, tmp_path / "extra.pt", extra="other.pkl"), "unexpected entry"),
        (_rezip(good, tmp_path / "code.pt", extra="code/__torch__.py"), "TorchScript"),
    ]
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    cases.append((legacy, "not a torch zip archive"))
    for path, message in cases:
        with pytest.raises(NeurokdError, match=message):
            load_checkpoint(path)


def test_checkpoint_fields_of_the_wrong_type_are_one_line_errors(tmp_path, snn_files, capsys):
    payload = torch.load(snn_files / "snn.pt", weights_only=True)
    cases = [
        (dict(payload, arch=[1, 2]), "'arch' is missing or not a mapping"),
        (dict(payload, meta=dict(payload["meta"], config={"teacher": {"colour": 1}})),
         "configuration in the metadata: teacher.colour: unknown key"),
        (dict(payload, meta=dict(payload["meta"], config={"data": {"dataset": "cifar"}})),
         "unknown dataset 'cifar'"),
        (dict(payload, meta={k: v for k, v in payload["meta"].items() if k != "config"}),
         "lacks 'config'"),
        (dict(payload, state_dict={"blocks.0.synapse.weight": "not a tensor"}), "not a named tensor"),
        (dict(payload, arch=dict(payload["arch"], spec={"input_shape": [1, 8, 8], "layers": "x"})),
         "spec"),
    ]
    for i, (bad, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.pt"
        torch.save(bad, path)
        assert main(["export", "--snn", str(path), "--out", str(tmp_path / "x.net")]) == 2, message
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, (message, err)
        assert not (tmp_path / "x.net").exists()


# ---------------------------------------------------------------- IDX files
def _gz_with_header(path: Path, dims, body: bytes) -> Path:
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    path.write_bytes(gzip.compress(header + body))
    return path


def test_idx_decompression_bomb_is_refused_from_its_header(tmp_path):
    # 2.3 MB of gzip that claims 10^9 images: refused before decompressing anything.
    bomb = tmp_path / "bomb-images-idx3-ubyte.gz"
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 10**9, 28, 28)
    rng = np.random.default_rng(0)
    bomb.write_bytes(gzip.compress(header + rng.integers(0, 255, 2_300_000, dtype=np.uint8).tobytes(),
                                   compresslevel=1))
    assert bomb.stat().st_size > 2_000_000
    tracemalloc.start()
    with pytest.raises(NeurokdError, match="refused"):
        read_idx(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000


def test_idx_sizes_the_gzip_cannot_back_are_refused(tmp_path):
    # 60000 images claimed, 1 KB of highly compressible data given: more than deflate can expand.
    tiny = _gz_with_header(tmp_path / "a.gz", (60000, 28, 28), bytes(1000))
    with pytest.raises(NeurokdError, match="gzip"):
        read_idx(tiny)
    # A plausible claim that the gzip's own size field contradicts.
    short = _gz_with_header(tmp_path / "b.gz", (10, 28, 28), bytes(28 * 28 * 9))
    with pytest.raises(NeurokdError, match="gzip data is"):
        read_idx(short)
    # Header dimensions whose product overflows 64 bits.
    huge = _gz_with_header(tmp_path / "c.gz", (2**32 - 1,) * 3, b"")
    with pytest.raises(NeurokdError, match="refused"):
        read_idx(huge)


def _mnist(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> Path:
    folder.mkdir(exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.mark.parametrize("case, message", [
    ("labels", "labels must be integers 0..9"),
    ("sizes", "both sets must have one image size"),
    ("empty", "holds no samples"),
])
def test_idx_content_errors_are_user_errors(tmp_path, case, message, capsys):
    folder = tmp_path / "m"
    rng = np.random.default_rng(0)
    if case == "labels":
        _mnist(folder, rng.integers(0, 255, (40, 28, 28)), np.arange(40) % 12)
    elif case == "sizes":
        _mnist(folder, rng.integers(0, 255, (40, 28, 28)), np.arange(40) % 10)
        _mnist(folder, rng.integers(0, 255, (40, 20, 20)), np.arange(40) % 10, prefix="train")
    else:
        _mnist(folder, np.zeros((0, 28, 28)), np.zeros(0))
    assert main(["train-snn", "--dataset", "mnist", "--data-dir", str(folder),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---------------------------------------------------------------- netx files
def _tamper(src: Path, dst: Path, edit) -> Path:
    import h5py

    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as h:
        edit(h)
    return dst


def _set(h, path, data):
    del h[path]
    h[path] = data


@pytest.mark.parametrize("edit, message", [
    (lambda h: _set(h, "layer/0/type", np.array([b"lstm"], dtype="S10")), "unknown type 'lstm'"),
    (lambda h: _set(h, "layer/0/shape", np.array([-16])), "shapes must be positive"),
    (lambda h: _set(h, "layer/0/shape", np.array([0])), "shapes must be positive"),
    (lambda h: _set(h, "layer/1/shape", np.array([11])), "metadata spec says [10]"),
    (lambda h: h.move("layer/1", "layer/7"), "not numbered"),
])
def test_malformed_netx_layers_are_refused(tmp_path, snn_files, edit, message, capsys):
    bad = _tamper(snn_files / "network.net", tmp_path / "bad.net", edit)
    assert main(["run-lava", "--net", str(bad), "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err, err


# ---------------------------------------------------------------- configuration limits
@pytest.mark.parametrize("override, message", [
    ("teacher.lr=.inf", "finite number"),
    ("student.lr=.nan", "finite number"),
    ("teacher.epochs=true", "expected a number, got true"),
    ("seed=4294967296", "less than or equal to 4294967295"),
    ("student.timesteps=1000000", "less than or equal to 100000"),
])
def test_config_values_that_would_train_nonsense_are_refused(override, message):
    with pytest.raises(NeurokdError, match=message):
        build_config(overrides=[override])


def test_sizes_that_cannot_fit_in_memory_are_refused_before_training(tmp_path, capsys):
    assert main(["train-snn", "--set", "student.hidden=20000000", "--out", str(tmp_path / "r")]) == 2
    assert "GiB is available" in capsys.readouterr().err
    assert main(["demo", "-T", "90000", "--out", str(tmp_path / "r")]) == 2
    assert "the lava stage needs" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_without_a_chip_refuses_the_loihi2_backend_before_training(tmp_path, capsys):
    from neurokd.deploy.lava_run import loihi2_available

    if loihi2_available():
        pytest.skip("a Loihi 2 system is reachable here")
    assert main(["demo", "--backend", "loihi2", "--out", str(tmp_path / "r")]) == 2
    assert "no Loihi 2 system is reachable" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- outputs never destroy data
def test_export_never_overwrites_an_input_or_a_foreign_file(tmp_path, snn_files, capsys):
    snn = tmp_path / "s.pt"
    snn.write_bytes((snn_files / "snn.pt").read_bytes())
    original = snn.read_bytes()
    assert main(["export", "--snn", str(snn), "--out", str(snn), "--force"]) == 2
    assert "an input is never an output" in capsys.readouterr().err
    assert snn.read_bytes() == original
    foreign = tmp_path / "notes.net"
    foreign.write_text("mine")
    assert main(["export", "--snn", str(snn), "--out", str(foreign)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["export", "--snn", str(snn), "--out", str(foreign), "--force"]) == 2
    assert "not written by neurokd" in capsys.readouterr().err
    assert foreign.read_text() == "mine"
    net = tmp_path / "n.net"
    assert main(["export", "--snn", str(snn), "--out", str(net)]) == 0
    assert main(["export", "--snn", str(snn), "--out", str(net), "--force"]) == 0  # its own output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.net", "notes.net", "s.pt"]


def test_metrics_of_run_lava_and_verify_never_overwrite_inputs(tmp_path, snn_files, capsys):
    net = tmp_path / "n.net"
    net.write_bytes((snn_files / "network.net").read_bytes())
    original = net.read_bytes()
    assert main(["run-lava", "--net", str(net), "--metrics", str(net), "--force"]) == 2
    assert "an input is never an output" in capsys.readouterr().err
    assert main(["verify", "--snn", str(snn_files / "snn.pt"), "--net", str(net),
                 "--metrics", str(snn_files / "snn.pt"), "--force"]) == 2
    assert "an input is never an output" in capsys.readouterr().err
    assert net.read_bytes() == original


@pytest.mark.parametrize("out", [".", "..", ""])
def test_run_commands_refuse_the_working_directory_and_its_parents(tmp_path, monkeypatch, out, capsys):
    from neurokd.fileio import RUN_MARKER

    (tmp_path / RUN_MARKER).write_text("{}")
    (tmp_path / "keep.txt").write_text("k")
    monkeypatch.chdir(tmp_path)
    assert main(["train-snn", "--out", out, "--force"]) == 2
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "k"


def test_a_spec_inside_the_output_is_never_replaced(tmp_path, capsys):
    from neurokd.fileio import RUN_MARKER

    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_MARKER).write_text("{}")
    spec = run / "spec.yaml"
    spec.write_text("input_shape: [1, 8, 8]\nlayers:\n  - {type: dense, units: 10}\n")
    assert main(["train-snn", "--spec", str(spec), "--out", str(run), "--force"]) == 2
    assert "an input is never an output" in capsys.readouterr().err
    assert spec.is_file()
