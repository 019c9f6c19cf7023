"""Radio datasets ``sensing`` and ``modulation``: generated I/Q frames as non-negative network inputs.

Each frame of ``L`` complex samples :math:`r_t = I_t + jQ_t` becomes a ``float32`` sample shaped
``(5, 1, L)`` in [0, 1], channels ``I+, I-, Q+, Q-, 1``:

.. math::

    x_{I+,t} = \\min(1, \\max(I_t, 0)/A),\\quad x_{I-,t} = \\min(1, \\max(-I_t, 0)/A),

and the same for :math:`Q`, and a fifth channel held at full scale (1) at every sample. That constant
channel is a bias input: spiking students have no neuron biases, and without a constant drive a
neuron cannot vote for "noise only" when its input is quiet, so a detector trained on spike counts
collapses to silence (measured: direct training on ``sensing`` sat at chance, both outputs silent;
with the constant channel it reached 0.71-0.74 validation accuracy in five epochs, against 0.75 for
the energy detector's best threshold). Through its weights every neuron learns its own constant
input, which Loihi receives as ordinary spikes. One full scale :math:`A` per frame:

- ``sensing``: :math:`A = a\\,\\sigma`, :math:`\\sigma = \\sqrt{N_0/2}` the *nominal* noise standard
  deviation per real component (:math:`N_0 = 1`), so the absolute received energy, the very thing
  a detector measures, stays visible to the network. Default :math:`a = 4`: noise alone passes
  :math:`4\\sigma` in 0.006 % of the values, and at the top of the grid (+4 dB, AWGN, seed 0, 20 000
  frames) 2.5 % of the values are clipped (3.9 % through ``rayleigh3``, whose fades reach
  higher peaks); :math:`a = 3` would clip 11 % there and 0.27 % of pure noise; :math:`a = 5` would
  clip 0.4 % at +4 dB but coarsen the low-SNR range where detection is decided (with the 4-bit
  ``direct`` encoder, one :math:`\sigma` would span 3 levels instead of 3.75).
- ``modulation``: :math:`A = a\\,\\sqrt{\\overline{|r|^2}/2}`, the frame's own RMS per real
  component (RadioML's unit-power normalisation), so the classes differ by shape, not by level.
  Default :math:`a = 3`: 0.25 % of the values clipped at -20 dB (Gaussian noise beyond 3 RMS),
  0.12 % at 0 dB and almost none at +18 dB (PAM4's peaks: 0.01 %); :math:`a = 2` would clip
  1.5 % at +18 dB (5 % of PAM4) and 4.5 % at -20 dB.

Why this layout: the signed I/Q would not fit the spiking encoders, which take intensities in
[0, 1] (``rate``: a spike probability; ``direct``: a graded spike of ``message_bits`` bits). Split
into positive and negative parts, the frame passes through the existing encoders unchanged, and a
2-D convolutional student with ``1 × k`` kernels reads it as four input channels of a ``1 × L``
image. It is exact on Loihi because every encoded input is a non-negative integer (a binary spike
or a graded-spike payload); no sign is lost, since :math:`I = A(x_{I+} - x_{I-})` below full scale.

``layout="signed"`` (chosen by ``neurokd.pipeline.load_data`` when the student's encoder is
signed, ``signed8``): each frame becomes ``(2, 1, L)`` in [-1, 1], channels ``I, Q``,
:math:`x = \mathrm{clip}(v/A, -1, 1)` with the same full scale :math:`A` as above, and no constant
channel. Signed graded spikes carry it to the first layer as it is: no split, no Bernoulli noise.

Each split also carries ``snr`` (the frame's nominal SNR in dB), ``iq`` (the complex64 frames, for
the classical baselines of :mod:`neurokd.radio.detectors`) and ``meta``: ``waveform``, the index
of the frame's signal in the order the dataset's note lists them (-1: noise only), and
``noise_power``, the frame's true noise power (nominal 1).

Default sizes: ``sensing`` 20 000 frames (13 SNRs from -20 to +4 dB, QPSK, 16-QAM and OFDM primary
users); ``modulation`` 32 000 frames (8 classes × 20 SNRs from -20 to +18 dB × 200 frames). They
generate, encode and split in about 0.5 s and 1.5 s on a 2-core machine. ``limit`` caps the number
of frames generated.
The generator's seed (``generator_seed``, default 0) is separate from the split's ``seed``, so
runs with different seeds see the same frames, split differently.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from neurokd.data.datasets import DATASETS, Dataset, Split, _make, split_indices
from neurokd.errors import NeurokdError

if TYPE_CHECKING:
    import torch

NOMINAL_NOISE_POWER = 1.0
IQ_CHANNELS = 5  # I+, I-, Q+, Q-, constant
LAYOUTS = ("split", "signed")


def iq_channels(iq: np.ndarray, full_scale: np.ndarray | float) -> np.ndarray:
    """Complex frames ``(n, L)`` → ``float32`` ``(n, 5, 1, L)`` in [0, 1]: ``I+, I-, Q+, Q-, 1``.

    :math:`x = \\min(1, \\max(\\pm v, 0)/A)` for :math:`v \\in \\{I, Q\\}`, and the constant bias
    channel; ``full_scale`` is :math:`A`, one value or one per frame.
    """
    scale = np.broadcast_to(np.asarray(full_scale, dtype=np.float64), (len(iq),))[:, None]
    if np.any(~(scale > 0)):
        raise NeurokdError("the I/Q full scale must be positive for every frame")
    out = np.empty((len(iq), IQ_CHANNELS, 1, iq.shape[1]), dtype=np.float32)
    out[:, 4] = 1.0  # the bias input
    for c, v in enumerate((iq.real / scale, iq.imag / scale)):
        out[:, 2 * c, 0] = np.clip(v, 0.0, 1.0)
        out[:, 2 * c + 1, 0] = np.clip(-v, 0.0, 1.0)
    return out


def iq_signed(iq: np.ndarray, full_scale: np.ndarray | float) -> np.ndarray:
    """Complex frames ``(n, L)`` → ``float32`` ``(n, 2, 1, L)`` in [-1, 1]: ``clip(I/A)``,
    ``clip(Q/A)``; ``full_scale`` is :math:`A`, one value or one per frame."""
    scale = np.broadcast_to(np.asarray(full_scale, dtype=np.float64), (len(iq),))[:, None]
    if np.any(~(scale > 0)):
        raise NeurokdError("the I/Q full scale must be positive for every frame")
    out = np.empty((len(iq), 2, 1, iq.shape[1]), dtype=np.float32)
    out[:, 0, 0] = np.clip(iq.real / scale, -1.0, 1.0)
    out[:, 1, 0] = np.clip(iq.imag / scale, -1.0, 1.0)
    return out


def iq_input(iq: np.ndarray, full_scale: np.ndarray | float, layout: str) -> np.ndarray:
    """The network input of complex frames in ``layout``: ``split`` (:func:`iq_channels`) or
    ``signed`` (:func:`iq_signed`)."""
    if layout not in LAYOUTS:
        raise NeurokdError(f"unknown I/Q layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    return iq_signed(iq, full_scale) if layout == "signed" else iq_channels(iq, full_scale)


def rotate_phase(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each sample's I/Q turned by its own random phase (uniform in [0, 2π)), the same for all its
    samples, then clipped to full scale again: a label-preserving augmentation for tasks whose
    classes do not depend on the carrier phase (modulation). ``x`` ``(N, C, 1, L)`` in either
    layout: ``C = 2`` signed ``I, Q``; ``C = 5`` split ``I+, I-, Q+, Q-, 1``."""
    import torch

    c = x.shape[1]
    if c not in (2, IQ_CHANNELS):
        raise NeurokdError(f"phase rotation needs I/Q frames with 2 or {IQ_CHANNELS} channels, got {c}")
    i, q = (x[:, 0], x[:, 1]) if c == 2 else (x[:, 0] - x[:, 1], x[:, 2] - x[:, 3])
    theta = torch.rand(len(x), 1, 1, generator=generator, dtype=torch.float64) * (2 * math.pi)
    cos, sin = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
    i, q = (i * cos - q * sin).clamp(-1, 1), (i * sin + q * cos).clamp(-1, 1)
    if c == 2:
        return torch.stack([i, q], dim=1)
    return torch.stack([i.clamp(min=0), (-i).clamp(min=0), q.clamp(min=0), (-q).clamp(min=0),
                        x[:, 4]], dim=1)


