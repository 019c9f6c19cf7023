"""Hardware target profiles: the single source of truth for the chip's integer rules.

Profiles are YAML files in the repository's ``hardware/`` folder (installed as
``neurokd.hardware_profiles``). ``load_profile`` takes a profile name or a path to a YAML file.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Annotated, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neurokd.errors import NeurokdError
from neurokd.fileio import read_yaml
from neurokd.schema import format_validation_error


# A positive, finite number of picojoules (true/false and strings refused).
Picojoules = Annotated[float, Field(gt=0, strict=True)]


class DigitalFigures(BaseModel):
    """The 45 nm digital model that prices a DNN and an SNN alike (``neurokd.metrics.pricing``):
    arithmetic per operation and SRAM access energy as a function of the memory's size, per
    ``word_bits``-bit access. Defaults: Horowitz, ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V) for the
    arithmetic; Lemaire et al. 2022's fit to Horowitz's SRAM reads for the memory
    (``sram_pj_per_bit · size in bits + sram_base_pj``: 8 KB 13.9 pJ, 32 KB 16.1 pJ, 1 MB 104.6 pJ,
    against Horowitz's 10, 20 and 100 pJ per 64-bit read). A board reference beside it:
    ``mcu_mac_pj``, a measured microcontroller's energy per int8 MAC; ``static_w``, a Loihi 2
    board's static power."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    add_int8_pj: Picojoules = 0.03
    mul_int8_pj: Picojoules = 0.2
    add_int32_pj: Picojoules = 0.1
    add_fp32_pj: Picojoules = 0.9
    mul_fp32_pj: Picojoules = 3.7
    sram_pj_per_bit: Picojoules = 1.09e-5
    sram_base_pj: Picojoules = 13.2
    word_bits: int = Field(64, gt=0)
    source: str = ("Horowitz, ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V); SRAM access fit of Lemaire et "
                   "al. 2022 (1.09e-5 pJ per bit of memory size + 13.2 pJ per 64-bit access)")
    mcu_mac_pj: Picojoules = 450.0
    mcu_source: str = ("MLPerf Tiny v1.0 closed, ST NUCLEO-U575ZI-Q (Cortex-M33): 119.1 µJ per "
                       "anomaly-detection inference of about 0.26 M MACs, whole board")
    static_w: Optional[float] = Field(0.282, ge=0)
    static_source: str = ("lava-dl PilotNet SDNN benchmark on a Loihi 2 board: 0.282 W static "
                          "(0.276 W total at 16.87 frames/s)")


class EnergyFigures(BaseModel):
    """Energy per operation, in picojoules, that ``neurokd report`` prices a network with; each
    profile names its published sources in ``source`` and ``baseline_source`` (and, figure by
    figure, in comments of its YAML file).

    The chip: a synaptic operation (one input event reaching one synapse), a neuron update (every
    neuron, every time step; *active* when the neuron received an input event that step), a spike
    message a neuron sends. The conventional processor the DNN teacher is compared on: a
    multiply-accumulate in 32-bit float and in 8-bit integers (arithmetic only)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    synop_pj: Picojoules
    neuron_update_active_pj: Picojoules
    neuron_update_inactive_pj: Picojoules
    spike_pj: float = Field(ge=0, strict=True, description="picojoules")
    source: str = Field(min_length=1, description="where the chip's figures come from")
    proxy: bool = Field(False, strict=True,
                        description="true: the figures are another chip's, standing in (source says which)")
    mac_fp32_pj: Picojoules
    mac_int8_pj: Picojoules
    baseline_source: str = Field(min_length=1, description="where the MAC figures come from")
    digital: DigitalFigures = Field(default_factory=DigitalFigures,
                                    description="the 45 nm model that prices both sides alike")


class SigmaDeltaRules(BaseModel):
    """Fixed-point rules of sigma-delta neurons with graded spikes (Lava's ``lava.proc.sdn``
    ``fixed_pt`` models as netx configures them): the state holds the activation in units of
    ``2^-(spike_exp + state_exp)``, a message carries it in units of ``2^-spike_exp`` (the state
    shifted right by ``state_exp``), thresholds and biases in the file are shifted left by
    ``spike_exp + state_exp``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spike_exp: int = Field(ge=0, le=16)
    state_exp: int = Field(ge=0, le=16)
    message_bits: int = Field(gt=1, le=32, description="signed bits of a graded spike's payload")
    bias_bits: int = Field(gt=1, le=32, description="signed bits of a neuron's bias in the file")

    @property
    def shift(self) -> int:
        """File thresholds and biases → state units: ``<< (spike_exp + state_exp)``."""
        return self.spike_exp + self.state_exp

    @property
    def message_limit(self) -> int:
        return (1 << (self.message_bits - 1)) - 1

    @property
    def bias_limit(self) -> int:
        return (1 << (self.bias_bits - 1)) - 1


class HardwareProfile(BaseModel):
    """Integer rules of a neuromorphic target (see ``hardware/loihi2.yaml`` for the meaning)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    weight_bits: int = Field(gt=0, le=16)
    weight_mantissa_min: int
    weight_mantissa_max: int
    weight_exponent_min: int
    weight_exponent_max: int
    weight_bits_allowed: List[int] = Field(min_length=1, description="bit-widths a layer may use")
    state_bits: int = Field(gt=0, le=64)
    decay_bits: int = Field(gt=0, le=32)
    threshold_mantissa_bits: int = Field(gt=0, le=32)
    state_shift: int = Field(ge=0, le=16)
    bias_mantissa_bits: int = Field(gt=0, le=32)
    bias_exponent_bits: int = Field(gt=0, le=8)
    max_message_bits: int = Field(gt=0, le=32)
    cores_per_chip: int = Field(gt=0)
    neurons_per_core: int = Field(gt=0)
    synaptic_memory_bytes_per_core: int = Field(gt=0)
    max_fan_in_per_core: int = Field(gt=0)
    sigma_delta: Optional[SigmaDeltaRules] = Field(
        None, description="sigma-delta neurons with graded spikes (None: the chip has none)")
    energy: Optional[EnergyFigures] = Field(None, description="energy per operation (None: the "
                                                              "report gives no energy estimate)")

    @model_validator(mode="after")
    def _ranges(self) -> "HardwareProfile":
        if self.weight_mantissa_min >= self.weight_mantissa_max:
            raise ValueError("weight_mantissa_min must be below weight_mantissa_max")
        if self.weight_exponent_min > self.weight_exponent_max:
            raise ValueError("weight_exponent_min must not exceed weight_exponent_max")
        for b in self.weight_bits_allowed:
            if not 2 <= b <= self.weight_bits:
                raise ValueError(f"weight_bits_allowed: {b} is outside 2..weight_bits")
        low = -self.weight_mantissa_min
        if low <= 0 or low & (low - 1):
            raise ValueError("weight_mantissa_min must be minus a power of two")
        return self

    # Derived quantities: computed here so that no other module repeats the arithmetic.
    @property
    def weight_scale(self) -> int:
        """Float weight × weight_scale = integer weight mantissa (slayer's 2^6 = 64)."""
        return 1 << self.state_shift

    def weight_shift(self, bits: int) -> int:
        """Left shift ``g`` that puts signed ``bits``-bit integers ``m`` on the mantissa grid:
        ``m · 2^g`` spans ``weight_mantissa_min`` (e.g. 4 bits on Loihi 2: -8..7 → -256..224)."""
        top = (-self.weight_mantissa_min).bit_length() - 1
        return top - (bits - 1)

    @property
    def decay_scale(self) -> int:
        """Decays are fractions of this integer (4096 for 12 bits)."""
        return 1 << self.decay_bits

    @property
    def state_limit(self) -> int:
        """Largest magnitude a signed state register holds: 2^(state_bits-1) - 1."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def state_scale(self) -> int:
        """A float state in slayer's units × state_scale = the chip's integer state (4096)."""
        return (1 << self.state_shift) * (1 << self.state_shift)

    @property
    def threshold_mantissa_max(self) -> int:
        return (1 << self.threshold_mantissa_bits) - 1

    @property
    def bias_mantissa_max(self) -> int:
        """Largest |bias mantissa|: a signed ``bias_mantissa_bits`` field."""
        return (1 << (self.bias_mantissa_bits - 1)) - 1


def available_profiles() -> List[str]:
    files = resources.files("neurokd.hardware_profiles")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def load_profile(name_or_path: str = "loihi2") -> HardwareProfile:
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        data = read_yaml(path)
        where = str(path)
    else:
        if name_or_path not in available_profiles():
            raise NeurokdError(f"unknown hardware profile {name_or_path!r}; choose one of: "
                               f"{', '.join(available_profiles())} or give a YAML file")
        text = resources.files("neurokd.hardware_profiles").joinpath(f"{name_or_path}.yaml").read_text()
        import yaml

        data = yaml.safe_load(text)
        where = f"hardware profile {name_or_path}"
    if not isinstance(data, dict):
        raise NeurokdError(f"{where}: expected a mapping of profile fields")
    try:
        return HardwareProfile(**data)
    except ValidationError as exc:
        raise NeurokdError(f"{where}: {format_validation_error(exc)}") from None
