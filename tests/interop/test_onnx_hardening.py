"""Hostile teachers: ONNX files and ``module:factory`` teachers that a user (or someone handing a
user a file) gets wrong on purpose, and the conversion of what they hold. Each is refused with
one line naming the tensor, node or layer, before anything is allocated that the input cannot
back; the CLI exits 2 and leaves no run directory."""

import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from neurokd import h5safe
from neurokd.cli import main
from neurokd.config import ConvertConfig
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.interop import teachers as byo
from neurokd.interop.onnx import read_onnx
from neurokd.interop.teachers import load_dnn, teacher_ref
from neurokd.convert.dnn import (Stage, balance_scales, check_calibration, convert_dnn,
                                   dnn_stages, to_quant_snn)

from tests.conftest import REPO
from tests.interop.test_byo_dnn import DIGITS, FAST, export, make_mlp, trained_like

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- building hostile graphs
def _tensor(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def save(path: Path, nodes, inits=(), inp=("n", 1, 8, 8), out="y") -> Path:
    """An opset-17 model of ``nodes`` on a float input ``x`` of shape ``inp``, output ``out``."""
    graph = helper.make_graph(
        list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(inp))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", "k"])], list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def dense(w=None, **gemm):
    """Flatten → Gemm(w) → y: the smallest teacher of the digits."""
    w = RNG.normal(size=(10, 64)).astype(np.float32) if w is None else w
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1, **gemm)]
    return nodes, [_tensor("w", w)]


def conv_net(channels=4, kernel=3, head=True, **conv):
    """Conv(w) → Relu → GlobalAveragePool → Flatten → Gemm: a teacher of any image size."""
    w = RNG.normal(size=(channels, 1, kernel, kernel)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], name="conv", **conv),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat")]
    inits = [_tensor("cw", w)]
    if head:
        nodes.append(helper.make_node("Gemm", ["f", "hw"], ["y"], name="fc", transB=1))
        inits.append(_tensor("hw", RNG.normal(size=(10, channels)).astype(np.float32)))
    return nodes, inits


def refused(path, match, shape=DIGITS[0], classes=DIGITS[1]):
    with pytest.raises(NeurokdError, match=match) as info:
        load_dnn(path, shape, classes)
    assert "\n" not in str(info.value)
    return str(info.value)


