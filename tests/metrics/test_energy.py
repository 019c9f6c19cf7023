"""What a network costs on the chip: activity and energy against hand counts, the teacher's MACs,
the energy figures of the profiles, the chip-fit check, and `neurokd report` end to end."""

import json

import pytest
import torch
from torch import nn

from neurokd.cli import main
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.metrics.activity import activity_counts, fan_out, layer_outputs
from neurokd.metrics.energy import snn_costs, teacher_macs
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import spec_from_dict

# Memoryless neurons (current and voltage decay 1): a neuron fires at step t exactly when the
# integer input it gets at t passes the threshold mantissa, 1.25 · 64 = 80.
MEMORYLESS = {"threshold": 1.25, "current_decay": 1.0, "voltage_decay": 1.0}


def hand_net(profile: str = "loihi1") -> SpikingNet:
    """4 → 3 → 2 dense SNN. Weight mantissas (float × 64): hidden 0 reads input 0 (128), hidden 1
    input 1 (128), hidden 2 inputs 2 and 3 (64 each: needs both); output 0 reads hidden 0 (128),
    output 1 hidden 1 and 2 (64 each: needs both)."""
    spec = spec_from_dict({"input_shape": [4], "neuron": MEMORYLESS,
                           "layers": [{"type": "dense", "units": 3}, {"type": "dense", "units": 2}]})
    net = SpikingNet(spec, load_profile(profile))
    w0 = torch.tensor([[128, 0, 0, 0], [0, 128, 0, 0], [0, 0, 64, 64]]) / 64.0
    w1 = torch.tensor([[128, 0, 0], [0, 64, 64]]) / 64.0
    with torch.no_grad():
        net(torch.zeros(1, 4, 2))
        for block, w in zip(net.blocks, (w0, w1)):
            block.synapse.weight.copy_(w.reshape(block.synapse.weight.shape))
    return net.eval()


def hand_input(samples: int = 2) -> torch.Tensor:
    """T = 4 frames and 2 zero frames (the window of a 2-layer network): inputs 0 and 1 at step 0,
    2 and 3 at step 1, 0 and 2 at step 2; nothing at step 3."""
    x = torch.zeros(samples, 4, 6)
    for t, inputs in ((0, (0, 1)), (1, (2, 3)), (2, (0, 2))):
        x[:, list(inputs), t] = 1.0
    return x


