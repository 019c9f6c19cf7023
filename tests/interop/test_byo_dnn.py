"""Bring your own DNN: ONNX files and ``module:factory`` teachers, converted and distilled."""

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from neurokd import pipeline
from neurokd.cli import main
from neurokd.config import RunConfig
from neurokd.errors import NeurokdError
from neurokd.fileio import read_yaml
from neurokd.hardware import load_profile
from neurokd.interop.teachers import load_dnn, teacher_ref
from neurokd.convert.dnn import convert_dnn

DIGITS = ((1, 8, 8), 10)  # the digits dataset's sample shape and class count
FAST = ["--method", "plain", "-T", "4", "--set", "data.limit=150", "--no-progress"]


# ---------------------------------------------------------------- the DNNs (also the factories)
def make_mlp() -> nn.Module:
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(64, 24), relu1=nn.ReLU(), drop=nn.Dropout(0.1),
        head=nn.Linear(24, 10)))


def make_cnn(width: int = 4) -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, width, 3, padding=1), bn1=nn.BatchNorm2d(width), relu1=nn.ReLU(),
        pool1=nn.AvgPool2d(2), conv2=nn.Conv2d(width, 8, 3, stride=2, padding=1), relu2=nn.ReLU(),
        flatten=nn.Flatten(), head=nn.Linear(8 * 2 * 2, 10)))


NOT_A_FACTORY = 3


def trained_like(factory, seed: int = 0) -> nn.Module:
    """A model with seeded weights, positive-leaning so that its layers fire, and random
    BatchNorm statistics."""
    torch.manual_seed(seed)
    model = factory()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.bias.add_(0.05)
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.1)
    return model.eval()


def export(model: nn.Module, path: Path, keep_batchnorm: bool = True, shape=(1, 1, 8, 8)) -> Path:
    """``torch.onnx.export`` with a dynamic batch; ``keep_batchnorm`` keeps BatchNormalization
    nodes (the exporter otherwise folds them into the convolution itself)."""
    extra = {"training": torch.onnx.TrainingMode.PRESERVE,
             "do_constant_folding": False} if keep_batchnorm else {}
    torch.onnx.export(model.eval(), torch.zeros(*shape), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      **extra)
    return path


def integers(model):
    return [(r["vth"], r["weight"], r["bias"]) for r in model.export_integers()]


def same_integers(a, b) -> bool:
    return len(a) == len(b) and all(
        va == vb and torch.equal(wa, wb) and torch.equal(ba, bb)
        for (va, wa, ba), (vb, wb, bb) in zip(a, b))


# ---------------------------------------------------------------- the mapping
@pytest.mark.parametrize("factory", [make_mlp, make_cnn])
def test_onnx_graph_maps_onto_the_same_layers_and_outputs(tmp_path, factory):
    model = trained_like(factory)
    net, source = load_dnn(export(model, tmp_path / "m.onnx"), *DIGITS)
    # node names /fc1/Gemm, /relu1/Relu, ... keep the module paths (Dropout is dropped)
    assert list(net._modules) == [n for n in model._modules if n != "drop"]
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), model(x))
    assert source["kind"] == "onnx" and len(source["sha256"]) == 64


