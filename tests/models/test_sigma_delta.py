"""The sigma-delta family: its integer maths (batched kernel = step-by-step reference = Lava), the
mapping of a ReLU DNN onto it, conversion, export, verify and the refusals."""

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from neurokd.convert.sdnn import convert_sdnn, float_layers, input_levels
from neurokd.data.datasets import load_dataset
from neurokd.deploy.export import read_meta
from neurokd.deploy.lava_run import lava_input_frames, run_lava
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.models.sigma_delta.net import (FloatLayer, SigmaDeltaNet, as_stream, from_stream,
                                            map_relu_network, sdnn_from_checkpoint, sdnn_readout)
from neurokd.models.sigma_delta.netx import write_netx
from neurokd.models.sigma_delta.numerics import reference_run
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer
from neurokd.models.teachers import build_teacher
from neurokd.training import accuracy, identity, logits_of, make_prepare

from tests.conftest import run_cli

LOIHI2 = load_profile("loihi2")
SD = LOIHI2.sigma_delta


def _dense_net(seed=0, threshold=0.02):
    g = torch.Generator().manual_seed(seed)
    spec = ArchSpec(input_shape=[6], neuron="sdnn",
                    layers=[DenseLayer(units=5), DenseLayer(units=4), DenseLayer(units=3)])
    fl = [FloatLayer(torch.randn(5, 6, generator=g), torch.randn(5, generator=g) * 0.2, 3.0),
          FloatLayer(torch.randn(4, 5, generator=g), torch.randn(4, generator=g) * 0.2, 3.0),
          FloatLayer(torch.randn(3, 4, generator=g), torch.randn(3, generator=g) * 0.1, 5.0)]
    layers, sc = map_relu_network(fl, 127, LOIHI2, threshold=threshold, input_threshold=0.01)
    return SigmaDeltaNet(spec, LOIHI2, layers, sc["input_vth"], sc["out_scale"], 127, sc["input_shift"])


def _conv_net(seed=0, threshold=0.02):
    """A (1, k) convolution with stride and padding over a (2, 5, 6) frame, flatten, two dense."""
    g = torch.Generator().manual_seed(seed)
    spec = ArchSpec(input_shape=[2, 5, 6], neuron="sdnn",
                    layers=[ConvLayer(channels=3, kernel=[2, 3], stride=[1, 2], padding=[0, 1]),
                            FlattenLayer(), DenseLayer(units=7), DenseLayer(units=4)])
    fl = [FloatLayer(torch.randn(3, 2, 2, 3, generator=g) * 0.5, torch.randn(3, generator=g) * 0.2,
                     3.0, (1, 2), (0, 1)),
          FloatLayer(torch.randn(7, 36, generator=g) * 0.3, torch.randn(7, generator=g) * 0.2, 3.0,
                     flatten_before=True),
          FloatLayer(torch.randn(4, 7, generator=g) * 0.5, torch.randn(4, generator=g) * 0.1, 5.0)]
    layers, sc = map_relu_network(fl, 127, LOIHI2, threshold=threshold, input_threshold=0.01)
    return SigmaDeltaNet(spec, LOIHI2, layers, sc["input_vth"], sc["out_scale"], 127, sc["input_shift"])


def _stream(model, n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-127, 128, (n, *model.spec.input_shape), generator=g)
    frames = x.unsqueeze(-1).expand(*x.shape, model.timesteps).contiguous()
    return frames, as_stream(frames)


@pytest.mark.parametrize("make", [_dense_net, _conv_net])
@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_batched_kernel_equals_the_step_by_step_reference(make, threshold):
    model = make(threshold=threshold)
    _, stream = _stream(model)
    out = model(stream)[0].numpy()
    ref = reference_run(model.layers, stream[0].numpy(), model.input_vth, model.input_shift, SD.state_exp)
    assert out.shape == ref.shape and np.array_equal(out, ref)
    assert np.abs(out).max() > 0


