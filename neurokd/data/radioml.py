"""The public RadioML sets as datasets ``radioml2016`` and ``radioml2018``, from a file the user
already has (``--data-dir FILE`` or a folder holding it under its published name; nothing is
downloaded).

The frames go through the readers of :mod:`neurokd.radio.radioml` (the 2016 pickle read opcode
by opcode, nothing in it run; the 2018 HDF5 checked before any data is read), then into the
same network input as the generated ``modulation`` dataset: one full scale per frame,
``full_scale`` times its RMS per real component (:func:`neurokd.data.radio.rms_full_scale`), in
the split ``I+, I-, Q+, Q-, 1`` layout or, for a signed encoder, the signed ``I, Q`` one.

Options (``data.radio`` in the configuration): ``classes`` (names or indices, in the order the
labels take; default every class of the file), ``snr_range`` (``[low, high]`` dB, inclusive;
default all), ``full_scale`` (default 3). ``data.limit`` keeps that many frames evenly spaced
over the selection, so every class and SNR keeps its share. Reports are per SNR, like
``modulation``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from pydantic import Field, ValidationError

from neurokd.data.datasets import DATASETS, Dataset, Split, _make
from neurokd.data.radio import clipped_fraction, iq_input, rms_full_scale
from neurokd.errors import NeurokdError
from neurokd.schema import StrictModel, format_validation_error

# The published file names, looked for when --data-dir is a folder.
FILE_NAMES = {"radioml2016": ("RML2016.10a_dict.pkl", "RML2016.04C.multisnr.pkl", "2016.04C.multisnr.pkl"),
              "radioml2018": ("GOLD_XYZ_OSC.0001_1024.hdf5",)}


GENERATED = ("sensing", "modulation", "symbols")
RADIOML = tuple(FILE_NAMES)


def radio_options(dataset: str, radio: Dict[str, Any], generator_seed: int, signed: bool
                  ) -> Dict[str, Any]:
    """The keyword arguments a radio dataset's loader takes from the configuration (``data.radio``,
    ``data.generator_seed``) and the student's encoder: a signed one takes the I/Q as it is
    (``layout="signed"``), every other the split channels. Other datasets take none."""
    layout = "signed" if signed else "split"
    if dataset in GENERATED:
        return dict(radio, generator_seed=generator_seed, layout=layout)
    if dataset in RADIOML:
        return dict(radio, layout=layout)
    if radio:
        raise NeurokdError(f"data.radio sets options of the radio datasets "
                           f"({', '.join(GENERATED + RADIOML)}), not of {dataset!r}")
    return {}


class RadioMLOptions(StrictModel):
    classes: Optional[List[Union[str, int]]] = Field(None, min_length=1)
    snr_range: Optional[Tuple[float, float]] = None
    full_scale: float = Field(3.0, gt=0, le=100)


def _file(name: str, data_dir: Optional[str]) -> Path:
    if data_dir is None:
        raise NeurokdError(f"dataset {name!r} reads a RadioML file you have: give --data-dir "
                           f"FILE (or a folder holding {' or '.join(FILE_NAMES[name])})")
    p = Path(data_dir)
    if p.is_dir():
        for candidate in FILE_NAMES[name]:
            if (p / candidate).is_file():
                return p / candidate
        raise NeurokdError(f"{p}: no {' or '.join(FILE_NAMES[name])} in this folder; give the "
                           f"file itself with --data-dir")
    if not p.is_file():
        raise NeurokdError(f"{p}: no such file or folder")
    return p


def _load(name: str, data_dir: Optional[str], val_fraction: float, test_fraction: float,
          seed: int, limit: Optional[int], layout: str, options: dict) -> Dataset:
    from neurokd.radio.radioml import read_radioml2016, read_radioml2018

    try:
        o = RadioMLOptions(**options)
    except ValidationError as exc:
        raise NeurokdError(f"data.radio for {name}: {format_validation_error(exc)}") from None
    path = _file(name, data_dir)
    read = read_radioml2016 if name == "radioml2016" else read_radioml2018
    rml = read(path, classes=o.classes, snr_range=o.snr_range, limit=limit)
    if len(rml) == 0:
        raise NeurokdError(f"{path}: no frame of the selected classes and SNRs")
    scale = rms_full_scale(rml.iq, o.full_scale)
    whole = Split(iq_input(rml.iq, scale, layout), rml.label, snr=rml.snr_db, iq=rml.iq)
    note = (f"{name}: {len(rml)} frames of {rml.iq.shape[1]} samples from {path.name} "
            f"({len(rml.class_names)} classes: {', '.join(rml.class_names)}; SNR "
            f"{float(rml.snr_db.min()):g}…{float(rml.snr_db.max()):g} dB); "
            f"{clipped_fraction(rml.iq, scale):.2%} of the I/Q values clipped at full scale "
            f"{o.full_scale:g}; {layout} I/Q")
    return _make(name, whole.x, whole.y, len(rml.class_names), val_fraction, test_fraction, seed,
                 [note], whole=whole, task="classification", class_names=list(rml.class_names),
                 radio={"source": name, "file": path.name, **o.model_dump(mode="json")})


@DATASETS.register("radioml2016")
def load_radioml2016(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                     test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None,
                     layout: str = "split", **options: Any) -> Dataset:
    """RadioML 2016.10a (or 2016.04C): 128-sample frames, 11 modulations, SNR -20…18 dB."""
    return _load("radioml2016", data_dir, val_fraction, test_fraction, seed, limit, layout, options)


@DATASETS.register("radioml2018")
def load_radioml2018(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                     test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None,
                     layout: str = "split", **options: Any) -> Dataset:
    """RadioML 2018.01A: 1024-sample frames, 24 modulations, SNR -20…30 dB."""
    return _load("radioml2018", data_dir, val_fraction, test_fraction, seed, limit, layout, options)
