"""Where PyTorch and Lava could part: slayer's threshold test at large thresholds, and states that
pass the chip's 24 bits on some admissible input; plus teachers that build from the defaults."""

import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.hardware import load_profile
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import ArchSpec
from neurokd.models.teachers import TEACHERS, build_teacher, example_input, teacher_arch
from neurokd.models.cuba.quantized import QuantSpikingNet


def _float_net(layers, threshold, current_decay, voltage_decay, input_shape, weights):
    """A slayer ``SpikingNet`` whose blocks hold the given integer weight mantissas."""
    spec = ArchSpec(input_shape=input_shape, layers=layers,
                    neuron={"threshold": threshold, "current_decay": current_decay,
                            "voltage_decay": voltage_decay})
    net = SpikingNet(spec).eval()
    blocks = [b for b in net.blocks if getattr(b, "synapse", None) is not None]
    with torch.no_grad():
        for block, w in zip(blocks, weights):
            syn = block.synapse.weight
            syn.copy_(torch.tensor(w, dtype=torch.float32).reshape(syn.shape) / 64)
    return net


# ---------------------------------------------------------------- threshold ≥ 64
@pytest.mark.parametrize("mant", [1, 80, 2048, 4095, 4096, 4097, 6400, 65535, 65536, 131071])
def test_slayer_neuron_fires_only_above_the_threshold_mantissa(mant):
    # decays of 1: each step's voltage is that step's input alone, in state units 4096·z
    net = _float_net([{"type": "dense", "units": 1}], mant / 64, 1.0, 1.0, [1], [[[0]]])
    neuron = net.blocks[0].neuron
    assert neuron.v_th_mant == mant
    x = mant << 6  # Loihi fires when v > vThMant << 6
    z = torch.tensor([x - 1, x, x + 1, x, x + 64], dtype=torch.float32).reshape(1, 1, 5) / 4096
    with torch.no_grad():
        spikes = neuron(z)
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 1]


@pytest.mark.lava
def test_students_with_a_threshold_of_64_and_more_match_lava_on_the_threshold(tmp_path):
    from neurokd.deploy.export import export_netx
    from neurokd.deploy.lava_run import lava_input_frames, run_lava

    steps = 80
    frames = torch.zeros(1, 4, steps)
    frames[:, 0, :steps - 2] = 1  # input 0 spikes every step
    # neuron 0 (weight 128): v = 128·64·k after k input steps, exactly vth << 6 at k = vth / 128;
    # neuron 1 (weight 130) never lands on it
    weights = [[[128, 0, 0, 0], [130, 0, 0, 0]]]
    for threshold in (64.0, 100.0):
        net = _float_net([{"type": "dense", "units": 2}], threshold, 1.0, 0.0, [4], weights)
        vth = int(threshold * 64)
        equal_at = vth // 128  # input steps until v == vth << 6; the spike needs one more
        torch_spikes = net(frames).detach().numpy()
        # the first spike: input step equal_at (0-based), one step of synaptic delay later
        assert int(np.flatnonzero(torch_spikes[0, 0])[0]) == equal_at + 1
        path = export_netx(net, tmp_path / f"th{vth}.net", {"encoder": "rate", "timesteps": steps - 2})
        lava = run_lava(path, lava_input_frames(frames.numpy(), False), 0, "sim", progress=False)
        assert np.array_equal(torch_spikes, lava.spikes)

    # a quantized student runs the integer emulator: vThMant 4096 from an 8-bit step of 1/32
    spec = ArchSpec(input_shape=[4], layers=[{"type": "dense", "units": 2}],
                    neuron={"threshold": 64.0, "current_decay": 1.0, "voltage_decay": 0.0})
    q = QuantSpikingNet(spec, load_profile("loihi2"), [8], "fixed", steps=[1 / 32]).eval()
    with torch.no_grad():
        q.weights[0].copy_(torch.tensor([[2.0, 0, 0, 0], [2.0 + 1 / 32, 0, 0, 0]]))
    ints = q.export_integers()[0]
    assert ints["vth"] == 4096 and ints["weight"][:, 0].tolist() == [128, 130]
    q_spikes = q(frames).detach().numpy()
    assert int(np.flatnonzero(q_spikes[0, 0])[0]) == 4096 // 128 + 1
    path = export_netx(q.to_slayer(), tmp_path / "q.net", {"encoder": "rate", "timesteps": steps - 2})
    lava = run_lava(path, lava_input_frames(frames.numpy(), False), 0, "sim", progress=False)
    assert np.array_equal(q_spikes, lava.spikes)


