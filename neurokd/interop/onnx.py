"""ONNX teachers: the graph read with the ``onnx`` package (nothing in the file is executed;
external weight files must lie inside the model's folder), every tensor's type, shape and stored
bytes checked before its values are read, and the graph mapped node by node onto the torch layers
that conversion reads (:data:`SUPPORTED_OPS`), as an ``nn.Sequential`` whose weights are the
graph's initializers (:mod:`neurokd.interop.onnx_map`, with the shape arithmetic of
:mod:`neurokd.interop.onnx_shapes`). Any other operator is refused by name."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import format_bytes, memory_budget
from neurokd.interop.onnx_map import (LAYER_OPS, SHAPE_OPS, SUPPORTED_OPS, NotMappable,
                                      _OnnxMapper)
from neurokd.interop.onnx_shapes import MAX_SHAPE_VALUES, _TENSOR_TYPES
from neurokd.models.dnn_checks import first_line as _first_line

__all__ = ["LAYER_OPS", "MAX_ONNX_BYTES", "MAX_SHAPE_VALUES", "SHAPE_OPS", "SUPPORTED_OPS",
           "general_onnx", "onnx_teacher", "read_onnx"]

# A protobuf message (an ONNX file without external data) holds at most 2 GiB.
MAX_ONNX_BYTES = (1 << 31) - 1


# ---------------------------------------------------------------- ONNX
def read_onnx(path: str | Path):
    """Parse ``path`` as an ONNX model (protobuf only: nothing is executed), check every tensor
    it declares (type, shape, stored bytes: see :func:`_check_tensor`), load external tensor data
    only from files inside the model's folder, and run the ONNX checker."""
    import onnx
    from onnx import external_data_helper

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such ONNX file")
    try:
        size = p.stat().st_size
        if size > MAX_ONNX_BYTES:
            raise NeurokdError(f"{p}: refused: {format_bytes(size)} is more than an ONNX file "
                               f"can hold ({format_bytes(MAX_ONNX_BYTES)}; larger weights go in "
                               "external data)")
        data = p.read_bytes()
    except OSError as exc:
        raise NeurokdError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        model = onnx.load_model_from_string(data)  # external data is not read here
    except Exception:  # protobuf's DecodeError and kin
        raise NeurokdError(f"{p}: not an ONNX model (the file does not parse as one)") from None
    del data
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise NeurokdError(f"{p}: not an ONNX model (no graph of operators)")
    folder = p.resolve().parent
    budget = memory_budget()
    external = 0
    for tensor in _graph_tensors(model.graph):
        declared = _check_tensor(p, tensor)
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        found = _inside(folder, location)
        if found is None:
            raise NeurokdError(f"{p}: refused: tensor {tensor.name!r} reads external data from "
                               f"{location!r}, which is not a file inside {folder}")
        offset, length = (_entry(p, tensor, entries, key) for key in ("offset", "length"))
        if length is not None and length != declared:
            raise NeurokdError(f"{p}: tensor {tensor.name!r} declares {declared} bytes of "
                               f"values but its external data is {length} bytes long")
        if (offset or 0) + declared > found[1]:
            raise NeurokdError(f"{p}: tensor {tensor.name!r} declares {declared} bytes of "
                               f"values at offset {offset or 0} of {location!r}, which holds "
                               f"only {found[1]} bytes")
        if length is None:  # read exactly what the shape declares, not the rest of the file
            entry = tensor.external_data.add()
            entry.key, entry.value = "length", str(declared)
        external += declared
        if external > budget:
            raise NeurokdError(f"{p}: refused: its external data holds {format_bytes(external)} or "
                               f"more, more than the {format_bytes(budget)} this machine can spare")
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(folder))
        except Exception as exc:
            raise NeurokdError(f"{p}: cannot read the external data of tensor {tensor.name!r} "
                               f"({_first_line(exc)})") from None
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
        _check_tensor(p, tensor)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and the like
        raise NeurokdError(f"{p}: not a valid ONNX model ({_first_line(exc)})") from None
    return model


def _inside(folder: Path, location: str) -> Optional[Tuple[Path, int]]:
    """``folder / location`` resolved and its size, if it is a regular file inside ``folder``."""
    if not location or "\x00" in location or Path(location).is_absolute():
        return None
    try:
        target = (folder / location).resolve()
        if folder not in target.parents or not target.is_file():
            return None
        return target, target.stat().st_size
    except (OSError, ValueError, RuntimeError):  # a name the system refuses, a link loop
        return None