def test_folded_batchnorm_global_pool_and_view_flatten_map_exactly(tmp_path):
    """The exporter's own BatchNorm folding, GlobalAveragePool, and ``x.view(x.size(0), -1)``
    (Shape → Gather → Unsqueeze → Concat → Reshape) as a flatten."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.head = nn.Linear(6, 10)

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 1)
            return self.head(x.view(x.size(0), -1))

    model = trained_like(Net)
    path = export(model, tmp_path / "net.onnx", keep_batchnorm=False)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" not in ops and "GlobalAveragePool" in ops and "Shape" in ops
    net, _ = load_dnn(path, *DIGITS)
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "AvgPool2d", "Flatten", "Linear"]
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-5)


def test_matmul_add_and_flat_input_graphs_map_exactly(tmp_path):
    """A graph written by another tool: flat input [N, 64], MatMul + Add, BatchNormalization."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(64, 12)).astype(np.float32), rng.normal(size=12).astype(np.float32)
    w2, b2 = rng.normal(size=(12, 10)).astype(np.float32), rng.normal(size=(1, 10)).astype(np.float32)
    bn = [rng.random(12).astype(np.float32) + 0.5 for _ in range(4)]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (bn[0], "g"), (bn[1], "be"),
              (bn[2], "mu"), (bn[3], "var")]]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="dense1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             helper.make_node("BatchNormalization", ["hb", "g", "be", "mu", "var"], ["hn"], name="bn"),
             helper.make_node("Relu", ["hn"], ["r"], name="relu1"),
             helper.make_node("MatMul", ["r", "w2"], ["o"], name="dense2"),
             helper.make_node("Add", ["b2", "o"], ["y"], name="bias2")]
    graph = helper.make_graph(nodes, "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])], inits)
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    net, _ = load_dnn(path, *DIGITS)
    x = torch.rand(5, 1, 8, 8)
    h = x.reshape(5, 64).numpy() @ w1 + b1
    h = np.maximum((h - bn[2]) / np.sqrt(bn[3] + 1e-5) * bn[0] + bn[1], 0)
    assert np.allclose(net(x).detach().numpy(), h @ w2 + b2, atol=1e-4)
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_external_weights_are_read_only_from_the_models_folder(tmp_path):
    model = trained_like(make_mlp)
    proto = onnx.load(str(export(model, tmp_path / "m.onnx")))
    inside = tmp_path / "inside"
    inside.mkdir()
    onnx.save_model(proto, str(inside / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    net, _ = load_dnn(inside / "m.onnx", *DIGITS)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), model(x))
    # A file that points its tensors outside its folder is refused before anything is read.
    outside = onnx.load(str(inside / "m.onnx"), load_external_data=False)
    for t in outside.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../inside/weights.bin"
    (tmp_path / "elsewhere").mkdir()
    onnx.save_model(outside, str(tmp_path / "elsewhere" / "m.onnx"))
    with pytest.raises(NeurokdError, match=r"refused: tensor .* external data from '\.\./inside"):
        load_dnn(tmp_path / "elsewhere" / "m.onnx", *DIGITS)


# ---------------------------------------------------------------- the commands
def _direct(run: Path, model: nn.Module):
    """``convert_dnn`` on the torch module itself, with the run's configuration and data."""
    cfg = RunConfig(**read_yaml(run / "config.yaml"))
    ds = pipeline.load_data(cfg)
    snn, _ = convert_dnn(model, ds, cfg.student.timesteps, cfg.convert, load_profile(cfg.hardware),
                         cfg.student.encoder, seed=cfg.seed, progress=False)
    return snn


@pytest.mark.parametrize("name, factory", [("mlp", make_mlp), ("cnn", make_cnn)])
def test_convert_onnx_and_factory_give_the_integers_of_the_torch_module(tmp_path, monkeypatch,
                                                                        name, factory):
    monkeypatch.chdir(tmp_path)
    model = trained_like(factory)
    export(model, tmp_path / "m.onnx")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert main(["convert", "--teacher", "m.onnx", "--out", "onnx", *FAST]) == 0
    assert main(["convert", "--teacher", f"tests.interop.test_byo_dnn:make_{name}",
                 "--teacher-weights", "w.pt", "--out", "fac", *FAST]) == 0
    direct = integers(_direct(tmp_path / "onnx", model))
    for run in ("onnx", "fac"):
        snn, _ = pipeline.load_snn(tmp_path / run / "snn.pt")
        assert same_integers(integers(snn), direct), run
        assert (tmp_path / run / "network.net").is_file()
    assert sum(int(w.abs().sum()) for _, w, _ in direct) > 0
    onnx_src = json.loads((tmp_path / "onnx" / "metrics.json").read_text())["teacher_source"]
    fac_src = json.loads((tmp_path / "fac" / "metrics.json").read_text())["teacher_source"]
    assert onnx_src["kind"] == "onnx" and onnx_src["path"] == "m.onnx"
    assert fac_src == {"kind": "factory", "factory": f"tests.interop.test_byo_dnn:make_{name}",
                       "kwargs": {}, "weights": "w.pt", "weights_sha256": fac_src["weights_sha256"]}
    assert len(fac_src["weights_sha256"]) == 64


def test_factory_from_the_current_folder_with_kwargs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "byo_cwd_nets.py").write_text(
        "from tests.interop.test_byo_dnn import make_cnn\n"
        "def build(width=4):\n    return make_cnn(width)\n")
    model = trained_like(lambda: make_cnn(6))
    torch.save(model.state_dict(), tmp_path / "w6.pt")
    ref = teacher_ref("byo_cwd_nets:build", "w6.pt", {"width": 6}, search_path=str(tmp_path))
    net, source = load_dnn(ref, *DIGITS)
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), model(x))
    assert source["kwargs"] == {"width": 6}
    assert str(tmp_path) not in __import__("sys").path  # the folder was on the path only to import


