"""A DNN's layers read into the stages of a converted SNN (:func:`dnn_stages`), one per spiking
layer, for :mod:`neurokd.convert.dnn`.

A DNN made of ``Linear``, ``Conv2d``, ``ReLU``, ``Flatten``, ``BatchNorm1d/2d`` (folded into the
layer before it) and ``AvgPool2d`` (rewritten as a strided convolution with fixed weights ``1/k²``,
since netx refuses pooling layers, or merged into the layer after it) becomes a list of
``Stage``s, one per spiking layer. ``Dropout`` and ``Identity`` do nothing at inference and are
skipped; any other layer is refused by name. Folded weights must be finite, and a pooling kernel
is sized from the layers' shapes and refused, with one line, before it is made if this machine
cannot hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import format_bytes, memory_budget
from neurokd.models.dnn_checks import nonfinite
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer, NeuronSpec, compact

SUPPORTED = "Linear, Conv2d, ReLU, Flatten, BatchNorm1d/2d, AvgPool2d, Dropout, Identity"
# Integrate-and-fire: the current holds one step's input, the voltage does not leak.
IF_NEURON = NeuronSpec(current_decay=1.0, voltage_decay=0.0)


@dataclass
class Stage:
    """One spiking layer of the converted network (or a flatten)."""

    kind: str  # "dense", "conv", "pool" (an average pool as a fixed strided conv), "flatten"
    name: str
    weight: Optional[torch.Tensor] = None  # (out, in) or (out, in, k, k)
    bias: Optional[torch.Tensor] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    relu: bool = False
    sources: List[str] = field(default_factory=list)  # DNN modules merged into this stage

    @property
    def spiking(self) -> bool:
        return self.kind != "flatten"

    def apply(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None,
              bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The stage's affine map (no activation), with optionally replaced weight and bias."""
        w = self.weight if weight is None else weight
        b = self.bias if bias is None else bias
        if self.kind == "flatten":
            return x.flatten(1)
        if self.kind == "dense":
            return F.linear(x.flatten(1), w, b)
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding)


def _layer_pair(value: Any, what: str, name: str) -> Tuple[int, int]:
    """A DNN layer's kernel, stride or padding as a (height, width) pair of ints."""
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or not all(isinstance(v, int) for v in vals):
        raise NeurokdError(f"layer {name!r}: {what} {vals} is not an int or a pair of ints")
    return (int(vals[0]), int(vals[1]))


def _check_alloc(nbytes: int, name: str, what: str) -> None:
    """Refuse a tensor of ``nbytes`` for layer ``name`` (``what`` it is) that this machine cannot
    spare, before it is made."""
    budget = memory_budget()
    if nbytes > budget:
        raise NeurokdError(f"layer {name!r}: refused: {what} would take {format_bytes(nbytes)}, "
                           f"more than the {format_bytes(budget)} this machine can spare")


def _check_finite(name: str, what: str = "", **tensors: Optional[torch.Tensor]) -> None:
    """Refuse NaN or infinite values in layer ``name``'s tensors (``what``: how they were made),
    naming the layer and the tensor."""
    bad = nonfinite(iter((k, v) for k, v in tensors.items() if v is not None))
    if bad is not None:
        raise NeurokdError(f"layer {name!r}: its {bad}{what} holds NaN or infinite values; the "
                           "DNN cannot be converted")


