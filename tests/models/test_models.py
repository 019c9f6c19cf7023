import pytest
import torch

from neurokd.errors import NeurokdError
from neurokd.models.checkpoint import load_checkpoint, save_checkpoint
from neurokd.models.cuba.net import SpikingNet, snn_from_checkpoint
from neurokd.models.spec import default_spec, spec_from_dict
from neurokd.models.teachers import TEACHERS, build_teacher, example_input, teacher_from_checkpoint

CONV = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv", "channels": 4, "kernel": 3, "stride": 2, "padding": 1},
    {"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "dense", "units": 10}]}


@pytest.mark.parametrize("name", TEACHERS.names())
def test_every_teacher_gives_logits_and_gradients_everywhere(name):
    torch.manual_seed(0)
    shape = example_input(name)
    model = build_teacher(name, shape, 10)
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_unknown_teacher():
    with pytest.raises(NeurokdError, match="unknown teacher model 'resnet'"):
        build_teacher("resnet", (1, 8, 8), 10)


@pytest.mark.parametrize("spec", [default_spec((1, 8, 8), 10, 16), spec_from_dict(CONV)])
def test_snn_shapes_window_and_gradients(spec):
    torch.manual_seed(0)
    net = SpikingNet(spec)
    assert net.window_pad == spec.num_spiking_layers
    x = (torch.rand(3, 1, 8, 8, 12) < 0.5).float()
    out = net(x)
    assert out.shape == (3, 10, 12)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    # one synaptic delay per layer: nothing reaches the output before step L
    assert out[..., : net.window_pad].sum() == 0
    inter = net.forward_intermediates(x)
    assert len(inter) == len(spec.layers) and torch.equal(inter[-1], out)
    (out.sum() + sum(o.sum() for o in inter)).backward()
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in weights)


def test_state_extremes_flags_24_bit_overflow():
    torch.manual_seed(0)
    spec = default_spec((64,), 10, 16)
    spec.neuron.threshold = 1e5  # never spikes: the voltage keeps growing
    net = SpikingNet(spec)
    x = torch.ones(2, 64, 10)
    assert not any(r["overflow"] for r in net.state_extremes(x * 0))
    with torch.no_grad():
        net.blocks[0].synapse.weight.fill_(3.9)  # ~250 as an 8-bit mantissa, all positive
    rows = net.state_extremes(x)
    assert rows[0]["overflow"] and rows[0]["max_abs_voltage"] > 2**23


def test_snn_checkpoint_round_trip_gives_identical_spikes(tmp_path):
    torch.manual_seed(0)
    net = SpikingNet(spec_from_dict(CONV))
    x = (torch.rand(2, 1, 8, 8, 10) < 0.4).float()
    ref = net(x)
    save_checkpoint(tmp_path / "snn.pt", "snn", net.arch(), net.state_dict(), {"k": 1})
    payload = load_checkpoint(tmp_path / "snn.pt", "snn")
    again = snn_from_checkpoint(payload)
    assert torch.equal(again(x), ref)
    with pytest.raises(NeurokdError, match="is a snn checkpoint, expected a teacher"):
        load_checkpoint(tmp_path / "snn.pt", "teacher")


def test_teacher_checkpoint_round_trip(tmp_path):
    model = build_teacher("cnn", (1, 8, 8), 10)
    arch = {"model": "cnn", "input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 32]}
    save_checkpoint(tmp_path / "t.pt", "teacher", arch, model.state_dict(), {})
    again = teacher_from_checkpoint(load_checkpoint(tmp_path / "t.pt"))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(again(x), model.eval()(x))


def test_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(NeurokdError, match="not a neurokd checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(NeurokdError, match="not a neurokd checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(NeurokdError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoints_that_would_run_code_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "neurokd-checkpoint", "x": _Evil()}, evil)
    with pytest.raises(NeurokdError, match="unsafe"):
        load_checkpoint(evil)


def test_measured_synops_and_model_bytes_match_a_hand_count():
    from neurokd.metrics.activity import measured_synops, model_bytes
    from neurokd.models.cuba.quantized import QuantSpikingNet

    spec = spec_from_dict({"input_shape": [4], "layers": [{"type": "dense", "units": 5}]})
    net = SpikingNet(spec)
    x = torch.zeros(2, 4, 6)
    x[0, 0, 1] = x[0, 3, 4] = x[1, 2, 0] = 1.0  # three input events over two samples
    got = measured_synops(net, x)
    assert got["synops"] == 1.5 * 5  # 1.5 events per inference, each fans out to 5 synapses
    assert got["layers"][0]["input_rate"] == 1.5 / (4 * 6)
    assert model_bytes(net) == 20  # 4 × 5 weights at 8 bits
    assert model_bytes(QuantSpikingNet.from_snn(net, [4])) == 10
