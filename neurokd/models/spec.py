"""The declarative architecture spec of an SNN student: a serialisable list of layers.

The same spec is written by the architecture search, read by training, distillation and export.
Loihi-compatible by construction: feed-forward only, Dense / Conv / Flatten, no pooling (use a
strided convolution instead).

Example (YAML)::

    input_shape: [1, 8, 8]
    layers:
      - {type: conv, channels: 8, kernel: 3, stride: 2, padding: 1}
      - {type: flatten}
      - {type: dense, units: 10}
    timesteps: 16   # optional: the window the architecture was searched at
    encoder: rate   # optional: the input encoding it was searched with

A spec file may record, beside the architecture, the settings it was chosen with
(:class:`SpecSettings`: ``timesteps``, ``encoder``); the search writes them, and training uses
them unless the run sets its own (``neurokd.config.build_config``). Files without them load as
before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neurokd.errors import NeurokdError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DenseLayer(_Strict):
    type: Literal["dense"] = "dense"
    units: int = Field(gt=0)


PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]


def pair(value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """An int or a (height, width) pair, as a (height, width) tuple."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def compact(value: Tuple[int, int]) -> Union[int, List[int]]:
    """A (height, width) pair as a spec writes it: one int when square, else ``[h, w]``."""
    return int(value[0]) if value[0] == value[1] else [int(value[0]), int(value[1])]


class ConvLayer(_Strict):
    """A 2-D convolution of spiking neurons. ``kernel``, ``stride`` and ``padding`` are one int
    (square) or a ``[height, width]`` pair: ``kernel: [1, 7]`` convolves over time along the width
    of a ``(C, 1, L)`` input such as the I/Q frames of the radio datasets."""

    type: Literal["conv"] = "conv"
    channels: int = Field(gt=0)
    kernel: Union[PosInt, Annotated[List[PosInt], Field(min_length=2, max_length=2)]]
    stride: Union[PosInt, Annotated[List[PosInt], Field(min_length=2, max_length=2)]] = 1
    padding: Union[NonNegInt, Annotated[List[NonNegInt], Field(min_length=2, max_length=2)]] = 0

    @property
    def kernel2(self) -> Tuple[int, int]:
        return pair(self.kernel)

    @property
    def stride2(self) -> Tuple[int, int]:
        return pair(self.stride)

    @property
    def padding2(self) -> Tuple[int, int]:
        return pair(self.padding)


class FlattenLayer(_Strict):
    type: Literal["flatten"] = "flatten"


Layer = Annotated[Union[DenseLayer, ConvLayer, FlattenLayer], Field(discriminator="type")]


class NeuronSpec(_Strict):
    """The neuron family (``type``) and, for CUBA LIF, its parameters in slayer's float units
    (threshold × 64 = Loihi's vThMant). ``type: sdnn``: sigma-delta neurons with graded spikes
    (:mod:`neurokd.models.sigma_delta`), whose thresholds the conversion sets per layer; the CUBA
    parameters are then unused. A spec may write ``neuron: sdnn`` for ``neuron: {type: sdnn}``."""

    type: Literal["cuba", "sdnn"] = "cuba"
    threshold: float = Field(1.25, gt=0)
    current_decay: float = Field(0.25, ge=0, le=1)
    voltage_decay: float = Field(0.03, ge=0, le=1)
    tau_grad: float = Field(0.03, gt=0)
    scale_grad: float = Field(3.0, gt=0)