def test_activity_and_energy_match_a_hand_count():
    """By hand, per sample. Layer 0 gets 6 input events (steps 0, 1, 2); hidden 0 fires for inputs
    0 (steps 0 and 2), hidden 1 for input 1 (step 0), hidden 2 for inputs 2 and 3 together (step 1
    only): 4 spikes, each one step later. Layer 1 gets those 4 events (steps 1, 2, 3); output 0
    fires for hidden 0 (twice), output 1 never (hidden 1 and 2 never fire together): 2 spikes.
    synops = 6 · 3 + 4 · 2 = 26; neuron updates = (3 + 2) · 6 = 30, of which active (an input
    event that step) 3 · 3 + 3 · 2 = 15; spikes 4 + 2 = 6; activation sparsity 1 − 6/30."""
    net, x = hand_net(), hand_input(samples=2)
    outs = layer_outputs(net, x)
    assert outs[0][0].nonzero().tolist() == [[0, 1], [0, 3], [1, 1], [2, 2]]  # (neuron, step)
    assert outs[1][0].nonzero().tolist() == [[0, 2], [0, 4]]
    counts = activity_counts(net, x)
    assert [(c["events_in"], c["synops"], c["neuron_updates"], c["active_neuron_updates"],
             c["spikes_out"]) for c in counts] == [(12, 36, 36, 18, 8), (8, 16, 24, 12, 4)]  # 2 samples

    r = snn_costs(net, counts, samples=2)
    assert (r["synops"], r["neuron_updates"], r["active_neuron_updates"], r["spikes_out"]) == (26, 30, 15, 6)
    assert r["activation_sparsity"] == pytest.approx(1 - 6 / 30)
    assert [row["activation_sparsity"] for row in r["layers"]] == pytest.approx([1 - 4 / 18, 1 - 2 / 12])
    # Loihi 1 (Davies et al. 2018, Table 2): 23.6 pJ per synaptic op, 81 / 52 pJ per active /
    # inactive neuron update, 1.7 pJ per spike
    hand_pj = 26 * 23.6 + 15 * 81 + 15 * 52 + 6 * 1.7
    assert hand_pj == pytest.approx(2618.8)
    assert r["pricings"]["loihi"]["total"] == pytest.approx(hand_pj * 1e-12, rel=1e-12)
    # The digital model, term by term (24-bit state, 8-bit weights, binary events; an SRAM of S
    # bits costs 1.09e-5 · S + 13.2 pJ per 64-bit access):
    # arithmetic: 26 accumulates at 0.1 pJ; 30 neuron updates of two 12 × 24-bit decays
    # (0.2 · 12 · 24 / 64 = 0.9 pJ each) and three adds
    arith = 26 * 0.1 + 30 * (2 * 0.9 + 3 * 0.1)
    # weights: 26 reads of 8 bits from the 18-synapse memory (144 bits)
    weights = 26 * 8 / 64 * (1.09e-5 * 144 + 13.2)
    # state: 26 read-modify-writes of a 24-bit accumulator, 30 updates of two 24-bit words read
    # and written, in a memory of 5 neurons × 2 words × 24 bits
    state = (26 * 48 + 30 * 96) / 64 * (1.09e-5 * 240 + 13.2)
    # events: 10 in and 6 out, one 32-bit word each, in a buffer of 3 neurons × 32 bits
    events = 16 * 32 / 64 * (1.09e-5 * 96 + 13.2)
    parts = r["energy_parts_j"]
    for name, want in (("arithmetic", arith), ("weights", weights), ("state", state),
                       ("events", events)):
        assert parts[name] == pytest.approx(want * 1e-12, rel=1e-12), name
    assert r["energy_j"] == pytest.approx((arith + weights + state + events) * 1e-12, rel=1e-12)
    assert sum(row["energy_j"] for row in r["layers"]) == pytest.approx(r["energy_j"], rel=1e-12)
    # NeuroBench: dense = every synapse every step (12 · 6 + 6 · 6), all events binary, and an
    # operation only where the weight is not zero: each input and hidden neuron feeds exactly
    # one non-zero weight, so 6 + 4 events give 10 accumulates (synops, every synapse: 26)
    assert r["neurobench"] == {"dense_ops": 108.0, "effective_macs": 0.0, "effective_acs": 10.0}
    assert [row["synops_nonzero"] for row in r["layers"]] == [6.0, 4.0]
    # resources from the search's model: 3 · 4 + 2 · 3 synapses at 8 bits, one core per layer
    assert (r["synapses"], r["memory_bytes"], r["cores"], r["fits"]) == (18, 18, 2, True)


def test_quantized_and_float_models_are_counted_alike():
    """A quantized model (counted through its record of layer outputs) and the slayer network
    holding its exact integers give the same counts."""
    from neurokd.models.cuba.quantized import QuantSpikingNet

    q = QuantSpikingNet.from_snn(hand_net("loihi2"), [8, 8]).eval()
    x = hand_input()
    got = activity_counts(q, x)
    assert got == activity_counts(q.to_slayer(), x)
    assert got[0]["synops"] == 36 and got[0]["events_in"] == 12  # the input is the same


def test_convolution_fan_out_and_active_updates_by_hand():
    """A 3 × 3 input, 2 channels of 3 × 3 kernels, padding 1: an input at a corner lies in the
    receptive fields of 4 output positions, at an edge 6, at the centre 9 (times 2 channels)."""
    spec = spec_from_dict({"input_shape": [1, 3, 3], "neuron": MEMORYLESS, "layers": [
        {"type": "conv", "channels": 2, "kernel": 3, "padding": 1}, {"type": "flatten"},
        {"type": "dense", "units": 2}]})
    layer = spec.layers[0]
    assert fan_out(layer, (1, 3, 3), (2, 3, 3))[0].tolist() == [[8, 12, 8], [12, 18, 12], [8, 12, 8]]
    # stride 2 over 5 × 5 with a 2 × 2 kernel: the last row and column are read by no output
    strided = spec_from_dict({"input_shape": [1, 5, 5], "layers": [
        {"type": "conv", "channels": 3, "kernel": 2, "stride": 2}, {"type": "flatten"},
        {"type": "dense", "units": 2}]}).layers[0]
    fo = fan_out(strided, (1, 5, 5), (3, 2, 2))[0]
    assert fo[:4, :4].eq(3).all() and fo[4].eq(0).all() and fo[:, 4].eq(0).all()

    net = SpikingNet(spec).eval()
    with torch.no_grad():
        for block in net.blocks:
            if getattr(block, "synapse", None) is not None:
                block.synapse.weight.zero_()  # no spikes: only layer 0 sees events
    x = torch.zeros(1, 1, 3, 3, 4)
    x[0, 0, 1, 1, 0] = 1.0  # the centre at step 0: every output position receives it
    x[0, 0, 0, 0, 1] = 1.0  # a corner at step 1: 4 output positions
    conv, dense = activity_counts(net, x)
    assert (conv["events_in"], conv["synops"], conv["active_neuron_updates"]) == (2, 18 + 8, 18 + 8)
    assert conv["neuron_updates"] == 18 * 4 and conv["spikes_out"] == 0
    assert (dense["events_in"], dense["synops"], dense["active_neuron_updates"]) == (0, 0, 0)


