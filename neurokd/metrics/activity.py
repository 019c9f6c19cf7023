"""Measured activity of an SNN on data: events into each layer, synaptic operations, neuron updates,
output spikes, activation sparsity, model bytes.

The definitions (NeuroBench's, for event-driven hardware):

* **synaptic operations**: every input event (a non-zero spike, or graded spike, entering a layer)
  costs one operation per synapse it fans out to: ``synops = sum over events of fan_out(input)``.
  The fan-out of an input is the number of neurons of the layer connected to it, zero weights
  included (netx writes dense weights): the layer's units for a dense layer; for a convolution,
  the channels times the output positions whose receptive field holds the input (fewer at a
  padded border, none for rows a stride skips). The fan-outs of a layer's inputs add up to its
  connections; the resource model's ``synapses`` also count a padded convolution's connections
  to the padding, which no event ever crosses.
* **neuron updates**: Loihi updates every neuron at every time step of the window the network
  runs (the ``T`` input frames and the ``L`` trailing frames), so ``neurons · window``. An update
  is *active* when the neuron received at least one input event at that step through its
  connectivity (any input of its receptive field), or when the layer has biases (a bias is input
  at every step); the others are *inactive*.
* **activation sparsity**: ``1 − non-zero activations / all activations``, over the output
  spikes of every spiking layer at every step.

Counted over the whole window of each sample; ``activity_counts`` sums over a batch.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurokd.models.spec import ArchSpec, ConvLayer, FlattenLayer


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The output spikes of every spiking layer of ``model`` (a SpikingNet or QuantSpikingNet) on
    ``x``, in order."""
    model.eval()
    return model.spiking_outputs(x)


def weight_bits(model: nn.Module) -> List[int]:
    """Bits of each spiking layer's weights on the chip: the quantized bit-widths, or 8 for slayer
    students (slayer rounds their weights to Loihi's 8-bit mantissas)."""
    return list(getattr(model, "bits", None) or [8] * model.spec.num_spiking_layers)


def _spiking_layers(spec: ArchSpec):
    """(spec index, layer, input shape, output shape) of every spiking layer."""
    in_shape = tuple(spec.input_shape)
    for i, (layer, out_shape) in enumerate(zip(spec.layers, spec.shapes())):
        if not isinstance(layer, FlattenLayer):
            yield i, layer, in_shape, out_shape
        in_shape = out_shape


def fan_out(layer, in_shape, out_shape) -> torch.Tensor:
    """Per input of a spiking layer, the number of synapses it feeds (shape ``in_shape``)."""
    if not isinstance(layer, ConvLayer):
        return torch.full(tuple(in_shape), float(out_shape[0]))
    (kh, kw), stride, padding = layer.kernel2, layer.stride2, layer.padding2
    cover = F.conv_transpose2d(torch.ones(1, 1, *out_shape[1:]), torch.ones(1, 1, kh, kw),
                               stride=stride, padding=padding)
    # rows and columns past the last receptive field are read by no output
    cover = F.pad(cover, (0, in_shape[2] - cover.shape[-1], 0, in_shape[1] - cover.shape[-2]))
    return (cover[0] * out_shape[0]).expand(*in_shape)


