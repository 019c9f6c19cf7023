"""Typed run configuration: defaults ← YAML file (safe-loaded) ← command-line overrides.

Unknown keys are rejected and every value is type-checked, so a typo fails before any work
starts. The resolved configuration is saved in each run directory as ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Dict, Iterable, List, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, field_validator

from neurokd.errors import NeurokdError
from neurokd.fileio import read_yaml
from neurokd.schema import StrictModel, format_validation_error


# Upper bounds that keep a typo from reaching training: a seed numpy accepts, a window Lava can
# hold for a few hundred samples. Memory is checked against the machine before training too.
MAX_SEED = 2**32 - 1
MAX_TIMESTEPS = 100_000


_Strict = StrictModel

# Names the command line offers that no configuration section holds. Each is the registry's names
# written out once here, so that `neurokd --help` needs no torch; tests keep each equal to its
# registry (neurokd.nas.proxies.PROXIES, neurokd.nas.search.STRATEGIES, neurokd.runs.EXPORTERS).
SearchProxy = Literal["synops", "params", "gradsign", "grad_stats", "zico_mean", "grad_cosine",
                      "jacob_cov", "jacob_cov_wide", "snip", "snip_wide", "synflow", "snasnet",
                      "sahd", "naswot"]
SearchStrategy = Literal["evolution", "random"]
ExportFormat = Literal["netx", "nir"]


class DataConfig(_Strict):
    dataset: str = "digits"
    data_dir: Optional[str] = None
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    limit: Optional[int] = Field(None, gt=0, description="use only the first N samples")
    split_seed: Optional[int] = Field(None, ge=0, le=MAX_SEED, description="seed of the split; None: the run's seed")
    generator_seed: int = Field(0, ge=0, le=MAX_SEED, description="generated radio datasets: seed "
                                                                   "of the frames (kept across runs)")
    radio: Dict[str, Any] = Field(default_factory=dict, description="radio datasets: the generator's "
                                  "options (sensing, modulation, symbols; neurokd/radio/config.py), "
                                  "or the selection of a RadioML file (radioml2016, radioml2018: "
                                  "classes, snr_range, full_scale; neurokd/data/radioml.py)")


class TrainConfig(_Strict):
    epochs: int = Field(gt=0)
    lr: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    patience: int = Field(gt=0, description="epochs without a better validation accuracy")
    weight_decay: float = Field(0.0, ge=0)


class TeacherConfig(TrainConfig):
    model: str = "mlp"
    hidden: Optional[Annotated[List[Annotated[int, Field(gt=0)]], Field(min_length=1)]] = Field(
        None, description="mlp: hidden widths; cnn, cnn_bn: two channel counts; None: the "
                          "model's own default (mlp [256], cnn and cnn_bn [16, 32])")
    epochs: int = Field(100, gt=0)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    patience: int = Field(15, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate: "
                                                    "constant, or cosine decay to 0 over the epochs")
    augment: Literal["none", "phase"] = Field("none", description="phase: each training frame's "
                                              "I/Q turned by a random phase (radio I/Q datasets "
                                              "whose classes ignore the phase: modulation, RadioML)")


class StudentConfig(TrainConfig):
    spec: Optional[str] = Field(None, description="architecture spec YAML; None: dense layers of `hidden` units")
    hidden: Union[int, List[int]] = Field(
        256, description="hidden units of the default spec: one number for one hidden layer, "
                         "a list for one layer per width")
    encoder: str = "rate"
    neuron: Literal["cuba", "sdnn"] = Field(
        "cuba", description="the student's neurons when no spec file says: cuba (trained as an SNN "
        "with surrogate gradients) or sdnn (sigma-delta: its ReLU network trained on the 8-bit "
        "grid, then mapped onto the chip; graded input, convert.sparsity and "
        "convert.delta_threshold apply)")
    timesteps: int = Field(24, gt=0, le=MAX_TIMESTEPS)
    epochs: int = Field(60, gt=0)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, gt=0)
    patience: int = Field(15, gt=0)
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate: "
                                                    "constant, or cosine decay to 0 over the epochs")

    @field_validator("hidden", mode="before")
    @classmethod
    def _widths(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                for v in items):
            raise ValueError(f"expected a positive number of units or a non-empty list of them, "
                             f"got {value!r}")
        return value


class DistillConfig(_Strict):
    """How a DNN teacher and an SNN student learn from each other (``neurokd distill``).

    Methods: ``none`` (direct training), ``kd`` (frozen teacher, soft targets), ``fitnet`` (frozen
    teacher, feature hint), ``relational`` (frozen teacher, pairwise similarities), ``ensemble``
    (frozen teachers, averaged soft targets), ``colearn`` (teacher and student trained together:
    output path, plus the feature path if ``feature``, plus SNN → DNN if ``mutual``).
    """

    method: Literal["none", "kd", "fitnet", "relational", "ensemble", "colearn"] = "colearn"
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target term (1-alpha: labels)")
    temperature: float = Field(1.0, gt=0)
    feature: bool = Field(True, description="colearn: use the intermediate-feature path")
    feature_weight: float = Field(1.0, ge=0)
    teacher_layer: str = Field("relu1", description="module path of the teacher feature")
    student_layer: str = Field("blocks.0", description="module path of the student feature")
    decoder: str = Field("exp", description="spike decoder for student features (rate, exp)")
    mutual: bool = Field(True, description="colearn: the teacher also learns from the student")
    mutual_weight: float = Field(0.5, ge=0, le=1, description="weight of the student's soft targets "
                                                               "in the teacher's loss")
    freeze_teacher: bool = Field(False, description="colearn: keep the teacher fixed")
    teacher_lr: float = Field(3e-4, gt=0)
    ensemble: List[str] = Field(default_factory=list, description="more teacher checkpoints")


class QuantConfig(_Strict):
    """Quantization-aware training of a trained SNN for the chip (``neurokd quantize``).

    Methods: ``ptq`` (round to nearest after training, no training), ``fixed_qat`` (QAT with the
    step fixed at its round-to-nearest value), ``lsq`` (trainable steps), ``lsq_prob`` (plus the
    probabilistic layer-by-layer schedule), ``lsq_prob_kd`` (plus distillation from the
    full-precision model, or from ``kd_from``).

    Fine-tuning starts from the rounded network, so it must not move far: at a constant lr of
    5e-4, 4-bit QAT of the digits demo SNN fell from 0.956 to 0.870 validation accuracy in 10
    epochs (8-bit: to 0.933); at 2e-4 with cosine decay it stayed between 0.956 and 0.963 (8-bit:
    0.956 to 0.959). Early stopping acts after ``patience`` epochs, half the default epochs.

    A layer's step sets its state scale: the threshold mantissa is ``θ·2^g / s`` and the states
    grow with it. ``fit_state`` coarsens a step until the layer's state fits the chip, at the cost
    of weight levels (``quant.qat.fit_state``). It is off by default: the clipped network still
    matches Lava, and on a digits SNN (256 hidden units) the clips cost no accuracy while the fit
    cost 0.7 points at 8 bits and 2.7 to 5.8 at 4 bits (README, quantization section).
    """

    method: Literal["ptq", "fixed_qat", "lsq", "lsq_prob", "lsq_prob_kd"] = "lsq_prob_kd"
    bits: int = Field(8, description="weight bits of every layer")
    layer_bits: Optional[List[int]] = Field(None, description="bits per spiking layer (overrides bits)")
    epochs: int = Field(10, gt=0)
    lr: float = Field(2e-4, gt=0)
    schedule: Literal["constant", "cosine"] = Field("cosine", description="learning rate: constant, "
                                                    "or cosine decay to 0 over the epochs")
    batch_size: int = Field(32, gt=0)
    patience: int = Field(5, gt=0)
    ramp: float = Field(0.6, gt=0, le=1, description="lsq_prob: fraction of training in which "
                                                      "layers enter quantization")
    alpha: float = Field(0.5, ge=0, le=1, description="kd: weight of the soft targets")
    temperature: float = Field(1.0, gt=0)
    fit_state: Literal["off", "measured", "bound"] = Field(
        "off", description="keep each layer's current and voltage inside the chip's state "
        "bits by coarsening its weight step (threshold and weights shrink together): measured, "
        "on up to 1024 training samples; bound, for every admissible input; off: let Lava wrap "
        "and clip")
    state_target: float = Field(0.75, gt=0, le=1, description="fit_state: the largest state "
                                "kept, as a fraction of the chip's limit")


class ConvertConfig(_Strict):
    """Conversion of a trained DNN into a quantized IF SNN (``neurokd convert``).

    Methods: ``plain`` (weights transferred, each layer balanced on its largest activation, no
    training), ``qkd`` (first quantization through distillation: a copy of the DNN with 8-bit
    weights and spike-count activations, clips initialised at ``percentile``, is fine-tuned from
    the full-precision DNN; then transferred with the learned clips as thresholds).

    ``lr`` is relative: each layer's weights and bias move by about ``lr`` times its mean |weight|
    per step, the log-clips by ``lr``, decaying by a cosine over the epochs. An absolute step
    treats all layers alike, though a BatchNorm CNN's dense head has weights 30 times smaller than
    its first convolution (largest |w| 0.08 against 2.5): at an absolute 5e-4 (the old default)
    such a CNN on digits at T = 16 diverged, validation accuracy 0.96 → 0.93 → 0.89 → 0.47 → 0.10.
    At the relative 3e-3 it stayed at 0.967-0.974, and T = 4 still reached 0.948 (0.944 before).
    """

    method: Literal["plain", "qkd"] = "qkd"
    neuron: Literal["cuba", "sdnn"] = Field(
        "cuba", description="the converted network's neurons: cuba (integrate-and-fire, binary "
        "spikes, a time window) or sdnn (sigma-delta, graded spikes: the DNN's ReLU activations "
        "layer for layer, no window to choose; timesteps and bits are not used; method qkd "
        "fine-tunes on the 8-bit grid with the sparsity loss first, plain does not)")
    delta_threshold: float = Field(0.0, ge=0, lt=1, description="sdnn: each hidden layer's delta "
                                   "threshold, a fraction of its largest calibrated activation "
                                   "(0: every change is sent; higher: fewer messages, less accuracy)")
    sparsity: float = Field(0.0, ge=0, description="sdnn with method qkd: weight of the estimated "
                            "synaptic operations per DNN MAC in the fine-tuning loss (0: accuracy "
                            "only; 0.1 trades 0.1 nats of loss for all the MACs' worth of messages)")
    target_rate: Optional[float] = Field(None, gt=0, description="sdnn: the synaptic operations per "
                                         "DNN MAC to aim at; the loss then charges only what the "
                                         "estimate exceeds it by, times convert.sparsity (10 when 0)")
    bits: int = Field(8, description="weight bits of every layer")
    percentile: float = Field(99.9, gt=0, le=100, description="qkd: initial clip of each layer")
    calibration: int = Field(2000, gt=0, description="training samples for threshold balancing")
    epochs: int = Field(5, gt=0)
    lr: float = Field(3e-3, gt=0, description="qkd: Adam's step relative to each layer's mean "
                                              "|weight| (log-scales: absolute)")
    schedule: Literal["constant", "cosine"] = Field("cosine", description="learning rate: constant, "
                                                    "or cosine decay to 0 over the epochs")
    batch_size: int = Field(64, gt=0)
    patience: int = Field(3, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the teacher's soft targets")
    temperature: float = Field(2.0, gt=0)


class LavaConfig(_Strict):
    samples: int = Field(300, gt=0, description="test samples run through Lava")
    backend: Literal["auto", "sim", "loihi2"] = "auto"


class RunConfig(_Strict):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # Where training runs: auto (a GPU when PyTorch sees one, else the CPU), cpu, cuda, cuda:N.
    # An execution setting: a checkpoint's saved config does not carry it to the next command.
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value):
            raise ValueError(f"{value!r} is not a device; choose auto, cpu, cuda or cuda:N")
        return value
    hardware: str = "loihi2"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    lava: LavaConfig = Field(default_factory=LavaConfig)


def _set_path(tree: Dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise NeurokdError(f"--set {dotted}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` → (``a.b``, value parsed as a YAML scalar or list)."""
    if "=" not in text:
        raise NeurokdError(f"--set {text!r}: expected KEY=VALUE, e.g. teacher.epochs=20")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise NeurokdError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise NeurokdError(f"--set {text!r}: cannot parse the value") from None
    return key, value