def cli_refuses(tmp_path, capsys, args, message, out="bad"):
    capsys.readouterr()
    extra = FAST if args[0] == "convert" else ["--no-progress", "--set", "data.limit=120"]
    code = main([*args, "--out", out, *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, (args, code, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / out).exists()
    return err


# ---------------------------------------------------------------- tensors as stored
def test_external_location_with_a_nul_byte_is_refused(tmp_path):
    nodes, inits = dense()
    t = inits[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w\x00.bin"), ("offset", "0"), ("length", "2560")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    refused(save(tmp_path / "nul.onnx", nodes, inits),
            r"refused: tensor 'w' reads external data from 'w\\x00\.bin', which is not a file")


def test_unknown_and_unread_tensor_types_are_refused_by_name(tmp_path):
    nodes, inits = dense()
    inits[0].data_type = 9999
    refused(save(tmp_path / "t9999.onnx", nodes, inits),
            r"tensor 'w' is of type data_type 9999 \(no ONNX type\); neurokd reads float")
    nodes, inits = dense()
    value = helper.make_tensor("cv", TensorProto.COMPLEX64, [1], [1 + 2j])
    nodes.insert(0, helper.make_node("Constant", [], ["unused"], name="k", value=value))
    refused(save(tmp_path / "complex.onnx", nodes, inits), r"tensor 'cv' is of type COMPLEX64")


@pytest.mark.parametrize("case, match", [
    ("raw_longer", r"tensor 'w' declares shape \[10, 64\] \(2560 bytes of FLOAT\) but stores "
                   r"2568 bytes"),
    ("raw_huge_dims", r"tensor 'w' declares shape \[10, 100000000\] \(4000000000 bytes of FLOAT\) "
                      r"but stores 2560 bytes"),
    ("typed_longer", r"tensor 'w' declares shape \[10, 64\] \(640 values of FLOAT\) but stores "
                     r"641 values"),
    ("negative_dims", r"tensor 'w' has negative dimensions \[-10, -64\]"),
    ("wrong_field", r"tensor 'w' of type FLOAT stores values in int64_data"),
])
def test_declared_sizes_must_match_the_stored_bytes(tmp_path, case, match):
    nodes, inits = dense()
    t = inits[0]
    if case == "raw_longer":
        t.raw_data += b"\0" * 8
    elif case == "raw_huge_dims":
        t.dims[:] = [10, 100_000_000]
    elif case == "typed_longer":
        values = list(np.frombuffer(t.raw_data, np.float32)) + [0.0]
        t.ClearField("raw_data")
        t.float_data.extend(values)
    elif case == "negative_dims":
        t.dims[:] = [-10, -64]
    else:
        t.int64_data.extend([1, 2])
    refused(save(tmp_path / f"{case}.onnx", nodes, inits), match)


def test_external_data_is_sized_before_it_is_read(tmp_path, monkeypatch):
    nodes, inits = dense()
    t = inits[0]
    (tmp_path / "w.bin").write_bytes(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    ok = save(tmp_path / "ok.onnx", nodes, inits)
    assert read_onnx(ok).graph.initializer[0].raw_data == (tmp_path / "w.bin").read_bytes()
    # a shape larger than the file holds
    t.dims[:] = [10, 640]
    refused(save(tmp_path / "long.onnx", nodes, inits),
            r"tensor 'w' declares 25600 bytes of values at offset 0 of 'w.bin', which holds only "
            r"2560 bytes")
    # a length that is not the shape's
    t.dims[:] = [10, 64]
    entry = t.external_data.add()
    entry.key, entry.value = "length", "16"
    refused(save(tmp_path / "length.onnx", nodes, inits),
            r"tensor 'w' declares 2560 bytes of values but its external data is 16 bytes long")
    entry.value = "-5"
    refused(save(tmp_path / "negative.onnx", nodes, inits),
            r"external data length '-5', not a byte count")
    # a shape of terabytes: refused from the header, before the file is opened
    del t.external_data[1:]
    t.dims[:] = [1 << 20, 1 << 20]
    msg = refused(save(tmp_path / "tera.onnx", nodes, inits),
                  r"refused: tensor 'w' declares shape \[1048576, 1048576\] \(4\.0 TB\), more than")
    assert "this machine can spare" in msg
    # and external tensors that together exceed what this machine can spare
    t.dims[:] = [10, 64]
    (tmp_path / "w.bin").write_bytes((tmp_path / "w.bin").read_bytes() * 2)
    twin = onnx.TensorProto()
    twin.CopyFrom(t)
    twin.name = "unused"
    entry = twin.external_data.add()
    entry.key, entry.value = "offset", "2560"
    monkeypatch.setattr(h5safe, "available_memory", lambda: 8000)  # 3.9 KB to spare
    refused(save(tmp_path / "small_machine.onnx", nodes, [t, twin]),
            r"refused: its external data holds 5\.0 KB or more, more than the 3\.9 KB")


def test_an_onnx_file_beyond_what_protobuf_holds_is_refused_unread(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # sparse: nothing is written, nothing must be read
    refused(path, r"huge\.onnx: refused: 3\.0 GB is more than an ONNX file can hold")


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_initializers_are_refused_by_name(tmp_path, bad):
    w = RNG.normal(size=(10, 64)).astype(np.float32)
    w[3, 7] = bad
    refused(save(tmp_path / "nan.onnx", *dense(w)),
            r"initializer 'w' holds NaN or infinite values; a teacher's weights must be finite")


@pytest.mark.parametrize("attrs, match", [
    ({"alpha": float("nan")}, r"node 'fc' \(Gemm\): alpha = nan is not a finite number"),
    ({"alpha": float("inf")}, r"node 'fc' \(Gemm\): alpha = inf is not a finite number"),
    ({"beta": float("-inf")}, r"node 'fc' \(Gemm\): beta = -inf is not a finite number"),
    ({"alpha": 1e30}, r"node 'fc' \(Gemm\): gives the layer a weight of NaN or infinite values"),
])
def test_gemm_scalars_must_keep_the_weights_finite(tmp_path, attrs, match):
    nodes, inits = dense(np.full((10, 64), 1e10, np.float32), **attrs)
    inits.append(_tensor("b", np.zeros(10, np.float32)))
    nodes[1].input.append("b")
    refused(save(tmp_path / "gemm.onnx", nodes, inits), match)


def test_constants_beyond_float32_and_non_finite_constants_are_refused(tmp_path):
    nodes, _ = dense()
    big = np.full((10, 64), 1e300)  # finite as a double, infinite as the float32 a layer holds
    refused(save(tmp_path / "double.onnx", nodes, [_tensor("w", big)]),
            r"node 'fc' \(Gemm\): its weight 'w' holds NaN or infinite values \(or values beyond "
            r"float32's range\)")
    nodes, _ = dense()
    w = RNG.normal(size=(10, 64)).astype(np.float32)
    w[0, 0] = np.nan
    nodes.insert(0, helper.make_node("Constant", [], ["w"], name="const_w", value=_tensor("v", w)))
    refused(save(tmp_path / "const.onnx", nodes),
            r"node 'const_w' \(Constant\): its value holds NaN or infinite values")
    nodes, inits = dense()
    nodes.insert(0, helper.make_node("Constant", [], ["k"], name="const_f", value_float=np.inf))
    refused(save(tmp_path / "constf.onnx", nodes, inits),
            r"node 'const_f' \(Constant\): its value holds NaN or infinite values")


def _batchnorm_net(var, eps=1e-5, gamma=1.0):
    c = len(var)
    nodes, inits = conv_net(channels=c, pads=[1, 1, 1, 1])
    nodes.insert(1, helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["cb"],
                                     name="bn", epsilon=eps))
    nodes[2].input[0] = "cb"
    inits += [_tensor("g", np.full(c, gamma, np.float32)), _tensor("b", np.zeros(c, np.float32)),
              _tensor("m", np.zeros(c, np.float32)), _tensor("v", np.asarray(var, np.float32))]
    return nodes, inits


@pytest.mark.parametrize("var, eps, gamma, match", [
    ([1.0, -0.5, 1.0, 1.0], 1e-5, 1.0, r"node 'bn' \(BatchNormalization\): its variance 'v' "
                                       r"holds negative values \(-0\.5\)"),
    ([1.0] * 4, 0.0, 1.0, r"node 'bn' \(BatchNormalization\): epsilon = 0 must be positive"),
    ([1.0] * 4, -1e-3, 1.0, r"epsilon = -0\.001 must be positive"),
    ([1.0] * 4, float("nan"), 1.0, r"epsilon = nan is not a finite number"),
    ([0.0] * 4, 1e-30, 1e30, r"epsilon = 1e-30 and its variance give an infinite scale"),
])
def test_batchnorm_statistics_must_make_sense(tmp_path, var, eps, gamma, match):
    refused(save(tmp_path / "bn.onnx", *_batchnorm_net(var, eps, gamma)), match)


def test_a_batchnorm_that_checks_out_still_maps(tmp_path):
    net, _ = load_dnn(save(tmp_path / "bn.onnx", *_batchnorm_net([1.0, 0.5, 2.0, 0.0])), *DIGITS)
    assert [type(m).__name__ for m in net] == ["Conv2d", "BatchNorm2d", "ReLU", "AvgPool2d",
                                               "Flatten", "Linear"]
    assert torch.isfinite(net(torch.rand(3, 1, 8, 8))).all()


# ---------------------------------------------------------------- shapes and arithmetic
@pytest.mark.parametrize("op, attrs, match", [
    ("Conv", {"strides": [0, 1]}, r"node 'conv' \(Conv\): strides \[0, 1\]: each must be at "
                                  r"least 1"),
    ("Conv", {"dilations": [1, 0]}, r"dilations \[1, 0\]: each must be at least 1"),
    ("Conv", {"group": 0}, r"group 0 does not divide its 4 output channels"),
    ("Conv", {"kernel_shape": [5, 5]}, r"kernel_shape \[5, 5\] is not its weight's \[3, 3\]"),
    ("Conv", {"pads": [-1, -1, -1, -1]}, r"padding \[-1, -1\] must be non-negative"),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [0, 0]},
     r"node 'pool' \(AveragePool\): strides \[0, 0\]: each must be at least 1"),
    ("AveragePool", {"kernel_shape": [0, 2]}, r"kernel_shape \[0, 2\]: each must be at least 1"),
    ("AveragePool", {"kernel_shape": [9, 9]},
     r"its output would be \[4, -2, -2\] per sample \(the kernel is larger than its padded "
     r"input \[4, 6, 6\]\)"),
    ("AveragePool", {"kernel_shape": [2, 2], "pads": [2, 2, 2, 2]},
     r"padding \[2, 2\] must be non-negative and at most half the kernel \(1\)"),
])
def test_strides_kernels_and_padding_are_checked(tmp_path, op, attrs, match):
    nodes, inits = conv_net(**(attrs if op == "Conv" else {}))
    if op == "AveragePool":
        nodes.insert(2, helper.make_node("AveragePool", ["r"], ["ap"], name="pool", **attrs))
        nodes[3].input[0] = "ap"
    refused(save(tmp_path / "k.onnx", nodes, inits), match)


def _view_flatten(gather_index=0, concat_axis=0, target_dtype=np.int64, squeeze_axes=None):
    """The exporter's ``x.view(x.size(0), -1)``: Shape, Gather, Unsqueeze, Concat, Reshape."""
    nodes, inits = conv_net(pads=[1, 1, 1, 1])
    nodes[3:4] = [
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["t"], name="concat", axis=concat_axis),
        helper.make_node("Reshape", ["p", "t"], ["f"], name="reshape"),
    ]
    if squeeze_axes is not None:  # Unsqueeze → Squeeze → Concat
        nodes.insert(6, helper.make_node("Squeeze", ["n1", "sq"], ["n2"], name="squeeze"))
        nodes[7].input[0] = "n2"
        inits.append(_tensor("sq", np.asarray(squeeze_axes, np.int64)))
    inits += [_tensor("i0", np.asarray(gather_index, np.int64)),
              _tensor("ax0", np.asarray([0], np.int64)),
              _tensor("minus1", np.asarray([-1], dtype=target_dtype))]
    return nodes, inits