def augmentation(name: str, ds: Dataset):
    """The training-batch transform ``name`` (``TeacherConfig.augment``) as a ``prepare``
    function, or None for ``none``; ``phase`` only for I/Q classification data."""
    if name == "none":
        return None
    if name != "phase":
        raise NeurokdError(f"unknown augmentation {name!r}; choose none or phase")
    if ds.task != "classification" or ds.test.iq is None:
        raise NeurokdError("augment=phase turns I/Q frames whose class ignores the phase "
                           f"(modulation, RadioML); {ds.name!r} has none")
    return rotate_phase


def sensing_full_scale(full_scale: float, n: int) -> np.ndarray:
    """:math:`A = a\\sqrt{N_0/2}` with the nominal :math:`N_0`, the same for every frame."""
    return np.full(n, full_scale * np.sqrt(NOMINAL_NOISE_POWER / 2))


def rms_full_scale(iq: np.ndarray, full_scale: float) -> np.ndarray:
    """:math:`A = a\\sqrt{\\overline{|r|^2}/2}` per frame (an all-zero frame gets :math:`a`)."""
    rms = np.sqrt(np.mean(np.abs(iq.astype(np.complex128)) ** 2, axis=1) / 2)
    return full_scale * np.where(rms > 0, rms, 1.0)