# Defaults that differ per dataset, applied under the file, flags and --set (never over them):
# the radio datasets train on many more frames than digits, so fewer, earlier-stopped epochs keep
# `neurokd demo --dataset sensing` (or modulation) within minutes on two cores. Their encoder stays
# `rate`: with `direct` (4-bit graded input) the first layer's voltage passed Loihi's 24 bits. The
# student's lr is 1e-3: at 3e-3 with patience 4, dense sensing students fell silent and stopped at
# chance on 3 of 6 seeds (benchmarks/rf.py); at 1e-3 those seeds sat at chance for 2-4 epochs,
# then learned (validation accuracy 0.65-0.69), hence the patience of 6.
DATASET_PRESETS: Dict[str, Dict[str, Any]] = {
    "sensing": {
        "teacher": {"epochs": 40, "patience": 8},
        "student": {"timesteps": 16, "epochs": 12, "patience": 6, "lr": 1e-3},
        "lava": {"samples": 200},
    },
    "modulation": {
        "data": {"radio": {"n_frames": 16000}},
        "teacher": {"model": "cnn1d", "epochs": 40, "patience": 8},
        "student": {"timesteps": 16, "epochs": 12, "patience": 6, "lr": 1e-3},
        "lava": {"samples": 200},
    },
    "symbols": {
        "teacher": {"model": "mlp", "hidden": [128, 128], "epochs": 30, "patience": 6,
                    "batch_size": 256},
        "student": {"hidden": [128, 128], "encoder": "direct", "timesteps": 16, "epochs": 10,
                    "patience": 4, "lr": 1e-3, "batch_size": 256},
        "lava": {"samples": 200},
    },
}


