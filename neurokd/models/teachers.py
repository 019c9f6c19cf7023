"""Teacher DNNs (registry). Each takes ``(N, C, H, W)`` floats and returns class logits.

Teachers are ``nn.Sequential`` with named children, so distillation can tap any layer by module
path with a forward hook.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.registry import Registry

TEACHERS: Registry[Callable[..., nn.Module]] = Registry("teacher model")


@TEACHERS.register("mlp")
def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256,)) -> nn.Module:
    layers: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
    width = int(torch.tensor(input_shape).prod())
    for i, h in enumerate(hidden):
        layers[f"fc{i + 1}"] = nn.Linear(width, h)
        layers[f"relu{i + 1}"] = nn.ReLU()
        width = h
    layers["head"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


@TEACHERS.register("cnn")
def cnn(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (16, 32)) -> nn.Module:
    """Two 3×3 convolutions (the second strided, as Loihi wants no pooling) and a linear head."""
    if len(input_shape) != 3:
        raise NeurokdError(f"teacher 'cnn' needs image input (C, H, W), got {list(input_shape)}")
    if len(hidden) != 2:
        raise NeurokdError("teacher 'cnn' takes hidden as two channel counts, e.g. [16, 32]")
    c, h, w = input_shape
    c1, c2 = hidden
    h2, w2 = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(c, c1, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(c1, c2, 3, stride=2, padding=1), relu2=nn.ReLU(),
        flatten=nn.Flatten(), head=nn.Linear(c2 * h2 * w2, num_classes)))


@TEACHERS.register("cnn_bn")
def cnn_bn(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (16, 32)) -> nn.Module:
    """Two blocks of 3×3 convolution, BatchNorm, ReLU and 2×2 average pooling, and a linear head:
    the usual DNN shape that ``neurokd convert`` rewrites (BatchNorm folded, pooling as a strided
    convolution)."""
    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        raise NeurokdError(f"teacher 'cnn_bn' needs image input (C, H, W) of at least 4×4, got "
                           f"{list(input_shape)}")
    if len(hidden) != 2:
        raise NeurokdError("teacher 'cnn_bn' takes hidden as two channel counts, e.g. [16, 32]")
    c, h, w = input_shape
    c1, c2 = hidden
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(c, c1, 3, padding=1), bn1=nn.BatchNorm2d(c1), relu1=nn.ReLU(),
        pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(c1, c2, 3, padding=1), bn2=nn.BatchNorm2d(c2), relu2=nn.ReLU(),
        pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), head=nn.Linear(c2 * (h // 4) * (w // 4), num_classes)))


def _check_iq_frames(name: str, input_shape: Sequence[int]) -> None:
    if len(input_shape) != 3 or input_shape[1] != 1 or input_shape[2] < 16:
        raise NeurokdError(f"teacher {name!r} needs I/Q frames (C, 1, L) with L >= 16, got "
                           f"{list(input_shape)}")


@TEACHERS.register("cnn1d")
def cnn1d(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (32, 16, 128)
          ) -> nn.Module:
    """A 1-D CNN over time for I/Q frames ``(C, 1, L)``, of the VT-CNN2 kind: two 1×k
    convolutions with BatchNorm and ReLU (the first strided, the second followed by 1×2 average
    pooling), a dense layer and a linear head. ``hidden`` is [channels, channels, units]. Every
    layer converts to Loihi (``neurokd convert``): BatchNorm folds, the pool merges into the head."""
    _check_iq_frames("cnn1d", input_shape)
    if len(hidden) != 3:
        raise NeurokdError("teacher 'cnn1d' takes hidden as [channels, channels, units], e.g. "
                           "[32, 16, 128]")
    c, _, length = input_shape
    c1, c2, units = hidden
    l1 = (length + 2 * 3 - 7) // 2 + 1  # conv1: 1×7, stride 2, padding 3
    l2 = l1 // 2  # conv2 keeps the length (1×5, padding 2); the pool halves it
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(c, c1, (1, 7), stride=(1, 2), padding=(0, 3)), bn1=nn.BatchNorm2d(c1),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(c1, c2, (1, 5), padding=(0, 2)), bn2=nn.BatchNorm2d(c2), relu2=nn.ReLU(),
        pool2=nn.AvgPool2d((1, 2)),
        flatten=nn.Flatten(), fc=nn.Linear(c2 * l2, units), relu3=nn.ReLU(),
        head=nn.Linear(units, num_classes)))


@TEACHERS.register("cnn1d_deep")
def cnn1d_deep(input_shape: Sequence[int], num_classes: int,
               hidden: Sequence[int] = (64, 64, 64, 64, 256)) -> nn.Module:
    """A deeper 1-D CNN over time for I/Q frames ``(C, 1, L)``: four 1×k convolutions with
    BatchNorm and ReLU (1×7, then 1×5, 1×5 and 1×3, the last three with stride 2), a dense layer
    and a linear head; ``hidden`` is [channels × 4, units]. No pooling, so every layer converts to
    Loihi (``neurokd convert``) and a 1-D convolutional student can mirror it layer for layer."""
    _check_iq_frames("cnn1d_deep", input_shape)
    if len(hidden) != 5:
        raise NeurokdError("teacher 'cnn1d_deep' takes hidden as [channels, channels, channels, "
                           "channels, units], e.g. [64, 64, 64, 64, 256]")
    c, _, length = input_shape
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    for i, (k, stride) in enumerate(((7, 1), (5, 2), (5, 2), (3, 2)), start=1):
        out = hidden[i - 1]
        layers[f"conv{i}"] = nn.Conv2d(c, out, (1, k), stride=(1, stride), padding=(0, k // 2))
        layers[f"bn{i}"] = nn.BatchNorm2d(out)
        layers[f"relu{i}"] = nn.ReLU()
        length = (length + 2 * (k // 2) - k) // stride + 1
        c = out
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(c * length, hidden[4])
    layers["relu5"] = nn.ReLU()
    layers["head"] = nn.Linear(hidden[4], num_classes)
    return nn.Sequential(layers)


# The input each teacher is built for, as an example shape (tests walk the registry with it).
EXAMPLE_INPUT: Dict[str, Tuple[int, ...]] = {"cnn1d": (5, 1, 32), "cnn1d_deep": (5, 1, 32)}


def example_input(name: str) -> Tuple[int, ...]:
    """An input shape teacher ``name`` accepts: I/Q frames for ``cnn1d``, else an 8×8 image."""
    TEACHERS.get(name)
    return EXAMPLE_INPUT.get(name, (1, 8, 8))


def default_hidden(name: str) -> List[int]:
    """The ``hidden`` a teacher model builds with when given none (``teacher.hidden: null``)."""
    return list(inspect.signature(TEACHERS.get(name)).parameters["hidden"].default)


def build_teacher(name: str, input_shape: Tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build teacher ``name``; ``hidden=None`` (or none given) means the model's own default."""
    if kwargs.get("hidden", 0) is None:
        del kwargs["hidden"]
    return TEACHERS.get(name)(tuple(input_shape), num_classes, **kwargs)


