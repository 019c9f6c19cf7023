"""The Loihi-compatible search space over ``ArchSpec``: feed-forward, Conv then Dense, no pooling.

A candidate is ``n_conv`` convolutions (channels, kernel, stride; padding ``kernel // 2``), a flatten
when there are any, ``n_dense`` hidden dense layers, and the dense output layer of one neuron per
class, all of one neuron family (``neuron``: ``cuba``, integrate-and-fire with binary spikes, or
``sdnn``, sigma-delta with graded spikes, Loihi 2 only). The time steps are fixed for the whole
search (``timesteps``; a sigma-delta network holds a frame for its depth + 1 steps instead, and
``timesteps`` is not used). Example (YAML, the defaults)::

    neuron: cuba
    timesteps: 16
    conv_layers: [0, 2]
    dense_layers: [1, 2]
    channels: [4, 8, 16, 32]
    kernels: [3, 5]
    strides: [1, 2]
    units: [32, 64, 128, 256]
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, List, Literal, Optional, Sequence, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neurokd.errors import NeurokdError
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer

Pos = Annotated[int, Field(gt=0)]


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    neuron: Literal["cuba", "sdnn"] = "cuba"
    timesteps: int = Field(16, gt=0)
    conv_layers: Tuple[int, int] = (0, 2)
    dense_layers: Tuple[int, int] = (1, 2)
    channels: List[Pos] = Field(default_factory=lambda: [4, 8, 16, 32], min_length=1)
    kernels: List[Pos] = Field(default_factory=lambda: [3, 5], min_length=1)
    strides: List[Pos] = Field(default_factory=lambda: [1, 2], min_length=1)
    units: List[Pos] = Field(default_factory=lambda: [32, 64, 128, 256], min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> "SearchSpace":
        for name in ("conv_layers", "dense_layers"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ValueError(f"{name} must be [min, max] with 0 <= min <= max")
        return self

    @property
    def max_spiking_layers(self) -> int:
        return self.conv_layers[1] + self.dense_layers[1] + 1

    def window(self, spec: ArchSpec) -> int:
        """The steps one inference of ``spec`` takes: the space's ``timesteps``, or for a
        sigma-delta network its depth + 1 (a frame held until the output has it)."""
        return spec.num_spiking_layers + 1 if spec.family == "sdnn" else self.timesteps

    # ------------------------------------------------------------------ sampling
    def _conv(self, rng: random.Random, input_shape: Sequence[int]) -> ConvLayer:
        """A convolution; on ``(C, 1, L)`` inputs (I/Q frames) a 1×k one along the time axis."""
        k = rng.choice(self.kernels)
        channels, stride = rng.choice(self.channels), rng.choice(self.strides)
        if len(input_shape) == 3 and input_shape[1] == 1:
            return ConvLayer(channels=channels, kernel=[1, k], stride=[1, stride], padding=[0, k // 2])
        return ConvLayer(channels=channels, kernel=k, stride=stride, padding=k // 2)

    def _dense(self, rng: random.Random) -> DenseLayer:
        return DenseLayer(units=rng.choice(self.units))

    def build(self, convs: Sequence[ConvLayer], denses: Sequence[DenseLayer],
              input_shape: Sequence[int], num_classes: int) -> Optional[ArchSpec]:
        """The spec of these layers, or None if the convolutions do not fit the input."""
        if convs and len(input_shape) != 3:
            return None
        layers = [*convs, *([FlattenLayer()] if convs else []), *denses, DenseLayer(units=num_classes)]
        spec = ArchSpec(input_shape=list(input_shape), layers=layers, neuron=self.neuron)
        try:
            spec.shapes()
        except NeurokdError:
            return None
        return spec

    def sample(self, rng: random.Random, input_shape: Sequence[int], num_classes: int,
               tries: int = 100) -> ArchSpec:
        """A uniformly drawn depth, then uniformly drawn choices per layer."""
        conv_hi = self.conv_layers[1] if len(input_shape) == 3 else 0
        conv_lo = min(self.conv_layers[0], conv_hi)
        for _ in range(tries):
            convs = [self._conv(rng, input_shape) for _ in range(rng.randint(conv_lo, conv_hi))]
            denses = [self._dense(rng) for _ in range(rng.randint(*self.dense_layers))]
            spec = self.build(convs, denses, input_shape, num_classes)
            if spec is not None:
                return spec
        raise NeurokdError(f"the search space yields no network that fits input {list(input_shape)} "
                           f"in {tries} draws (kernels or strides too large for the image?)")

    def mutate(self, spec: ArchSpec, rng: random.Random, tries: int = 100) -> ArchSpec:
        """One random change: a layer's choice, or a layer added or removed (within the ranges)."""
        convs = [layer for layer in spec.layers if isinstance(layer, ConvLayer)]
        denses = [layer for layer in spec.layers[:-1] if isinstance(layer, DenseLayer)]
        num_classes = spec.layers[-1].units
        conv_hi = self.conv_layers[1] if len(spec.input_shape) == 3 else 0
        for _ in range(tries):
            c, d = list(convs), list(denses)
            op = rng.choice(["conv", "dense", "add_conv", "drop_conv", "add_dense", "drop_dense"])
            if op == "conv" and c:
                c[rng.randrange(len(c))] = self._conv(rng, spec.input_shape)
            elif op == "dense" and d:
                d[rng.randrange(len(d))] = self._dense(rng)
            elif op == "add_conv" and len(c) < conv_hi:
                c.insert(rng.randint(0, len(c)), self._conv(rng, spec.input_shape))
            elif op == "drop_conv" and len(c) > self.conv_layers[0]:
                c.pop(rng.randrange(len(c)))
            elif op == "add_dense" and len(d) < self.dense_layers[1]:
                d.insert(rng.randint(0, len(d)), self._dense(rng))
            elif op == "drop_dense" and len(d) > self.dense_layers[0]:
                d.pop(rng.randrange(len(d)))
            else:
                continue
            new = self.build(c, d, spec.input_shape, num_classes)
            if new is not None and arch_key(new) != arch_key(spec):
                return new
        return spec


def arch_key(spec: ArchSpec) -> str:
    """A canonical text of the layers (for de-duplication and tables)."""
    return json.dumps([layer.model_dump() for layer in spec.layers], separators=(",", ":"))


def describe(spec: ArchSpec) -> str:
    """Short form, e.g. ``c8k3s2-f-d128-d10`` (``c8k1x7s1x2`` for a non-square convolution)."""
    def text(value) -> str:
        return "x".join(str(v) for v in value) if isinstance(value, list) else str(value)

    parts = []
    for layer in spec.layers:
        if isinstance(layer, ConvLayer):
            parts.append(f"c{layer.channels}k{text(layer.kernel)}s{text(layer.stride)}")
        elif isinstance(layer, FlattenLayer):
            parts.append("f")
        else:
            parts.append(f"d{layer.units}")
    return "-".join(parts)


def load_space(path: Optional[str | Path]) -> SearchSpace:
    from neurokd.fileio import read_yaml
    from neurokd.schema import format_validation_error

    if path is None:
        return SearchSpace()
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise NeurokdError(f"{path}: a search space must be a mapping (see neurokd/nas/space.py)")
    try:
        return SearchSpace(**data)
    except ValidationError as exc:
        raise NeurokdError(f"{path}: {format_validation_error(exc)}") from None
