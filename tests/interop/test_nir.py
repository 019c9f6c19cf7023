"""NIR in and out: snntorch graphs imported as neurokd SNNs, neurokd SNNs exported to snntorch."""

import json

import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from neurokd import pipeline
from neurokd.cli import main
from neurokd.config import build_config
from neurokd.interop import nir as nir_io
from neurokd.deploy.export import read_meta
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import ArchSpec
from neurokd.models.cuba.quantized import QuantSpikingNet
from tests.conftest import run_cli
from neurokd.training import encoded_batches

CONV_LAYERS = [{"type": "conv", "channels": 6, "kernel": 3, "stride": 2, "padding": 1},
               {"type": "flatten"}, {"type": "dense", "units": 24}, {"type": "dense", "units": 10}]
IF_NEURON = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}


def leaky(shape, beta=0.9, threshold=1.0):
    """An snntorch Leaky layer NIR describes exactly: per-neuron parameters (nir's type check
    refuses scalar ones), reset to zero, no reset delay."""
    shape = (shape,) if isinstance(shape, int) else shape
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, threshold),
                     init_hidden=True, reset_mechanism="zero", reset_delay=False)


def synaptic(n, alpha=0.8, beta=0.9):
    return snn.Synaptic(alpha=torch.full((n,), alpha), beta=torch.full((n,), beta),
                        threshold=torch.ones(n), init_hidden=True, reset_mechanism="zero",
                        reset_delay=False)


def write_snntorch(net, sample_shape, path):
    nir.write(str(path), export_to_nir(net, torch.zeros(1, *sample_shape), ignore_dims=[0]))
    return path


def spikes(shape, steps=20, p=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, steps, generator=gen) < p).to(torch.float32)


def dense_snntorch(seed=0, bias=False, second=None):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32, bias=bias), leaky(32),
                               torch.nn.Linear(32, 10, bias=bias), second or leaky(10))


def float_net(neuron, layers=CONV_LAYERS, seed=0, gain=2.0):
    """A neurokd float SNN with random weights, scaled up so that every layer spikes."""
    torch.manual_seed(seed)
    model = SpikingNet(ArchSpec(input_shape=[1, 8, 8], layers=layers, neuron=neuron)).eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 8, 8, 2))
        for block in model.blocks:
            if getattr(block, "synapse", None) is not None:
                block.synapse.weight.mul_(gain)
    return model


def against_snntorch(model, path, x):
    """Export ``model``, load the graph with snntorch's importer, run both on ``x``."""
    nir_io.export_nir(model, path, {"encoder": "rate", "timesteps": x.shape[-1]})
    theirs = import_from_nir(nir.read(str(path)))
    x_nir, lag = nir_io.nir_input_window(model, x)
    with torch.no_grad():
        ours = model(x)
    return ours, nir_io.snntorch_spikes(theirs, x_nir), lag


# ---------------------------------------------------------------- import
def test_reference_simulation_equals_snntorch(tmp_path):
    net = dense_snntorch(bias=True, second=synaptic(10))
    with torch.no_grad():
        net[1].weight.mul_(3)
    path = write_snntorch(net, (1, 8, 8), tmp_path / "g.nir")
    x = spikes((40, 1, 8, 8))
    theirs = nir_io.snntorch_spikes(net, x)
    ref = nir_io.simulate_chain(nir_io.parse_chain(nir_io.read_graph(path)), x)
    assert theirs.sum() > 20
    assert torch.equal(ref.to(torch.float32), theirs)


