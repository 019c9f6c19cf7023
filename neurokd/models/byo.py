"""Bring your own DNN: teachers trained elsewhere, as an ONNX file or a PyTorch ``module:factory``.

A teacher is named by one string (``--teacher``):

* a neurokd teacher checkpoint (``teacher.pt``), as ``neurokd train-teacher`` writes it;
* an ONNX file (``*.onnx``). Its graph is read with the ``onnx`` package (nothing in the file is
  executed; external weight files must lie inside the model's folder) and mapped, node by node,
  onto the torch layers that conversion reads (see ``SUPPORTED_OPS``), as an ``nn.Sequential``
  whose weights are the graph's initializers. Any other operator is refused by name;
* ``module:factory``: the module is imported (running its code: this is the user's choice) and
  ``factory(**kwargs)`` builds the ``nn.Module``; its weights come from a state_dict file
  (``--teacher-weights``), read with ``torch.load(weights_only=True)`` after the same archive
  check as neurokd checkpoints, and loaded with ``strict=True``.

Every teacher is checked against the data (input shape, class count) before any work starts, and
carries a ``neurokd_source`` record (kind, path or factory, SHA-256 of the files) for the run's
metrics.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import math
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError

# ONNX operators mapped onto layers (the first group), and those only read to compute the target
# shape of a Reshape (the second group: ``x.view(x.size(0), -1)`` exports as Shape → Gather →
# Unsqueeze → Concat → Reshape).
LAYER_OPS = ("Gemm", "MatMul", "Add", "Conv", "Relu", "BatchNormalization", "AveragePool",
             "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Identity", "Dropout")
SHAPE_OPS = ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Cast")
SUPPORTED_OPS = ", ".join(LAYER_OPS)
_FACTORY = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_HINTS = {
    "MaxPool": "spike rates cannot be max-pooled; use average pooling",
    "GlobalMaxPool": "spike rates cannot be max-pooled; use average pooling",
    "Softmax": "export the logits, without the final Softmax",
    "LogSoftmax": "export the logits, without the final LogSoftmax",
}


# ---------------------------------------------------------------- what the user names
@dataclass
class TeacherRef:
    """A teacher as the user names it: ``ref`` (checkpoint, ``.onnx`` file or ``module:factory``),
    the state_dict file ``weights``, the factory's keyword arguments ``kwargs``, and the folder
    ``search_path`` put first on ``sys.path`` while a factory's module is imported."""

    ref: str
    weights: Optional[str] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)
    search_path: Optional[str] = None

    @property
    def kind(self) -> str:
        return teacher_kind(self.ref)


def teacher_kind(ref: str | Path) -> str:
    """``"onnx"`` for a ``*.onnx`` path, ``"factory"`` for ``module:factory`` (when no such file
    exists), else ``"checkpoint"``."""
    text = str(ref)
    if text.lower().endswith(".onnx"):
        return "onnx"
    if _FACTORY.fullmatch(text) and not Path(text).exists():
        return "factory"
    return "checkpoint"


def parse_kwargs(text: Optional[str]) -> Dict[str, Any]:
    """The factory's keyword arguments from a YAML or JSON mapping (read with ``safe_load``)."""
    import yaml

    if text is None:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise NeurokdError(f"--teacher-kwargs {text!r}: not a YAML or JSON mapping") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise NeurokdError(f"--teacher-kwargs {text!r}: expected a mapping of argument names to "
                           "values, e.g. '{hidden: 64, classes: 10}'")
    return value


def teacher_ref(ref: str | Path, weights: Optional[str | Path] = None,
                kwargs: Optional[Dict[str, Any]] = None, search_path: Optional[str] = None
                ) -> TeacherRef:
    """Check that the options go together (weights for ONNX or a factory, kwargs for a factory)."""
    out = TeacherRef(str(ref), None if weights is None else str(weights), dict(kwargs or {}),
                     search_path)
    kind = out.kind
    if kind == "checkpoint" and weights is not None:
        raise NeurokdError(f"{ref}: --teacher-weights goes with an ONNX or module:factory teacher; "
                           "a neurokd checkpoint holds its own weights")
    if kind != "factory" and out.kwargs:
        raise NeurokdError(f"{ref}: --teacher-kwargs goes with a module:factory teacher")
    if kind == "factory" and weights is None:
        raise NeurokdError(f"{ref}: a module:factory teacher needs its trained weights "
                           "(--teacher-weights FILE, a state_dict saved with torch.save)")
    return out


