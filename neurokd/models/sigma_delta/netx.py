"""Write a ``SigmaDeltaNet`` as the netx HDF5 file that ``lava.lib.dl.netx.hdf5.Network`` loads as
``SigmaDelta`` (hidden, ReLU) → ``Sigma`` (output) processes, fed the input layer's graded
messages: the host delta-encodes the frames (:meth:`SigmaDeltaNet.input_messages`), because
netx 0.6's ``Input`` block never connects its input port to its ``Delta`` neuron (Lava refuses
to compile it).

The groups are written here, not through slayer's sigma-delta blocks, because slayer exports
neither a bias set with ``set_bias()`` nor per-layer message widths; every integer the file holds
is the one the quantized network computes with. No ``messageBits`` is written: netx 0.6 reads that
key as a group, not a number, and fails; every layer runs with netx's default 16-bit messages,
the profile's ``sigma_delta.message_bits``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np

from neurokd.fileio import atomic_path
from neurokd.models.sigma_delta.net import SigmaDeltaNet, rules
from neurokd.models.spec import ConvLayer, FlattenLayer

META_KEY = "neurokd"


def _neuron(g, vth_file: int, output: bool = False) -> None:
    g.create_dataset("neuron/type", (1,), "S10", [b"SDNN"])
    g.create_dataset("neuron/vThMant", data=int(vth_file))
    if output:
        g.create_dataset("neuron/sigma_output", data=True)


def write_netx(model: SigmaDeltaNet, path: str | Path, meta: Dict[str, Any], replace: bool = True) -> Path:
    """Write ``model`` at ``path`` (atomically); ``meta`` goes into the ``neurokd`` root attribute."""
    import h5py

    sd = rules(model.profile)
    shift = sd.shift
    shapes = model.spec.shapes()
    record = dict(meta)
    record.update({"format_version": 1, "family": "sdnn", "spec": model.spec.model_dump(),
                   "hardware": model.profile.name, "window_pad": model.window_pad,
                   "sdnn": model.arch()["sdnn"], "out_bias": model.b_out().tolist()})
    with atomic_path(path, replace=replace) as tmp:
        with h5py.File(tmp, "w") as h:
            layers = h.create_group("layer")
            index, k, ints = 0, 0, model.layers
            if isinstance(model.spec.layers[0], ConvLayer):
                # only the input's shape (C, H, W); netx reverses it to (W, H, C)
                g = layers.create_group("0")
                g.create_dataset("type", (1,), "S10", [b"input"])
                g.create_dataset("shape", data=np.array(model.spec.input_shape))
                index = 1
            for spec_layer, shape in zip(model.spec.layers, shapes):
                g = layers.create_group(str(index))
                index += 1
                if isinstance(spec_layer, FlattenLayer):
                    g.create_dataset("type", (1,), "S10", [b"flatten"])
                    g.create_dataset("shape", data=np.array(shape))
                    continue
                layer = ints[k]
                k += 1
                w = layer.weight.numpy().astype(np.int64)
                g.create_dataset("shape", data=np.array(shape))
                if isinstance(spec_layer, ConvLayer):
                    g.create_dataset("type", (1,), "S10", [b"conv"])
                    g.create_dataset("inChannels", data=w.shape[1])
                    g.create_dataset("outChannels", data=w.shape[0])
                    g.create_dataset("kernelSize", data=np.array(w.shape[2:]))
                    g.create_dataset("stride", data=np.array(layer.stride))
                    g.create_dataset("padding", data=np.array(layer.padding))
                    g.create_dataset("dilation", data=np.array([1, 1]))
                    g.create_dataset("groups", data=1)
                else:
                    g.create_dataset("type", (1,), "S10", [b"dense"])
                g.create_dataset("weight", data=w)
                if not layer.output:
                    g.create_dataset("bias", data=(layer.bias.numpy().astype(np.int64) >> shift))
                _neuron(g, layer.vth >> shift, output=layer.output)
            h.attrs[META_KEY] = json.dumps(record)
    return Path(path)