def test_snntorch_graph_imports_as_a_spec_and_weights(tmp_path):
    net = dense_snntorch()
    with torch.no_grad():
        net[1].weight.mul_(3)
    path = write_snntorch(net, (1, 8, 8), tmp_path / "g.nir")
    chain = nir_io.parse_chain(nir_io.read_graph(path))
    res = nir_io.chain_to_snn(chain, input_shape=(1, 8, 8))
    spec = res.model.spec
    assert spec.input_shape == [1, 8, 8]  # the leading Flatten is the dense layer's own
    assert [layer.type for layer in spec.layers] == ["dense", "dense"]
    # beta 0.9 with snntorch's dt: voltage decay 0.1 → 410/4096; LIF: the current is the input
    assert res.model.blocks[0].neuron.cx_voltage_decay == 410
    assert res.model.blocks[0].neuron.cx_current_decay == 4096
    # the largest weight, in thresholds, fills slayer's 8 bits
    w = [b.synapse.weight.detach() for b in res.model.blocks]
    top = max(float(v.abs().max()) for v in w)
    assert 253 / 64 < top <= 254 / 64
    ratio = w[1].reshape(10, 32) / torch.as_tensor(net[3].weight)
    assert torch.allclose(ratio, ratio.flatten()[0], rtol=1e-5)  # one scale: thresholds equal
    kinds = {a["kind"] for a in res.approximations}
    assert {"time", "decay rounded", "weights 8-bit", "state rounding"} <= kinds
    assert "bias dropped" not in kinds
    x = spikes((60, 1, 8, 8), steps=16)
    ref = nir_io.simulate_chain(chain, x)
    with torch.no_grad():
        out = res.model(x)
    agree = nir_io.spike_agreement(out, ref, res.model.window_pad)
    assert ref.sum() > 50
    assert agree["spike_match"] > 0.97  # measured 0.99: 12-bit decay, 8-bit weights, integer state


def test_per_neuron_thresholds_and_gains_fold_into_the_weights(tmp_path):
    """Differing thresholds (and r) per neuron are exact: each neuron's row is scaled."""
    torch.manual_seed(1)
    thr = torch.linspace(0.5, 2.0, 16)
    net = torch.nn.Sequential(torch.nn.Linear(20, 16, bias=False),
                              snn.Leaky(beta=torch.zeros(16), threshold=thr, init_hidden=True,
                                        reset_mechanism="zero", reset_delay=False),
                              torch.nn.Linear(16, 10, bias=False), leaky(10, beta=0.0))
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[2].weight.mul_(4)
    graph = export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0])
    chain = nir_io.parse_chain(graph)
    res = nir_io.chain_to_snn(chain)
    # beta 0 and no bias: integrate-and-fire without memory, no decay to round
    assert res.model.blocks[0].neuron.cx_voltage_decay == 4096
    x = spikes((50, 20), p=0.5)
    with torch.no_grad():
        ours = res.model(x)
    theirs = nir_io.snntorch_spikes(net, x)
    agree = nir_io.spike_agreement(ours, theirs, res.model.window_pad)
    assert theirs.sum() > 50
    assert agree["spike_match"] > 0.98  # measured 0.996: only slayer's 8-bit weight rounding


def test_snntorch_conv_graph_imports(tmp_path):
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
                              leaky((4, 4, 4), beta=0.5), torch.nn.Flatten(),
                              torch.nn.Linear(64, 10, bias=False), leaky(10, beta=0.5))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[3].weight.mul_(3)
    path = write_snntorch(net, (1, 8, 8), tmp_path / "conv.nir")
    res = nir_io.chain_to_snn(nir_io.parse_chain(nir_io.read_graph(path)))
    assert [layer.model_dump() for layer in res.model.spec.layers] == [
        {"type": "conv", "channels": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "flatten"}, {"type": "dense", "units": 10}]
    assert res.model.blocks[0].neuron.cx_voltage_decay == 2048  # beta 0.5: exact in 12 bits
    x = spikes((40, 1, 8, 8), p=0.5)
    with torch.no_grad():
        ours = res.model(x)
    theirs = nir_io.snntorch_spikes(net, x)
    assert theirs.sum() > 50
    assert nir_io.spike_agreement(ours, theirs, res.model.window_pad)["spike_match"] > 0.97


