"""The radio generator's configuration: one strict, typed model, resolved per task.

Unknown keys, NaN, infinities and booleans where a number is meant (in the SNR and Eb/N0 grids
too) are refused. Options left out take the task's default (:data:`TASK_DEFAULTS`); the resolved
model holds every value, so ``model_dump()`` reproduces a generation exactly. A configuration
whose generated dataset would not fit in the memory available (:func:`radio_bytes`,
:func:`symbols_bytes`; :data:`MEMORY_CAP` when the available memory is unknown) is refused before
anything is allocated. :func:`radio_config` turns any validation problem into one
:class:`~neurokd.errors.NeurokdError` line.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Literal, Optional

from pydantic import (ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from neurokd import h5safe
from neurokd.schema import StrictModel
from neurokd.errors import NeurokdError
from neurokd.radio.channels import CHANNELS, SINC_HALF, max_channel_delay
from neurokd.radio.waveforms import CONSTELLATIONS, GAUSS_SPAN, SYMBOL_WAVEFORMS, WAVEFORMS

SNR_MIN_DB = -40.0
SNR_MAX_DB = 40.0
MAX_SEED = 2**32 - 1

Task = Literal["sensing", "modulation"]

TASK_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "sensing": {
        "signals": ["qpsk", "16qam", "ofdm"],
        "snr_db": [float(s) for s in range(-20, 5, 2)],  # 13 values
        "n_frames": 20_000,
        "full_scale": 4.0,
    },
    "modulation": {
        "signals": ["bpsk", "qpsk", "8psk", "16qam", "64qam", "pam4", "gfsk", "cpfsk"],
        "snr_db": [float(s) for s in range(-20, 19, 2)],  # 20 values
        "n_frames": 32_000,  # 200 frames per (class, SNR) cell
        "full_scale": 3.0,
    },
}


# Peak bytes of generating a dataset and turning it into network inputs (generator, encoding,
# split), fitted to tracemalloc peaks of ``load_dataset`` on the 2-core machine and rounded up;
# the estimates came out 1.2 to 2.8 times the peaks measured over defaults and extreme settings.
# Radio frames: about 60 to 80 bytes per frame sample (complex128 signal and noise, complex64
# frames, the five float32 input channels, the split's copies) and up to 20 per sample generated
# around the frame (pulse tails, OFDM symbols, the channel filter's input). Symbol detection:
# about 25 to 40 bytes per sample (resource element and stream) and per channel, estimate and
# feature value it carries, about 45 per received grid value (noise and received OFDM symbols).
RADIO_BYTES_PER_SAMPLE = 96
RADIO_BYTES_PER_MARGIN_SAMPLE = 24
SYMBOLS_BYTES_PER_TERM = 48
SYMBOLS_BYTES_PER_RECEIVED = 64
SYMBOLS_BYTES_PER_SENT = 32
# The most a generated dataset may take when the memory available is unknown.
MEMORY_CAP = 1 << 34


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(need: int, what: str, lower: str) -> None:
    """Refuse (ValueError, turned into one line by the config's caller) a dataset of ``need``
    bytes that the memory available cannot hold; ``what`` names the sizes it comes from."""
    avail: Optional[int] = h5safe.available_memory()
    have = avail if avail else MEMORY_CAP
    if need > have:
        said = (f"{_gib(have)} is available" if avail else
                f"the memory available is unknown, so at most {_gib(have)} is allowed")
        raise ValueError(f"{what} needs about {_gib(need)} to generate, and {said}; lower {lower}")


def no_booleans(value: Any) -> Any:
    """A grid of numbers holds no true/false (pydantic would read them as 1 and 0)."""
    if isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, bool):
                raise ValueError(f"expected a number, got {str(v).lower()}")
    return value


def check_grid(value: List[float], what: str, lo: float, hi: float) -> List[float]:
    """A grid in dB: not empty, strictly increasing, within [lo, hi]."""
    if not value:
        raise ValueError(f"the {what} grid is empty")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError(f"the {what} grid must increase strictly (no repeats): {value}")
    if value[0] < lo or value[-1] > hi:
        raise ValueError(f"{what} values must lie in [{lo:g}, {hi:g}] dB; got "
                         f"{value[0]:g} … {value[-1]:g}")
    return [float(v) for v in value]


class RadioConfig(StrictModel):
    """What to generate.

    ``task``: ``sensing`` (H0 noise only / H1 signal plus noise, 50/50) or ``modulation`` (one
    class per signal). ``signals``: the waveforms (sensing: the primary user's, drawn evenly;
    modulation: the classes). ``snr_db``: the grid of :math:`E_s/N_0` per complex sample, signal
    power over nominal noise power, every frame on one grid point (evenly). ``channel``: ``awgn``
    or ``rayleigh3``. ``noise_uncertainty_db``: the true noise power is
    :math:`10^{u/10}` times the nominal, :math:`u \\sim U(-\\delta, \\delta)` per frame.
    ``max_cfo``: carrier offset bound in cycles per sample. ``full_scale``: the network input's
    full scale per real component (see :mod:`neurokd.data.radio`).
    """

    model_config = ConfigDict(frozen=True, validate_assignment=False)

    task: Task = "sensing"
    signals: List[str]
    snr_db: List[float]
    n_frames: int = Field(gt=0, le=10_000_000)
    frame_length: int = Field(128, gt=0, le=1 << 16)
    channel: str = "awgn"
    noise_uncertainty_db: float = Field(0.0, ge=0, le=10)
    max_cfo: float = Field(0.01, ge=0, le=0.5)
    samples_per_symbol: int = Field(8, ge=2, le=64)
    rolloff: float = Field(0.35, gt=0, le=1)
    rrc_span: int = Field(10, ge=2, le=64)
    pulse: Literal["rrc", "rect"] = "rrc"
    ofdm_subcarriers: int = Field(64, ge=8, le=4096)
    ofdm_active: int = Field(52, ge=2)
    ofdm_cp: int = Field(16, ge=0)
    full_scale: float = Field(gt=0, le=100)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        task = data.get("task", "sensing")
        defaults = TASK_DEFAULTS.get(task) if isinstance(task, str) else None
        if defaults is None:
            return data  # the Literal check reports the unknown task
        # None means "the task's default" for a known option; an unknown one is still refused
        known = set(cls.model_fields)
        return {**defaults, **{k: v for k, v in data.items() if v is not None or k not in known}}

    @field_validator("signals", mode="before")
    @classmethod
    def _known_signals(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError("give at least one modulation")
        names = [str(v).lower() for v in value]
        for name in names:
            if name not in WAVEFORMS:
                raise ValueError(f"unknown modulation {name!r}; known: {', '.join(WAVEFORMS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a modulation is listed twice: {', '.join(names)}")
        return names

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"unknown channel {value!r}; known: {', '.join(CHANNELS)}")
        return value

    @field_validator("snr_db", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return no_booleans(value)

    @field_validator("snr_db")
    @classmethod
    def _sane_grid(cls, value: List[float]) -> List[float]:
        return check_grid(value, "SNR", SNR_MIN_DB, SNR_MAX_DB)

    @model_validator(mode="after")
    def _fits_in_a_frame(self) -> "RadioConfig":
        if self.ofdm_active >= self.ofdm_subcarriers or self.ofdm_active % 2:
            raise ValueError(f"ofdm_active must be even and below ofdm_subcarriers "
                             f"({self.ofdm_subcarriers}); got {self.ofdm_active}")
        if self.ofdm_cp >= self.ofdm_subcarriers:
            raise ValueError(f"ofdm_cp ({self.ofdm_cp}) must be shorter than an OFDM symbol "
                             f"({self.ofdm_subcarriers})")
        if "ofdm" in self.signals and self.frame_length < self.ofdm_subcarriers + self.ofdm_cp:
            raise ValueError(f"frame_length {self.frame_length} is shorter than one OFDM symbol "
                             f"({self.ofdm_subcarriers} + {self.ofdm_cp} cyclic prefix)")
        pulse = self.rrc_span * self.samples_per_symbol
        if any(s in SYMBOL_WAVEFORMS for s in self.signals) and self.frame_length < pulse:
            raise ValueError(f"frame_length {self.frame_length} is shorter than one pulse "
                             f"(rrc_span {self.rrc_span} × samples_per_symbol "
                             f"{self.samples_per_symbol} = {pulse} samples)")
        check_fits(radio_bytes(self), f"n_frames {self.n_frames} × frame_length "
                   f"{self.frame_length} (+ {margin_samples(self)} samples generated around each "
                   "frame)", "n_frames or frame_length")
        return self


def margin_samples(cfg: RadioConfig) -> int:
    """Samples the generator makes per frame beyond ``frame_length``: the channel filter's extra
    input, plus the longest waveform's overhang (root-raised-cosine tails of ``3 × rrc_span ×
    samples_per_symbol``, two OFDM symbols, the FSK phase filter's span; see
    :mod:`neurokd.radio.waveforms`)."""
    sps = cfg.samples_per_symbol
    channel = 2 * SINC_HALF + 1 + math.ceil(max_channel_delay(cfg.channel) + 1.0)
    overhang = 0
    for name in cfg.signals:
        if name == "ofdm":
            extra = 2 * (cfg.ofdm_subcarriers + cfg.ofdm_cp)
        elif name in CONSTELLATIONS:
            extra = 2 * sps if cfg.pulse == "rect" else (3 * cfg.rrc_span + 2) * sps + 1
        else:  # continuous-phase FSK
            extra = (2 * GAUSS_SPAN + 3) * sps + 1
        overhang = max(overhang, extra)
    return channel + overhang


def radio_bytes(cfg: RadioConfig) -> int:
    """Peak bytes of generating ``cfg`` and turning it into network inputs (an estimate, see
    :data:`RADIO_BYTES_PER_SAMPLE`), from the configured sizes alone."""
    return cfg.n_frames * (RADIO_BYTES_PER_SAMPLE * cfg.frame_length
                           + RADIO_BYTES_PER_MARGIN_SAMPLE * margin_samples(cfg))


def radio_config(**options: Any) -> RadioConfig:
    """:class:`RadioConfig` from keyword options; any problem is one NeurokdError line."""
    return _validated(RadioConfig, "radio config", options)


def _validated(model: Any, what: str, options: Dict[str, Any]) -> Any:
    """``model(**options)``, its first validation problem as one NeurokdError line."""
    try:
        return model(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        raise NeurokdError(f"{what}: {loc + ': ' if loc else ''}{msg}") from None


# ---------------------------------------------------------------- MIMO-OFDM symbol detection
SYMBOL_MODULATIONS = ("qpsk", "16qam")
MIMO_CHANNELS = ("rayleigh", "awgn")
EBN0_MIN_DB = -10.0
EBN0_MAX_DB = 50.0


class SymbolsConfig(StrictModel):
    """What the ``symbols`` generator makes (see :mod:`neurokd.radio.ofdm` for the model).

    ``n_tx`` × ``n_rx`` MIMO, one spatial stream per transmit antenna; ``subcarriers`` per OFDM
    symbol with a cyclic prefix of ``cp`` samples; ``modulation`` ``qpsk`` or ``16qam`` (Gray
    mapped). A subframe is ``pilot_symbols`` pilot OFDM symbols (orthogonal across the transmit
    antennas, on every ``pilot_spacing``-th subcarrier) followed by ``data_symbols`` data OFDM
    symbols, all through one block-fading channel: ``rayleigh`` (``channel_taps`` independent
    Rayleigh taps per antenna pair, exponential power-delay profile with decay ``pdp_decay`` taps)
    or ``awgn`` (the identity channel). ``ebn0_db``: the grid of :math:`E_b/N_0`, each subframe on
    one point (evenly). ``pa``: ``rapp`` puts a Rapp amplifier (smoothness ``pa_smoothness``, input
    back-off ``pa_backoff_db`` from the saturation level) on each transmit antenna.
    ``n_subframes`` in all; ``full_scale``: the network input's full scale (see
    :mod:`neurokd.data.radio`).
    """

    model_config = ConfigDict(frozen=True, validate_assignment=False)

    task: Literal["symbols"] = "symbols"
    n_tx: int = Field(2, ge=1, le=4)
    n_rx: int = Field(2, ge=1, le=8)
    subcarriers: int = Field(64, ge=8, le=4096)
    cp: int = Field(16, ge=0)
    modulation: Literal["qpsk", "16qam"] = "qpsk"
    channel: Literal["rayleigh", "awgn"] = "rayleigh"
    channel_taps: int = Field(8, ge=1, le=256)
    pdp_decay: float = Field(2.0, gt=0, le=1000)
    pilot_symbols: int = Field(2, ge=1, le=64)
    pilot_spacing: int = Field(1, ge=1)
    data_symbols: int = Field(2, ge=1, le=256)
    ebn0_db: List[float] = Field(default_factory=lambda: [float(s) for s in range(0, 31, 2)])
    n_subframes: int = Field(512, gt=0, le=1_000_000)
    pa: Literal["none", "rapp"] = "none"
    pa_smoothness: float = Field(2.0, gt=0, le=100)
    pa_backoff_db: float = Field(3.0, ge=-20, le=40)
    full_scale: float = Field(4.0, gt=0, le=100)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="before")
    @classmethod
    def _none_is_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        return {k: v for k, v in data.items() if v is not None or k not in known}

    @field_validator("ebn0_db", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return no_booleans(value)

    @field_validator("ebn0_db")
    @classmethod
    def _sane_grid(cls, value: List[float]) -> List[float]:
        return check_grid(value, "Eb/N0", EBN0_MIN_DB, EBN0_MAX_DB)

    @model_validator(mode="after")
    def _makeable(self) -> "SymbolsConfig":
        if self.n_rx < self.n_tx:
            raise ValueError(f"n_rx ({self.n_rx}) must be at least n_tx ({self.n_tx}): the "
                             "linear receivers cannot separate more streams than antennas")
        if self.cp >= self.subcarriers:
            raise ValueError(f"cp ({self.cp}) must be shorter than an OFDM symbol "
                             f"({self.subcarriers} subcarriers)")
        if self.channel == "rayleigh" and self.channel_taps > self.cp + 1:
            raise ValueError(f"channel_taps ({self.channel_taps}) exceed the cyclic prefix "
                             f"({self.cp}) plus one: the generator does not model inter-symbol "
                             "interference")
        if self.pilot_symbols < self.n_tx:
            raise ValueError(f"pilot_symbols ({self.pilot_symbols}) must be at least n_tx "
                             f"({self.n_tx}) to tell the transmit antennas apart")
        if self.pilot_spacing >= self.subcarriers:
            raise ValueError(f"pilot_spacing ({self.pilot_spacing}) leaves fewer than two pilot "
                             f"subcarriers of {self.subcarriers}")
        if self.n_subframes < len(self.ebn0_db):
            raise ValueError(f"n_subframes ({self.n_subframes}) is below the number of Eb/N0 "
                             f"points ({len(self.ebn0_db)}): some points would get no frame")
        if self.modulation == "16qam" and self.n_tx > 3:
            raise ValueError("maximum-likelihood detection of 16-QAM is limited to 3 streams "
                             f"(16^{self.n_tx} hypotheses)")
        samples = self.n_subframes * self.data_symbols * self.subcarriers * self.n_tx
        check_fits(symbols_bytes(self), f"n_subframes {self.n_subframes} × data_symbols "
                   f"{self.data_symbols} × subcarriers {self.subcarriers} × n_tx {self.n_tx} = "
                   f"{samples} samples ({self.n_tx}×{self.n_rx} antennas)",
                   "n_subframes, data_symbols or subcarriers")
        return self


def symbols_bytes(cfg: SymbolsConfig) -> int:
    """Peak bytes of generating ``cfg`` and turning it into network inputs (an estimate, see
    :data:`SYMBOLS_BYTES_PER_TERM`): per sample (resource element and stream) the channel, its
    estimate and the features, ``n_rx × n_tx + n_rx + n_tx`` values; per subframe the received
    and transmitted grids of every OFDM symbol, and the channel per subcarrier."""
    t, r = cfg.n_tx, cfg.n_rx
    f, n = cfg.n_subframes, cfg.subcarriers
    symbols = f * (cfg.pilot_symbols + cfg.data_symbols) * n
    samples = f * cfg.data_symbols * n * t
    return (SYMBOLS_BYTES_PER_TERM * samples * (r * t + r + t)
            + SYMBOLS_BYTES_PER_RECEIVED * symbols * r
            + SYMBOLS_BYTES_PER_SENT * (symbols * t + f * n * r * t))


def symbols_config(**options: Any) -> SymbolsConfig:
    """:class:`SymbolsConfig` from keyword options; any problem is one NeurokdError line."""
    return _validated(SymbolsConfig, "symbols config", options)