def nonzero_fan_out(layer, weight: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Per input of a spiking layer, the number of non-zero weights it feeds (NeuroBench counts
    an operation only where the weight is not zero)."""
    nz = (weight != 0).to(torch.float32)
    if not isinstance(layer, ConvLayer):
        return nz.reshape(nz.shape[0], -1).sum(0).reshape(tuple(in_shape))
    cover = F.conv_transpose2d(torch.ones(1, nz.shape[0], *out_shape[1:]), nz,
                               stride=layer.stride2, padding=layer.padding2)
    return F.pad(cover, (0, in_shape[2] - cover.shape[-1], 0, in_shape[1] - cover.shape[-2]))[0]


def _active_steps(layer, h: torch.Tensor, out_shape) -> torch.Tensor:
    """Per sample, the number of (neuron, step) pairs in which the neuron received an event."""
    event = (h != 0)
    if not isinstance(layer, ConvLayer):
        return event.flatten(1, -2).any(1).sum(-1).to(torch.float64) * out_shape[0]
    n, _, height, width, steps = event.shape
    frames = event.any(1).permute(0, 3, 1, 2).reshape(n * steps, 1, height, width).float()
    hits = F.conv2d(frames, torch.ones(1, 1, *layer.kernel2), stride=layer.stride2,
                    padding=layer.padding2) > 0
    return hits.reshape(n, -1).sum(-1).to(torch.float64) * out_shape[0]


@torch.no_grad()
def activity_counts(model: nn.Module, x: torch.Tensor,
                    outputs: Optional[List[torch.Tensor]] = None) -> List[Dict[str, Any]]:
    """Per spiking layer, totals over the batch ``x``: input events, synaptic operations, neuron
    updates (all and active) and output spikes (see the module docstring). ``outputs``: the
    layers' output spikes on ``x``, if already computed (``layer_outputs``)."""
    outputs = layer_outputs(model, x) if outputs is None else outputs
    inputs = [model.first_layer_input(x)] + outputs[:-1]
    biased = bool(getattr(model, "has_bias", False))
    rows = []
    for k, ((i, layer, in_shape, out_shape), h, out) in enumerate(
            zip(_spiking_layers(model.spec), inputs, outputs)):
        h = h.reshape(h.shape[0], *in_shape, h.shape[-1])
        event = (h != 0)
        nonzero = nonzero_fan_out(layer, model.chip_weights(k).cpu(), in_shape, out_shape)
        neurons = int(np.prod(out_shape))
        steps = int(out.shape[-1])
        updates = float(neurons * steps * h.shape[0])
        rows.append({
            "layer": i, "kind": layer.type,
            "events_in": float(event.sum()),
            "synops": float((event.to(torch.float64) * fan_out(layer, in_shape, out_shape)
                             .to(torch.float64)[..., None]).sum()),
            "synops_nonzero": float((event.to(torch.float64) * nonzero.to(torch.float64)[..., None])
                                    .sum()),
            "neuron_updates": updates,
            "active_neuron_updates": updates if biased else float(_active_steps(layer, h, out_shape).sum()),
            "spikes_out": float((out != 0).sum()),
            "steps": steps, "neurons": neurons, "inputs": int(np.prod(in_shape)),
        })
    return rows


def measured_synops(model: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
    """Synaptic operations and input events per inference, per layer and in total, on ``x``."""
    per_layer = []
    for row in activity_counts(model, x):
        events = row["events_in"] / x.shape[0]
        per_layer.append({"layer": row["layer"], "events_in": events,
                          "input_rate": events / (row["inputs"] * row["steps"]),
                          "synops": row["synops"] / x.shape[0]})
    return {"synops": float(sum(r["synops"] for r in per_layer)), "layers": per_layer}


def model_bytes(model: nn.Module) -> int:
    """Weight memory of the network on the chip: every weight at its layer's bit-width (8 bits for
    slayer students, the quantized bit-widths otherwise), distinct weights only."""
    from neurokd.metrics.resources import layer_resources

    rows = layer_resources(model.spec, model.profile)
    return int(sum(np.ceil(r.params * b / 8) for r, b in zip(rows, weight_bits(model))))


def split_synops(model, split, encoder: str, timesteps: int, seed: int) -> float:
    """Synaptic operations per inference of a trained ``model``, measured on ``split``
    (``neurokd.metrics.activity``: every input event times its fan-out)."""
    from neurokd.training import encoded_batches, make_prepare

    model = model.cpu().eval()
    prepare = make_prepare(encoder, timesteps, model.window_pad)
    total, count = 0.0, 0
    for xb, _ in encoded_batches(split, prepare, seed):
        total += measured_synops(model, xb)["synops"] * len(xb)
        count += len(xb)
    return total / max(count, 1)
