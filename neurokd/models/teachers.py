"""Teacher DNNs (registry). Each takes ``(N, C, H, W)`` floats and returns class logits.

Teachers are ``nn.Sequential`` with named children, so distillation can tap any layer by module
path with a forward hook.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.registry import Registry

TEACHERS: Registry[Callable[..., nn.Module]] = Registry("teacher model")


@TEACHERS.register("mlp")
def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (128,)) -> nn.Module:
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


def build_teacher(name: str, input_shape: Tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    return TEACHERS.get(name)(tuple(input_shape), num_classes, **kwargs)


def teacher_arch(name: str, input_shape: Tuple[int, ...], num_classes: int,
                 hidden: Sequence[int]) -> Dict[str, Any]:
    return {"model": name, "input_shape": list(input_shape), "num_classes": num_classes,
            "hidden": list(hidden)}


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
