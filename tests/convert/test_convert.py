"""DNN → quantized SNN conversion: parsing, BatchNorm folding, biases in Lava, rate tracking."""

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.deploy.export import export_netx
from neurokd.deploy.lava_run import lava_input_frames, run_lava
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer
from neurokd.models.teachers import build_teacher
from neurokd.convert.dnn import (IF_NEURON, convert_dnn, dnn_stages, if_count_rate, stages_spec,
                                   stage_activations)
from neurokd.models.cuba.quantized import QuantSpikingNet

from tests.conftest import run_cli

LOIHI2 = load_profile("loihi2")


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.2)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))
    return model.eval()


@pytest.mark.parametrize("image", [(1, 8, 8), (2, 7, 9)])
def test_folding_batchnorm_and_rewriting_pooling_keep_outputs_equal(image):
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_teacher("cnn_bn", image, 5, hidden=[4, 6]))
    stages = dnn_stages(model, image)
    kinds = [s.kind for s in stages]
    # Pooling merges into the next layer when the map divides by its kernel, else stays a layer.
    assert ("pool" in kinds) == bool(image[1] % 2 or image[2] % 2), kinds
    assert stages[0].sources[:3] == ["conv1", "bn1", "relu1"]
    x = torch.rand(16, *image)
    with torch.no_grad():
        assert torch.allclose(stage_activations(stages, x)[-1], model(x), atol=1e-5)


def test_one_by_k_convolutions_and_pools_over_time_convert_exactly():
    """I/Q frames are (C, 1, L): kernels, strides and pools of shape (1, k) along time."""
    torch.manual_seed(2)
    model = _randomise_batchnorm(nn.Sequential(
        nn.Conv2d(4, 6, (1, 7), stride=(1, 2), padding=(0, 3)), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AvgPool2d((1, 2)), nn.Conv2d(6, 8, (1, 5)), nn.ReLU(), nn.AvgPool2d((1, 3)),
        nn.Flatten(), nn.Linear(8, 5)))
    stages = dnn_stages(model, (4, 1, 32))
    assert [s.kind for s in stages] == ["conv", "conv", "pool", "flatten", "dense"]
    assert stages[1].stride == (1, 2) and tuple(stages[1].weight.shape[-2:]) == (1, 10)
    x = torch.rand(16, 4, 1, 32)
    with torch.no_grad():
        assert torch.allclose(stage_activations(stages, x)[-1], model(x), atol=1e-5)
    spec = stages_spec(stages, (4, 1, 32))
    assert spec.layers[0].kernel == [1, 7] and spec.layers[0].stride == [1, 2]
    assert spec.shapes()[:3] == [(6, 1, 16), (8, 1, 4), (8, 1, 1)]


@pytest.mark.parametrize("name", ["cnn1d", "cnn1d_deep"])
def test_the_i_q_teachers_convert_layer_for_layer(name):
    torch.manual_seed(3)
    shape = (2, 1, 64)
    model = _randomise_batchnorm(build_teacher(name, shape, 5))
    stages = dnn_stages(model, shape)
    x = torch.rand(8, *shape) * 2 - 1  # signed I/Q
    with torch.no_grad():
        assert torch.allclose(stage_activations(stages, x)[-1], model(x), atol=1e-4)
    spec = stages_spec(stages, shape)
    assert spec.num_spiking_layers == (4 if name == "cnn1d" else 6)


