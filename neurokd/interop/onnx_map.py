"""The node-by-node mapper of an ONNX teacher (read and checked by
:func:`neurokd.interop.onnx.read_onnx`): the graph walked in its order onto the torch layers that
conversion reads (:data:`SUPPORTED_OPS`), as an ``nn.Sequential`` whose weights are the graph's
initializers. Any other operator is refused by name."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import format_bytes
from neurokd.interop.onnx_shapes import _ShapeOps
from neurokd.models.dnn_checks import MAX_SAMPLE_BYTES, first_line as _first_line, nonfinite

# ONNX operators mapped onto layers (the first group), and those only read to compute the target
# shape of a Reshape (the second group: ``x.view(x.size(0), -1)`` exports as Shape → Gather →
# Unsqueeze → Concat → Reshape).
LAYER_OPS = ("Gemm", "MatMul", "Add", "Conv", "Relu", "BatchNormalization", "AveragePool",
             "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Identity", "Dropout")
SHAPE_OPS = ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Cast")
SUPPORTED_OPS = ", ".join(LAYER_OPS)
_HINTS = {
    "MaxPool": "spike rates cannot be max-pooled; use average pooling",
    "GlobalMaxPool": "spike rates cannot be max-pooled; use average pooling",
    "Softmax": "export the logits, without the final Softmax",
    "LogSoftmax": "export the logits, without the final LogSoftmax",
}


def _dims(value_info) -> Optional[List[Optional[int]]]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


class NotMappable(NeurokdError):
    """The graph is sound but conversion cannot map it (an operator, a branch, a layout): a
    teacher that stays a DNN may still be read whole (``neurokd.interop.onnx.onnx_teacher``)."""


class _OnnxMapper(_ShapeOps):
    """Walks the graph in its (topological) order, keeping the one activation that flows along
    the chain of layers (``cur``, of per-sample shape ``shape``), the constants (initializers and
    Constant outputs) and the symbolic shape vectors (``"N"`` for the batch)."""

    def __init__(self, model, where: str, input_shape: Tuple[int, ...]) -> None:
        from onnx import numpy_helper

        self.graph, self.where = model.graph, where
        self.consts: Dict[str, np.ndarray] = {}
        for t in self.graph.initializer:
            try:
                value = numpy_helper.to_array(t)
            except Exception as exc:  # read_onnx checked it; anything left is one line
                raise NeurokdError(f"{where}: initializer {t.name!r} cannot be read "
                                   f"({_first_line(exc)})") from None
            if nonfinite(iter([(t.name, value)])) is not None:
                raise NeurokdError(f"{where}: initializer {t.name!r} holds NaN or infinite "
                                   "values; a teacher's weights must be finite")
            self.consts[t.name] = value
        self.symbolic: Dict[str, np.ndarray] = {}  # shape vectors, object arrays of ints and "N"
        self.layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        self.input_shape = input_shape
        self.shape: Tuple[int, ...] = input_shape
        self.cur = ""
        self.batch: Optional[int] = None  # the graph's batch size, where it is fixed
        self.last_op = ""
        self.values = math.prod(input_shape)  # one sample's activations so far, input included

    # -- helpers
    def fail(self, node, message: str, kind: type = NeurokdError) -> NeurokdError:
        return kind(f"{self.where}: node {node.name or '(unnamed)'!r} ({node.op_type}): {message}")

    def attrs(self, node) -> Dict[str, Any]:
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"its {what} {name!r} is not a constant of the graph")
        return self.consts[name]

    def weight(self, node, name: str, what: str) -> torch.Tensor:
        arr = self.const(node, name, what)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # out of range: refused below
                values = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError):
            values = None
        if values is None or arr.dtype.kind not in "fV":
            raise self.fail(node, f"its {what} {name!r} holds {arr.dtype} values, not float weights")
        if values.size == 0:
            raise self.fail(node, f"its {what} {name!r} is empty (shape {list(values.shape)})")
        if not np.isfinite(values).all():
            raise self.fail(node, f"its {what} {name!r} holds NaN or infinite values (or values "
                                  "beyond float32's range)")
        return torch.from_numpy(values.copy())

    def number(self, node, a: Dict[str, Any], key: str, default: float) -> float:
        """A float attribute, which must be finite."""
        value = float(a.get(key, default))
        if not math.isfinite(value):
            raise self.fail(node, f"{key} = {value:g} is not a finite number")
        return value

    def ints(self, node, values: Sequence[Any], what: str, least: int) -> Tuple[int, int]:
        """A (height, width) pair of integers, each at least ``least``."""
        if len(values) != 2:
            raise self.fail(node, f"{what} {list(values)} is not 2-D")
        pair = (int(values[0]), int(values[1]))
        if min(pair) < least:
            raise self.fail(node, f"{what} {list(pair)}: each must be at least {least}")
        return pair

    def finite(self, node, module: nn.Module) -> None:
        bad = nonfinite(iter([*module.named_parameters(), *module.named_buffers()]))
        if bad is not None:
            raise self.fail(node, f"gives the layer a {bad} of NaN or infinite values (the "
                                  "graph's numbers overflow float32)")

    def output(self, node, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """Check a layer's per-sample output ``shape``: not empty, and one sample's activations
        (all layers so far) within :data:`MAX_SAMPLE_BYTES`."""
        if min(shape) < 1:
            raise self.fail(node, f"its output would be {list(shape)} per sample (the kernel is "
                                  f"larger than its padded input {list(self.shape)})")
        total = 4 * (self.values + math.prod(shape))
        if total > MAX_SAMPLE_BYTES:
            raise self.fail(node, f"refused: its output {list(shape)} takes "
                                  f"{format_bytes(4 * math.prod(shape))} per sample, and one "
                                  f"sample's activations {format_bytes(total)}, more than the "
                                  f"{format_bytes(MAX_SAMPLE_BYTES)} a network neurokd converts "
                                  "can have")
        return shape

    def data(self, node, index: int = 0) -> str:
        name = node.input[index] if len(node.input) > index else ""
        if name != self.cur:
            raise self.fail(node, f"reads {name!r}, not the output of the layer before it: only a "
                                  "chain of layers converts (no branches or skip connections)",
                                  NotMappable)
        return name

    def value(self, node, name: str) -> Tuple[np.ndarray, bool]:
        """A constant or a symbolic shape vector, and whether it is symbolic."""
        if name in self.symbolic:
            return self.symbolic[name], True
        if name in self.consts:
            return self.consts[name], False
        if name == self.cur:
            raise self.fail(node, f"computes on the activations; neurokd maps only these "
                                  f"operators onto layers: {SUPPORTED_OPS}", NotMappable)
        raise self.fail(node, f"reads {name!r}, which no earlier node gives")

    def add(self, node, module: nn.Module, shape: Tuple[int, ...]) -> None:
        parts = [p for p in (node.name or "").split("/") if p]
        if len(parts) >= 2 and parts[-1].split("_")[0] == node.op_type:
            parts = parts[:-1]  # the PyTorch exporter names nodes /<module path>/<op>
        name = re.sub(r"\W", "_", "_".join(parts)) or f"{node.op_type.lower()}"
        base, k = name, 1
        while name in self.layers:
            name, k = f"{base}_{k}", k + 1
        self.finite(node, module)
        self.output(node, shape)
        self.values += math.prod(shape)
        self.layers[name] = module
        self.advance(node, shape)

    def advance(self, node, shape: Tuple[int, ...]) -> None:
        self.shape, self.cur, self.last_op = shape, node.output[0], node.op_type

    # -- the walk
    def build(self) -> nn.Sequential:
        g = self.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise NeurokdError(f"{self.where}: the model has {len(inputs)} inputs "
                               f"({', '.join(i.name for i in inputs)}); a teacher takes one")
        self.check_input(inputs[0])
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                raise NotMappable(f"{self.where}: operator {node.op_type!r} of domain "
                                   f"{node.domain!r} (node {node.name!r}) is not supported; "
                                   f"neurokd maps these operators onto the layers it converts: "
                                   f"{SUPPORTED_OPS}")
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                hint = _HINTS.get(node.op_type)
                raise NotMappable(f"{self.where}: operator {node.op_type!r} (node {node.name!r}) "
                                   "is not supported" + (f" ({hint})" if hint else "")
                                   + f"; neurokd maps these operators onto the layers it "
                                   f"converts: {SUPPORTED_OPS}")
            handler(node)
        if len(g.output) != 1 or g.output[0].name != self.cur:
            raise NotMappable(f"{self.where}: the model's output must be its last layer's, a "
                               f"single tensor of logits (outputs: "
                               f"{', '.join(o.name for o in g.output)})")
        if not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in self.layers.values()):
            raise NotMappable(f"{self.where}: the model has no Gemm, MatMul or Conv layer")
        return nn.Sequential(self.layers).eval()

    def check_input(self, info) -> None:
        import onnx

        elem = info.type.tensor_type.elem_type
        if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            raise NeurokdError(f"{self.where}: the model's input {info.name!r} is of type "
                               f"{onnx.TensorProto.DataType.Name(elem)}, not float")
        self.cur = info.name
        dims = _dims(info)
        want = list(self.input_shape)
        if dims is None:
            return
        if dims and dims[0] is not None:
            self.batch = dims[0]
        if len(dims) == len(want) + 1 and all(d is None or d == w for d, w in zip(dims[1:], want)):
            return
        flat = int(np.prod(want))
        if len(dims) == 2 and dims[1] in (None, flat) and len(want) > 1:
            # a model of flat feature vectors reads the samples flattened (C, H, W order)
            self.layers["flatten_input"] = nn.Flatten()
            self.shape = (flat,)
            return
        shown = ", ".join("N" if d is None else str(d) for d in dims)
        raise NeurokdError(f"{self.where}: the model takes input [{shown}], the data is "
                           f"[N, {', '.join(map(str, want))}]")

    # -- layers
    def op_Gemm(self, node) -> None:
        a = self.attrs(node)
        self.data(node)
        if a.get("transA", 0):
            raise self.fail(node, "transA = 1 cannot be converted", NotMappable)
        if len(self.shape) != 1:
            raise self.fail(node, f"its input is {list(self.shape)}, not flat")
        w = self.weight(node, node.input[1], "weight")
        if w.dim() != 2:
            raise self.fail(node, f"weight of shape {list(w.shape)} is not a matrix")
        alpha, beta = self.number(node, a, "alpha", 1.0), self.number(node, a, "beta", 1.0)
        w = (w if a.get("transB", 0) else w.t()) * alpha
        if w.shape[1] != self.shape[0]:
            raise self.fail(node, f"expects {w.shape[1]} inputs, gets {self.shape[0]}")
        has_bias = len(node.input) > 2 and node.input[2] != ""
        layer = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            layer.weight.copy_(w)
            if has_bias:
                c = self.weight(node, node.input[2], "bias").numpy() * beta
                layer.bias.copy_(self.per_channel(node, c, (w.shape[0],)))
        self.add(node, layer, (w.shape[0],))

    def op_MatMul(self, node) -> None:
        self.data(node)
        if len(self.shape) != 1:
            raise self.fail(node, f"its input is {list(self.shape)}: only flat features times a "
                                  "constant matrix converts", NotMappable)
        w = self.weight(node, node.input[1], "weight")
        if w.dim() != 2 or w.shape[0] != self.shape[0]:
            raise self.fail(node, f"weight of shape {list(w.shape)} does not take {self.shape[0]} "
                                  "inputs")
        layer = nn.Linear(w.shape[0], w.shape[1], bias=False)
        with torch.no_grad():
            layer.weight.copy_(w.t())
        self.add(node, layer, (w.shape[1],))

    def op_Add(self, node) -> None:
        """A constant added right after a Gemm, MatMul or Conv: its bias, per output channel."""
        names = list(node.input)
        if len(names) != 2 or self.cur not in names:
            self.data(node)  # raises: not the chain's activation
        other = names[1] if names[0] == self.cur else names[0]
        if other not in self.consts:
            raise self.fail(node, f"adds {other!r} to the layer's output (a branch or skip "
                                  "connection): only a chain of layers converts", NotMappable)
        last = next(reversed(self.layers.values())) if self.layers else None
        if (self.last_op not in ("Gemm", "MatMul", "Conv")
                or not isinstance(last, (nn.Linear, nn.Conv2d))):
            raise self.fail(node, "only a constant bias added right after a Gemm, MatMul or Conv "
                                  "converts", NotMappable)
        bias = self.per_channel(node, self.weight(node, other, "bias").numpy(), self.shape)
        with torch.no_grad():
            if last.bias is None:
                last.bias = nn.Parameter(bias)
            else:
                last.bias.add_(bias)
        self.finite(node, last)
        self.cur = node.output[0]  # the layer and its shape stay; the next Add may add again

    def per_channel(self, node, c: np.ndarray, shape: Tuple[int, ...]) -> torch.Tensor:
        """A constant broadcast over a sample of ``shape`` as one value per channel (axis 0)."""
        try:
            full = np.broadcast_to(c, (1, *shape))[0]
        except ValueError:
            raise self.fail(node, f"bias of shape {list(c.shape)} does not broadcast to "
                                  f"{list(shape)}") from None
        per = full.reshape(shape[0], -1)
        if not np.all(per == per[:, :1]):
            raise self.fail(node, f"bias of shape {list(c.shape)} is not one value per channel")
        return torch.from_numpy(np.array(per[:, 0], dtype=np.float32))

    def op_Conv(self, node) -> None:
        a = self.attrs(node)
        self.data(node)
        w = self.weight(node, node.input[1], "weight")
        if w.dim() != 4 or len(self.shape) != 3:
            raise self.fail(node, f"only 2-D convolutions convert (weight {list(w.shape)}, input "
                                  f"{list(self.shape)}); export a 1-D one as a 1×k Conv2d",
                                  NotMappable)
        groups = int(a.get("group", 1))
        if groups < 1 or w.shape[0] % groups:
            raise self.fail(node, f"group {groups} does not divide its {w.shape[0]} output "
                                  "channels")
        if w.shape[1] * groups != self.shape[0]:
            raise self.fail(node, f"weight {list(w.shape)} does not take {self.shape[0]} channels")
        k = tuple(int(v) for v in w.shape[2:])
        if "kernel_shape" in a and [int(v) for v in a["kernel_shape"]] != list(k):
            raise self.fail(node, f"kernel_shape {list(a['kernel_shape'])} is not its weight's "
                                  f"{list(k)}")
        stride = self.ints(node, a.get("strides", [1, 1]), "strides", 1)
        dil = self.ints(node, a.get("dilations", [1, 1]), "dilations", 1)
        pad = self.padding(node, a, k, stride, dil)
        has_bias = len(node.input) > 2 and node.input[2] != ""
        layer = nn.Conv2d(self.shape[0], w.shape[0], k, stride=stride, padding=pad, dilation=dil,
                          groups=groups, bias=has_bias)
        with torch.no_grad():
            layer.weight.copy_(w)
            if has_bias:
                layer.bias.copy_(self.weight(node, node.input[2], "bias").reshape(-1))
        h, wd = ((self.shape[i + 1] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))
        self.add(node, layer, (int(w.shape[0]), h, wd))

    def padding(self, node, a: Dict[str, Any], k: Tuple[int, ...], stride: Tuple[int, int],
                dil: Tuple[int, int] = (1, 1), pool: bool = False) -> Tuple[int, int]:
        """Symmetric (height, width) zero padding from ``pads`` or ``auto_pad``: less than the
        (dilated) kernel on each side (more only adds outputs that see padding alone), at most
        half the kernel for a pooling layer (as torch's pooling requires)."""
        pad = self._padding(node, a, k, stride, dil)
        for i in range(2):
            span = dil[i] * (k[i] - 1) + 1
            if pad[i] < 0 or (pad[i] > span // 2 if pool else pad[i] >= span):
                bound = f"at most half the kernel ({span // 2})" if pool else \
                    f"less than the kernel ({span})"
                raise self.fail(node, f"padding {list(pad)} must be non-negative and "
                                      f"{bound} on each side")
        return pad

    def _padding(self, node, a: Dict[str, Any], k: Tuple[int, ...], stride: Tuple[int, int],
                 dil: Tuple[int, int]) -> Tuple[int, int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode(errors="replace") if isinstance(auto, bytes) else str(auto)
        if auto == "VALID":
            return (0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for i in range(2):
                size = self.shape[i + 1]
                total = max((math.ceil(size / stride[i]) - 1) * stride[i] + dil[i] * (k[i] - 1) + 1
                            - size, 0)
                if total % 2:
                    raise self.fail(node, f"auto_pad {auto} pads unevenly here; only symmetric "
                                          "padding converts", NotMappable)
                pads.append(total // 2)
            return (pads[0], pads[1])
        if auto not in ("NOTSET", ""):
            raise self.fail(node, f"auto_pad {auto!r} is not an ONNX padding mode")
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
            raise self.fail(node, f"pads {p} are not symmetric; only symmetric padding converts")
        return (p[0], p[1])

    def op_BatchNormalization(self, node) -> None:
        a = self.attrs(node)
        self.data(node)
        if a.get("training_mode", 0):
            raise self.fail(node, "training_mode = 1 cannot be converted; export in eval mode")
        scale, bias, mean, var = (self.weight(node, node.input[i], what).reshape(-1) for i, what in
                                  enumerate(("scale", "bias", "mean", "variance"), start=1))
        c = self.shape[0]
        if len(self.shape) not in (1, 3) or any(t.numel() != c for t in (scale, bias, mean, var)):
            raise self.fail(node, f"does not fit its input {list(self.shape)}")
        eps = self.number(node, a, "epsilon", 1e-5)
        if eps <= 0:
            raise self.fail(node, f"epsilon = {eps:g} must be positive")
        if bool((var < 0).any()):
            raise self.fail(node, f"its variance {node.input[4]!r} holds negative values "
                                  f"({float(var.min()):g}); a variance is never negative")
        if not bool(torch.isfinite((var + eps).rsqrt() * scale).all()):
            raise self.fail(node, f"epsilon = {eps:g} and its variance give an infinite scale")
        bn_cls = nn.BatchNorm2d if len(self.shape) == 3 else nn.BatchNorm1d
        bn = bn_cls(c, eps=eps)
        with torch.no_grad():
            bn.weight.copy_(scale)
            bn.bias.copy_(bias)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        self.add(node, bn.eval(), self.shape)

    def op_Relu(self, node) -> None:
        self.data(node)
        self.add(node, nn.ReLU(), self.shape)

    def op_AveragePool(self, node) -> None:
        a = self.attrs(node)
        self.data(node)
        if len(self.shape) != 3:
            raise self.fail(node, f"only 2-D pooling converts (input {list(self.shape)})")
        k = self.ints(node, a.get("kernel_shape", []), "kernel_shape", 1)
        stride = self.ints(node, a.get("strides", [1, 1]), "strides", 1)
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "dilated pooling cannot be converted")
        pad = self.padding(node, a, k, stride, pool=True)
        ceil = bool(a.get("ceil_mode", 0))
        spans = [self.shape[i + 1] + 2 * pad[i] - k[i] for i in range(2)]
        h, wd = ((-(-span // st) if ceil else span // st) + 1 for span, st in zip(spans, stride))
        pool = nn.AvgPool2d(k, stride=stride, padding=pad, ceil_mode=ceil,
                            count_include_pad=bool(a.get("count_include_pad", 0)))
        self.add(node, pool, (self.shape[0], h, wd))

    def op_GlobalAveragePool(self, node) -> None:
        self.data(node)
        if len(self.shape) != 3:
            raise self.fail(node, f"only 2-D pooling converts (input {list(self.shape)})")
        self.add(node, nn.AvgPool2d((self.shape[1], self.shape[2])), (self.shape[0], 1, 1))

    def flatten(self, node) -> None:
        if len(self.shape) == 1:
            self.advance(node, self.shape)  # already flat
        else:
            self.add(node, nn.Flatten(), (int(np.prod(self.shape)),))

    def op_Flatten(self, node) -> None:
        self.data(node)
        axis = int(self.attrs(node).get("axis", 1))
        if axis < 0:
            axis += len(self.shape) + 1
        if axis != 1:
            raise self.fail(node, f"axis {axis}: only flattening each sample (axis 1) converts")
        self.flatten(node)

    def op_Reshape(self, node) -> None:
        self.data(node)
        target, _ = self.value(node, node.input[1] if len(node.input) > 1 else "")
        target = self.int_values(node, target, "target shape")
        allowzero = int(self.attrs(node).get("allowzero", 0))
        full = ["N", *self.shape]
        out = [full[i] if (not allowzero and t == 0 and i < len(full)) else t
               for i, t in enumerate(target)]
        numel = int(np.prod(self.shape))
        if out == full:
            self.advance(node, self.shape)
            return
        batch_ok = out and (out[0] in ("N", -1) or (self.batch is not None and out[0] == self.batch))
        if len(out) == 2 and ((batch_ok and out[1] in (-1, numel)) or out[1] == numel):
            self.flatten(node)
            return
        raise self.fail(node, f"reshapes {full} to {out}; only flattening each sample converts")

    def op_Squeeze(self, node) -> None:
        if node.input[0] != self.cur:
            self.shape_op(node, "Squeeze")
            return
        self.data(node)
        a = self.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, node.input[1], "axes")
        full = ["N", *self.shape]
        if axes is None:
            axes = [i for i, d in enumerate(full) if d == 1]
        axes = self.int_values(node, axes, "axes")
        if any(not -len(full) <= x < len(full) for x in axes):
            raise self.fail(node, f"axes {axes} are out of range for its input {full}")
        axes = [x + len(full) if x < 0 else x for x in axes]
        kept = tuple(d for i, d in enumerate(self.shape, start=1) if i not in axes)
        if 0 in axes or any(full[i] != 1 for i in axes) or len(kept) != 1:
            raise self.fail(node, f"squeezes axes {axes} of {full}; only flattening each sample "
                                  "converts")
        self.flatten(node)

    def op_Identity(self, node) -> None:
        if node.input[0] == self.cur:
            self.advance(node, self.shape)
        else:
            self.shape_op(node, "Identity")

    def op_Dropout(self, node) -> None:
        self.data(node)  # its mask output, if any, is never computed: a node reading it fails
        self.advance(node, self.shape)