def clipped_fraction(iq: np.ndarray, full_scale: np.ndarray) -> float:
    """Share of the real components with :math:`|v| > A` (clipped by :func:`iq_channels`)."""
    a = np.asarray(full_scale, dtype=np.float64).reshape(-1, 1)
    return float(np.mean(np.concatenate([np.abs(iq.real) > a, np.abs(iq.imag) > a], axis=1)))


def _load(task: str, data_dir: Optional[str], val_fraction: float, test_fraction: float, seed: int,
          limit: Optional[int], generator_seed: Optional[int], options: dict,
          layout: str = "split") -> Dataset:
    from neurokd.radio.config import radio_config
    from neurokd.radio.generate import generate

    if data_dir is not None:
        raise NeurokdError(f"dataset {task!r} is generated; drop --data-dir")
    for key in ("task", "seed"):
        if key in options:
            raise NeurokdError(f"dataset {task!r}: option {key!r} is set by the loader "
                               "(the dataset name; generator_seed)")
    if limit is not None and limit <= 0:
        raise NeurokdError(f"limit must be positive, got {limit}")
    cfg = radio_config(task=task, seed=generator_seed, **options)
    if limit is not None and limit < cfg.n_frames:
        cfg = radio_config(**{**cfg.model_dump(), "n_frames": limit})
    frames = generate(cfg)
    if task == "sensing":
        scale = sensing_full_scale(cfg.full_scale, len(frames))
    else:
        scale = rms_full_scale(frames.iq, cfg.full_scale)
    whole = Split(iq_input(frames.iq, scale, layout), frames.label, snr=frames.snr_db, iq=frames.iq,
                  meta={"waveform": frames.waveform, "noise_power": frames.noise_power})
    note = (f"{task}: {len(frames)} generated frames of {cfg.frame_length} samples "
            f"({', '.join(frames.waveforms)}; {cfg.channel}; SNR {cfg.snr_db[0]:g}…{cfg.snr_db[-1]:g} dB; "
            f"generator seed {cfg.seed}); {clipped_fraction(frames.iq, scale):.2%} of the I/Q "
            f"values clipped at full scale {cfg.full_scale:g}; {layout} I/Q")
    return _make(task, whole.x, whole.y, len(frames.class_names), val_fraction, test_fraction,
                 seed, [note], whole=whole, task="detection" if task == "sensing" else "classification",
                 class_names=list(frames.class_names), radio=cfg.model_dump(mode="json"))