def test_a_stream_cut_into_chunks_continues_exactly():
    model = _conv_net()
    _, stream = _stream(model, n=5)
    whole = model(stream)
    first, _, states = model.run(stream[..., :7])
    second, _, _ = model.run(stream[..., 7:], states=states)
    assert torch.equal(torch.cat([first, second], dim=-1), whole)


@pytest.mark.parametrize("make", [_dense_net, _conv_net])
def test_lava_computes_the_same_integers_on_a_stream(make, tmp_path):
    """Every output payload, every step, of samples that follow each other with no reset."""
    model = make()
    frames, stream = _stream(model, n=5)
    write_netx(model, tmp_path / "n.net", {"encoder": "signed8"})
    per_sample = from_stream(model.input_messages(stream), len(frames))
    res = run_lava(tmp_path / "n.net", lava_input_frames(per_sample.numpy(), model.spec.layers[0].type == "conv"),
                   SD.message_bits, backend="sim", progress=False, stream=True)
    mine = from_stream(model(stream), len(frames)).numpy()
    assert res.values.shape == mine.shape
    assert np.array_equal(res.values, mine)
    assert (mine[:, :, -1] != 0).any()


def test_the_mapping_computes_the_float_relu_network():
    """With no delta threshold, the integer network's logits are the float network's to within
    the 8-bit weight grid."""
    g = torch.Generator().manual_seed(3)
    w1, b1 = torch.randn(32, 10, generator=g) * 0.4, torch.randn(32, generator=g) * 0.1
    w2, b2 = torch.randn(5, 32, generator=g) * 0.3, torch.randn(5, generator=g) * 0.1
    x = torch.rand(200, 10, generator=g) * 2 - 1
    h = torch.relu(x @ w1.t() + b1)
    logits = h @ w2.t() + b2
    fl = [FloatLayer(w1, b1, float(h.max())), FloatLayer(w2, b2, float(logits.abs().max()))]
    layers, sc = map_relu_network(fl, 127, LOIHI2)
    model = SigmaDeltaNet(ArchSpec(input_shape=[10], neuron="sdnn",
                                   layers=[DenseLayer(units=32), DenseLayer(units=5)]),
                          LOIHI2, layers, sc["input_vth"], sc["out_scale"], 127, sc["input_shift"])
    frames = torch.round(x * 127).unsqueeze(-1).expand(200, 10, model.timesteps)
    got = sdnn_readout(model, frames)
    err = (got - logits).abs().max() / logits.abs().max()
    assert err < 0.03, float(err)
    assert (got.argmax(1) == logits.argmax(1)).float().mean() > 0.95


def test_thresholds_trade_messages_for_accuracy_and_are_integers_of_the_file():
    model_0, model_t = _dense_net(threshold=0.0), _dense_net(threshold=0.2)
    _, stream = _stream(model_0, n=20)
    events = [sum(int((m != 0).sum()) for m in m_.run(stream, record=True)[1]) for m_ in (model_0, model_t)]
    assert events[1] < events[0]
    assert all(layer.vth % (1 << SD.shift) == 0 for layer in model_t.layers)


def test_refusals_name_the_problem():
    with pytest.raises(NeurokdError, match="binary spikes"):
        input_levels("rate")
    model = _dense_net()
    with pytest.raises(NeurokdError, match="no sigma-delta"):
        SigmaDeltaNet(model.spec, load_profile("loihi1"), model.layers, 0, 1.0, 127, 6)
    relu_less = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with pytest.raises(NeurokdError, match="not followed by ReLU"):
        float_layers(relu_less, (4,), torch.rand(8, 4))
    cuba = ArchSpec(input_shape=[4], layers=[DenseLayer(units=2)], neuron="sdnn")
    from neurokd.models.cuba.net import SpikingNet
    with pytest.raises(NeurokdError, match="sdnn"):
        SpikingNet(cuba, LOIHI2)