def test_biases_leak_and_reset_are_named_approximations():
    nodes = {
        "in": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.eye(3, 4, dtype=np.float32), bias=np.full(3, 0.1, np.float32)),
        "lif": nir.LIF(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.full(3, 0.2),
                       v_threshold=np.ones(3), v_reset=np.full(3, -0.5)),
        "out": nir.Output(output_type={"output": np.array([3])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
                         type_check=False)
    res = nir_io.chain_to_snn(nir_io.parse_chain(graph))
    found = {(a["kind"], a["node"]) for a in res.approximations}
    assert {("bias dropped", "fc"), ("v_leak dropped", "lif"), ("v_reset", "lif")} <= found
    lines = nir_io.approximation_lines(res.approximations)
    bias = next(line for line in lines if "bias dropped" in line)
    assert "node 'fc'" in bias and "0.1 thresholds per step" in bias  # 0.1·r·dt/tau = 0.1


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(n, tau=1e-3):
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / 1e-4), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def _chain(*pairs):
    nodes = {"in": nir.Input(input_type={"input": np.array([4])})}
    nodes.update(pairs)
    nodes["out"] = nir.Output(output_type={"output": np.array([3])})
    names = list(nodes)
    return nodes, list(zip(names[:-1], names[1:]))


def _w(o=3, i=4):
    return nir.Linear(weight=np.ones((o, i), np.float32))


def _branching():
    nodes, edges = _chain(("fc", _w()), ("lif", _lif(3)))
    nodes["fc2"] = _w()
    return _graph(nodes, edges + [("in", "fc2")])


def _recurrent():
    nodes, edges = _chain(("fc", _w()), ("lif", _lif(3)), ("back", _w(3, 3)))
    edges = [e for e in edges if e != ("back", "out")] + [("back", "lif"), ("lif", "out")]
    return _graph(nodes, [e for e in edges if e != ("lif", "back")] + [("lif", "back")])


def _subgraph():
    nodes, edges = _chain(("fc", _w()), ("rnn", _graph(*_chain(("a", _w(3, 3)), ("b", _lif(3))))))
    return _graph(nodes, edges)


REFUSED = {
    "branch": (_branching, "node 'in' feeds 2 nodes"),
    "recurrent": (_recurrent, "edge 'back' → 'lif' closes a loop"),
    "subgraph": (_subgraph, "node 'rnn' is a subgraph"),
    "unknown node": (lambda: _graph(*_chain(("fc", _w()), ("s", nir.Scale(scale=np.ones(3))),
                                            ("lif", _lif(3)))), "node 's' (Scale)"),
    "pooling": (lambda: _graph(*_chain(("fc", _w()), ("p", nir.SumPool2d(
        kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))))),
        "node 'p' (SumPool2d)"),
    "no synapse": (lambda: _graph(*_chain(("lif", _lif(4)), ("fc", _w()))), "node 'lif' (LIF)"),
    "two synapses": (lambda: _graph(*_chain(("fc", _w(4, 4)), ("fc2", _w()), ("lif", _lif(3)))),
                     "node 'fc2' (Linear): follows 'fc'"),
    "no neurons at the end": (lambda: _graph(*_chain(("fc", _w(4, 4)), ("lif", _lif(4)),
                                                     ("fc2", _w()))), "node 'fc2' (Linear) ends"),
    "taus differ in a layer": (lambda: _graph(*_chain(("fc", _w()), ("lif", nir.LIF(
        tau=np.array([1e-3, 2e-3, 1e-3]), r=np.full(3, 10.0), v_leak=np.zeros(3),
        v_threshold=np.ones(3), v_reset=np.zeros(3))))), "node 'lif' (LIF): its voltage decays differ"),
    "taus differ between layers": (lambda: _graph(*_chain(("fc", _w(4, 4)), ("lif", _lif(4)),
                                                          ("fc2", _w()), ("lif2", _lif(3, 5e-4)))),
                                   "node 'lif2' (LIF): its voltage decay 819/4096 differs from "
                                   "node 'lif'"),
    "negative threshold": (lambda: _graph(*_chain(("fc", _w()), ("if", nir.IF(
        r=np.ones(3), v_threshold=-np.ones(3))))), "node 'if' (IF): v_threshold must be positive"),
    "shape mismatch": (lambda: _graph(*_chain(("fc", _w(3, 5)), ("lif", _lif(3)))),
                       "node 'fc' (Linear): takes 5 inputs"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unmappable_graphs_are_refused_naming_the_node(case):
    build, message = REFUSED[case]
    with pytest.raises(NeurokdError) as err:
        nir_io.chain_to_snn(nir_io.parse_chain(build()))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_recurrent_snntorch_layer_is_refused(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4),
                              snn.RLeaky(beta=torch.full((4,), 0.9), linear_features=4,
                                         init_hidden=True, output=True))
    graph = export_to_nir(net, torch.zeros(1, 8), ignore_dims=[0])
    nir.write(str(tmp_path / "r.nir"), graph)
    with pytest.raises(NeurokdError, match="closes a loop"):
        nir_io.parse_chain(nir_io.read_graph(tmp_path / "r.nir"))


