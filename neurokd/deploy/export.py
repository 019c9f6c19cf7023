"""Export an SNN student to the netx HDF5 format that ``lava.lib.dl.netx.hdf5.Network`` loads.

Beside the ``layer`` group netx reads, the file carries one root attribute ``neurokd``: a JSON
record of what the network expects (encoder, time steps, window, class count, dataset), so that
``run-lava`` and ``verify`` need nothing but the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from neurokd.config import MAX_TIMESTEPS
from neurokd.errors import NeurokdError
from neurokd.fileio import atomic_path
from neurokd.h5safe import check_hdf5
from neurokd.hardware import HardwareProfile
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import ConvLayer

META_KEY = "neurokd"


def export_netx(model: SpikingNet, path: str | Path, meta: Dict[str, Any], replace: bool = True) -> Path:
    """Write ``model`` as a netx network at ``path`` (atomically) and return the path; with
    ``replace=False`` a file that appeared at ``path`` meanwhile is kept and nothing written."""
    import h5py

    if model.family == "sdnn":
        from neurokd.models.sigma_delta.netx import write_netx

        return write_netx(model, path, meta, replace=replace)
    model.eval()
    # slayer's export needs the neuron shapes, which are set by a first forward pass.
    with torch.no_grad():
        model(torch.zeros(1, *model.spec.input_shape, 2))
    record = dict(meta)
    record.update({"format_version": 1, "spec": model.spec.model_dump(),
                   "hardware": model.profile.name, "window_pad": model.window_pad})
    with atomic_path(path, replace=replace) as tmp:
        with h5py.File(tmp, "w") as h:
            layers = h.create_group("layer")
            index = 0
            if isinstance(model.spec.layers[0], ConvLayer):
                # An input layer with only type and shape (C, H, W); netx reverses it to (W, H, C).
                g = layers.create_group(str(index))
                g.create_dataset("type", (1,), "S10", [b"input"])
                g.create_dataset("shape", data=np.array(model.spec.input_shape))
                index += 1
            biases = iter(getattr(model, "export_biases", None) or [])
            for block in model.blocks:
                g = layers.create_group(str(index))
                block.export_hdf5(g)
                if getattr(block, "neuron", None) is not None:
                    bias = next(biases, None)
                    if bias is not None:
                        # Lava adds bias_mant << 6 to the voltage every step (netx's bias_exp).
                        g.create_dataset("bias", data=np.asarray(bias, dtype=np.int64))
                index += 1
            h.attrs[META_KEY] = json.dumps(record)
        check_integers(tmp, model.profile)
    return Path(path)


def check_integers(path: str | Path, profile: HardwareProfile) -> None:
    """Raise unless every exported neuron and dense weight fits the profile's integer fields."""
    import h5py

    with h5py.File(path, "r") as h:
        for key in sorted(h["layer"], key=int):
            g = h["layer"][key]
            if "neuron" not in g:
                continue
            n = g["neuron"]
            vth = int(np.max(n["vThMant"][()]))
            if not 0 < vth <= profile.threshold_mantissa_max:
                raise NeurokdError(f"layer {key}: threshold mantissa {vth} does not fit "
                                   f"{profile.threshold_mantissa_bits} bits of {profile.name}")
            for name in ("iDecay", "vDecay"):
                d = np.asarray(n[name][()])
                if d.min() < 0 or d.max() > profile.decay_scale:
                    raise NeurokdError(f"layer {key}: {name} outside 0..{profile.decay_scale} "
                                       f"({profile.decay_bits}-bit decay of {profile.name})")
            if "bias" in g:
                b = np.abs(np.asarray(g["bias"][()]))
                if b.size and b.max() > profile.bias_mantissa_max:
                    raise NeurokdError(f"layer {key}: bias mantissa {b.max():.0f} does not fit "
                                       f"the {profile.bias_mantissa_bits}-bit bias of {profile.name}")
            if g["type"][0] == b"dense":
                w = np.asarray(g["weight"][()])
                if w.min() < profile.weight_mantissa_min or w.max() > profile.weight_mantissa_max:
                    raise NeurokdError(f"layer {key}: weights span {w.min():.0f}..{w.max():.0f}, "
                                       f"outside {profile.name}'s {profile.weight_mantissa_min}.."
                                       f"{profile.weight_mantissa_max}")


def is_neurokd_network(path: str | Path) -> bool:
    """True for a netx network that neurokd exported (the only kind ``--force`` may replace)."""
    try:
        read_meta(path)
    except NeurokdError:
        return False
    return True