def test_the_view_flatten_idiom_still_maps(tmp_path):
    net, _ = load_dnn(save(tmp_path / "view.onnx", *_view_flatten()), *DIGITS)
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "AvgPool2d", "Flatten", "Linear"]


@pytest.mark.parametrize("kwargs, match", [
    ({"gather_index": 7}, r"node 'gather' \(Gather\): indices \[7\] are out of range for 4 "
                          r"values"),
    ({"gather_index": -5}, r"indices \[-5\] are out of range for 4 values"),
    ({"concat_axis": 3}, r"node 'concat' \(Concat\): axis 3 is out of range for vectors"),
    ({"target_dtype": np.float32}, r"node 'reshape' \(Reshape\): its target shape holds -1\.0, "
                                   r"not an integer"),
    ({"squeeze_axes": [4]}, r"node 'squeeze' \(Squeeze\): axes \[4\] are out of range or "
                            r"repeated for a result of rank 1"),
])
def test_shape_arithmetic_is_checked(tmp_path, kwargs, match):
    refused(save(tmp_path / "view.onnx", *_view_flatten(**kwargs)), match)


def test_cast_shape_constants_must_be_whole_numbers(tmp_path):
    nodes, inits = _view_flatten(target_dtype=np.float32)  # the -1 stored as a float, then cast
    concat = next(n for n in nodes if n.op_type == "Concat")
    concat.input[1] = "m1i"
    nodes.insert(nodes.index(concat), helper.make_node("Cast", ["minus1"], ["m1i"], name="cast",
                                                       to=TensorProto.INT64))
    net, _ = load_dnn(save(tmp_path / "cast.onnx", nodes, inits), *DIGITS)
    assert [type(m).__name__ for m in net][-2:] == ["Flatten", "Linear"]
    inits[-1] = _tensor("minus1", np.asarray([1e30], np.float32))
    refused(save(tmp_path / "cast_big.onnx", nodes, inits),
            r"node 'cast' \(Cast\): casts \[1\.0000000150474662e\+30\] to INT64: not whole "
            r"numbers within its range")