class ArchSpec(_Strict):
    input_shape: List[Annotated[int, Field(gt=0)]] = Field(min_length=1, max_length=3)
    layers: List[Layer] = Field(min_length=1)
    neuron: NeuronSpec = NeuronSpec()

    @field_validator("neuron", mode="before")
    @classmethod
    def _family_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @property
    def family(self) -> str:
        return self.neuron.type

    weight_scale: float = Field(2.0, gt=0)
    input_threshold: Optional[float] = Field(
        None, gt=0, description="the first spiking layer's threshold (default: neuron.threshold). "
        "A signed graded input carries integers up to 127; with the threshold 127 times the "
        "neuron's, the first layer sees its input in [-1, 1] on the same weight grid as every "
        "other layer (neurokd.pipeline.student_spec sets it for signed encoders)")

    def layer_thresholds(self) -> List[float]:
        """The threshold of each spiking (non-flatten) layer, in slayer's float units."""
        n = sum(not isinstance(layer, FlattenLayer) for layer in self.layers)
        first = self.neuron.threshold if self.input_threshold is None else self.input_threshold
        return [first] + [self.neuron.threshold] * (n - 1)

    def shapes(self) -> List[Tuple[int, ...]]:
        """Output shape of each layer (C, H, W) or (F,), checking that the layers fit together."""
        shape: Tuple[int, ...] = tuple(self.input_shape)
        out = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, ConvLayer):
                if len(shape) != 3:
                    raise NeurokdError(f"layer {i} (conv) needs a (C, H, W) input, got {shape}")
                c, h, w = shape
                (kh, kw), (sh, sw), (ph, pw) = layer.kernel2, layer.stride2, layer.padding2
                h2 = (h + 2 * ph - kh) // sh + 1
                w2 = (w + 2 * pw - kw) // sw + 1
                if h2 <= 0 or w2 <= 0:
                    raise NeurokdError(f"layer {i} (conv, kernel {layer.kernel}) does not fit input {shape}")
                shape = (layer.channels, h2, w2)
            elif isinstance(layer, FlattenLayer):
                if i == 0:
                    raise NeurokdError("layer 0 is flatten: dense students take their input flat, "
                                       "so drop it")
                shape = (int(_prod(shape)),)
            else:
                if len(shape) != 1 and i > 0:
                    raise NeurokdError(f"layer {i} (dense) follows a {len(shape)}-d output; "
                                       "put a flatten layer before it")
                shape = (layer.units,)
            out.append(shape)
        return out

    @property
    def num_spiking_layers(self) -> int:
        return sum(not isinstance(layer, FlattenLayer) for layer in self.layers)

    def check_task(self, num_classes: int, input_shape: Tuple[int, ...]) -> None:
        """Raise a clear error unless this spec maps ``input_shape`` onto ``num_classes`` outputs."""
        if _prod(self.input_shape) != _prod(input_shape) or (
                isinstance(self.layers[0], ConvLayer) and tuple(self.input_shape) != tuple(input_shape)):
            raise NeurokdError(f"spec input_shape {list(self.input_shape)} does not match the "
                               f"dataset's {list(input_shape)}")
        last = self.shapes()[-1]
        if not isinstance(self.layers[-1], DenseLayer) or last != (num_classes,):
            raise NeurokdError(f"the last layer must be dense with {num_classes} units "
                               f"(one per class); the spec ends in {last}")


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def spec_from_dict(data: object, where: str = "spec") -> ArchSpec:
    from neurokd.schema import format_validation_error

    if not isinstance(data, dict):
        raise NeurokdError(f"{where}: expected a mapping with input_shape and layers")
    try:
        spec = ArchSpec(**data)
    except ValidationError as exc:
        raise NeurokdError(f"{where}: {format_validation_error(exc)}") from None
    spec.shapes()
    return spec


class SpecSettings(_Strict):
    """What a spec file records beside the architecture: the settings it was searched with, so
    that the network trained from it is the one the search scored."""

    timesteps: Optional[int] = Field(None, gt=0, le=100_000, strict=True,
                                     description="input time steps (student.timesteps)")
    encoder: Optional[str] = Field(None, min_length=1, description="input encoder (student.encoder)")


def read_spec_file(path: str | Path) -> Tuple[ArchSpec, Dict[str, Any]]:
    """The architecture in the spec file at ``path`` and the settings it records (only those
    present: ``{}`` for a file written before specs recorded any)."""
    from neurokd.fileio import read_yaml
    from neurokd.schema import format_validation_error

    data = read_yaml(path)
    settings: Dict[str, Any] = {}
    if isinstance(data, dict):
        data = dict(data)
        recorded = {k: data.pop(k) for k in SpecSettings.model_fields if k in data}
        try:
            settings = SpecSettings(**recorded).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise NeurokdError(f"{path}: {format_validation_error(exc)}") from None
    return spec_from_dict(data, where=str(path)), settings


def load_spec(path: str | Path) -> ArchSpec:
    return read_spec_file(path)[0]


def spec_settings(path: str | Path) -> Dict[str, Any]:
    """The settings (``timesteps``, ``encoder``) the spec file at ``path`` records, if any."""
    return read_spec_file(path)[1]


def save_spec(path: str | Path, spec: ArchSpec, **settings: Any) -> Path:
    """Write ``spec`` as YAML with the settings it was chosen with (``timesteps``, ``encoder``)."""
    from neurokd.fileio import write_yaml

    recorded = SpecSettings(**settings).model_dump(exclude_none=True)
    write_yaml(path, {**spec.model_dump(), **recorded})
    return Path(path)


def default_spec(input_shape: Tuple[int, ...], num_classes: int,
                 hidden: Union[int, Sequence[int]] = 128) -> ArchSpec:
    """The demo's student: hidden dense layers of spiking neurons, one per width in ``hidden``
    (one layer for a single number)."""
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    return ArchSpec(input_shape=list(input_shape),
                    layers=[DenseLayer(units=w) for w in widths] + [DenseLayer(units=num_classes)])