def _merge(under: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _spec_settings(tree: Dict[str, Any], log: Optional[Callable[[str], None]]) -> None:
    """Fill in the settings the student's spec file records (the search's T and encoder) where
    the run does not set them itself; where it does and they differ, say so through ``log``."""
    student = tree.get("student")
    if not isinstance(student, dict) or not isinstance(student.get("spec"), str):
        return
    from neurokd.models.spec import spec_settings

    path = student["spec"]
    for key, value in spec_settings(path).items():
        if key not in student or student[key] is None:
            student[key] = value
        elif student[key] != value and log is not None:
            log(f"note: {path} was searched with student.{key} = {value}; this run uses "
                f"{student[key]}, as set explicitly")


def build_config(path: Optional[str | Path] = None, overrides: Iterable[str] = (),
                 values: Optional[Dict[str, Any]] = None,
                 base: Optional[Dict[str, Any]] = None,
                 log: Optional[Callable[[str], None]] = None) -> RunConfig:
    """Defaults (or the config tree ``base``), then the dataset's presets (:data:`DATASET_PRESETS`),
    then what the student's spec file records (its search's ``timesteps`` and ``encoder``), then
    the YAML file at ``path``, then ``KEY=VALUE`` overrides, then ``values``. ``log`` receives a
    note where the file, an override or a value replaces a setting the spec records."""
    import copy

    tree: Dict[str, Any] = copy.deepcopy(base) if base else {}
    where = "config"
    if path is not None:
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise NeurokdError(f"{path}: a config file must be a mapping of sections")
        tree = _merge(tree, data)  # the file's keys over the base (or over nothing)
        where = str(path)
    for item in overrides:
        key, value = parse_override(item)
        _set_path(tree, key, value)
        where = "config (after --set)" if path is None else f"{path} (after --set)"
    for key, value in (values or {}).items():
        if value is not None:
            _set_path(tree, key, value)
    if not base:  # a run's saved configuration (base) is already resolved
        _spec_settings(tree, log)
        data = tree.get("data")
        dataset = data.get("dataset", "digits") if isinstance(data, dict) else "digits"
        if isinstance(dataset, str) and dataset in DATASET_PRESETS:
            tree = _merge(DATASET_PRESETS[dataset], tree)
    try:
        return RunConfig(**tree)
    except ValidationError as exc:
        raise NeurokdError(f"{where}: {format_validation_error(exc)}") from None


def config_to_dict(cfg: RunConfig) -> Dict[str, Any]:
    return cfg.model_dump(mode="json")
