"""neurokd → NIR: any neurokd SNN written as a NIR graph that ``nir.read`` and snntorch's
``import_from_nir`` load, with neurokd's metadata; and snntorch's import run on frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import check_hdf5
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer
from neurokd.interop.nir.graph import (DEFAULT_DT, FORMAT_VERSION, META_KEY, NEVER_DECAYS, _nir,
                                       check_dt)

# ---------------------------------------------------------------- neurokd → NIR
def _model_layers(model: nn.Module) -> List[Dict[str, Any]]:
    """Per spiking layer of a ``SpikingNet`` or ``QuantSpikingNet``: the weights, threshold and
    bias the model computes with, in slayer's float units (chip integers / weight scale)."""
    scale = float(model.profile.weight_scale)
    out = []
    if model.quantized:
        for row in model.export_integers():
            bias = row.get("bias")
            out.append({"weight": row["weight"].to(torch.float64).numpy() / scale,
                        "threshold": row["vth"] / scale,
                        "bias": None if bias is None else bias.to(torch.float64).numpy() / scale})
        return out
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *model.spec.input_shape, 2))
        for block in model.blocks:
            if getattr(block, "synapse", None) is None:
                continue
            syn = block.synapse
            w = syn.pre_hook_fx(syn.weight) if syn.pre_hook_fx is not None else syn.weight
            out.append({"weight": w.detach().to(torch.float64).numpy(),
                        "threshold": float(block.neuron.threshold), "bias": None})
    return out


def snn_to_nir(model: nn.Module, dt: float = DEFAULT_DT, metadata: Optional[Dict[str, Any]] = None):
    """``model`` (a ``SpikingNet`` or ``QuantSpikingNet``) as a NIR graph: Conv2d / Linear (Affine
    where the model has biases), Flatten, and per spiking layer a LIF node (current decay 1) or
    a CubaLIF node, with ``tau = dt / decay`` (a zero decay as a finite ``dt · 2^40``, 1.0 in
    float32), ``r`` and ``w_in`` giving an input gain of 1, ``v_reset = v_leak = 0``. Node names
    are ``synapse_<i>``, ``neuron_<i>``, ``flatten_<i>`` with ``i`` the spec layer index (no dots:
    snntorch's importer names torch modules after them)."""
    nir = _nir()
    check_dt(dt)
    spec: ArchSpec = model.spec
    dscale = float(model.profile.decay_scale)
    i_decay, v_decay = model.chip_decays()
    if i_decay == 0:
        raise NeurokdError("a current decay of 0 (a current that never decays) has no NIR "
                           "CubaLIF form with a finite input weight w_in; not exported")
    if getattr(model, "has_bias", False) and i_decay != model.profile.decay_scale:
        raise NeurokdError("biases with a current decay below 1: Loihi adds a bias to the voltage, "
                           "NIR's Affine adds it to the synaptic current; not exported")
    layers = iter(_model_layers(model))
    nodes: Dict[str, Any] = {}
    names: List[str] = []
    in_shape = tuple(spec.input_shape)
    nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    names.append("input")
    if isinstance(spec.layers[0], DenseLayer) and len(in_shape) > 1:
        nodes["flatten_input"] = nir.Flatten(input_type={"input": np.array(in_shape)},
                                             start_dim=0, end_dim=-1)
        names.append("flatten_input")

    def tau_of(decay: int) -> float:
        return dt * NEVER_DECAYS if decay == 0 else dt * dscale / decay

    for i, (layer, out_shape) in enumerate(zip(spec.layers, spec.shapes())):
        if isinstance(layer, FlattenLayer):
            nodes[f"flatten_{i}"] = nir.Flatten(input_type={"input": np.array(in_shape)},
                                                start_dim=0, end_dim=-1)
            names.append(f"flatten_{i}")
            in_shape = out_shape
            continue
        row = next(layers)
        w = row["weight"].astype(np.float32)
        bias = row["bias"]
        if isinstance(layer, ConvLayer):
            w = w.reshape(w.shape[0], w.shape[1], w.shape[2], w.shape[3])
            b = np.zeros(w.shape[0], np.float32) if bias is None else bias.astype(np.float32)
            nodes[f"synapse_{i}"] = nir.Conv2d(
                input_shape=tuple(in_shape[1:]), weight=w, stride=np.array(layer.stride2),
                padding=np.array(layer.padding2), dilation=np.array([1, 1]), groups=1, bias=b)
        else:
            w = w.reshape(w.shape[0], -1)
            nodes[f"synapse_{i}"] = (nir.Linear(weight=w) if bias is None else
                                     nir.Affine(weight=w, bias=bias.astype(np.float32)))
        names.append(f"synapse_{i}")
        full = tuple(out_shape)
        thr = np.full(full, row["threshold"], np.float32)
        zeros = np.zeros(full, np.float32)
        tau_mem = tau_of(v_decay)
        if i_decay == model.profile.decay_scale:
            nodes[f"neuron_{i}"] = nir.LIF(
                tau=np.full(full, tau_mem, np.float32), r=np.full(full, tau_mem / dt, np.float32),
                v_leak=zeros, v_threshold=thr, v_reset=zeros.copy())
        else:
            tau_syn = tau_of(i_decay)
            nodes[f"neuron_{i}"] = nir.CubaLIF(
                tau_syn=np.full(full, tau_syn, np.float32), tau_mem=np.full(full, tau_mem, np.float32),
                r=np.full(full, tau_mem / dt, np.float32), v_leak=zeros, v_threshold=thr,
                v_reset=zeros.copy(), w_in=np.full(full, tau_syn / dt, np.float32))
        names.append(f"neuron_{i}")
        in_shape = out_shape
    nodes["output"] = nir.Output(output_type={"output": np.array(in_shape)})
    names.append("output")
    edges = list(zip(names[:-1], names[1:]))
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {})
    except ValueError as exc:  # nir's type inference; a bug here, not a user error
        raise NeurokdError(f"the NIR graph of this network does not type-check: {exc}") from None
    return graph