def test_checkpoint_round_trip_and_file_checks(tmp_path):
    model = _conv_net()
    payload = {"arch": model.arch(), "state_dict": model.state_dict()}
    again = sdnn_from_checkpoint(payload)
    _, stream = _stream(model)
    assert torch.equal(again(stream), model(stream))
    with pytest.raises(NeurokdError, match="incomplete"):
        sdnn_from_checkpoint({"arch": {**model.arch(), "sdnn": {}}, "state_dict": model.state_dict()})
    wrong = dict(model.state_dict(), w1=torch.zeros(7, 5, dtype=torch.int64))
    with pytest.raises(NeurokdError, match="its spec needs"):
        sdnn_from_checkpoint({"arch": model.arch(), "state_dict": wrong})
    big = dict(model.state_dict(), w0=model.state_dict()["w0"] * 1000)
    with pytest.raises(NeurokdError, match="outside the chip"):
        sdnn_from_checkpoint({"arch": model.arch(), "state_dict": big})
    meta = {"encoder": "signed8", "timesteps": model.timesteps, "num_classes": 4}
    path = write_netx(model, tmp_path / "n.net", meta)
    assert read_meta(path)["family"] == "sdnn"
    with h5py.File(path, "r+") as h:
        bad = json.loads(h.attrs["neurokd"])
        bad["out_bias"] = bad["out_bias"][:2]
        h.attrs["neurokd"] = json.dumps(bad)
    with pytest.raises(NeurokdError, match="out_bias"):
        read_meta(path)


@pytest.fixture(scope="module")
def digits_mlp():
    torch.manual_seed(0)
    ds = load_dataset("digits")
    from neurokd.training import fit
    model = build_teacher("mlp", ds.input_shape, ds.num_classes, hidden=[64])
    fit(model, ds.train, ds.val, identity, logits_of, epochs=15, lr=3e-3, batch_size=64, patience=15,
        seed=0, desc="t", progress=False)
    return model.eval(), ds


def test_conversion_stays_within_half_a_point_of_the_teacher_on_digits(digits_mlp):
    teacher, ds = digits_mlp
    t_acc = accuracy(teacher, ds.test, identity, logits_of)
    model, metrics = convert_sdnn(teacher, ds, "direct8", LOIHI2)
    s_acc = accuracy(model, ds.test, make_prepare("direct8", model.timesteps, 0), sdnn_readout)
    assert t_acc > 0.9
    assert s_acc >= t_acc - 0.005, (t_acc, s_acc)
    assert metrics["timesteps"] == 3 and model.spec.family == "sdnn"