def test_distill_with_an_onnx_teacher_and_reuse_its_colearned_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = trained_like(make_mlp)
    export(model, tmp_path / "t.onnx")
    assert main(["distill", "--teacher", "t.onnx", "--epochs", "1", "--set", "data.limit=120",
                 "--set", "student.hidden=16", "-T", "4", "--out", "d", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["method"] == "colearn" and metrics["snn_epochs"] == 1
    assert metrics["teacher_source"]["kind"] == "onnx"
    assert (tmp_path / "d" / "snn.pt").is_file() and not (tmp_path / "d" / "teacher.pt").exists()
    # the co-learned teacher's weights, loadable over the same ONNX graph
    saved = torch.load(tmp_path / "d" / "teacher_weights.pt", weights_only=True)
    net, source = load_dnn(teacher_ref("t.onnx", "d/teacher_weights.pt"), *DIGITS)
    assert torch.equal(net.fc1.weight, saved["fc1.weight"])
    assert not torch.equal(net.fc1.weight, model.fc1.weight)  # co-learning moved it
    assert source["weights"] == "d/teacher_weights.pt"


# ---------------------------------------------------------------- refusals
class _Middle(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc1, self.act, self.head = nn.Linear(64, 8), act, nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.act(self.fc1(x.flatten(1))))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.head(torch.relu(self.fc2(h)) + h)


@pytest.mark.parametrize("model, message", [
    (_Middle(nn.Sigmoid()), r"operator 'Sigmoid' \(node '/act/Sigmoid'\) is not supported"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(1)),
     r"operator 'Softmax' .* \(export the logits, without the final Softmax\)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10)),
     r"operator 'MaxPool' .*use average pooling"),
    (_Residual(), r"node '/Add' \(Add\): adds '/Relu_output_0' to the layer's output \(a branch"),
])
def test_unsupported_operators_are_refused_by_name(tmp_path, model, message):
    path = export(model, tmp_path / "bad.onnx", keep_batchnorm=False)
    with pytest.raises(NeurokdError, match=message):
        load_dnn(path, *DIGITS)


def test_cli_refuses_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    export(_Middle(nn.Sigmoid()), tmp_path / "sig.onnx", keep_batchnorm=False)
    (tmp_path / "text.onnx").write_text("not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "byo_refusals.py").write_text("NOT_CALLABLE = 3\n")
    torch.save(trained_like(make_mlp).state_dict(), tmp_path / "mlp.pt")
    torch.save({**trained_like(make_mlp).state_dict(), "extra.weight": torch.zeros(2)},
               tmp_path / "extra.pt")
    torch.jit.save(torch.jit.script(make_mlp()), str(tmp_path / "scripted.pt"))
    cases = [
        (["convert", "--teacher", "sig.onnx"], "operator 'Sigmoid' (node '/act/Sigmoid')"),
        (["convert", "--teacher", "text.onnx"], "text.onnx: not an ONNX model"),
        (["convert", "--teacher", "empty.onnx"], "empty.onnx: not an ONNX model"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_cnn",
          "--teacher-weights", "mlp.pt"],
         "mlp.pt: the weights do not fit tests.interop.test_byo_dnn:make_cnn "
         "(missing keys conv1.weight"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_mlp",
          "--teacher-weights", "extra.pt"], "unexpected keys extra.weight"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_cnn",
          "--teacher-weights", "mlp.pt", "--teacher-kwargs", "{width: 3}"], "missing keys"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_mlp", "--teacher-weights",
          "scripted.pt"], "refused: the archive holds TorchScript code"),
        (["convert", "--teacher", "no_such_module_xyz:make", "--teacher-weights", "mlp.pt"],
         "no module named 'no_such_module_xyz'"),
        (["convert", "--teacher", "byo_refusals:NOT_CALLABLE", "--teacher-weights", "mlp.pt"],
         "NOT_CALLABLE is a int, not a callable factory"),
        (["convert", "--teacher", "byo_refusals:missing", "--teacher-weights", "mlp.pt"],
         "byo_refusals has no attribute 'missing'"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_mlp"],
         "needs its trained weights"),
        (["convert", "--teacher", "sig.onnx", "--teacher-kwargs", "{a: 1}"],
         "--teacher-kwargs goes with a module:factory teacher"),
        (["convert", "--teacher", "tests.interop.test_byo_dnn:make_mlp",
          "--teacher-weights", "mlp.pt", "--dataset", "sensing"],
         "the teacher cannot take the data's input"),
        (["distill", "--teacher", "text.onnx"], "text.onnx: not an ONNX model"),
    ]
    for args, message in cases:
        capsys.readouterr()
        code = main([*args, "--out", "bad", *(FAST if args[0] == "convert" else ["--no-progress"])])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert not (tmp_path / "bad").exists()


