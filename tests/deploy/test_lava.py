"""Exported networks run in Lava's bit-accurate simulator exactly as in PyTorch."""

import h5py
import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.deploy.export import read_meta
from neurokd.errors import NeurokdError

pytestmark = pytest.mark.lava

CONV_SPEC = """
input_shape: [1, 8, 8]
layers:
  - {type: conv, channels: 6, kernel: 3, stride: 2, padding: 1}
  - {type: flatten}
  - {type: dense, units: 24}
  - {type: dense, units: 10}
"""


def _trained(tmp_path, *overrides):
    cfg = build_config(overrides=["data.limit=400", "student.epochs=3", "student.hidden=32",
                                  "student.timesteps=8", *overrides])
    ds = pipeline.load_data(cfg)
    model, _ = pipeline.train_snn(cfg, ds, progress=False)
    meta = pipeline.snn_meta(cfg, ds)
    net = pipeline.export_snn(model, tmp_path / "net.net", meta, ds)
    return model, ds, net


def _assert_exact(result, samples):
    assert result["backend"] == "sim"
    assert result["lava_samples"] == samples
    assert result["lava_spike_match"] == 1.0
    assert result["lava_samples_exact"] == samples
    assert result["lava_prediction_agreement"] == 1.0
    assert result["_torch_spikes"].sum() > 0  # the comparison is over real activity


def test_dense_rate_network_matches_spike_for_spike_over_many_samples(tmp_path):
    model, ds, net = _trained(tmp_path)
    res = pipeline.verify(model, net, ds, read_meta(net), 60, "sim", progress=False)
    _assert_exact(res, 60)
    # every sample starts from a reset state: the first L output steps are silent in Lava too
    assert res["_lava_spikes"][:, :, : model.window_pad].sum() == 0


def test_conv_direct_network_matches_spike_for_spike(tmp_path):
    spec = tmp_path / "conv.yaml"
    spec.write_text(CONV_SPEC)
    model, ds, net = _trained(tmp_path, f"student.spec={spec}", "student.encoder=direct")
    res = pipeline.verify(model, net, ds, read_meta(net), 40, "sim", progress=False)
    _assert_exact(res, 40)


def test_deeper_network_resets_align(tmp_path):
    spec = tmp_path / "deep.yaml"
    spec.write_text("input_shape: [1, 8, 8]\nlayers:\n  - {type: dense, units: 32}\n"
                    "  - {type: dense, units: 24}\n  - {type: dense, units: 16}\n"
                    "  - {type: dense, units: 10}\n")
    model, ds, net = _trained(tmp_path, f"student.spec={spec}")
    assert model.window_pad == 4
    _assert_exact(pipeline.verify(model, net, ds, read_meta(net), 30, "sim", progress=False), 30)


def test_verify_detects_a_network_that_differs(tmp_path):
    model, ds, net = _trained(tmp_path)
    with torch.no_grad():
        w = model.blocks[1].synapse.weight
        w.add_(torch.sign(w) * 0.25)  # change the PyTorch side only
    res = pipeline.verify(model, net, ds, read_meta(net), 30, "sim", progress=False)
    assert res["lava_spike_match"] < 1.0


def test_lava_accuracy_equals_pytorch_on_the_same_samples(tmp_path):
    model, ds, net = _trained(tmp_path)
    res = pipeline.verify(model, net, ds, read_meta(net), 50, "sim", progress=False)
    assert res["lava_accuracy"] == res["snn_accuracy_on_lava_samples"]
    labels = ds.test.y[:50]
    assert res["lava_accuracy"] == float((res["_lava_spikes"].sum(-1).argmax(1) == labels).mean())


def test_files_that_are_not_netx_networks(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h:
        h.create_dataset("x", data=np.zeros(3))
    with pytest.raises(NeurokdError, match="not a netx network"):
        read_meta(plain)
    text = tmp_path / "text.net"
    text.write_text("hello")
    with pytest.raises(NeurokdError, match="not an HDF5 file"):
        read_meta(text)
    with pytest.raises(NeurokdError, match="no such network file"):
        read_meta(tmp_path / "missing.net")


def test_exported_integers_fit_the_loihi2_profile(tmp_path):
    from neurokd.deploy.export import check_integers
    from neurokd.hardware import load_profile

    model, ds, net = _trained(tmp_path)
    profile = load_profile("loihi2")
    with h5py.File(net, "r") as h:
        w = h["layer"]["0"]["weight"][()]
        assert np.array_equal(w, np.round(w)) and w.min() >= -256 and w.max() <= 254
        assert h["layer"]["0"]["neuron"]["vThMant"][()] == round(1.25 * 64)
    check_integers(net, profile)
    strict = profile.model_copy(update={"threshold_mantissa_bits": 4})
    with pytest.raises(NeurokdError, match="threshold mantissa 80 does not fit 4 bits"):
        check_integers(net, strict)


def test_unknown_backend_and_missing_chip():
    from neurokd.deploy.lava_run import resolve_backend

    with pytest.raises(NeurokdError, match="unknown backend"):
        resolve_backend("gpu")
    assert resolve_backend("sim") == "sim"
    assert resolve_backend("auto") in ("sim", "loihi2")


def _iq_like_data(n=48, length=32, seed=0):
    """Random non-negative (C, 1, L) frames: the layout of the radio datasets' I/Q split."""
    from neurokd.data.datasets import Dataset, Split

    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, 1, length)).astype(np.float32)
    y = (np.arange(n) % 5).astype(np.int64)
    split = Split(x, y)
    return Dataset("iq", split, split, split, 5, (4, 1, length))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "quantized"])
def test_one_by_k_convolutions_over_time_match_spike_for_spike(tmp_path, quantized):
    """Non-square kernels and strides, (1, k) along the time axis of (4, 1, L) frames."""
    from neurokd.hardware import load_profile
    from neurokd.models.cuba.net import SpikingNet
    from neurokd.models.spec import spec_from_dict
    from neurokd.models.cuba.quantized import QuantSpikingNet

    spec = spec_from_dict({"input_shape": [4, 1, 32], "layers": [
        {"type": "conv", "channels": 6, "kernel": [1, 7], "stride": [1, 2], "padding": [0, 3]},
        {"type": "conv", "channels": 8, "kernel": [1, 5], "stride": [1, 2]},
        {"type": "flatten"}, {"type": "dense", "units": 5}]})
    assert spec.shapes()[:2] == [(6, 1, 16), (8, 1, 6)]
    torch.manual_seed(0)
    model = SpikingNet(spec, load_profile("loihi2"))
    with torch.no_grad():
        for block in model.blocks:
            if hasattr(block, "synapse"):
                block.synapse.weight.mul_(4.0)  # enough activity to compare
    if quantized:
        model = QuantSpikingNet.from_snn(model, [8, 6, 8])
    model.eval()
    ds = _iq_like_data()
    cfg = build_config(overrides=["student.encoder=direct", "student.timesteps=8"])
    meta = pipeline.snn_meta(cfg, ds)
    net = pipeline.export_snn(model, tmp_path / "iq.net", meta)
    res = pipeline.verify(model, net, ds, read_meta(net), 24, "sim", progress=False)
    _assert_exact(res, 24)