def _entry(p: Path, tensor, entries: Dict[str, str], key: str) -> Optional[int]:
    """The external data's ``offset`` or ``length`` entry: a non-negative integer, if given."""
    if key not in entries:
        return None
    text = entries[key]
    if not re.fullmatch(r"[0-9]{1,19}", text or ""):
        raise NeurokdError(f"{p}: tensor {tensor.name!r} has external data {key} {text!r}, not "
                           "a byte count")
    return int(text)


def _check_tensor(p: Path, tensor) -> int:
    """Check a tensor of the file before its values are read: a type neurokd reads (float
    weights, integer shape constants), non-negative dimensions, no segments, a declared size
    this machine can hold, and (where its values are in the file) exactly as many stored values
    or bytes as its shape declares. Returns its declared size in bytes."""
    import onnx

    dt = int(tensor.data_type)
    name = onnx.TensorProto.DataType.Name(dt) if dt in onnx.TensorProto.DataType.values() else None
    if name not in _TENSOR_TYPES:
        shown = name if name is not None else f"data_type {dt} (no ONNX type)"
        raise NeurokdError(f"{p}: tensor {tensor.name!r} is of type {shown}; neurokd reads float "
                           "weights and integer shape constants only")
    if tensor.HasField("segment"):
        raise NeurokdError(f"{p}: tensor {tensor.name!r} is stored in segments, which neurokd "
                           "does not read")
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise NeurokdError(f"{p}: tensor {tensor.name!r} has negative dimensions {dims}")
    count = math.prod(dims)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(dt).itemsize
    declared = count * itemsize
    budget = memory_budget()
    if declared > budget:
        raise NeurokdError(f"{p}: refused: tensor {tensor.name!r} declares shape {dims} "
                           f"({format_bytes(declared)}), more than the {format_bytes(budget)} "
                           "this machine can spare")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return declared
    field_name = onnx.helper.tensor_dtype_to_field(dt)
    if tensor.HasField("raw_data"):
        stored, want, unit = len(tensor.raw_data), declared, "bytes"
    else:
        stored, want, unit = len(getattr(tensor, field_name)), count, "values"
    for other in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                  "string_data"):
        if (other != field_name or tensor.HasField("raw_data")) and len(getattr(tensor, other)):
            raise NeurokdError(f"{p}: tensor {tensor.name!r} of type {name} stores values in "
                               f"{other}, not where its type keeps them")
    if stored != want:
        raise NeurokdError(f"{p}: tensor {tensor.name!r} declares shape {dims} ({want} {unit} "
                           f"of {name}) but stores {stored} {unit}")
    return declared


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


def onnx_teacher(path: str | Path, input_shape: Sequence[int], convertible: bool = True
                 ) -> nn.Module:
    """The ONNX graph at ``path`` as an ``nn.Sequential`` of the layers conversion reads, for
    samples of ``input_shape``. Layers are named after the graph's nodes (``/fc1/Gemm`` → ``fc1``),
    so a teacher exported from PyTorch keeps its module paths for feature distillation.

    ``convertible=False`` (a teacher that stays a DNN: distillation, ``report --teacher``,
    ``quantize --kd-from``): a graph the mapper cannot map (``NotMappable``: an operator, a
    branch, a layout; never bad data such as non-finite weights) is read by onnx2torch instead,
    a maintained converter of the whole operator set, from the same checked model (nothing
    executed, external data only from inside the folder). The module then carries
    ``neurokd_unconvertible``: the mapper's reason, which conversion gives if asked to convert
    it."""
    proto = read_onnx(path)
    try:
        return _OnnxMapper(proto, str(path), tuple(int(v) for v in input_shape)).build()
    except NotMappable as refused:  # a sound graph of other operators; bad data stays refused
        if convertible:
            raise
        return general_onnx(proto, path, str(refused))


def general_onnx(proto, path: str | Path, refused: str) -> nn.Module:
    """``proto`` (a model ``read_onnx`` checked) as a torch module by onnx2torch, marked with why
    conversion refuses it (``refused``)."""
    try:
        from onnx2torch import convert
    except ImportError:
        raise NeurokdError(f"{refused} (a teacher that is not converted is read by onnx2torch, "
                           "which is not installed: pip install onnx2torch)") from None
    try:
        model = convert(proto)
    except Exception as exc:  # onnx2torch's NotImplementedError for an operator, and kin
        raise NeurokdError(f"{path}: cannot be read as a teacher: {_first_line(exc)} (onnx2torch); "
                           f"neurokd's own mapper refused it too: {refused}") from None
    model.neurokd_unconvertible = refused
    return model.eval()