def _leaves(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise NeurokdError(f"conversion needs an nn.Sequential DNN (its layer order is its "
                           f"execution order); got {type(model).__name__}")
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            out.extend((f"{name}.{n}", m) for n, m in _leaves(child))
        else:
            out.append((name, child))
    return out


def _pool_conv(channels: int, k: Tuple[int, int]) -> torch.Tensor:
    w = torch.zeros(channels, channels, *k)
    w[range(channels), range(channels)] = 1.0 / (k[0] * k[1])
    return w


def _merge_pool_into_conv(w: torch.Tensor, k: Tuple[int, int]) -> torch.Tensor:
    """Kernel of ``conv ∘ avgpool(k)``: each tap of ``w`` spread over a kh×kw block, divided by kh·kw."""
    return w.repeat_interleave(k[0], dim=2).repeat_interleave(k[1], dim=3) / (k[0] * k[1])


def _merge_pool_into_linear(w: torch.Tensor, pooled: Tuple[int, int, int], k: Tuple[int, int]
                            ) -> torch.Tensor:
    c, h, wd = pooled
    grid = w.reshape(w.shape[0], c, h, wd)
    return (grid.repeat_interleave(k[0], dim=2).repeat_interleave(k[1], dim=3)
            / (k[0] * k[1])).reshape(w.shape[0], -1)


@torch.no_grad()
def dnn_stages(model: nn.Module, input_shape: Sequence[int]) -> List[Stage]:
    """Parse ``model`` into spiking stages, folding BatchNorm and rewriting average pooling.

    An average pool whose input divides by its kernel is merged into the Linear or Conv2d that
    follows it (``conv ∘ avgpool(k)`` is one convolution with a k-times larger kernel, stride and
    padding, and no extra layer of neurons); otherwise it becomes its own strided convolution
    with weights ``1/k²`` between channel pairs."""
    reader = _StageReader(tuple(input_shape))
    for name, mod in _leaves(model):
        reader.read(name, mod)
    return reader.finish()


class _StageReader:
    """The walk of :func:`dnn_stages` over a DNN's layers, in order: the stages so far, one
    sample's shape after them, and an average pool waiting to be merged into the layer after it."""

    def __init__(self, input_shape: Tuple[int, ...]) -> None:
        self.stages: List[Stage] = []
        self.shape: Tuple[int, ...] = input_shape
        # (name, k, shape before) of an average pool not yet emitted
        self.pending: Optional[Tuple[str, Tuple[int, int], Tuple[int, ...]]] = None
        self.flat_after_pool = False

    def read(self, name: str, mod: nn.Module) -> None:
        """Add the layer ``name`` to the stages (or fold it into the last one)."""
        if isinstance(mod, (nn.Dropout, nn.Identity)):
            return
        if self.pending is not None and not isinstance(mod, (nn.Linear, nn.Conv2d, nn.Flatten)):
            self.emit_pool()
        last = self.stages[-1] if self.stages else None
        if isinstance(mod, nn.Linear):
            self.linear(name, mod)
        elif isinstance(mod, nn.Conv2d):
            self.conv(name, mod)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _fold_batchnorm(name, mod, last)
        elif isinstance(mod, nn.ReLU):
            if last is None or not last.spiking or last.relu:
                raise NeurokdError(f"layer {name!r}: ReLU must follow a Linear, Conv2d or "
                                   "BatchNorm layer")
            last.relu = True
            last.sources.append(name)
        elif isinstance(mod, nn.AvgPool2d):
            self.avg_pool(name, mod, last)
        elif isinstance(mod, nn.Flatten):
            self.flatten(name)
        else:
            raise NeurokdError(f"layer {name!r} ({type(mod).__name__}) cannot be converted to "
                               f"Loihi; supported layers: {SUPPORTED}")

    def emit_pool(self) -> None:
        """The pending average pool as its own strided convolution."""
        name, k, before = self.pending
        c = before[0]
        _check_alloc(4 * c * c * k[0] * k[1], name, f"its {c}-channel average pool as a "
                     f"convolution ({c}×{c}×{k[0]}×{k[1]} weights)")
        self.stages.append(Stage("pool", name, _pool_conv(c, k), torch.zeros(c), k, (0, 0),
                                 relu=True, sources=[name]))
        self.pending = None
        if self.flat_after_pool:
            self.stages.append(Stage("flatten", name + ".flatten", sources=[]))
            self.flat_after_pool = False

    def linear(self, name: str, mod: nn.Linear) -> None:
        shape = self.shape
        _check_finite(name, weight=mod.weight, bias=mod.bias)
        w = mod.weight.detach().clone()
        if int(np.prod(shape)) != w.shape[1]:
            raise NeurokdError(f"layer {name!r}: Linear expects {w.shape[1]} inputs, gets {shape}")
        b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
        sources = [name]
        if self.pending is not None:
            pname, k, before = self.pending
            _check_alloc(4 * w.numel() * k[0] * k[1], name,
                         f"its weights merged with the average pool {pname!r} before it")
            pooled = (before[0], before[1] // k[0], before[2] // k[1])
            w = _merge_pool_into_linear(w, pooled, k)
            sources = [pname, name]
            self.pending = None
            if self.flat_after_pool and self.stages:
                self.stages.append(Stage("flatten", pname + ".flatten", sources=[]))
            self.flat_after_pool = False
        self.stages.append(Stage("dense", name, w, b, sources=sources))
        self.shape = (w.shape[0],)

    def conv(self, name: str, mod: nn.Conv2d) -> None:
        shape = self.shape
        if len(shape) != 3 or self.flat_after_pool:
            raise NeurokdError(f"layer {name!r}: Conv2d after a flat output")
        if mod.groups != 1 or _layer_pair(mod.dilation, "dilation", name) != (1, 1):
            raise NeurokdError(f"layer {name!r}: grouped or dilated Conv2d cannot be converted")
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise NeurokdError(f"layer {name!r}: Conv2d padding must be a number with "
                               "padding_mode 'zeros'")
        k = _layer_pair(mod.kernel_size, "kernel", name)
        st = _layer_pair(mod.stride, "stride", name)
        p = _layer_pair(mod.padding, "padding", name)
        if min(k) < 1 or min(st) < 1 or min(p) < 0:
            raise NeurokdError(f"layer {name!r}: Conv2d kernel {list(k)} and stride "
                               f"{list(st)} must be at least 1, padding {list(p)} not "
                               "negative")
        _check_finite(name, weight=mod.weight, bias=mod.bias)
        w = mod.weight.detach().clone()
        b = mod.bias.detach().clone() if mod.bias is not None else torch.zeros(w.shape[0])
        shape = (w.shape[0], (shape[1] + 2 * p[0] - k[0]) // st[0] + 1,
                 (shape[2] + 2 * p[1] - k[1]) // st[1] + 1)
        if min(shape) < 1:
            raise NeurokdError(f"layer {name!r}: Conv2d gives an empty output {list(shape)}")
        self.shape = shape
        sources = [name]
        if self.pending is not None:
            pname, kp, _ = self.pending
            _check_alloc(4 * w.numel() * kp[0] * kp[1], name,
                         f"its weights merged with the average pool {pname!r} before it")
            w, sources = _merge_pool_into_conv(w, kp), [pname, name]
            st = (st[0] * kp[0], st[1] * kp[1])
            p = (p[0] * kp[0], p[1] * kp[1])
            self.pending = None
        self.stages.append(Stage("conv", name, w, b, st, p, sources=sources))

    def avg_pool(self, name: str, mod: nn.AvgPool2d, last: Optional[Stage]) -> None:
        shape = self.shape
        k = _layer_pair(mod.kernel_size, "kernel", name)
        st = _layer_pair(mod.stride if mod.stride is not None else k, "stride", name)
        if min(k) < 1:
            raise NeurokdError(f"layer {name!r}: AvgPool2d kernel {list(k)} must be positive")
        if st != k or _layer_pair(mod.padding, "padding", name) != (0, 0) or mod.ceil_mode:
            raise NeurokdError(f"layer {name!r}: only AvgPool2d with stride = kernel, no padding "
                               "and no ceil_mode becomes a strided convolution")
        if len(shape) != 3 or (last is not None and not last.relu):
            raise NeurokdError(f"layer {name!r}: AvgPool2d must follow a ReLU on an image")
        if shape[1] < k[0] or shape[2] < k[1]:
            raise NeurokdError(f"layer {name!r}: AvgPool2d kernel {list(k)} is larger than its "
                               f"input {list(shape[1:])}")
        self.pending = (name, k, shape)
        if shape[1] % k[0] or shape[2] % k[1]:  # merging would read the rows the pool drops
            self.emit_pool()
        self.shape = (shape[0], shape[1] // k[0], shape[2] // k[1])

    def flatten(self, name: str) -> None:
        shape = self.shape
        if len(shape) != 1:
            if self.pending is not None:
                self.flat_after_pool = True
            elif self.stages:  # a flatten before the first layer is implicit for dense students
                self.stages.append(Stage("flatten", name, sources=[name]))
            self.shape = (int(np.prod(shape)),)

    def finish(self) -> List[Stage]:
        """The stages, once every layer is read: a pending pool emitted, the head checked."""
        if self.pending is not None:
            self.emit_pool()
        stages = self.stages
        spiking = [s for s in stages if s.spiking]
        if not spiking or spiking[-1].kind != "dense":
            raise NeurokdError("the DNN must end in a Linear layer (its logits become output "
                               "spikes)")
        for s in spiking[:-1]:
            if not s.relu:
                raise NeurokdError(f"layer {s.name!r} is not followed by ReLU: every hidden layer "
                                   "of a converted DNN needs a ReLU (spike rates cannot be "
                                   "negative)")
        return stages


def _fold_batchnorm(name: str, mod: nn.Module, last: Optional[Stage]) -> None:
    """Fold the BatchNorm ``name`` into the Linear or Conv2d stage ``last`` before it."""
    if last is None or last.kind not in ("dense", "conv") or last.relu:
        raise NeurokdError(f"layer {name!r}: BatchNorm must directly follow a Linear or "
                           "Conv2d layer to be folded into it")
    if mod.running_mean is None:
        raise NeurokdError(f"layer {name!r}: BatchNorm without running statistics")
    _check_finite(name, weight=mod.weight, bias=mod.bias, running_mean=mod.running_mean,
                  running_var=mod.running_var)
    if not (math.isfinite(float(mod.eps)) and float(mod.eps) > 0):
        raise NeurokdError(f"layer {name!r}: BatchNorm eps {mod.eps} must be a positive "
                           "number")
    if bool((mod.running_var < 0).any()):
        raise NeurokdError(f"layer {name!r}: BatchNorm running_var holds negative values "
                           f"({float(mod.running_var.min())}); a variance is never "
                           "negative")
    scale = mod.running_var.add(mod.eps).rsqrt()
    if mod.weight is not None:
        scale = scale * mod.weight
    shift = -mod.running_mean * scale
    if mod.bias is not None:
        shift = shift + mod.bias
    last.weight = last.weight * scale.reshape(-1, *([1] * (last.weight.dim() - 1)))
    last.bias = last.bias * scale + shift
    last.sources.append(name)
    _check_finite(last.name, f" folded with BatchNorm {name!r}", weight=last.weight,
                  bias=last.bias)


def stages_spec(stages: Sequence[Stage], input_shape: Sequence[int]) -> ArchSpec:
    layers = []
    for s in stages:
        if s.kind == "dense":
            layers.append(DenseLayer(units=s.weight.shape[0]))
        elif s.kind == "flatten":
            layers.append(FlattenLayer())
        else:
            layers.append(ConvLayer(channels=s.weight.shape[0], kernel=compact(tuple(s.weight.shape[-2:])),
                                    stride=compact(s.stride), padding=compact(s.padding)))
    spec = ArchSpec(input_shape=list(input_shape), layers=layers, neuron=IF_NEURON)
    spec.shapes()
    return spec

