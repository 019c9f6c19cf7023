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

from neurokd.errors import NeurokdError
from neurokd.fileio import atomic_path
from neurokd.hardware import HardwareProfile
from neurokd.models.snn import SpikingNet
from neurokd.models.spec import ConvLayer

META_KEY = "neurokd"


def export_netx(model: SpikingNet, path: str | Path, meta: Dict[str, Any]) -> Path:
    """Write ``model`` as a netx network at ``path`` (atomically) and return the path."""
    import h5py

    model.eval()
    # slayer's export needs the neuron shapes, which are set by a first forward pass.
    with torch.no_grad():
        model(torch.zeros(1, *model.spec.input_shape, 2))
    record = dict(meta)
    record.update({"format_version": 1, "spec": model.spec.model_dump(),
                   "hardware": model.profile.name, "window_pad": model.window_pad})
    with atomic_path(path) as tmp:
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


def read_meta(path: str | Path) -> Dict[str, Any]:
    """Check that ``path`` is a netx network written by neurokd and return its metadata."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such network file")
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
    for key in ("encoder", "timesteps", "window_pad", "spec", "num_classes"):
        if key not in meta:
            raise NeurokdError(f"{p}: neurokd metadata lacks {key!r}")
    return meta
