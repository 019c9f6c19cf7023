import gzip

import numpy as np
import pytest
import torch

from neurokd.data import DATASETS, ENCODERS, encode_window, get_encoder, load_dataset
from neurokd.data.datasets import split_indices
from neurokd.data.idx import read_idx
from neurokd.errors import NeurokdError
from tests.conftest import write_idx


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_gives_seeded_disjoint_splits(name, mnist_dir, tmp_path):
    from tests.data.test_radioml_cli import _rml2016, _rml2018

    kwargs = {"data_dir": str(mnist_dir)} if name == "mnist" else {}
    if name.startswith("radioml"):  # small stand-ins for the user's files, in their formats
        (_rml2016 if name == "radioml2016" else _rml2018)(tmp_path / "rml")
        kwargs = {"data_dir": str(tmp_path / "rml")}
    a = load_dataset(name, seed=3, **kwargs)
    b = load_dataset(name, seed=3, **kwargs)
    c = load_dataset(name, seed=4, **kwargs)
    assert a.num_classes == {"sensing": 2, "modulation": 8, "symbols": 4, "radioml2016": 3,
                             "radioml2018": 24}.get(name, 10)
    for split in (a.train, a.val, a.test):
        assert split.x.dtype == np.float32 and split.x.shape[1:] == a.input_shape
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        assert split.y.dtype == np.int64
    assert np.array_equal(a.test.x, b.test.x) and np.array_equal(a.train.y, b.train.y)
    assert not np.array_equal(a.test.y, c.test.y)
    n = len(a.train) + len(a.val) + len(a.test)
    tr, va, te = split_indices(n, 0.15, 0.25, 3)
    assert len(set(tr) | set(va) | set(te)) == n


def test_digits_is_the_real_bundled_set():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797


def test_mnist_test_only_folder_is_split_and_says_so(mnist_dir):
    ds = load_dataset("mnist", data_dir=str(mnist_dir))
    assert ds.input_shape == (1, 28, 28)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 120
    assert any("only the test files" in note for note in ds.notes)


def test_mnist_train_and_test_files_keep_the_official_test_set(mnist_dir):
    rng = np.random.default_rng(1)
    write_idx(mnist_dir / "train-images-idx3-ubyte", rng.integers(0, 255, (50, 28, 28)), gz=False)
    write_idx(mnist_dir / "train-labels-idx1-ubyte", np.arange(50) % 10, gz=False)
    ds = load_dataset("mnist", data_dir=str(mnist_dir))
    assert len(ds.test) == 120 and len(ds.train) + len(ds.val) == 50
    assert ds.notes == []


def test_idx_round_trip_raw_and_gz(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", arr, gz=False)), arr)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-5], "truncated"),
    (lambda b: b"\x00\x00\x07\x03" + b[4:], "magic"),
    (lambda b: b"\x12\x34\x08\x03" + b[4:], "magic"),
    (lambda b: b + b"xx", "trailing"),
    (lambda b: b[:2], "too short"),
])
def test_idx_rejects_damaged_files(tmp_path, damage, message):
    good = write_idx(tmp_path / "good", np.ones((3, 4, 4)), gz=False).read_bytes()
    bad = tmp_path / "bad"
    bad.write_bytes(damage(good))
    with pytest.raises(NeurokdError, match=message):
        read_idx(bad)


def test_idx_rejects_truncated_gzip(tmp_path):
    data = gzip.compress(write_idx(tmp_path / "g", np.ones((30, 28, 28)), gz=False).read_bytes())
    bad = tmp_path / "bad.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(NeurokdError, match="gzip"):
        read_idx(bad)


def test_mnist_errors_name_the_problem(tmp_path, mnist_dir):
    with pytest.raises(NeurokdError, match="needs --data-dir"):
        load_dataset("mnist")
    with pytest.raises(NeurokdError, match="no such directory"):
        load_dataset("mnist", data_dir=str(tmp_path / "nope"))
    with pytest.raises(NeurokdError, match="no MNIST IDX files"):
        load_dataset("mnist", data_dir=str(tmp_path))
    (mnist_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NeurokdError, match="labels-idx1-ubyte.*missing"):
        load_dataset("mnist", data_dir=str(mnist_dir))
    with pytest.raises(NeurokdError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_gives_integer_frames_in_slayer_layout(name):
    enc = get_encoder(name)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    if enc.signed:
        x = 2 * x - 1
    frames = encode_window(x, enc, 6, 3, torch.Generator().manual_seed(0))
    assert frames.shape == (5, 1, 4, 4, 9)
    assert torch.equal(frames, frames.round())
    lo, hi = enc.input_range
    assert lo >= -max(1, (1 << enc.message_bits) - 1) and hi <= max(1, (1 << enc.message_bits) - 1)
    assert frames.min() >= lo and frames.max() <= hi
    assert (frames.min() < 0) == enc.signed  # only a signed encoder sends negative messages
    assert frames[..., 6:].abs().sum() == 0  # the padding is silent
    again = encode_window(x, enc, 6, 3, torch.Generator().manual_seed(0))
    assert torch.equal(frames, again)


def test_rate_code_tracks_intensity():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    frames = get_encoder("rate")(x, 4000, torch.Generator().manual_seed(1))
    rates = frames.mean(-1)[0]
    assert rates[0] == 0 and rates[2] == 1 and abs(float(rates[1]) - 0.25) < 0.03


def test_direct_code_quantizes_to_message_bits():
    enc = get_encoder("direct")
    levels = (1 << enc.message_bits) - 1
    frames = enc(torch.tensor([[0.0, 0.5, 1.0]]), 3)
    assert frames[0, :, 0].tolist() == [0.0, round(0.5 * levels), float(levels)]


def test_encoder_rejects_non_positive_time_steps():
    with pytest.raises(NeurokdError, match="timesteps"):
        get_encoder("rate")(torch.rand(1, 2), 0)