@DATASETS.register("sensing")
def load_sensing(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                 test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None,
                 generator_seed: Optional[int] = None, layout: str = "split",
                 **options: Any) -> Dataset:
    """Spectrum sensing: class 0 noise only (H0), class 1 a primary user plus noise (H1).

    ``options`` are :class:`~neurokd.radio.config.RadioConfig` fields (``snr_db``, ``channel``,
    ``noise_uncertainty_db``, ``frame_length``, ``n_frames``, ``full_scale``, ...).
    """
    return _load("sensing", data_dir, val_fraction, test_fraction, seed, limit, generator_seed,
                 options, layout)


@DATASETS.register("modulation")
def load_modulation(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                    test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None,
                    generator_seed: Optional[int] = None, layout: str = "split",
                    **options: Any) -> Dataset:
    """Digital modulation classification: one class per signal in ``options["signals"]``
    (default BPSK, QPSK, 8PSK, 16QAM, 64QAM, PAM4, GFSK, CPFSK)."""
    return _load("modulation", data_dir, val_fraction, test_fraction, seed, limit, generator_seed,
                 options, layout)


# ---------------------------------------------------------------- MIMO-OFDM symbol detection
def symbol_samples(frames: Any, subframes: np.ndarray, full_scale: float, layout: str = "split"
                   ) -> Split:
    """One sample per (subframe, data symbol, subcarrier, stream) of ``subframes``: the network
    input from :func:`~neurokd.radio.ofdm.detector_inputs` through :func:`iq_channels`, the
    transmitted symbol's index as label, Eb/N0 as ``snr``, and in ``meta`` what the classical
    receivers use: ``y``, ``h`` (true channel), ``h_ls`` (estimate), ``n0``, ``stream``,
    ``subframe``."""
    from neurokd.radio.ofdm import detector_inputs, resource_elements

    f, d, k, s, label = resource_elements(frames, subframes)
    y, h_ls = frames.y[f, d, k], frames.h_ls[f, k]
    feats = detector_inputs(h_ls, y, s)
    x = iq_input(feats, full_scale, layout)
    meta = {"y": y.astype(np.complex64), "h": frames.h[f, k].astype(np.complex64),
            "h_ls": h_ls.astype(np.complex64), "n0": frames.n0[f].astype(np.float64),
            "stream": s.astype(np.int64), "subframe": f.astype(np.int64),
            "clipped": (np.maximum(np.abs(feats.real), np.abs(feats.imag)) > full_scale).any(1)}
    return Split(x, label.astype(np.int64), snr=frames.ebn0_db[f].astype(np.float32), meta=meta)