def test_teacher_macs_match_a_hand_count():
    """conv1: 2 × 8 × 8 outputs × (1 · 3 · 3) = 1152; conv2 (stride 2): 4 × 4 × 4 × (2 · 3 · 3) =
    1152; a grouped 1 × 1 conv (2 groups): 4 × 4 × 4 × (4 / 2) = 128; the head: 64 · 10 = 640."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(2),
                          nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 1, groups=2), nn.AvgPool2d(1), nn.Flatten(),
                          nn.Linear(64, 10))
    got = teacher_macs(model, (1, 8, 8))
    assert [r["macs"] for r in got["layers"]] == [1152, 1152, 128, 640]
    assert got["macs"] == 3072
    assert [r["layer"] for r in got["layers"]] == ["0", "3", "5", "8"]
    from neurokd.metrics.energy import dnn_costs

    assert [(r["inputs"], r["outputs"]) for r in got["layers"]] == [(64, 128), (128, 64), (64, 64),
                                                                       (64, 10)]
    priced = dnn_costs(model, (1, 8, 8), load_profile("loihi2").energy)["pricings"]
    assert priced["arithmetic_fp32"]["total"] == pytest.approx(3072 * 4.6e-12, rel=1e-12)  # 3.7 + 0.9
    assert priced["arithmetic_int8"]["total"] == pytest.approx(3072 * 0.23e-12, rel=1e-12)  # 0.2 + 0.03
    assert priced["mcu_int8"]["total"] == pytest.approx(3072 * 450e-12, rel=1e-12)  # MLPerf Tiny
    # The digital model in int8, term by term: MACs at 0.2 + 0.03 pJ and 266 bias adds; every
    # weight read at every use and the biases once, 8 bits each, from a memory of the 738
    # weights and 266 biases; inputs read and outputs written once (586 values) in a memory of
    # the largest layer's inputs and outputs (192 values)
    int8 = priced["digital_int8"]
    assert int8["arithmetic"] == pytest.approx((3072 * 0.23 + 266 * 0.03) * 1e-12, rel=1e-12)
    assert int8["weights"] == pytest.approx((3072 + 266) * 8 / 64 * (1.09e-5 * 1004 * 8 + 13.2)
                                            * 1e-12, rel=1e-12)
    assert int8["activations"] == pytest.approx(586 * 8 / 64 * (1.09e-5 * 192 * 8 + 13.2) * 1e-12,
                                                rel=1e-12)
    fp32 = priced["digital_fp32"]
    assert fp32["arithmetic"] == pytest.approx((3072 * 4.6 + 266 * 0.9) * 1e-12, rel=1e-12)
    assert fp32["weights"] == pytest.approx((3072 + 266) * 32 / 64 * (1.09e-5 * 1004 * 32 + 13.2)
                                            * 1e-12, rel=1e-12)


def test_profiles_carry_their_energy_figures_and_sources(tmp_path):
    l1, l2 = load_profile("loihi1").energy, load_profile("loihi2").energy
    assert (l1.synop_pj, l1.neuron_update_active_pj, l1.neuron_update_inactive_pj, l1.spike_pj) == \
        (23.6, 81.0, 52.0, 1.7)
    assert (l1.mac_fp32_pj, l1.mac_int8_pj) == (4.6, 0.23)
    assert "Davies" in l1.source and "Table 2" in l1.source and not l1.proxy
    assert "Horowitz" in l1.baseline_source and "1.1.9" in l1.baseline_source
    assert l2.proxy and "Loihi 1" in l2.source and l2.synop_pj == l1.synop_pj
    import yaml

    # the same file is rewritten below: load it past load_profile's cache
    text = load_profile("loihi1").model_dump()
    for bad, message in ((True, "energy.synop_pj: Input should be a valid number"),
                         (-1.0, "energy.synop_pj: Input should be greater than 0"),
                         ("23.6", "energy.synop_pj: Input should be a valid number")):
        data = dict(text, name="custom", energy=dict(text["energy"], synop_pj=bad))
        f = tmp_path / "custom.yaml"
        f.write_text(yaml.safe_dump(data))
        with pytest.raises(NeurokdError, match=message) as err:
            load_profile.__wrapped__(str(f))
        assert "\n" not in str(err.value)
    data = dict(text, energy=dict(text["energy"], watts=1.0))
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(NeurokdError, match="energy.watts: unknown key"):
        load_profile.__wrapped__(str(f))
    data = dict(text)
    del data["energy"]  # a profile may give no energy figures: the report then gives none
    f.write_text(yaml.safe_dump(data))
    bare = load_profile.__wrapped__(str(f))
    assert bare.energy is None
    net = hand_net()
    net.profile = bare
    r = snn_costs(net, activity_counts(net, hand_input(1)), samples=1)
    assert r["energy_j"] is None and r["synops"] == 26  # counted, not priced


# ---------------------------------------------------------------- the chip-fit check
WIDE = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv", "channels": 512, "kernel": 3, "padding": 1},
    {"type": "conv", "channels": 2, "kernel": 3, "padding": 1},  # each neuron reads 512 · 9 = 4608
    {"type": "flatten"}, {"type": "dense", "units": 10}]}


def test_fit_violation_names_the_layer_and_the_limit():
    from neurokd.metrics.resources import check_fit, fit_violation

    loihi2 = load_profile("loihi2")
    assert fit_violation(spec_from_dict(WIDE), loihi2) == (
        "layer 1 (conv): each neuron reads 4608 inputs, more than the 4096 input axons a loihi2 "
        "core reads (max_fan_in_per_core)")
    # 4096 × 4096 synapses at 8 bits fill the 128 KB of 128 cores; the head needs one more
    many = {"input_shape": [4096], "layers": [{"type": "dense", "units": 4096},
                                              {"type": "dense", "units": 10}]}
    assert fit_violation(spec_from_dict(many), loihi2) == (
        "layer 1 (dense): brings the network to 129 cores (this layer 1), more than the 128 cores "
        "of one loihi2 chip (cores_per_chip)")
    assert fit_violation(spec_from_dict(many), loihi2, [4, 8]) is None  # 4 bits: 64 cores
    small = spec_from_dict({"input_shape": [64], "layers": [{"type": "dense", "units": 10}]})
    assert fit_violation(small, loihi2) is None
    tiny_core = loihi2.model_copy(update={"synaptic_memory_bytes_per_core": 32})
    assert fit_violation(small, tiny_core, [4]) is None  # 64 synapses · 4 bits = 32 bytes: fits
    assert fit_violation(small, tiny_core, [6]) == (
        "layer 0 (dense): one neuron's 64 synapses at 6 bits take 48 bytes, more than the 32 bytes "
        "of synaptic memory of a loihi2 core (synaptic_memory_bytes_per_core)")
    with pytest.raises(NeurokdError, match="pass --ignore-fit"):
        check_fit(spec_from_dict(WIDE), loihi2)


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory):
    """An SNN checkpoint too wide for a Loihi 2 core, on a 40-sample digits split."""
    from neurokd import pipeline
    from neurokd.config import build_config
    from neurokd.models.checkpoint import save_checkpoint

    cfg = build_config(values={"data.limit": 40, "student.timesteps": 2})
    ds = pipeline.load_data(cfg)
    net = SpikingNet(spec_from_dict(WIDE))
    with torch.no_grad():
        net(torch.zeros(1, 1, 8, 8, 2))
    path = tmp_path_factory.mktemp("wide") / "snn.pt"
    save_checkpoint(path, "snn", net.arch(), net.state_dict(), pipeline.snn_meta(cfg, ds))
    return path


def test_export_refuses_a_network_that_does_not_fit_unless_told(wide_checkpoint, tmp_path, capsys):
    out = tmp_path / "wide.net"
    assert main(["export", "--snn", str(wide_checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer 1 (conv): each neuron reads 4608 inputs" in err[0]
    assert "4096 input axons" in err[0] and "--ignore-fit" in err[0]
    assert not out.exists()
    # quantize refuses it before any training, and leaves no run directory
    assert main(["quantize", "--snn", str(wide_checkpoint), "--method", "ptq", "--out",
                 str(tmp_path / "q"), "--no-progress"]) == 2
    assert "layer 1 (conv)" in capsys.readouterr().err and not (tmp_path / "q").exists()
    # --force (replace the output) does not override the check; --ignore-fit does
    assert main(["export", "--snn", str(wide_checkpoint), "--out", str(out), "--force"]) == 2
    assert main(["export", "--snn", str(wide_checkpoint), "--out", str(out), "--ignore-fit"]) == 0
    assert out.is_file()


# ---------------------------------------------------------------- neurokd report, end to end
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A tiny teacher and a tiny SNN (train-snn), as the CLI trains them."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train-snn", "--out", str(root / "s"), "--no-progress", "--set", "data.limit=300",
                 "--set", "student.epochs=1", "--set", "student.hidden=32", "-T", "4"]) == 0
    assert main(["train-teacher", "--out", str(root / "t"), "--no-progress", "--set",
                 "data.limit=300", "--set", "teacher.epochs=2", "--set", "teacher.hidden=[32]"]) == 0
    return root


def test_training_runs_write_the_report(tiny_runs):
    run = tiny_runs / "s"
    assert {"report.json", "report.md", "energy_vs_accuracy.png"} <= {p.name for p in run.iterdir()}
    report = json.loads((run / "report.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    (snn,) = report["networks"]
    assert snn["name"] == "SNN, float (8-bit weights)" and snn["kind"] == "snn"
    assert snn["accuracy"] == metrics["snn_accuracy"]  # the same samples, encoded alike
    assert report["samples"] == snn["samples"] > 0
    assert not (tiny_runs / "t" / "report.json").exists()  # a teacher alone has no SNN to report


def test_report_command_end_to_end(tiny_runs, tmp_path, capsys):
    snn, teacher = tiny_runs / "s" / "snn.pt", tiny_runs / "t" / "teacher.pt"
    out = tmp_path / "r"
    assert main(["report", "--snn", str(snn), "--teacher", str(teacher), "--out", str(out),
                 "--samples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| DNN teacher (mlp) | " in printed and "Davies et al., IEEE Micro 38(1) 2018" in printed
    assert "proxy figures" in printed and "Horowitz, ISSCC 2014, Fig. 1.1.9" in printed
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "energy_vs_accuracy.png"}
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text() == printed[:printed.index("run directory:")]
    dnn, net = report["networks"]
    assert report["samples"] == 20 and dnn["samples"] == net["samples"] == 20
    assert dnn["kind"] == "dnn" and dnn["macs"] == 64 * 32 + 32 * 10  # teacher.hidden=[32]
    assert dnn["pricings"]["arithmetic_fp32"]["total"] == pytest.approx(dnn["macs"] * 4.6e-12,
                                                                         rel=1e-12)
    assert dnn["energy_j"] == dnn["pricings"]["digital_fp32"]["total"]
    assert dnn["energy_int8_j"] == dnn["pricings"]["digital_int8"]["total"]
    e = load_profile("loihi2").energy
    want = (net["synops"] * e.synop_pj + net["active_neuron_updates"] * e.neuron_update_active_pj
            + (net["neuron_updates"] - net["active_neuron_updates"]) * e.neuron_update_inactive_pj
            + net["spikes_out"] * e.spike_pj) * 1e-12
    assert net["pricings"]["loihi"]["total"] == pytest.approx(want, rel=1e-12)
    assert net["energy_j"] == net["pricings"]["digital"]["total"]
    assert net["neuron_updates"] == (32 + 10) * (4 + 2)  # every neuron, every step of the window
    # the comparison is the same digital model on both sides: the DNN in int8
    assert net["dnn_energy_ratio"] == pytest.approx(dnn["energy_int8_j"] / net["energy_j"])
    assert "MLPerf Tiny" in printed and "static power" in printed
    assert 0 < net["activation_sparsity"] < 1 and net["fits"] and net["cores"] == 2
    assert report["energy_figures"]["loihi2"]["proxy"] is True
    # the output is a run directory: not replaced without --force
    assert main(["report", "--snn", str(snn), "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert main(["report", "--snn", str(snn), "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--snn", "{t}"], "is a teacher checkpoint, expected a snn checkpoint"),
    (["--snn", "{s}", "--teacher", "{s}"], "is a snn checkpoint, expected a teacher checkpoint"),
    (["--snn", "{s}", "--samples", "0"], "--samples must be positive"),
    (["--snn", "missing.pt"], "no such checkpoint file"),
])
def test_report_bad_input_gets_one_line(tiny_runs, args, message, capsys):
    paths = {"s": str(tiny_runs / "s" / "snn.pt"), "t": str(tiny_runs / "t" / "teacher.pt")}
    assert main(["report", *[a.format(**paths) for a in args]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("option", ["--snn", "--teacher"])
def test_report_refuses_a_checkpoint_that_would_run_code(option, tiny_runs, tmp_path, capsys):
    from tests.test_hardening import hostile_checkpoint

    target = tmp_path / "written"
    evil = hostile_checkpoint(tmp_path, target)
    snn = evil if option == "--snn" else tiny_runs / "s" / "snn.pt"
    extra = ["--teacher", str(evil)] if option == "--teacher" else []
    assert main(["report", "--snn", str(snn), *extra, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "TorchScript" in err and "Traceback" not in err
    assert not target.exists() and not (tmp_path / "r").exists()


def test_graded_events_are_priced_as_multiply_accumulates_and_sigma_delta_updates_as_adds():
    """A sigma-delta layer's 10 synaptic operations of 16-bit messages on 8-bit weights: each an
    int32 add and a 16 × 8 multiply (0.2 · 128 / 64 = 0.4 pJ); 4 neuron updates of three adds."""
    from neurokd.metrics.pricing import neurobench_counts, snn_digital

    d = load_profile("loihi2").energy.digital
    row = {"synops": 10, "neuron_updates": 4, "events_in": 2, "spikes_out": 1, "neurons": 2,
           "weight_bits": 8, "message_bits": 16, "memory_bytes": 10, "synapses": 10,
           "synops_nonzero": 10}
    got = snn_digital([row], "sdnn", 24, d)
    assert got["arithmetic"] == pytest.approx((10 * (0.1 + 0.4) + 4 * 0.3) * 1e-12, rel=1e-12)
    assert got["weights"] == pytest.approx(10 * 8 / 64 * (1.09e-5 * 80 + 13.2) * 1e-12, rel=1e-12)
    assert neurobench_counts([row]) == {"dense_ops": 20.0, "effective_macs": 10.0,
                                        "effective_acs": 0.0}


def test_non_zero_fan_out_counts_each_inputs_non_zero_weights_as_neurobench_does():
    """Per input, the non-zero weights it meets: a one-hot input through the layer's 0/1 weights
    gives the same count (NeuroBench's binary copy of the layer), a convolution's border and
    stride included."""
    import torch.nn.functional as F

    from neurokd.metrics.activity import nonzero_fan_out

    torch.manual_seed(0)
    spec = spec_from_dict({"input_shape": [2, 5, 5], "layers": [
        {"type": "conv", "channels": 3, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "flatten"}, {"type": "dense", "units": 4}]})
    conv = spec.layers[0]
    w = torch.randint(-2, 3, (3, 2, 3, 3)).float()  # about a fifth of the weights zero
    got = nonzero_fan_out(conv, w, (2, 5, 5), (3, 3, 3))
    for c in range(2):
        for y in range(5):
            for x in range(5):
                one = torch.zeros(1, 2, 5, 5)
                one[0, c, y, x] = 1
                want = F.conv2d(one, (w != 0).float(), stride=2, padding=1).sum()
                assert got[c, y, x] == want
    dense_w = torch.tensor([[1.0, 0, 2], [0, 0, 3]])
    assert nonzero_fan_out(spec.layers[2], dense_w, (3,), (2,)).tolist() == [1, 0, 2]
