"""Measured activity of an SNN on data: spikes into each layer, synaptic operations, model bytes.

Synaptic operations per inference (NeuroBench's definition for event-driven hardware): every input
event (a non-zero spike or graded spike entering a layer) costs one operation per synapse it
fans out to, ``synops = sum_layers events_in · synapses / inputs``. Counted over the whole sample
window, averaged over the samples given.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn

from neurokd.models.spec import FlattenLayer


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The input of every spiking layer of ``model`` (a SpikingNet or QuantSpikingNet) on ``x``."""
    model.eval()
    if hasattr(model, "forward_intermediates"):  # slayer blocks, flatten blocks included
        outs = model.forward_intermediates(x)
        spiking = [o for o, layer in zip(outs, model.spec.layers) if not isinstance(layer, FlattenLayer)]
    else:
        spiking = []
        model(x, record=spiking)
    return [x] + spiking[:-1]


def measured_synops(model: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
    """Synaptic operations and input events per inference, per layer and in total, on ``x``."""
    from neurokd.nas.resources import layer_resources

    rows = layer_resources(model.spec, model.profile)
    inputs = layer_inputs(model, x)
    per_layer = []
    for row, h in zip(rows, inputs):
        n_in = int(np.prod(h.shape[1:-1]))
        events = float((h != 0).sum()) / h.shape[0]
        per_layer.append({"layer": row.layer, "events_in": events,
                          "input_rate": events / (n_in * h.shape[-1]),
                          "synops": events * row.synapses / n_in})
    return {"synops": float(sum(r["synops"] for r in per_layer)), "layers": per_layer}


def model_bytes(model: nn.Module) -> int:
    """Weight memory of the network on the chip: every weight at its layer's bit-width (8 bits for
    slayer students, the quantized bit-widths otherwise), distinct weights only."""
    from neurokd.nas.resources import layer_resources

    bits = list(getattr(model, "bits", None) or [8] * model.spec.num_spiking_layers)
    rows = layer_resources(model.spec, model.profile)
    return int(sum(np.ceil(r.params * b / 8) for r, b in zip(rows, bits)))