def teacher_arch(name: str, input_shape: Tuple[int, ...], num_classes: int,
                 hidden: Optional[Sequence[int]]) -> Dict[str, Any]:
    return {"model": name, "input_shape": list(input_shape), "num_classes": num_classes,
            "hidden": default_hidden(name) if hidden is None else list(hidden)}


def teacher_from_checkpoint(payload: Dict[str, Any], where: str = "checkpoint") -> nn.Module:
    arch = payload["arch"]
    try:
        model = build_teacher(arch["model"], tuple(arch["input_shape"]), int(arch["num_classes"]),
                              hidden=arch["hidden"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise NeurokdError(f"{where}: teacher checkpoint does not match its architecture "
                           f"({type(exc).__name__})") from None
    model.neurokd_arch = dict(arch)  # saved again with the same architecture after co-learning
    return model.eval()


def check_teacher_fits(arch: Dict[str, Any], num_classes: int, input_shape: Tuple[int, ...],
                       where: str) -> None:
    """A teacher trained for another task is refused before any training starts."""
    if int(arch.get("num_classes", -1)) != num_classes:
        raise NeurokdError(f"{where}: teacher predicts {arch.get('num_classes')} classes, the data "
                           f"has {num_classes}")
    if tuple(arch.get("input_shape", ())) != tuple(input_shape):
        raise NeurokdError(f"{where}: teacher takes input {arch.get('input_shape')}, the data is "
                           f"{list(input_shape)}")
