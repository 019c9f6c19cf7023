"""Shape arithmetic of an ONNX teacher's graph: the operators that only compute the target shape
of a Reshape (Constant, Shape, Gather, Unsqueeze, Squeeze, Concat, Cast, Identity), on constants and
on symbolic shape vectors (``"N"`` for the batch). :class:`neurokd.interop.onnx_map._OnnxMapper`
takes these operators from :class:`_ShapeOps`."""

from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np

from neurokd.models.dnn_checks import first_line as _first_line, nonfinite

# Tensor types read from an ONNX file: float weights and integer (or boolean) shape constants.
_TENSOR_TYPES = ("FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "INT8", "INT16", "INT32", "INT64",
                 "UINT8", "UINT16", "UINT32", "UINT64", "BOOL")
# Values a shape computation (Gather, Concat) may produce: shape vectors are short.
MAX_SHAPE_VALUES = 1 << 16


class _ShapeOps:
    """The shape operators of :class:`neurokd.interop.onnx_map._OnnxMapper`, which gives them
    ``attrs``, ``fail``, ``value``, ``consts``, ``symbolic``, ``cur`` and ``shape``."""

    # -- shape arithmetic (constants and symbolic shape vectors only)
    def op_Constant(self, node) -> None:
        a = self.attrs(node)
        from onnx import numpy_helper

        if "value" in a:
            try:
                value = numpy_helper.to_array(a["value"])
            except Exception as exc:  # read_onnx checked it; anything left is one line
                raise self.fail(node, f"its value cannot be read ({_first_line(exc)})") from None
        elif "value_float" in a or "value_int" in a:
            value = np.array(a.get("value_float", a.get("value_int")))
        elif "value_floats" in a or "value_ints" in a:
            value = np.array(a.get("value_floats", a.get("value_ints")))
        else:
            raise self.fail(node, f"holds {sorted(a)}; only tensor and number constants convert")
        if nonfinite(iter([("value", value)])) is not None:
            raise self.fail(node, "its value holds NaN or infinite values")
        self.consts[node.output[0]] = value

    def op_Shape(self, node) -> None:
        if node.input[0] != self.cur:
            self.value(node, node.input[0])  # raises for names that are not the activation
            raise self.fail(node, "reads the shape of a constant")
        a = self.attrs(node)
        full = np.array(["N", *self.shape], dtype=object)
        start, end = a.get("start", 0), a.get("end", len(full))
        self.symbolic[node.output[0]] = full[start:end]

    def int_values(self, node, values: Any, what: str) -> List[Any]:
        """``values`` (a constant or a symbolic shape vector) as a flat list of Python ints
        (and ``"N"`` for the batch), refusing anything that is not an integer."""
        out: List[Any] = []
        for v in np.asarray(values, dtype=object).reshape(-1).tolist():
            if isinstance(v, str) and v == "N":
                out.append(v)
            elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise self.fail(node, f"its {what} holds {v!r}, not an integer")
            else:
                out.append(int(v))
        return out

    def shape_op(self, node, op: str) -> None:
        values = [self.value(node, n) for n in node.input if n]
        if not values:
            raise self.fail(node, "has no inputs")
        a = self.attrs(node)
        symbolic = any(s for _, s in values)
        arrays = [np.asarray(v, dtype=object) if symbolic else np.asarray(v) for v, _ in values]
        if op == "Gather":
            if len(values) != 2 or values[1][1] or int(a.get("axis", 0)) != 0:
                raise self.fail(node, "only gathering constant indices along axis 0 converts")
            data = arrays[0]
            index = np.asarray(self.int_values(node, values[1][0], "indices"), dtype=np.int64)
            index = index.reshape(np.shape(values[1][0]))
            n = data.shape[0] if data.ndim else 0
            if index.size and (index.min() < -n or index.max() >= n):
                raise self.fail(node, f"indices {index.reshape(-1).tolist()[:8]} are out of range "
                                      f"for {n} values")
            self.bound(node, index.size * math.prod(data.shape[1:]))
        elif op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes")
            if axes is None and len(values) > 1:
                axes = values[1][0]
            if axes is not None:
                axes = self.int_values(node, axes, "axes")
            elif op == "Unsqueeze":
                raise self.fail(node, "has no axes")
            rank = arrays[0].ndim + (len(axes) if op == "Unsqueeze" else 0)
            if axes is not None and (any(not -rank <= x < rank for x in axes)
                                     or len({x % max(rank, 1) for x in axes}) != len(axes)):
                raise self.fail(node, f"axes {axes} are out of range or repeated for a result "
                                      f"of rank {rank}")
            if op == "Squeeze" and axes is not None and any(
                    arrays[0].shape[x] != 1 for x in axes):
                raise self.fail(node, f"axes {axes} of shape {list(arrays[0].shape)} are not of "
                                      "size 1")
        elif op == "Concat":
            if any(x.ndim > 1 for x in arrays):
                raise self.fail(node, "only joining vectors (of shapes or constants) converts")
            axis = int(a.get("axis", 0))
            if axis not in (0, -1):
                raise self.fail(node, f"axis {axis} is out of range for vectors")
            self.bound(node, sum(x.size for x in arrays))
        elif op == "Cast" and not symbolic:
            self.consts[node.output[0]] = self.cast(node, arrays[0], a.get("to"))
            return
        try:
            out = self.compute(op, arrays, a, values, symbolic)
        except (ValueError, IndexError, TypeError) as exc:  # numpy's refusals, AxisError included
            raise self.fail(node, f"cannot be computed ({_first_line(exc)})") from None
        if symbolic:
            self.symbolic[node.output[0]] = np.asarray(out, dtype=object)
        else:
            self.consts[node.output[0]] = np.asarray(out)

    def cast(self, node, value: np.ndarray, to: Any) -> np.ndarray:
        """A constant cast to the ONNX type ``to``; a float cast to an integer type must hold
        whole numbers within that type's range."""
        import onnx

        name = (onnx.TensorProto.DataType.Name(int(to))
                if to is not None and int(to) in onnx.TensorProto.DataType.values() else None)
        if name not in _TENSOR_TYPES:
            raise self.fail(node, f"casts to {name or f'data_type {to}'}; neurokd reads float "
                                  "weights and integer shape constants only")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(int(to))
        if dtype.kind in "iu" and value.dtype.kind in "fV":
            wide = value.astype(np.float64)
            info = np.iinfo(dtype)
            if wide.size and (not np.all(wide == np.round(wide)) or wide.min() < info.min
                              or wide.max() > info.max):
                raise self.fail(node, f"casts {wide.reshape(-1)[:4].tolist()} to {name}: not "
                                      "whole numbers within its range")
        with np.errstate(over="ignore", invalid="ignore"):
            out = value.astype(dtype)
        if nonfinite(iter([("value", out)])) is not None:
            raise self.fail(node, f"casts its values to {name} beyond that type's range")
        return out

    def bound(self, node, count: int) -> None:
        if count > MAX_SHAPE_VALUES:
            raise self.fail(node, f"refused: computes {count} values; shape computations are "
                                  f"limited to {MAX_SHAPE_VALUES}")

    @staticmethod
    def compute(op: str, arrays: List[np.ndarray], a: Dict[str, Any], values, symbolic: bool):
        if op == "Gather":
            return arrays[0][np.asarray(values[1][0]).astype(np.int64)]
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes")
            if axes is None and len(arrays) > 1:
                axes = np.asarray(values[1][0]).reshape(-1).tolist()
            out = np.asarray(arrays[0], dtype=object if symbolic else None)
            if op == "Unsqueeze":
                rank = out.ndim + len(axes)
                for ax in sorted(int(x) % rank for x in axes):
                    out = np.expand_dims(out, ax)
                return out
            return np.squeeze(out, axis=None if axes is None else tuple(int(x) for x in axes))
        if op == "Concat":
            return np.concatenate([np.atleast_1d(x) for x in arrays], axis=0)
        return arrays[0]  # Cast, Identity

    def op_Gather(self, node) -> None:
        self.shape_op(node, "Gather")

    def op_Unsqueeze(self, node) -> None:
        self.shape_op(node, "Unsqueeze")

    def op_Concat(self, node) -> None:
        self.shape_op(node, "Concat")

    def op_Cast(self, node) -> None:
        self.shape_op(node, "Cast")