@DATASETS.register("symbols")
def load_symbols(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                 test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None,
                 generator_seed: Optional[int] = None, layout: str = "split",
                 **options: Any) -> Dataset:
    """MIMO-OFDM symbol detection: one sample per (resource element, stream), labelled with the
    transmitted constellation point's index (its Gray-coded bits, so every result is also a bit
    error rate). ``options`` are :class:`~neurokd.radio.config.SymbolsConfig` fields.

    Input ``(5, 1, F)``: the ``F`` complex features of
    :func:`~neurokd.radio.ofdm.detector_inputs` (the matched filter output and the Gram matrix of
    the least-squares channel estimate at the sample's subcarrier, wanted stream first, scaled by
    the estimate's mean power; ``F = 4`` for 2×2) as the channels ``I+, I-, Q+, Q-, 1`` of
    :func:`iq_channels` (``layout="signed"``: ``(2, 1, F)``, the channels ``I, Q`` of
    :func:`iq_signed`) with full scale ``full_scale`` (default 4: the Gram matrix of a 2×2
    channel never passes it; the matched filter output does in about 0.1 % of the samples, at low
    Eb/N0 and in deep fades). One network serves every
    stream. Train, validation and test hold whole subframes (split by ``seed`` within each Eb/N0
    point), so no channel realisation is shared between them. ``limit`` caps the number of samples (whole subframes).
    """
    from neurokd.radio.config import symbols_config
    from neurokd.radio.ofdm import bits_per_symbol, generate_symbols

    if data_dir is not None:
        raise NeurokdError("dataset 'symbols' is generated; drop --data-dir")
    for key in ("task", "seed"):
        if key in options:
            raise NeurokdError(f"dataset 'symbols': option {key!r} is set by the loader "
                               "(the dataset name; generator_seed)")
    cfg = symbols_config(seed=generator_seed, **options)
    per = cfg.data_symbols * cfg.subcarriers * cfg.n_tx
    if limit is not None:
        if limit <= 0:
            raise NeurokdError(f"limit must be positive, got {limit}")
        if limit // per < len(cfg.ebn0_db):
            raise NeurokdError(f"limit {limit} holds fewer subframes than Eb/N0 points: a subframe "
                               f"is {per} samples, so give at least {per * len(cfg.ebn0_db)}")
        if limit // per < cfg.n_subframes:
            cfg = symbols_config(**{**cfg.model_dump(), "n_subframes": limit // per})
    frames = generate_symbols(cfg)
    parts: list = [[], [], []]
    for i, point in enumerate(cfg.ebn0_db):  # stratified: every Eb/N0 point in every split
        group = np.flatnonzero(frames.ebn0_db == point)
        try:
            cut = split_indices(len(group), val_fraction, test_fraction, seed + i)
        except NeurokdError:
            raise NeurokdError(f"{len(group)} subframes at Eb/N0 {point:g} dB are too few to split "
                               f"into train, validation and test; raise n_subframes (now "
                               f"{cfg.n_subframes}) or limit") from None
        for part, idx in zip(parts, cut):
            part.append(group[idx])
    splits = [symbol_samples(frames, np.sort(np.concatenate(p)), cfg.full_scale, layout)
              for p in parts]
    clipped = float(np.mean(np.concatenate([s.meta["clipped"] for s in splits])))
    m = 1 << bits_per_symbol(cfg.modulation)
    names = [format(i, f"0{bits_per_symbol(cfg.modulation)}b") for i in range(m)]
    note = (f"symbols: {cfg.n_subframes} generated subframes of {cfg.n_tx}x{cfg.n_rx} MIMO-OFDM "
            f"({cfg.subcarriers} subcarriers, {cfg.modulation.upper()}, {cfg.channel}"
            f"{'' if cfg.channel == 'awgn' else f' {cfg.channel_taps} taps'}, {cfg.pilot_symbols} "
            f"pilot + {cfg.data_symbols} data symbols, pilots every {cfg.pilot_spacing} "
            f"subcarrier(s), amplifier {cfg.pa}; Eb/N0 {cfg.ebn0_db[0]:g}…{cfg.ebn0_db[-1]:g} dB; "
            f"generator seed {cfg.seed}); {clipped:.2%} of the samples have a value clipped at "
            f"full scale {cfg.full_scale:g}; {layout} I/Q")
    return Dataset("symbols", *splits, m, tuple(splits[0].x.shape[1:]), [note], task="symbols",
                   class_names=names, radio=cfg.model_dump(mode="json"))