def test_model_and_data_must_agree(tmp_path):
    path = export(trained_like(make_cnn), tmp_path / "cnn.onnx")
    with pytest.raises(NeurokdError, match=r"takes input \[N, 1, 8, 8\], the data is \[N, 1, 6, 6\]"):
        load_dnn(path, (1, 6, 6), 10)
    with pytest.raises(NeurokdError, match="gives outputs of shape \\[10\\] per sample; the data "
                                           "has 5 classes"):
        load_dnn(path, (1, 8, 8), 5)
    with pytest.raises(NeurokdError, match="gives outputs of shape \\[10\\] per sample"):
        load_dnn(teacher_ref("tests.interop.test_byo_dnn:make_mlp", _weights(tmp_path)),
                 (1, 8, 8), 4)


def _weights(tmp_path: Path) -> Path:
    torch.save(make_mlp().state_dict(), tmp_path / "w.pt")
    return tmp_path / "w.pt"


def make_lenet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def trained_lenet(ds, seed: int = 0, epochs: int = 30) -> nn.Module:
    """A LeNet with max pooling trained on digits by plain torch, as a user's own model."""
    torch.manual_seed(seed)
    model = make_lenet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.as_tensor(ds.train.x, dtype=torch.float32), torch.as_tensor(ds.train.y)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model.eval()


def test_a_max_pooling_onnx_teacher_teaches_by_kd_and_conversion_names_what_it_cannot_map(
        tmp_path, monkeypatch, capsys):
    """A graph conversion cannot map (MaxPool) is read whole by onnx2torch for every use that
    keeps it a DNN (distill, report --teacher, quantize --kd-from), with the outputs of the torch
    module it was exported from; convert still refuses it, naming the operator."""
    from neurokd.config import build_config

    monkeypatch.chdir(tmp_path)
    ds = pipeline.load_data(build_config())
    lenet = trained_lenet(ds)
    export(lenet, tmp_path / "lenet.onnx", keep_batchnorm=False)
    model, source = load_dnn("lenet.onnx", *DIGITS, convertible=False)
    assert source["reader"] == "onnx2torch" and "MaxPool" in model.neurokd_unconvertible
    x = torch.as_tensor(ds.test.x[:64], dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(model(x), lenet(x), atol=1e-5)
    with pytest.raises(NeurokdError, match="operator 'MaxPool'"):
        load_dnn("lenet.onnx", *DIGITS)  # what conversion reads
    teacher_acc = float((lenet(torch.as_tensor(ds.test.x, dtype=torch.float32)).argmax(1).numpy()
                         == ds.test.y).mean())
    assert main(["distill", "--teacher", "lenet.onnx", "--dataset", "digits", "--method", "kd",
                 "--epochs", "4", "--out", "d", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert teacher_acc > 0.9 and metrics["snn_accuracy"] > 0.8
    capsys.readouterr()
    assert main(["report", "--snn", "d/snn.pt", "--teacher", "lenet.onnx", "--samples", "64"]) == 0
    assert "| DNN teacher (lenet.onnx) |" in capsys.readouterr().out
    assert main(["quantize", "--snn", "d/snn.pt", "--kd-from", "lenet.onnx", "--epochs", "1",
                 "--out", "q", "--no-progress"]) == 0
    assert main(["convert", "--teacher", "lenet.onnx", "--dataset", "digits", "--out", "c"]) == 2
    assert "operator 'MaxPool' (node '/2/MaxPool') is not supported" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