def test_files_that_are_not_nir_graphs_are_refused(tmp_path):
    text = tmp_path / "a.nir"
    text.write_text("not hdf5")
    with pytest.raises(NeurokdError, match="not an HDF5 file"):
        nir_io.read_graph(text)
    other = tmp_path / "b.nir"
    with h5py.File(other, "w") as h:
        h.create_dataset("x", data=np.zeros(3))
    with pytest.raises(NeurokdError, match="not a NIR graph"):
        nir_io.read_graph(other)
    broken = tmp_path / "c.nir"
    with h5py.File(broken, "w") as h:
        h.create_group("node").create_dataset("type", data=b"Wormhole")
    with pytest.raises(NeurokdError, match="node 'node' has type 'Wormhole', which NIR does not define"):
        nir_io.read_graph(broken)
    fieldless = tmp_path / "d.nir"
    with h5py.File(fieldless, "w") as h:
        h.create_group("node").create_dataset("type", data=b"Affine")
    with pytest.raises(NeurokdError, match="unreadable NIR graph"):
        nir_io.read_graph(fieldless)
    with pytest.raises(NeurokdError, match="no such NIR file"):
        nir_io.read_graph(tmp_path / "missing.nir")


# ---------------------------------------------------------------- export
def test_if_network_exports_to_snntorch_spike_for_spike(tmp_path):
    """Integrate-and-fire (no decay): snntorch's float32 computes the same as slayer's integers."""
    model = float_net(IF_NEURON)
    ours, theirs, lag = against_snntorch(model, tmp_path / "if.nir", spikes((40, 1, 8, 8)))
    assert ours.sum() > 50
    assert nir_io.spike_agreement(ours, theirs, lag)["spike_match"] == 1.0


def test_cuba_network_exports_to_snntorch(tmp_path):
    """neurokd's default neuron (current and voltage decay): the graph's float states differ
    from the chip's integer ones (rounding toward zero) in a few bins."""
    model = float_net({})
    graph = nir_io.snn_to_nir(model)
    assert type(graph.nodes["neuron_0"]).__name__ == "CubaLIF"
    ours, theirs, lag = against_snntorch(model, tmp_path / "cuba.nir", spikes((40, 1, 8, 8)))
    agree = nir_io.spike_agreement(ours, theirs, lag)
    assert ours.sum() > 50
    assert agree["spike_match"] > 0.995 and agree["prediction_agreement"] > 0.95