def as_ref(teacher: str | Path | TeacherRef) -> TeacherRef:
    return teacher if isinstance(teacher, TeacherRef) else teacher_ref(teacher)


def is_foreign(model: nn.Module) -> bool:
    """Whether ``model`` came from an ONNX file or a factory (not a neurokd checkpoint)."""
    return (getattr(model, "neurokd_source", None) or {}).get("kind") in ("onnx", "factory")


def source_label(source: Dict[str, Any]) -> str:
    """A short name for tables and plots: the file, or the factory."""
    if source.get("kind") == "factory":
        return str(source["factory"])
    return Path(str(source.get("path", "teacher"))).name


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------- any teacher, checked
def load_dnn(teacher: str | Path | TeacherRef, input_shape: Sequence[int], num_classes: int
             ) -> Tuple[nn.Module, Dict[str, Any]]:
    """The teacher in evaluation mode and the record of where it came from, checked against the
    data's ``input_shape`` and ``num_classes``."""
    from neurokd.distill.colearn import check_teacher_fits
    from neurokd.models.checkpoint import load_checkpoint
    from neurokd.models.teachers import teacher_from_checkpoint

    ref = as_ref(teacher)
    kind, where = ref.kind, ref.ref
    if kind == "checkpoint":
        payload = load_checkpoint(ref.ref, "teacher")
        check_teacher_fits(payload.get("arch", {}), num_classes, tuple(input_shape), where)
        model = teacher_from_checkpoint(payload, where=where)
        source: Dict[str, Any] = {"kind": "checkpoint", "path": ref.ref, "sha256": _sha256(ref.ref)}
        model.neurokd_source = source
        return model, source
    if kind == "onnx":
        model = onnx_teacher(ref.ref, input_shape)
        source = {"kind": "onnx", "path": ref.ref, "sha256": _sha256(ref.ref)}
    else:
        model = factory_teacher(ref.ref, ref.kwargs, ref.search_path)
        source = {"kind": "factory", "factory": ref.ref, "kwargs": dict(ref.kwargs)}
    if ref.weights is not None:
        load_weights(model, ref.weights, where)
        source.update(weights=ref.weights, weights_sha256=_sha256(ref.weights))
    check_fits(model, input_shape, num_classes, where)
    model.neurokd_source = source
    return model.eval(), source


def check_fits(model: nn.Module, input_shape: Sequence[int], num_classes: int, where: str) -> None:
    """Run two zero samples of the data's shape through ``model``: it must take them and give
    ``num_classes`` logits per sample."""
    model.eval()
    try:
        with torch.no_grad():
            y = model(torch.zeros(2, *input_shape))
    except Exception as exc:  # the user's model, whatever it raises
        raise NeurokdError(f"{where}: the teacher cannot take the data's input "
                           f"{list(input_shape)} ({_first_line(exc)})") from None
    if not isinstance(y, torch.Tensor):
        raise NeurokdError(f"{where}: the teacher returns a {type(y).__name__}, not a tensor of "
                           "class logits")
    if tuple(y.shape) != (2, num_classes):
        raise NeurokdError(f"{where}: the teacher gives outputs of shape {list(y.shape[1:])} per "
                           f"sample; the data has {num_classes} classes")