def test_a_nan_reshape_target_is_refused(tmp_path):
    nodes, inits = _view_flatten(target_dtype=np.float32)
    inits[-1] = _tensor("minus1", np.asarray([np.nan], np.float32))
    refused(save(tmp_path / "nan_target.onnx", nodes, inits), r"initializer 'minus1' holds NaN")
    # the same NaN from a Constant node, past the initializer check
    del inits[-1]
    nodes.insert(0, helper.make_node("Constant", [], ["minus1"], name="c",
                                     value_floats=[float("nan")]))
    refused(save(tmp_path / "nan_const.onnx", nodes, inits),
            r"node 'c' \(Constant\): its value holds NaN")
    nodes[0] = helper.make_node("Constant", [], ["minus1"], name="c", value_floats=[-1.5])
    refused(save(tmp_path / "frac.onnx", nodes, inits),
            r"node 'reshape' \(Reshape\): its target shape holds -1\.5, not an integer")


@pytest.mark.parametrize("axes, match", [
    ([7], r"node 'sq' \(Squeeze\): axes \[7\] are out of range for its input \['N', 4, 1, 1\]"),
    ([-9], r"axes \[-9\] are out of range"),
    ([0], r"squeezes axes \[0\] of \['N', 4, 1, 1\]"),
])
def test_squeeze_of_the_activation_checks_its_axes(tmp_path, axes, match):
    nodes, inits = conv_net(pads=[1, 1, 1, 1])
    nodes[3] = helper.make_node("Squeeze", ["p", "axes"], ["f"], name="sq")
    inits.append(_tensor("axes", np.asarray(axes, np.int64)))
    refused(save(tmp_path / "sq.onnx", nodes, inits), match)


