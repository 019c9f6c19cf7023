"""What a DNN holds, checked before it runs: finite parameters and buffers, and activations sized
from its layers' shapes against the memory this machine can spare. Teachers (``neurokd.interop``)
and DNN → SNN conversion (``neurokd.convert``) both use these."""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import format_bytes, memory_budget
from neurokd.models.checkpoint import non_finite

# One sample's activations (all layers together) beyond this are no network a chip runs.
MAX_SAMPLE_BYTES = 1 << 30


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------- sizes and values


def nonfinite(tensors: Iterable[Tuple[str, Any]]) -> Optional[str]:
    """The name of the first floating-point tensor or array holding NaN or infinity, if any."""
    bad = non_finite(tensors)
    return bad[0] if bad else None


def check_finite(model: nn.Module, where: str) -> None:
    """Refuse a model whose parameters or buffers hold NaN or infinity, naming the tensor."""
    bad = nonfinite(iter([*model.named_parameters(), *model.named_buffers()]))
    if bad is not None:
        raise NeurokdError(f"{where}: the teacher's tensor {bad!r} holds NaN or infinite values; "
                           "a teacher's weights must be finite")


def activation_sizes(model: nn.Module, input_shape: Sequence[int]
                     ) -> Optional[List[Tuple[str, int]]]:
    """Per layer, the values in one sample's output, from the layers' shapes alone (nothing is
    run): for an ``nn.Sequential`` of the layers conversion reads (as ONNX teachers are), None
    for any other model or where a layer would not take its input (the forward pass says why)."""
    if not _plain_sequential(model):
        return None
    shape = tuple(int(v) for v in input_shape)
    out: List[Tuple[str, int]] = []
    for name, mod in _sequential_leaves(model):
        if mod is None:  # a Sequential that runs its own forward
            return None
        if isinstance(mod, (nn.ReLU, nn.Dropout, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d)):
            pass
        elif isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                return None
            shape = (math.prod(shape),)
        elif isinstance(mod, nn.Linear):
            shape = (int(mod.out_features),)
        elif isinstance(mod, (nn.Conv2d, nn.AvgPool2d)):
            if len(shape) != 3 or isinstance(getattr(mod, "padding", 0), str):
                return None
            k, st, pad = (_as_pair(getattr(mod, a)) for a in ("kernel_size", "stride", "padding"))
            dil = _as_pair(getattr(mod, "dilation", 1))
            ceil = bool(getattr(mod, "ceil_mode", False))
            if None in (k, st, pad, dil) or min(st) < 1:
                return None
            hw = []
            for i in range(2):
                span = shape[i + 1] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1
                hw.append((-(-span // st[i]) if ceil else span // st[i]) + 1)
            channels = mod.out_channels if isinstance(mod, nn.Conv2d) else shape[0]
            shape = (int(channels), *hw)
        else:
            return None
        if min(shape) < 1:
            return None
        out.append((name, math.prod(shape)))
    return out


def _plain_sequential(model: nn.Module) -> bool:
    """An ``nn.Sequential`` that runs its layers in order (its forward is not overridden)."""
    return isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward


def _sequential_leaves(model: nn.Sequential) -> Iterator[Tuple[str, Optional[nn.Module]]]:
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            if not _plain_sequential(child):
                yield name, None
                return
            yield from ((f"{name}.{n}", m) for n, m in _sequential_leaves(child))
        else:
            yield name, child


def _as_pair(value: Any) -> Optional[Tuple[int, int]]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or not all(isinstance(v, int) for v in vals):
        return None
    return int(vals[0]), int(vals[1])


def check_activations(model: nn.Module, input_shape: Sequence[int], samples: int, where: str,
                      purpose: str) -> None:
    """Refuse, before anything runs, a model whose activations for ``samples`` samples at once
    (``purpose``: what runs them) would take more memory than this machine can spare, or whose
    one sample's activations alone exceed :data:`MAX_SAMPLE_BYTES`. Models whose layers'
    shapes cannot be computed without running them (see :func:`activation_sizes`) pass."""
    sizes = activation_sizes(model, input_shape)
    if not sizes:
        return
    per_sample = 4 * (math.prod(int(v) for v in input_shape) + sum(n for _, n in sizes))
    refuse_activations(f"{where}: ", sizes, per_sample, per_sample * samples, samples, purpose)


def refuse_activations(prefix: str, sizes: Sequence[Tuple[str, int]], per_sample: int, need: int,
                       samples: int, purpose: str, hint: str = "") -> None:
    """Refuse activations of ``per_sample`` bytes a sample beyond :data:`MAX_SAMPLE_BYTES`, or
    ``need`` bytes for ``purpose`` (run on ``samples`` samples) beyond what this machine can
    spare; ``sizes``: the values of each layer's output, to name the largest."""
    layer, most = max(sizes, key=lambda item: item[1])
    largest = f"layer {layer!r} alone {format_bytes(4 * most)}"
    if per_sample > MAX_SAMPLE_BYTES:
        raise NeurokdError(f"{prefix}refused: one sample's activations take "
                           f"{format_bytes(per_sample)} ({largest}), more than the "
                           f"{format_bytes(MAX_SAMPLE_BYTES)} a network neurokd converts can have")
    budget = memory_budget()
    if need > budget:
        raise NeurokdError(f"{prefix}refused: {purpose} of {samples} samples needs "
                           f"{format_bytes(need)} of activations ({largest} a sample), more than "
                           f"the {format_bytes(budget)} this machine can spare{hint}")