# ---------------------------------------------------------------- worst-case 24-bit bound
def _hand_net():
    # iDecay 2048 (u halves), vDecay 1024 (v keeps 3/4), vThMant 64: threshold 4096 in state units
    return _float_net([{"type": "dense", "units": 2}, {"type": "dense", "units": 2}], 1.0, 0.5, 0.25,
                      [3], [[[128, -64, 32], [-128, -128, 0]], [[64, 64], [-32, 0]]])


def test_bound_of_a_hand_sized_network():
    net = _hand_net()
    # T = 3, two layers: a window of 5 steps. Layer 0 gets input on steps 0..2, layer 1 on 1..4.
    # Layer 0, neuron 1 (weights -128, -128, 0): per step at most -256·64 = -16384 into u;
    #   u: -16384, -24576, -28672, -14336, -7168 (inputs stop after step 2)
    #   v (never reaches the threshold, so no reset): -16384, -36864, -56320, -56576, -49600
    # Layer 0, neuron 0 (weights 128, -64, 32): u up to 160·64 = 10240 per step: 10240, 15360,
    #   17920; v above 4096 spikes and restarts, so at most 3072 + u: 10240, 18432, 20992.
    # Layer 1, neuron 0 (64, 64): 8192 per step on steps 1..4: u 8192, 12288, 14336, 15360;
    #   v 8192, 3072 + 12288, 3072 + 14336, 3072 + 15360 = 18432.
    rows = net.state_bound("rate", 3)
    assert [(r["layer"], r["max_abs_current"], r["max_abs_voltage"], r["overflow"]) for r in rows] \
        == [(0, 28672, 56576, False), (1, 15360, 18432, False)]
    # direct coding: entries up to 15 scale the first layer's input (and, with exact halvings
    # and quarterings here, its states) 15-fold; binary spikes still feed layer 1
    assert [(r["max_abs_current"], r["max_abs_voltage"]) for r in net.state_bound("direct", 3)] \
        == [(15 * 28672, 15 * 56576), (15360, 18432)]
    # the all-ones frame reaches layer 0's bound exactly (slayer's own dynamics)
    ones = torch.ones(1, 3, 5)
    ones[..., 3:] = 0
    seen = net.state_extremes(ones)[0]
    assert (seen["max_abs_current"], seen["max_abs_voltage"]) == (28672, 56576)
    # and no input goes beyond it
    gen = torch.Generator().manual_seed(0)
    spikes = (torch.rand(200, 3, 5, generator=gen) < 0.5).float()
    spikes[..., 3:] = 0
    for seen, bound in zip(net.state_extremes(spikes), rows):
        assert seen["max_abs_current"] <= bound["max_abs_current"]
        assert seen["max_abs_voltage"] <= bound["max_abs_voltage"]


def test_bound_of_a_padded_convolution_meets_slayer_on_the_full_frame():
    # every weight 2: the centre of a padded 3×3 convolution sees 9 inputs, a corner 4;
    # direct coding's 15 on every input gives the centre 9·2·15·64 = 17280 per step
    net = _float_net([{"type": "conv", "channels": 1, "kernel": 3, "padding": 1}, {"type": "flatten"},
                      {"type": "dense", "units": 2}], 1.0, 0.5, 0.25, [1, 3, 3],
                     [[[2] * 9], [[0] * 9, [0] * 9]])
    bound = net.state_bound("direct", 3)
    assert bound[0]["layer"] == 0 and bound[1]["layer"] == 2  # block indices, as state_extremes
    assert bound[0]["max_abs_current"] == 17280 + 8640 + 4320  # u halves each step
    full = torch.full((1, 1, 3, 3, 5), 15.0)
    full[..., 3:] = 0
    assert net.state_extremes(full)[0]["max_abs_current"] == bound[0]["max_abs_current"]