def test_convert_cli_writes_a_network_lava_runs_exactly(tmp_path):
    r = run_cli("train-teacher", "--dataset", "digits", "--epochs", "3", "--out", "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", "--teacher", "t/teacher.pt", "--neuron", "sdnn", "--out", "c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["neuron"] == "sdnn" and metrics["snn_accuracy"] > 0.8
    r = run_cli("verify", "--snn", "c/snn.pt", "--net", "c/network.net", "--samples", "30",
                "--metrics", "v.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["lava_payload_match"] == 1.0 and v["lava_samples_exact"] == 30
    r = run_cli("export", "--snn", "c/snn.pt", "--format", "nir", "--out", "x.nir", cwd=tmp_path)
    assert r.returncode != 0 and "NIR has no sigma-delta" in r.stderr
    assert not (tmp_path / "x.nir").exists()
    r = run_cli("convert", "--teacher", "t/teacher.pt", "--neuron", "sdnn", "--encoder", "rate",
                "--out", "bad", cwd=tmp_path)
    assert r.returncode != 0 and "binary spikes" in r.stderr and not (tmp_path / "bad").exists()
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--sparsity", "1", "--out", "bad",
                cwd=tmp_path)
    assert r.returncode != 0 and "go with --neuron sdnn" in r.stderr and not (tmp_path / "bad").exists()


def test_sparsity_fine_tuning_trades_messages_for_accuracy(digits_mlp):
    """The estimated synops per MAC falls as the sparsity weight rises, and so do the messages the
    converted network sends on a stream; with no weight, accuracy holds."""
    from neurokd.config import ConvertConfig
    from neurokd.convert.sdnn import sparsity_finetune
    from neurokd.metrics.activity import measured_synops
    from neurokd.models.sigma_delta.net import parallel_streams

    teacher, ds = digits_mlp
    out = {}
    for lam, target in ((0.0, None), (30.0, None), (0.0, 0.1)):
        c = ConvertConfig(epochs=3, sparsity=lam, target_rate=target, calibration=500)
        tuned_dnn, tuned = sparsity_finetune(teacher, ds, "direct8", c, seed=0)
        if lam or target:
            assert tuned["finetune_best_epoch"] == 3  # the last epoch is kept
        model, _ = convert_sdnn(tuned_dnn, ds, "direct8", LOIHI2)
        prepare = make_prepare("direct8", model.timesteps, 0)
        frames = prepare(torch.as_tensor(ds.test.x[:128]), torch.Generator())
        streams, n = parallel_streams(frames)
        hidden = measured_synops(model, streams)["layers"][1]["synops"] * len(streams) / n
        out[target or lam] = (tuned["estimated_synops_per_mac"], hidden,
                              accuracy(model, ds.test, prepare, sdnn_readout))
    assert out[30.0][0] < out[0.0][0] and out[30.0][1] < out[0.0][1]
    assert out[0.0][2] >= accuracy(teacher, ds.test, identity, logits_of) - 0.01
    # a target rate pushes the estimate down towards it (from above: only the excess is charged)
    assert out[0.1][0] < out[0.0][0] and out[0.1][1] < out[0.0][1]


def test_the_sparsity_loss_charges_only_the_excess_over_a_target_rate():
    from neurokd.config import ConvertConfig
    from neurokd.convert.sdnn import TARGET_WEIGHT, sparsity_loss

    s = torch.tensor([0.05, 0.5])
    plain = ConvertConfig(sparsity=2.0)
    assert torch.allclose(sparsity_loss(plain, s), torch.tensor([0.1, 1.0]))
    target = ConvertConfig(target_rate=0.2)
    assert torch.allclose(sparsity_loss(target, s), torch.tensor([0.0, 0.3 * TARGET_WEIGHT]))
    weighted = ConvertConfig(target_rate=0.2, sparsity=4.0)
    assert torch.allclose(sparsity_loss(weighted, s), torch.tensor([0.0, 1.2]))


def test_sigma_delta_students_train_and_distill_from_the_command_line(tmp_path):
    """train-snn and distill --method kd with --neuron sdnn: a ReLU student trained on the 8-bit
    grid, mapped onto the chip, exact in Lava; other distillation methods are refused."""
    r = run_cli("train-teacher", "--dataset", "digits", "--epochs", "3", "--out", "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("train-snn", "--dataset", "digits", "--neuron", "sdnn", "--encoder", "direct8",
                "--epochs", "4", "--out", "s", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["snn_accuracy"] > 0.8
    r = run_cli("distill", "--teacher", "t/teacher.pt", "--method", "kd", "--neuron", "sdnn",
                "--encoder", "direct8", "--epochs", "4", "--out", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("verify", "--snn", "d/snn.pt", "--net", "d/network.net", "--samples", "20",
                "--metrics", "v.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "v.json").read_text())["lava_payload_match"] == 1.0
    r = run_cli("distill", "--teacher", "t/teacher.pt", "--neuron", "sdnn", "--encoder", "direct8",
                "--out", "bad", cwd=tmp_path)
    assert r.returncode != 0 and "kd only" in r.stderr and not (tmp_path / "bad").exists()
    r = run_cli("quantize", "--snn", "s/snn.pt", "--out", "bad", cwd=tmp_path)
    assert r.returncode != 0 and "train on the 8-bit grid in convert or train-snn" in r.stderr
    assert not (tmp_path / "bad").exists()
    r = run_cli("train-snn", "--dataset", "digits", "--target-rate", "0.2", "--out", "bad",
                cwd=tmp_path)
    assert r.returncode != 0 and "sigma-delta students only" in r.stderr
    assert not (tmp_path / "bad").exists()