def read_meta(path: str | Path) -> Dict[str, Any]:
    """Check that ``path`` is a netx network written by neurokd and return its metadata."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such network file")
    check_hdf5(p, "netx network")
    try:
        with h5py.File(p, "r") as h:
            if "layer" not in h or len(h["layer"]) == 0:
                raise NeurokdError(f"{p}: HDF5 file holds no netx 'layer' group; not a netx network")
            for key in h["layer"]:
                if "type" not in h["layer"][key]:
                    raise NeurokdError(f"{p}: layer {key} has no type; not a netx network")
            raw = h.attrs.get(META_KEY)
    except OSError:
        raise NeurokdError(f"{p}: not an HDF5 file") from None
    if raw is None:
        raise NeurokdError(f"{p}: netx network without neurokd metadata; export it with "
                           "'neurokd export'")
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError):
        raise NeurokdError(f"{p}: unreadable neurokd metadata") from None
    if not isinstance(meta, dict):
        raise NeurokdError(f"{p}: unreadable neurokd metadata")
    for key in ("encoder", "timesteps", "window_pad", "spec", "num_classes"):
        if key not in meta:
            raise NeurokdError(f"{p}: neurokd metadata lacks {key!r}")
    check_layers(p, meta)
    return meta


NETX_TYPES = ("input", "conv", "flatten", "dense")


def _int_field(meta: Dict[str, Any], key: str, low: int, p: Path) -> int:
    value = meta[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise NeurokdError(f"{p}: neurokd metadata {key!r} is {value!r}, expected an integer >= {low}")
    return value


def _check_sdnn_meta(meta: Dict[str, Any], p: Path) -> None:
    """A sigma-delta file's readout: the output scale, the host-side output bias (one integer per
    class) and the input layer's threshold."""
    info, bias = meta.get("sdnn"), meta.get("out_bias")
    if not isinstance(info, dict):
        raise NeurokdError(f"{p}: sigma-delta metadata lacks its 'sdnn' record")
    scale = info.get("out_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise NeurokdError(f"{p}: sigma-delta metadata out_scale is {scale!r}, expected a positive number")
    _int_field(info, "input_vth", 0, p)
    if not 0 <= _int_field(info, "input_shift", 0, p) <= 16:
        raise NeurokdError(f"{p}: sigma-delta metadata input_shift outside 0..16")
    if not isinstance(bias, list) or len(bias) != meta.get("num_classes") or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in bias):
        raise NeurokdError(f"{p}: sigma-delta metadata out_bias must hold one integer per class")


def check_layers(p: Path, meta: Dict[str, Any]) -> None:
    """Raise unless the file's layers are the ones its metadata's spec describes: known types,
    positive shapes, weights of the right size. Lava would otherwise fail deep inside, or run a
    network other than the one the metadata names."""
    import h5py

    from neurokd.data.encoders import get_encoder
    from neurokd.models.spec import spec_from_dict

    spec = spec_from_dict(meta["spec"], where=f"{p}: neurokd metadata spec")
    get_encoder(str(meta["encoder"]))
    timesteps = _int_field(meta, "timesteps", 1, p)
    sdnn = meta.get("family") == "sdnn"
    _int_field(meta, "window_pad", 0 if sdnn else 1, p)
    if sdnn:
        _check_sdnn_meta(meta, p)

    if timesteps > MAX_TIMESTEPS:
        raise NeurokdError(f"{p}: neurokd metadata timesteps {timesteps} is above {MAX_TIMESTEPS}")
    classes = _int_field(meta, "num_classes", 1, p)
    expected = [(layer.type, shape) for layer, shape in zip(spec.layers, spec.shapes())]
    if classes != expected[-1][1][0]:
        raise NeurokdError(f"{p}: metadata says {classes} classes, the spec ends in {expected[-1][1]}")
    if spec.layers[0].type == "conv":
        expected.insert(0, ("input", tuple(spec.input_shape)))
    try:
        with h5py.File(p, "r") as h:
            keys = sorted(h["layer"], key=lambda k: int(k) if k.isdigit() else -1)
            if [k for k in keys] != [str(i) for i in range(len(keys))]:
                raise NeurokdError(f"{p}: layers are not numbered 0..{len(keys) - 1}")
            if len(keys) != len(expected):
                raise NeurokdError(f"{p}: {len(keys)} layers, but its metadata spec has "
                                   f"{len(expected)}")
            for key, (want_type, want_shape) in zip(keys, expected):
                g = h["layer"][key]
                raw = g["type"][()]
                kind = raw[0].decode() if hasattr(raw[0], "decode") else str(raw[0])
                if kind not in NETX_TYPES:
                    raise NeurokdError(f"{p}: layer {key} has unknown type {kind!r}; neurokd "
                                       f"networks hold {', '.join(NETX_TYPES)}")
                if kind != want_type:
                    raise NeurokdError(f"{p}: layer {key} is {kind}, its metadata spec says {want_type}")
                shape = np.asarray(g["shape"][()]) if "shape" in g else np.zeros(0)
                if shape.ndim != 1 or shape.size == 0 or (shape <= 0).any():
                    raise NeurokdError(f"{p}: layer {key} has shape {shape.tolist()}; shapes must "
                                       "be positive")
                if kind in ("conv", "dense") and tuple(int(v) for v in shape) != tuple(want_shape):
                    raise NeurokdError(f"{p}: layer {key} has shape {shape.tolist()}, its metadata "
                                       f"spec says {list(want_shape)}")
                if kind in ("conv", "dense"):
                    if "weight" not in g or "neuron" not in g:
                        raise NeurokdError(f"{p}: layer {key} ({kind}) lacks its weights or neurons")
                    w = g["weight"].shape
                    if kind == "dense" and (len(w) != 2 or w[0] != want_shape[0]):
                        raise NeurokdError(f"{p}: layer {key} weight shape {w} does not give "
                                           f"{want_shape[0]} outputs")
                    if kind == "conv" and (len(w) != 4 or w[0] != want_shape[0]):
                        raise NeurokdError(f"{p}: layer {key} weight shape {w} does not give "
                                           f"{want_shape[0]} channels")
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise NeurokdError(f"{p}: malformed netx layer ({type(exc).__name__}: {exc})") from None