def test_bound_of_a_biased_quantized_layer_follows_its_timing():
    # a biased quantized network takes its input after L lead zero frames and integrates its
    # bias from step 0: weights -128, -64 (8 bits, step 1/32), bias -32 (-2048 a step), vth 64
    spec = ArchSpec(input_shape=[2], layers=[{"type": "dense", "units": 1}],
                    neuron={"threshold": 1.0, "current_decay": 0.5, "voltage_decay": 0.25})
    q = QuantSpikingNet(spec, load_profile("loihi2"), [8], "fixed", steps=[1 / 32], bias=True).eval()
    with torch.no_grad():
        q.weights[0].copy_(torch.tensor([[-2.0, -1.0]]))
        q.biases[0].fill_(-0.5)
    # steps 0..3: u 0, -12288, -18432, -21504; v -2048, -15872, -32384, -47840
    rows = q.state_bound("rate", 3)
    assert [(r["layer"], r["max_abs_current"], r["max_abs_voltage"]) for r in rows] \
        == [(0, 21504, 47840)]
    ones = torch.ones(1, 2, 4)
    ones[..., 3:] = 0
    seen = q.state_extremes(ones)[0]
    assert (seen["max_abs_current"], seen["max_abs_voltage"]) == (21504, 47840)


def test_bound_flags_a_network_that_overflows_only_on_the_all_maximum_frame(tmp_path):
    cfg = build_config(overrides=["data.limit=400"])
    ds = pipeline.load_data(cfg)
    T = cfg.student.timesteps
    # no current decay, and weights 0..200 into every hidden neuron: the current sums every spike
    spec = ArchSpec(input_shape=list(ds.input_shape),
                    layers=[{"type": "dense", "units": 16}, {"type": "dense", "units": 10}],
                    neuron={"threshold": 1.25, "current_decay": 0.0, "voltage_decay": 0.03})
    net = SpikingNet(spec).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = net.blocks[0].synapse.weight
        w.copy_(torch.randint(0, 101, w.shape, generator=gen).float() * 2 / 64)
    full = torch.ones(1, *ds.input_shape, T + net.window_pad)
    full[..., T:] = 0
    assert net.state_extremes(full)[0]["overflow"]
    bound = net.state_bound("rate", T)
    assert [r["overflow"] for r in bound] == [True, False]
    # with every input spiking on every frame, layer 0's current is the bound itself
    assert bound[0]["max_abs_current"] == net.state_extremes(full)[0]["max_abs_current"]
    lines = []
    pipeline.export_snn(net, tmp_path / "net.net", pipeline.snn_meta(cfg, ds), ds, log=lines.append)
    measured = [line for line in lines if "beyond the 24-bit state" in line and "worst case" not in line]
    assert measured == []  # the test samples stay within 24 bits...
    warned = [line for line in lines if line.startswith("warning: layer 0: some admissible input")]
    assert len(warned) == 1 and "wrap the current" in warned[0]  # ...the bound does not
    assert not any(line.startswith("warning: layer 1") for line in lines)
    report = [line for line in lines if line.startswith("state of layer 0:")]
    assert len(report) == 1 and f"|u| <= {bound[0]['max_abs_current']}" in report[0]


# ---------------------------------------------------------------- teacher defaults
@pytest.mark.parametrize("name", [n for n in TEACHERS.names() if example_input(n) == (1, 8, 8)])
def test_every_image_teacher_trains_with_the_default_configuration(name, tmp_path):
    cfg = build_config(overrides=[f"teacher.model={name}", "data.limit=120", "teacher.epochs=1"])
    assert cfg.teacher.hidden is None  # the model's own default
    ds = pipeline.load_data(cfg)
    model, metrics = pipeline.train_teacher(cfg, ds, progress=False)
    assert 0.0 <= metrics["teacher_accuracy"] <= 1.0
    out = model.eval()(torch.as_tensor(ds.test.x[:5], dtype=torch.float32))
    assert out.shape == (5, ds.num_classes) and torch.isfinite(out).all()
    path = pipeline.save_teacher(tmp_path / "teacher.pt", model, cfg, ds)
    again = pipeline.load_teacher(path)
    assert torch.equal(again(torch.as_tensor(ds.test.x[:5], dtype=torch.float32)), out)
    default = build_teacher(name, ds.input_shape, ds.num_classes)
    arch = teacher_arch(name, ds.input_shape, ds.num_classes, None)
    assert sum(p.numel() for p in default.parameters()) == sum(p.numel() for p in model.parameters())
    assert arch["hidden"] == ([256] if name == "mlp" else [16, 32])