def test_concat_of_repeated_constants_is_bounded(tmp_path):
    """One 64 K-value constant joined to itself 64 times would be 4 M values, from a 512 KB file."""
    nodes, inits = _view_flatten()
    inits.append(_tensor("big", np.zeros(1 << 16, np.int64)))
    nodes.insert(0, helper.make_node("Concat", ["big"] * 64, ["huge"], name="join", axis=0))
    refused(save(tmp_path / "join.onnx", nodes, inits),
            r"node 'join' \(Concat\): refused: computes 4194304 values; shape computations are "
            r"limited to 65536")


# ---------------------------------------------------------------- memory
BOMB = """
import sys
from neurokd.errors import NeurokdError
from neurokd.interop.teachers import load_dnn
try:
    load_dnn(sys.argv[1], (1, 8, 8), 10)
except NeurokdError as exc:
    print("REFUSED", exc)
# VmHWM belongs to this process's memory map, which exec made new; ru_maxrss would carry over
# the peak of the (possibly large) process that forked this one.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print("PEAK", int(hwm) * 1024)
"""


def test_a_channel_bomb_is_refused_from_its_shapes_before_any_forward_pass(tmp_path):
    """A 1×1 convolution to 2^23 channels: 32 MB of weights whose output takes 2 GB a sample
    (the probe of two samples would ask for 4 GB, calibration for terabytes). The refusal comes
    from the shapes; the process never holds more than a fraction of one sample's output."""
    path = save(tmp_path / "bomb.onnx", *conv_net(channels=1 << 23, kernel=1, head=False),
                out="f")
    done = subprocess.run([sys.executable, "-c", BOMB, str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert ("REFUSED " + str(path) + ": node 'conv' (Conv): refused: its output [8388608, 8, 8] "
            "takes 2.0 GB per sample") in done.stdout
    peak = int(done.stdout.split("PEAK ")[1])
    assert peak < (1 << 30), peak  # one sample's output alone is 2 GB


def test_padding_cannot_grow_a_convolution_beyond_its_kernel(tmp_path):
    refused(save(tmp_path / "pad.onnx", *conv_net(pads=[3, 3, 3, 3])),
            r"node 'conv' \(Conv\): padding \[3, 3\] must be non-negative and less than the "
            r"kernel \(3\) on each side")
    refused(save(tmp_path / "pad.onnx", *conv_net(pads=[100000, 100000, 100000, 100000])),
            r"padding \[100000, 100000\]")


def test_large_inputs_are_sized_before_the_probe(tmp_path, monkeypatch):
    """The data's input size times the channels: 1024 channels of 512×512 take 1 GB a sample."""
    path = save(tmp_path / "wide.onnx", *conv_net(channels=1024, kernel=1), inp=("n", 1, 512, 512))
    refused(path, r"node 'conv' \(Conv\): refused: its output \[1024, 512, 512\] takes 1\.0 GB "
                  r"per sample", shape=(1, 512, 512))

    def no_forward(*_args, **_kwargs):
        raise AssertionError("the probe ran")

    # Within the absurd bound, the probe's two samples must fit the memory this machine spares.
    monkeypatch.setattr(byo, "check_fits", no_forward)
    monkeypatch.setattr(h5safe, "available_memory", lambda: 100_000)
    refused(save(tmp_path / "net.onnx", *conv_net(channels=64, pads=[1, 1, 1, 1])),
            r"net\.onnx: refused: the probe of the teacher of 2 samples needs 65\.6 KB of "
            r"activations \(layer 'conv' alone 16\.0 KB a sample\), more than the 48\.8 KB this "
            r"machine can spare")


def test_calibration_and_pooling_kernels_are_sized_before_they_are_made(monkeypatch):
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 64, 3, padding=1), relu=nn.ReLU(), pool=nn.AvgPool2d(3),
        flatten=nn.Flatten(), head=nn.Linear(64 * 2 * 2, 10))).eval()
    stages = dnn_stages(model, (1, 8, 8))  # 8 % 3: the pool is its own 64×64×3×3 convolution
    assert [s.kind for s in stages] == ["conv", "pool", "flatten", "dense"]
    check_calibration(stages, (1, 8, 8), 2000)
    monkeypatch.setattr(h5safe, "available_memory", lambda: 200_000)  # 97.7 KB
    with pytest.raises(NeurokdError, match=r"layer 'pool': refused: its 64-channel average pool "
                                           r"as a convolution \(64×64×3×3 weights\) would take "
                                           r"144\.0 KB, more than the 97\.7 KB"):
        dnn_stages(model, (1, 8, 8))
    monkeypatch.setattr(h5safe, "available_memory", lambda: 40_000_000)  # 19 MB to spare
    stages = dnn_stages(model, (1, 8, 8))
    check_calibration(stages, (1, 8, 8), 100)
    with pytest.raises(NeurokdError, match=r"refused: calibration of 2000 samples needs 134\.8 MB "
                                           r"of activations \(layer 'conv' alone 16\.0 KB a "
                                           r"sample\), more than the 19\.1 MB this machine can "
                                           r"spare; lower convert.calibration"):
        check_calibration(stages, (1, 8, 8), 2000)
    # convert_dnn refuses before it runs a single calibration sample
    ds = SimpleNamespace(input_shape=(1, 8, 8), train=SimpleNamespace(
        x=np.zeros((2000, 1, 8, 8), np.float32)))
    monkeypatch.setattr("neurokd.convert.dnn.stage_activations", _no_forward)
    with pytest.raises(NeurokdError, match="refused: calibration of 2000 samples"):
        convert_dnn(model, ds, 4, ConvertConfig(method="plain"), load_profile("loihi2"),
                    progress=False)