def export_nir(model: nn.Module, path: Union[str, Path], meta: Dict[str, Any],
               dt: float = DEFAULT_DT, replace: bool = True) -> Path:
    """Write ``model`` as a NIR graph (HDF5, ``nir.write``) at ``path``, atomically; the graph's
    metadata carries a ``neurokd`` JSON record (encoder, time steps, window, classes, dataset,
    spec, dt) so that ``is_neurokd_nir`` recognises it and a reader knows how it was fed."""
    from neurokd.fileio import atomic_path

    nir = _nir()
    record = {k: meta[k] for k in ("encoder", "timesteps", "dataset", "num_classes", "input_shape")
              if k in meta}
    record.update({"format_version": FORMAT_VERSION, "spec": model.spec.model_dump(),
                   "hardware": model.profile.name, "dt": float(dt),
                   "window_pad": int(model.window_pad),
                   "model": "quantized" if model.quantized else "float"})
    if model.quantized:
        record["bits"] = list(model.bits)
    graph = snn_to_nir(model, dt, metadata={META_KEY: json.dumps(record)})
    with atomic_path(path, replace=replace) as tmp:
        nir.write(str(tmp), graph)
    return Path(path)


def read_nir_meta(path: Union[str, Path]) -> Dict[str, Any]:
    """The ``neurokd`` record of a NIR file that ``export_nir`` wrote; NeurokdError otherwise."""
    import h5py

    p = Path(path)
    check_hdf5(p, "NIR graph")
    try:
        with h5py.File(p, "r") as h:
            raw = h["node"]["metadata"][META_KEY][()] if "node" in h and "metadata" in h["node"] \
                and META_KEY in h["node"]["metadata"] else None
    except (OSError, KeyError, TypeError):
        raise NeurokdError(f"{p}: not a NIR file") from None
    if raw is None:
        raise NeurokdError(f"{p}: a NIR file without neurokd's metadata")
    try:
        record = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise NeurokdError(f"{p}: unreadable neurokd metadata") from None
    if not isinstance(record, dict):
        raise NeurokdError(f"{p}: unreadable neurokd metadata")
    return record


def is_neurokd_nir(path: Union[str, Path]) -> bool:
    """True for a NIR file neurokd exported (the only kind ``export --force`` may replace)."""
    try:
        read_nir_meta(path)
    except NeurokdError:
        return False
    return True


# ---------------------------------------------------------------- running snntorch's import
def snntorch_spikes(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output spikes ``(N, K, T)`` of an snntorch network (``nn.Sequential`` of snntorch layers
    with ``init_hidden=True``, or the module ``snntorch.import_nir.import_from_nir`` returns) on
    frames ``x`` ``(N, *shape, T)``, one sample (a batch of one) at a time from a zero state:
    snntorch's importer turns NIR's ``Flatten`` into ``torch.nn.Flatten(0, -1)``, which would
    flatten a larger batch into one vector."""
    def reset() -> None:
        for m in net.modules():
            for name in ("syn", "mem"):
                if isinstance(getattr(m, name, None), torch.Tensor):
                    setattr(m, name, torch.zeros(0))

    outs = []
    with torch.no_grad():
        for n in range(x.shape[0]):
            reset()
            steps = []
            for t in range(x.shape[-1]):
                o = net(x[n:n + 1, ..., t].to(torch.float32))
                steps.append((o[0] if isinstance(o, tuple) else o).reshape(-1))
            outs.append(torch.stack(steps, dim=-1))
    return torch.stack(outs)