# ---------------------------------------------------------------- state_dict files
def read_state_dict(path: str | Path) -> Dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save`` (or a dict holding one under ``state_dict`` or
    ``model_state_dict``), read without unpickling anything but tensors and containers."""
    from neurokd.models.checkpoint import check_archive

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such weights file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NeurokdError(f"{p}: cannot read ({exc.strerror})") from None
    check_archive(data, p, what="state_dict file saved with torch.save")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError,
            ValueError, AttributeError, KeyError, TypeError):
        raise NeurokdError(f"{p}: not a readable state_dict (unreadable or unsafe content)") from None
    if isinstance(payload, dict) and not all(isinstance(v, torch.Tensor) for v in payload.values()):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload:
        raise NeurokdError(f"{p}: holds no state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise NeurokdError(f"{p}: state_dict entry {bad[0]!r} is not a named tensor")
    return dict(payload)


def _listed(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def load_weights(model: nn.Module, path: str | Path, where: str) -> None:
    """``model.load_state_dict(read_state_dict(path), strict=True)``; a mismatch is one line
    naming the missing and unexpected keys and the first shapes that differ."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} is {list(state[k].shape)} in the file, {list(own[k].shape)} in the model"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shapes differ: {_listed(shapes, 2)}")
    if problems:
        raise NeurokdError(f"{path}: the weights do not fit {where} ({'; '.join(problems)})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NeurokdError(f"{path}: the weights do not fit {where} ({_first_line(exc)})") from None


def save_weights(path: str | Path, model: nn.Module) -> Path:
    """Write ``model``'s state_dict (plain tensors, atomically): the weights of a co-learned
    teacher that came from an ONNX file or a factory, for ``--teacher-weights``."""
    from neurokd.fileio import atomic_path

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


# ---------------------------------------------------------------- module:factory
@contextlib.contextmanager
def _first_on_path(folder: Optional[str]) -> Iterator[None]:
    if folder is None:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def factory_teacher(ref: str, kwargs: Optional[Dict[str, Any]] = None,
                    search_path: Optional[str] = None) -> nn.Module:
    """Import ``module`` of ``module:factory`` (this runs the module's code) and call
    ``factory(**kwargs)``; the result must be an ``nn.Module``."""
    match = _FACTORY.fullmatch(ref)
    if match is None:
        raise NeurokdError(f"{ref!r}: expected module:factory, e.g. mypkg.models:make_net")
    module_name, attr_path = match.groups()
    with _first_on_path(search_path):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) and (
                    exc.name == module_name or module_name[len(exc.name)] == "."):
                raise NeurokdError(f"{ref}: no module named {module_name!r} (run from its folder "
                                   "or put it on PYTHONPATH)") from None
            raise NeurokdError(f"{ref}: importing {module_name} failed ({_first_line(exc)})") from None
        except Exception as exc:  # the user's module, whatever it raises
            raise NeurokdError(f"{ref}: importing {module_name} failed ({_first_line(exc)})") from None
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise NeurokdError(f"{ref}: {module_name} has no attribute {attr_path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise NeurokdError(f"{ref}: {attr_path} is a {type(target).__name__}, not a callable "
                           "factory")
    try:
        model = target(**(kwargs or {}))
    except Exception as exc:  # the user's factory, whatever it raises
        raise NeurokdError(f"{ref}: calling {attr_path}() failed ({_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise NeurokdError(f"{ref}: {attr_path}() returned a {type(model).__name__}, not a "
                           "torch.nn.Module")
    return model.float().eval()


# ---------------------------------------------------------------- ONNX
def read_onnx(path: str | Path):
    """Parse ``path`` as an ONNX model (protobuf only: nothing is executed), load external
    tensor data only from files inside the model's folder, and run the ONNX checker."""
    import onnx
    from onnx import external_data_helper

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such ONNX file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NeurokdError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        model = onnx.load_model_from_string(data)  # external data is not read here
    except Exception:  # protobuf's DecodeError and kin
        raise NeurokdError(f"{p}: not an ONNX model (the file does not parse as one)") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise NeurokdError(f"{p}: not an ONNX model (no graph of operators)")
    folder = p.resolve().parent
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if (not location or Path(location).is_absolute() or folder not in target.parents
                or not target.is_file()):
            raise NeurokdError(f"{p}: refused: tensor {tensor.name!r} reads external data from "
                               f"{location!r}, which is not a file inside {folder}")
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(folder))
        except Exception as exc:
            raise NeurokdError(f"{p}: cannot read the external data of tensor {tensor.name!r} "
                               f"({_first_line(exc)})") from None
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and the like
        raise NeurokdError(f"{p}: not a valid ONNX model ({_first_line(exc)})") from None
    return model