def _no_forward(*_args, **_kwargs):
    raise AssertionError("calibration ran")


# ---------------------------------------------------------------- conversion's own numbers
def _mlp_with(**values):
    model = trained_like(make_mlp)
    with torch.no_grad():
        for name, value in values.items():
            model.get_parameter(name).view(-1)[0] = value
    return model


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_conversion_refuses_non_finite_weights_by_layer(bad):
    with pytest.raises(NeurokdError, match=r"layer 'fc1': its weight holds NaN or infinite"):
        dnn_stages(_mlp_with(**{"fc1.weight": bad}), (1, 8, 8))
    with pytest.raises(NeurokdError, match=r"layer 'head': its bias holds NaN or infinite"):
        dnn_stages(_mlp_with(**{"head.bias": bad}), (1, 8, 8))


def test_conversion_checks_batchnorm_and_what_folding_it_computes():
    def net(var, eps=1e-5, weight=1.0):
        bn = nn.BatchNorm1d(4, eps=eps)
        with torch.no_grad():
            bn.running_var.copy_(torch.tensor(var))
            bn.weight.fill_(weight)
        return nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(64, 4), bn=bn,
                                         relu=nn.ReLU(), head=nn.Linear(4, 10))).eval()

    with pytest.raises(NeurokdError, match=r"layer 'bn': BatchNorm running_var holds negative "
                                           r"values \(-1\.0\)"):
        dnn_stages(net([1.0, -1.0, 1.0, 1.0]), (1, 8, 8))
    with pytest.raises(NeurokdError, match=r"layer 'bn': BatchNorm eps 0\.0 must be a positive"):
        dnn_stages(net([1.0] * 4, eps=0.0), (1, 8, 8))
    with pytest.raises(NeurokdError, match=r"layer 'fc': its weight folded with BatchNorm 'bn' "
                                           r"holds NaN or infinite values"):
        dnn_stages(net([0.0] * 4, eps=1e-40, weight=1e30), (1, 8, 8))