def test_quantized_network_exports_its_integers(tmp_path):
    model = float_net(IF_NEURON, layers=[{"type": "dense", "units": 32},
                                         {"type": "dense", "units": 10}])
    q = QuantSpikingNet.from_snn(model, [8, 4], "fixed", step_rule="max").eval()
    path = tmp_path / "q.nir"
    ours, theirs, lag = against_snntorch(q, path, spikes((40, 1, 8, 8)))
    assert ours.sum() > 20
    assert nir_io.spike_agreement(ours, theirs, lag)["spike_match"] == 1.0
    assert nir_io.read_nir_meta(path)["model"] == "quantized"
    w = nir.read(str(path)).nodes["synapse_1"].weight * 64  # 4 bits: multiples of 2^5
    assert np.array_equal(w, np.round(w / 32) * 32) and len(np.unique(w)) <= 16


def test_biased_integrate_and_fire_network_exports_exactly(tmp_path):
    """A network with biases (as ``convert`` makes): Lava adds them from the first step, before
    the input arrives; the graph, without delays, sees the input after the window's lead frames."""
    torch.manual_seed(2)
    spec = ArchSpec(input_shape=[20], layers=[{"type": "dense", "units": 16},
                                              {"type": "dense", "units": 10}], neuron=IF_NEURON)
    q = QuantSpikingNet(spec, load_profile("loihi2"), [8, 8], "fixed", bias=True).eval()
    with torch.no_grad():
        for w, b in zip(q.weights, q.biases):
            w.mul_(3)
            b.uniform_(-0.05, 0.1)
        q.threshold_offset.fill_(1.0)
    path = tmp_path / "b.nir"
    ours, theirs, lag = against_snntorch(q, path, spikes((40, 20)))
    assert lag == 0 and type(nir.read(str(path)).nodes["synapse_0"]).__name__ == "Affine"
    assert ours.sum() > 100
    assert nir_io.spike_agreement(ours, theirs, lag)["spike_match"] == 1.0


def test_dt_sets_the_decays():
    nodes, edges = _chain(("fc", _w()), ("lif", _lif(3, tau=1e-3)))
    for dt, decay in ((1e-4, 410), (5e-4, 2048)):
        res = nir_io.chain_to_snn(nir_io.parse_chain(_graph(nodes, edges), dt=dt))
        assert res.model.blocks[0].neuron.cx_voltage_decay == decay
    with pytest.raises(NeurokdError, match="dt must be a number of seconds from 1e-12"):
        nir_io.parse_chain(_graph(nodes, edges), dt=0.0)


def test_round_trip_through_nir_is_exact(tmp_path):
    for neuron in (IF_NEURON, {}):
        model = float_net(neuron)
        nir_io.export_nir(model, tmp_path / "rt.nir", {})
        back = nir_io.chain_to_snn(nir_io.parse_chain(nir_io.read_graph(tmp_path / "rt.nir")))
        spec, again = model.spec, back.model.spec
        assert again.layers == spec.layers and again.input_shape == spec.input_shape
        assert again.neuron.threshold == spec.neuron.threshold
        one, two = model.blocks[0].neuron, back.model.blocks[0].neuron
        assert (one.cx_current_decay, one.cx_voltage_decay) == (two.cx_current_decay,
                                                                two.cx_voltage_decay)
        x = spikes((20, 1, 8, 8))
        with torch.no_grad():
            assert torch.equal(back.model(x), model(x))
        assert "weights 8-bit" not in {a["kind"] for a in back.approximations}


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    net = dense_snntorch(seed=3)
    with torch.no_grad():
        net[1].weight.mul_(3)
        net[3].weight.mul_(3)
    return write_snntorch(net, (1, 8, 8), tmp_path_factory.mktemp("nir") / "digits.nir")