def _graph_tensors(graph) -> List[Any]:
    """Initializers and Constant tensors of ``graph`` and of every subgraph in it."""
    import onnx

    found = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                found.append(attr.t)
            elif attr.type == onnx.AttributeProto.TENSORS:
                found.extend(attr.tensors)
            elif attr.type == onnx.AttributeProto.GRAPH:
                found.extend(_graph_tensors(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    found.extend(_graph_tensors(g))
    return found


def onnx_teacher(path: str | Path, input_shape: Sequence[int]) -> nn.Sequential:
    """The ONNX graph at ``path`` as an ``nn.Sequential`` of the layers conversion reads, for
    samples of ``input_shape``. Layers are named after the graph's nodes (``/fc1/Gemm`` → ``fc1``),
    so a teacher exported from PyTorch keeps its module paths for feature distillation."""
    return _OnnxMapper(read_onnx(path), str(path), tuple(int(v) for v in input_shape)).build()


def _dims(value_info) -> Optional[List[Optional[int]]]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _pairs(values: Sequence[int], what: str, where: str) -> Tuple[int, int]:
    if len(values) != 2:
        raise NeurokdError(f"{where}: {what} {list(values)} is not 2-D")
    return int(values[0]), int(values[1])


class _OnnxMapper:
    """Walks the graph in its (topological) order, keeping the one activation that flows along
    the chain of layers (``cur``, of per-sample shape ``shape``), the constants (initializers and
    Constant outputs) and the symbolic shape vectors (``"N"`` for the batch)."""

    def __init__(self, model, where: str, input_shape: Tuple[int, ...]) -> None:
        from onnx import numpy_helper

        self.graph, self.where = model.graph, where
        self.consts: Dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.symbolic: Dict[str, np.ndarray] = {}  # shape vectors, object arrays of ints and "N"
        self.layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        self.input_shape = input_shape
        self.shape: Tuple[int, ...] = input_shape
        self.cur = ""
        self.batch: Optional[int] = None  # the graph's batch size, where it is fixed
        self.last_op = ""

    # -- helpers
    def fail(self, node, message: str) -> NeurokdError:
        return NeurokdError(f"{self.where}: node {node.name or '(unnamed)'!r} ({node.op_type}): "
                            f"{message}")

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
            values = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError):
            values = None
        if values is None or arr.dtype.kind not in "fV":
            raise self.fail(node, f"its {what} {name!r} holds {arr.dtype} values, not float weights")
        return torch.from_numpy(values.copy())

    def data(self, node, index: int = 0) -> str:
        name = node.input[index] if len(node.input) > index else ""
        if name != self.cur:
            raise self.fail(node, f"reads {name!r}, not the output of the layer before it: only a "
                                  "chain of layers converts (no branches or skip connections)")
        return name

    def value(self, node, name: str) -> Tuple[np.ndarray, bool]:
        """A constant or a symbolic shape vector, and whether it is symbolic."""
        if name in self.symbolic:
            return self.symbolic[name], True
        if name in self.consts:
            return self.consts[name], False
        if name == self.cur:
            raise self.fail(node, f"computes on the activations; neurokd maps only these "
                                  f"operators onto layers: {SUPPORTED_OPS}")
        raise self.fail(node, f"reads {name!r}, which no earlier node gives")

    def add(self, node, module: nn.Module, shape: Tuple[int, ...]) -> None:
        parts = [p for p in (node.name or "").split("/") if p]
        if len(parts) >= 2 and parts[-1].split("_")[0] == node.op_type:
            parts = parts[:-1]  # the PyTorch exporter names nodes /<module path>/<op>
        name = re.sub(r"\W", "_", "_".join(parts)) or f"{node.op_type.lower()}"
        base, k = name, 1
        while name in self.layers:
            name, k = f"{base}_{k}", k + 1
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
                raise NeurokdError(f"{self.where}: operator {node.op_type!r} of domain "
                                   f"{node.domain!r} (node {node.name!r}) is not supported; "
                                   f"neurokd maps these operators onto the layers it converts: "
                                   f"{SUPPORTED_OPS}")
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                hint = _HINTS.get(node.op_type)
                raise NeurokdError(f"{self.where}: operator {node.op_type!r} (node {node.name!r}) "
                                   "is not supported" + (f" ({hint})" if hint else "")
                                   + f"; neurokd maps these operators onto the layers it "
                                   f"converts: {SUPPORTED_OPS}")
            handler(node)
        if len(g.output) != 1 or g.output[0].name != self.cur:
            raise NeurokdError(f"{self.where}: the model's output must be its last layer's, a "
                               f"single tensor of logits (outputs: "
                               f"{', '.join(o.name for o in g.output)})")
        if not any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in self.layers.values()):
            raise NeurokdError(f"{self.where}: the model has no Gemm, MatMul or Conv layer")
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
            raise self.fail(node, "transA = 1 cannot be converted")
        if len(self.shape) != 1:
            raise self.fail(node, f"its input is {list(self.shape)}, not flat")
        w = self.weight(node, node.input[1], "weight")
        if w.dim() != 2:
            raise self.fail(node, f"weight of shape {list(w.shape)} is not a matrix")
        w = (w if a.get("transB", 0) else w.t()) * float(a.get("alpha", 1.0))
        if w.shape[1] != self.shape[0]:
            raise self.fail(node, f"expects {w.shape[1]} inputs, gets {self.shape[0]}")
        has_bias = len(node.input) > 2 and node.input[2] != ""
        layer = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
        with torch.no_grad():
            layer.weight.copy_(w)
            if has_bias:
                c = self.weight(node, node.input[2], "bias").numpy() * float(a.get("beta", 1.0))
                layer.bias.copy_(self.per_channel(node, c, (w.shape[0],)))
        self.add(node, layer, (w.shape[0],))

    def op_MatMul(self, node) -> None:
        self.data(node)
        if len(self.shape) != 1:
            raise self.fail(node, f"its input is {list(self.shape)}: only flat features times a "
                                  "constant matrix converts")
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
                                  "connection): only a chain of layers converts")
        last = next(reversed(self.layers.values())) if self.layers else None
        if (self.last_op not in ("Gemm", "MatMul", "Conv")
                or not isinstance(last, (nn.Linear, nn.Conv2d))):
            raise self.fail(node, "only a constant bias added right after a Gemm, MatMul or Conv "
                                  "converts")
        bias = self.per_channel(node, self.weight(node, other, "bias").numpy(), self.shape)
        with torch.no_grad():
            if last.bias is None:
                last.bias = nn.Parameter(bias)
            else:
                last.bias.add_(bias)
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
                                  f"{list(self.shape)}); export a 1-D one as a 1×k Conv2d")
        groups = int(a.get("group", 1))
        if w.shape[1] * groups != self.shape[0]:
            raise self.fail(node, f"weight {list(w.shape)} does not take {self.shape[0]} channels")
        k = tuple(w.shape[2:])
        stride = _pairs(a.get("strides", [1, 1]), "strides", self.where)
        dil = _pairs(a.get("dilations", [1, 1]), "dilations", self.where)
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
                dil: Tuple[int, int] = (1, 1)) -> Tuple[int, int]:
        """Symmetric (height, width) zero padding from ``pads`` or ``auto_pad``."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
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
                                          "padding converts")
                pads.append(total // 2)
            return (pads[0], pads[1])
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
        bn_cls = nn.BatchNorm2d if len(self.shape) == 3 else nn.BatchNorm1d
        bn = bn_cls(c, eps=float(a.get("epsilon", 1e-5)))
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
        k = _pairs(a.get("kernel_shape", []), "kernel_shape", self.where)
        stride = _pairs(a.get("strides", [1, 1]), "strides", self.where)
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "dilated pooling cannot be converted")
        pad = self.padding(node, a, k, stride)
        ceil = bool(a.get("ceil_mode", 0))
        rnd = math.ceil if ceil else math.floor
        h, wd = (int(rnd((self.shape[i + 1] + 2 * pad[i] - k[i]) / stride[i])) + 1 for i in range(2))
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
        target, _ = self.value(node, node.input[1])
        allowzero = int(self.attrs(node).get("allowzero", 0))
        full = ["N", *self.shape]
        out = [full[i] if (not allowzero and not isinstance(t, str) and int(t) == 0
                           and i < len(full)) else (t if isinstance(t, str) else int(t))
               for i, t in enumerate(np.asarray(target, dtype=object).reshape(-1))]
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
            axes = self.const(node, node.input[1], "axes").reshape(-1).tolist()
        full = ["N", *self.shape]
        axes = [int(x) + len(full) if int(x) < 0 else int(x) for x in
                (axes if axes is not None else [i for i, d in enumerate(full) if d == 1])]
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

    # -- shape arithmetic (constants and symbolic shape vectors only)
    def op_Constant(self, node) -> None:
        a = self.attrs(node)
        from onnx import numpy_helper

        if "value" in a:
            self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
        elif "value_float" in a or "value_int" in a:
            self.consts[node.output[0]] = np.array(a.get("value_float", a.get("value_int")))
        elif "value_floats" in a or "value_ints" in a:
            self.consts[node.output[0]] = np.array(a.get("value_floats", a.get("value_ints")))
        else:
            raise self.fail(node, f"holds {sorted(a)}; only tensor and number constants convert")

    def op_Shape(self, node) -> None:
        if node.input[0] != self.cur:
            self.value(node, node.input[0])  # raises for names that are not the activation
            raise self.fail(node, "reads the shape of a constant")
        a = self.attrs(node)
        full = np.array(["N", *self.shape], dtype=object)
        start, end = a.get("start", 0), a.get("end", len(full))
        self.symbolic[node.output[0]] = full[start:end]

    def shape_op(self, node, op: str) -> None:
        values = [self.value(node, n) for n in node.input if n]
        a = self.attrs(node)
        symbolic = any(s for _, s in values)
        arrays = [np.asarray(v, dtype=object) if symbolic else v for v, _ in values]
        if op == "Gather":
            if values[1][1] or int(a.get("axis", 0)) != 0:
                raise self.fail(node, "only gathering constant indices along axis 0 converts")
            out = arrays[0][np.asarray(values[1][0]).astype(np.int64)]
        elif op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes")
            if axes is None and len(arrays) > 1:
                axes = np.asarray(values[1][0]).reshape(-1).tolist()
            out = np.asarray(arrays[0], dtype=object if symbolic else None)
            if op == "Unsqueeze":
                for ax in sorted(int(x) for x in axes):
                    out = np.expand_dims(out, ax if ax >= 0 else ax + out.ndim + 1)
            else:
                out = np.squeeze(out, axis=None if axes is None else tuple(int(x) for x in axes))
        elif op == "Concat":
            out = np.concatenate([np.atleast_1d(x) for x in arrays], axis=int(a.get("axis", 0)))
        else:  # Cast, Identity
            out = arrays[0]
        if symbolic:
            self.symbolic[node.output[0]] = np.asarray(out, dtype=object)
        else:
            self.consts[node.output[0]] = np.asarray(out)

    def op_Gather(self, node) -> None:
        self.shape_op(node, "Gather")

    def op_Unsqueeze(self, node) -> None:
        self.shape_op(node, "Unsqueeze")

    def op_Concat(self, node) -> None:
        self.shape_op(node, "Concat")

    def op_Cast(self, node) -> None:
        self.shape_op(node, "Cast")