def test_conversion_refuses_non_finite_calibration_and_scales():
    with pytest.raises(NeurokdError, match=r"spiking layer 1: the DNN's calibration activations "
                                           r"hold NaN or infinite values"):
        balance_scales([torch.ones(4, 3), torch.tensor([[1.0, float("inf")]])], 100.0)
    stages = [Stage("dense", "fc", torch.ones(3, 4), torch.zeros(3), relu=True),
              Stage("dense", "head", torch.ones(2, 3), torch.zeros(2))]
    for scales, shown in (([float("nan"), 1.0], "nan"), ([1.0, float("inf")], "inf"),
                          ([0.0, 1.0], "0.0")):
        with pytest.raises(NeurokdError, match=rf"layer '(fc|head)': its balancing scale {shown} "
                                               r"from calibration is not a positive finite"):
            to_quant_snn(stages, scales, (4,), 8, 15, load_profile("loihi2"), 8)
    stages[0].weight = torch.full((3, 4), 3e38)
    with pytest.raises(NeurokdError, match=r"layer 'fc': its weight scaled by its thresholds holds "
                                           r"NaN or infinite values"):
        to_quant_snn(stages, [1e-30, 1.0], (4,), 8, 15, load_profile("loihi2"), 8)


# ---------------------------------------------------------------- factories and weights files
def _write(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_factory_or_module_that_exits_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save(trained_like(make_mlp).state_dict(), tmp_path / "w.pt")
    _write(tmp_path, "hk_exit_import", "import sys\nsys.exit(3)\n")
    _write(tmp_path, "hk_exit_call", """
        import sys
        def make():
            sys.exit(3)
        def make_none():
            raise SystemExit
        """)
    _write(tmp_path, "hk_exit_forward", """
        import sys
        from torch import nn
        from tests.interop.test_byo_dnn import make_mlp
        class Quits(nn.Sequential):
            def forward(self, x):
                sys.exit(0)
        def make():
            return Quits(make_mlp()._modules)
        """)
    cases = [("hk_exit_import:make", "hk_exit_import:make: importing hk_exit_import tried to exit "
                                     "the process (sys.exit with code 3)"),
             ("hk_exit_call:make", "hk_exit_call:make: calling make() tried to exit the process "
                                   "(sys.exit with code 3)"),
             ("hk_exit_call:make_none", "calling make_none() tried to exit the process (sys.exit "
                                        "with code 0)"),
             ("hk_exit_forward:make", "hk_exit_forward:make: the teacher's forward pass tried to "
                                      "exit the process (sys.exit with code 0)")]
    for factory, message in cases:
        cli_refuses(tmp_path, capsys,
                    ["convert", "--teacher", factory, "--teacher-weights", "w.pt"], message)


def test_the_process_of_a_factory_that_exits_0_exits_2(tmp_path):
    torch.save(trained_like(make_mlp).state_dict(), tmp_path / "w.pt")
    _write(tmp_path, "hk_exit_zero", "import sys\ndef make():\n    sys.exit(0)\n")
    done = subprocess.run([sys.executable, "-m", "neurokd", "convert", "--teacher",
                           "hk_exit_zero:make", "--teacher-weights", "w.pt", "--out", "run", *FAST],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr == ("neurokd: error: hk_exit_zero:make: calling make() tried to exit the "
                           "process (sys.exit with code 0)\n")
    assert not (tmp_path / "run").exists()


def test_the_weights_file_is_checked_before_the_users_code_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "hk_marker", """
        from pathlib import Path
        Path("imported").write_text("yes")
        from tests.interop.test_byo_dnn import make_mlp
        def make():
            Path("called").write_text("yes")
            return make_mlp()
        """)
    nan_state = _mlp_with(**{"fc1.bias": float("nan")}).state_dict()
    torch.save(nan_state, tmp_path / "nan.pt")
    (tmp_path / "text.pt").write_text("not weights")
    for weights, message in (("missing.pt", "missing.pt: no such weights file"),
                             ("nan.pt", "nan.pt: state_dict entry 'fc1.bias' holds NaN or "
                                        "infinite values"),
                             ("text.pt", "text.pt:")):
        cli_refuses(tmp_path, capsys, ["convert", "--teacher", "hk_marker:make",
                                       "--teacher-weights", weights], message)
        assert not (tmp_path / "imported").exists() and not (tmp_path / "called").exists()


def test_non_finite_teachers_stop_distill_and_convert(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = trained_like(make_mlp)
    export(model, tmp_path / "ok.onnx")
    proto = onnx.load(str(tmp_path / "ok.onnx"))
    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        for t in proto.graph.initializer:
            if t.name == "fc1.weight":
                w = numpy_helper.to_array(t).copy()
                w[0, 0] = bad
                t.CopyFrom(numpy_helper.from_array(w, t.name))
        onnx.save(proto, str(tmp_path / f"{name}.onnx"))
    torch.save(_mlp_with(**{"head.weight": float("inf")}).state_dict(), tmp_path / "inf.pt")
    message = "initializer 'fc1.weight' holds NaN or infinite values"
    cli_refuses(tmp_path, capsys, ["distill", "--teacher", "nan.onnx", "--epochs", "1",
                                   "-T", "4"], "nan.onnx: " + message)
    cli_refuses(tmp_path, capsys, ["convert", "--teacher", "inf.onnx"], "inf.onnx: " + message)
    cli_refuses(tmp_path, capsys, ["convert", "--teacher", "ok.onnx", "--teacher-weights",
                                   "inf.pt"], "inf.pt: state_dict entry 'head.weight' holds NaN")
    cli_refuses(tmp_path, capsys, ["convert", "--teacher", "tests.interop.test_byo_dnn:make_mlp",
                                   "--teacher-weights", "inf.pt"], "state_dict entry 'head.weight'")


def test_a_factory_whose_own_buffers_are_not_finite_is_refused(tmp_path):
    _write(tmp_path, "hk_buffers", """
        import torch
        from tests.interop.test_byo_dnn import make_mlp
        def make():
            model = make_mlp()
            model.register_buffer("scale", torch.tensor([float("nan")]), persistent=False)
            return model
        """)
    torch.save(make_mlp().state_dict(), tmp_path / "w.pt")
    ref = teacher_ref("hk_buffers:make", tmp_path / "w.pt", search_path=str(tmp_path))
    with pytest.raises(NeurokdError, match=r"hk_buffers:make: the teacher's tensor 'scale' holds "
                                           r"NaN or infinite values"):
        load_dnn(ref, *DIGITS)