def test_mlp_with_batchnorm1d_and_dropout_folds_exactly():
    torch.manual_seed(1)
    model = _randomise_batchnorm(nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(64, 20), bn1=nn.BatchNorm1d(20), relu1=nn.ReLU(),
        drop=nn.Dropout(0.3), head=nn.Linear(20, 10))))
    stages = dnn_stages(model, (1, 8, 8))
    assert [s.kind for s in stages] == ["dense", "dense"]
    assert stages[0].sources == ["fc1", "bn1", "relu1"]
    x = torch.rand(8, 1, 8, 8)
    assert torch.allclose(stage_activations(stages, x)[-1], model(x), atol=1e-5)


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10)),
     "layer '2' (MaxPool2d) cannot be converted"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)),
     "layer '2' (Tanh) cannot be converted"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Linear(16, 10)),
     "layer '1' is not followed by ReLU"),
    (nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 10)),
     "BatchNorm must directly follow a Linear or Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10)),
     "grouped or dilated Conv2d cannot be converted"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU()), None),
])
def test_unsupported_layers_are_refused_by_name(model, message):
    if message is None:  # a ReLU on the logits is allowed: spike counts are non-negative anyway
        assert dnn_stages(model, (1, 8, 8))[-1].relu
        return
    with pytest.raises(NeurokdError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dnn_stages(model, (1, 8, 8))


def test_a_model_without_layer_order_is_refused():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(NeurokdError, match="needs an nn.Sequential DNN"):
        dnn_stages(Custom(), (1, 8, 8))


def test_if_count_rate_is_the_reset_to_zero_spike_count():
    """Against a direct simulation of an integer IF neuron with reset to zero."""
    vth, T = 100, 16
    for c in [0, 7, 33, 50, 51, 99, 100, 101, 250]:
        v, count = 0, 0
        for _ in range(T):
            v += c
            if v >= vth:  # the chip fires above vth − 1: at vth, for integer voltages
                count, v = count + 1, 0
        assert float(if_count_rate(torch.tensor(c / vth), T)) == count / T, c


def _biased_net(conv: bool, seed: int = 0) -> QuantSpikingNet:
    if conv:
        spec = ArchSpec(input_shape=[1, 6, 6], layers=[
            ConvLayer(channels=4, kernel=3, padding=1), ConvLayer(channels=4, kernel=2, stride=2),
            FlattenLayer(), DenseLayer(units=5)], neuron=IF_NEURON)
    else:
        spec = ArchSpec(input_shape=[20], layers=[DenseLayer(units=16), DenseLayer(units=12),
                                                  DenseLayer(units=5)], neuron=IF_NEURON)
    torch.manual_seed(seed)
    q = QuantSpikingNet(spec, LOIHI2, [8] * spec.num_spiking_layers, "fixed", bias=True)
    with torch.no_grad():
        for w, b, qz in zip(q.weights, q.biases, q.quantizers):
            w.normal_(0, 0.4)
            b.uniform_(-0.3, 0.5)
            qz.step.fill_(float(w.abs().max()) / 127)
    return q.eval()


def _window(q: QuantSpikingNet, n: int = 12, T: int = 10) -> torch.Tensor:
    x = torch.randint(0, 16, (n, *q.spec.input_shape), generator=torch.Generator().manual_seed(1))
    frames = x.float().unsqueeze(-1).expand(*x.shape, T)
    return torch.cat([frames, torch.zeros(*x.shape, q.window_pad)], -1)


def test_zero_biases_compute_what_the_unbiased_network_computes():
    q = _biased_net(conv=True)
    plain = QuantSpikingNet(q.spec, LOIHI2, q.bits, "fixed").eval()
    plain.load_state_dict({k: v for k, v in q.state_dict().items()
                           if not k.startswith(("biases", "threshold_offset"))})
    with torch.no_grad():
        for b in q.biases:
            b.zero_()
    x = _window(q)
    out = q(x)
    assert out.sum() > 0 and torch.equal(out, plain(x))


@pytest.mark.lava
@pytest.mark.parametrize("conv", [False, True], ids=["dense", "conv"])
def test_biased_integer_network_matches_lava_spike_for_spike(tmp_path, conv):
    q = _biased_net(conv)
    x = _window(q, n=16)
    ints = q.export_integers()
    assert all(int(layer["bias"].abs().max()) > 0 for layer in ints)
    net = export_netx(q.to_slayer(), tmp_path / "b.net", {"encoder": "direct", "timesteps": 10,
                                                          "num_classes": 5})
    lava = run_lava(net, lava_input_frames(x.numpy(), conv), 4, "sim", progress=False).spikes
    with torch.no_grad():
        ours = q(x).numpy()
    assert ours.sum() > 0 and np.array_equal(ours, lava)


@pytest.fixture(scope="module")
def digits_teacher():
    cfg = build_config(overrides=["teacher.model=cnn_bn", "teacher.hidden=[8, 16]",
                                  "teacher.epochs=12"])
    ds = pipeline.load_data(cfg)
    teacher, m = pipeline.train_teacher(cfg, ds, progress=False)
    return ds, teacher, m["teacher_accuracy"]


def test_converted_rates_track_the_dnn_layer_by_layer(digits_teacher):
    ds, teacher, teacher_acc = digits_teacher
    c = build_config(overrides=["convert.method=plain"]).convert
    snn, m = convert_dnn(teacher, ds, 48, c, LOIHI2, progress=False)
    assert [row["kind"] for row in m["layers"]] == ["conv", "conv", "dense"]
    for row in m["layers"]:
        assert row["correlation"] > 0.9, m["layers"]
        assert row["mean_rate"] > 0.01
    assert m["snn_accuracy"] > 0.85, (m["snn_accuracy"], teacher_acc)  # chance is 0.1
    assert m["teacher_accuracy"] == teacher_acc


def test_quantization_through_distillation_beats_plain_conversion_at_few_steps(digits_teacher):
    ds, teacher, _ = digits_teacher
    acc = {}
    for method in ("plain", "qkd"):
        c = build_config(overrides=[f"convert.method={method}", "convert.epochs=3"]).convert
        acc[method] = convert_dnn(teacher, ds, 6, c, LOIHI2, progress=False)[1]["snn_accuracy"]
    assert acc["qkd"] > acc["plain"] + 0.05, acc


def test_conversion_refuses_bad_settings(digits_teacher):
    ds, teacher, _ = digits_teacher
    c = build_config().convert
    with pytest.raises(NeurokdError, match="timesteps must be positive"):
        convert_dnn(teacher, ds, 0, c, LOIHI2, progress=False)
    with pytest.raises(NeurokdError, match="sends binary spikes"):
        convert_dnn(teacher, ds, 8, c, LOIHI2, encoder="rate", progress=False)
    with pytest.raises(NeurokdError, match="9-bit weights are not allowed"):
        convert_dnn(teacher, ds, 8, c.model_copy(update={"bits": 9}), LOIHI2, progress=False)



@pytest.mark.lava
def test_convert_cli_then_verify_and_bad_input(tmp_path):
    r = run_cli("train-teacher", "--out", "t", "--teacher-model", "cnn_bn", "--set", "data.limit=500",
             "--set", "teacher.hidden=[4, 8]", "--set", "teacher.epochs=6", "--no-progress",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--epochs", "1", "--out", "c",
             "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("snn.pt", "network.net", "metrics.json", "rate_tracking.png", "config.yaml"):
        assert (tmp_path / "c" / name).is_file(), name
    r = run_cli("verify", "--snn", "c/snn.pt", "--net", "c/network.net", "--samples", "20", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0
    # Bad input: one line, exit 2, nothing written.
    bad = [(["-T", "0"], "--timesteps must be positive"),
           (["--set", "convert.percentile=0"], "convert.percentile"),
           (["--hardware", "nochip"], "unknown hardware profile")]
    for extra, message in bad:
        r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "4", "--out", "bad", *extra,
                 cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()
    r = run_cli("convert", "--teacher", "c/snn.pt", "-T", "4", "--out", "bad", cwd=tmp_path)
    assert r.returncode == 2 and "expected a teacher checkpoint" in r.stderr, r.stderr
    payload = torch.load(tmp_path / "t" / "teacher.pt", weights_only=True)
    payload["arch"]["model"] = "transformer"
    torch.save(payload, tmp_path / "odd.pt")
    r = run_cli("convert", "--teacher", "odd.pt", "-T", "4", "--out", "bad", cwd=tmp_path)
    assert r.returncode == 2 and "unknown teacher model 'transformer'" in r.stderr, r.stderr


def test_same_seed_same_converted_network(digits_teacher):
    ds, teacher, _ = digits_teacher
    c = build_config(overrides=["convert.epochs=1"]).convert
    a = convert_dnn(teacher, ds, 4, c, LOIHI2, seed=3, progress=False)[0].export_integers()
    b = convert_dnn(teacher, ds, 4, c, LOIHI2, seed=3, progress=False)[0].export_integers()
    for x, y in zip(a, b):
        assert x["vth"] == y["vth"] and torch.equal(x["weight"], y["weight"])
        assert torch.equal(x["bias"], y["bias"])


def test_bias_bound_layers_always_fit_the_chip_after_threshold_rounding():
    """The threshold is rounded to an integer after the step is chosen; rounding up once made the
    largest bias mantissa 4096 against the 13-bit ±4095 (measured on a modulation teacher)."""
    from neurokd.convert.dnn import Stage, to_quant_snn

    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        w1 = torch.randn(6, 4, generator=gen) * 0.05
        b1 = torch.randn(6, generator=gen) * (2.0 + trial)  # biases dominate the step
        w2 = torch.randn(3, 6, generator=gen)
        stages = [Stage("dense", "fc1", w1, b1, relu=True), Stage("dense", "head", w2, torch.zeros(3))]
        model = to_quant_snn(stages, [1.0 + 0.37 * trial, 1.0], (4,), 8, 15, LOIHI2, 8)
        top = max(int(r["bias"].abs().max()) for r in model.export_integers())
        assert 0 < top <= LOIHI2.bias_mantissa_max