def test_cli_import_writes_a_checkpoint_quantize_accepts(graph_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["import", str(graph_file), "--out", str(out), "-T", "8",
                 "--set", "data.limit=300"]) == 0
    printed = capsys.readouterr().out
    assert "approximation (decay rounded) at node '2'" in printed
    assert {p.name for p in out.iterdir()} >= {"snn.pt", "spec.yaml", "config.yaml", "metrics.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["voltage_decay"] == 410 and metrics["current_decay"] == 4096
    assert {a["kind"] for a in metrics["approximations"]} >= {"decay rounded", "weights 8-bit"}
    assert 0 <= metrics["import_spike_match"] <= 1
    model, meta = pipeline.load_snn(out / "snn.pt")
    assert meta["timesteps"] == 8 and meta["nir"]["approximations"] == metrics["approximations"]
    assert isinstance(model, SpikingNet)
    # a second import into the same directory is refused without --force
    assert main(["import", str(graph_file), "--out", str(out), "--set", "data.limit=300"]) == 2
    assert "already holds files" in capsys.readouterr().err


def test_cli_import_refuses_bad_graphs_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.nir"
    nir.write(str(bad), _branching())
    assert main(["import", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "node 'in' feeds 2 nodes" in err
    assert not (tmp_path / "run").exists()


def test_cli_export_nir_and_force_rules(tmp_path, capsys):
    cfg = build_config(overrides=["data.limit=200", "student.hidden=16", "student.timesteps=6"])
    ds = pipeline.load_data(cfg)
    torch.manual_seed(0)
    model = SpikingNet(pipeline.student_spec(cfg, ds))
    ckpt = pipeline.save_snn(tmp_path / "snn.pt", model, cfg, ds)
    out = tmp_path / "net.nir"
    args = ["export", "--snn", str(ckpt), "--out", str(out), "--format", "nir"]
    assert main(args) == 0
    meta = nir_io.read_nir_meta(out)
    assert meta["timesteps"] == 6 and meta["model"] == "float" and meta["window_pad"] == 2
    assert main(args) == 2  # exists
    assert main(args + ["--force"]) == 0  # neurokd's own NIR file
    other = tmp_path / "other.nir"
    nir.write(str(other), _branching())
    assert main(["export", "--snn", str(ckpt), "--out", str(other), "--format", "nir",
                 "--force"]) == 2
    assert "not written by neurokd" in capsys.readouterr().err


# ---------------------------------------------------------------- snntorch → Lava
def _train_snntorch(ds, timesteps, epochs=6, seed=0):
    """A small snntorch network trained for a few seconds on neurokd's rate-coded windows."""
    from neurokd.data.encoders import get_encoder

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 48, bias=False), leaky(48),
                              torch.nn.Linear(48, 10, bias=False), leaky(10))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(seed)
    enc = get_encoder("rate")
    x_all, y_all = torch.as_tensor(ds.train.x), torch.as_tensor(ds.train.y)
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            x = enc(x_all[idx], timesteps, gen)
            for m in net.modules():  # a fresh state per batch
                if isinstance(m, snn.Leaky):
                    m.mem = torch.zeros(0)
            counts = torch.stack([net(x[..., t]) for t in range(timesteps)], -1).sum(-1)
            loss = torch.nn.functional.cross_entropy(counts, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


@pytest.mark.lava
def test_snntorch_model_through_import_quantize_and_lava(tmp_path):
    cfg = build_config(overrides=["data.limit=700", "student.timesteps=12", "quant.method=ptq"])
    ds = pipeline.load_data(cfg)
    net = _train_snntorch(ds, 12)
    prepare = pipeline.make_prepare("rate", 12, 0)
    x_test, y_test = next(iter(encoded_batches(ds.test, prepare, seed=0, batch_size=10_000)))
    snntorch_acc = float((nir_io.snntorch_spikes(net, x_test).sum(-1).argmax(1).numpy()
                          == y_test).mean())
    path = write_snntorch(net, (1, 8, 8), tmp_path / "digits.nir")
    model, meta, metrics = pipeline.import_nir(path, cfg, ds)
    assert metrics["nir_reference_accuracy"] == pytest.approx(snntorch_acc)  # the graph is snntorch
    qmodel, qmetrics = pipeline.quantize(model, meta, cfg, ds, progress=False)
    net_path = pipeline.export_snn(qmodel, tmp_path / "net.net", meta, ds)
    res = pipeline.verify(qmodel, net_path, ds, read_meta(net_path), 16, "sim", progress=False)
    print(f"snntorch {snntorch_acc:.4f}, imported float {metrics['snn_accuracy']:.4f}, "
          f"8-bit {qmetrics['quant_accuracy']:.4f}, Lava {res['lava_accuracy']:.4f} on 16")
    assert snntorch_acc > 0.75
    assert abs(metrics["snn_accuracy"] - snntorch_acc) < 0.05
    assert abs(qmetrics["quant_accuracy"] - snntorch_acc) < 0.05
    assert res["lava_spike_match"] == 1.0 and res["lava_prediction_agreement"] == 1.0


TUTORIAL_NET = '''
import snntorch as snn
import torch
from torch import nn


def make_net(hidden: int = 32, per_neuron: bool = False):
    """As snntorch's tutorials write it: scalar beta, biases, init_hidden (per_neuron: one beta
    per neuron instead, the form snntorch's own export needs)."""
    beta = torch.full((hidden,), 0.9) if per_neuron else 0.9
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), snn.Leaky(beta=beta, init_hidden=True),
                         nn.Linear(hidden, 10),
                         snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_mechanism="zero"))
'''


def test_import_takes_an_snntorch_model_written_the_tutorials_way(tmp_path, capsys):
    """neurokd import --snntorch MODULE:FACTORY --weights: scalar parameters are broadcast so that
    snntorch's own export writes the graph (into the run), the reset by subtraction is stated,
    and the imported network is the graph's, spike for spike up to the stated approximations."""
    import sys

    (tmp_path / "tutorial_net.py").write_text(TUTORIAL_NET)
    sys.path.insert(0, str(tmp_path))
    try:
        import tutorial_net

        torch.manual_seed(0)
        torch.save(tutorial_net.make_net().state_dict(), tmp_path / "w.pt")
        torch.manual_seed(0)
        torch.save(tutorial_net.make_net(per_neuron=True).state_dict(), tmp_path / "w2.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tutorial_net", None)
    r = run_cli("import", "--snntorch", "tutorial_net:make_net", "--weights", "w.pt", "--dataset",
                "digits", "-T", "16", "--out", "imp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "imp" / "metrics.json").read_text())
    notes = [(a["node"], a["kind"], a["detail"]) for a in m["approximations"]]
    assert ("2", "broadcast", "scalar beta 0.9 given to each of its 32 neurons (exact)") in notes
    assert ("4", "broadcast", "scalar beta 0.9 given to each of its 10 neurons (exact)") in notes
    resets = [n for n in notes if n[1] == "reset"]
    assert resets == [("2", "reset", "resets by subtracting the threshold (snntorch's default); "
                                     "Loihi resets to zero")]  # node 4 resets to zero: exact
    assert m["source"]["kind"] == "snntorch" and m["source"]["factory"] == "tutorial_net:make_net"
    assert (tmp_path / "imp" / "graph.nir").is_file() and m["import_spike_match"] > 0.95
    assert pipeline.load_snn(tmp_path / "imp" / "snn.pt")[0].spec.shapes()[-1] == (10,)
    # per-neuron parameters need no broadcast; bad invocations are one line and write nothing
    r = run_cli("import", "--snntorch", "tutorial_net:make_net", "--kwargs", "{per_neuron: true}",
                "--weights", "w2.pt", "--dataset", "digits", "-T", "16", "--out", "imp2",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m2 = json.loads((tmp_path / "imp2" / "metrics.json").read_text())
    assert not any(a["kind"] == "broadcast" and "beta" in a["detail"] and a["node"] == "2"
                   for a in m2["approximations"])
    for args, message in ((["--snntorch", "tutorial_net:make_net"], "needs the model's trained weights"),
                          ([], "give a NIR graph file or --snntorch"),
                          (["--snntorch", "tutorial_net:nope", "--weights", "w.pt"],
                           "tutorial_net has no attribute 'nope'")):
        r = run_cli("import", *args, "--out", "bad", cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and not (tmp_path / "bad").exists()
