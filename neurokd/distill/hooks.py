"""Read intermediate features by module path with forward hooks; the models are never edited."""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from neurokd.errors import NeurokdError


def module_paths(model: nn.Module) -> List[str]:
    return [name for name, _ in model.named_modules() if name]


def get_module(model: nn.Module, path: str, owner: str = "model") -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        options = ", ".join(module_paths(model)[:12])
        raise NeurokdError(f"{owner} has no layer {path!r}; its layers: {options}") from None


class FeatureTap:
    """Keep the latest output of the modules at ``paths`` of ``model`` while the tap is open.

    Usage::

        with FeatureTap(teacher, ["relu1"]) as tap:
            logits = teacher(x)
            hidden = tap["relu1"]
    """

    def __init__(self, model: nn.Module, paths: List[str], owner: str = "model") -> None:
        self.modules = {p: get_module(model, p, owner) for p in paths}
        self.outputs: Dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "FeatureTap":
        for path, module in self.modules.items():
            def hook(_m, _inp, out, path=path):
                self.outputs[path] = out[0] if isinstance(out, tuple) else out

            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __getitem__(self, path: str) -> torch.Tensor:
        return self.outputs[path]
