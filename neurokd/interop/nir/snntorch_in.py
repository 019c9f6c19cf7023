"""snntorch models in, directly: the module itself (``MODULE:FACTORY`` and its state_dict) written
as a NIR graph by snntorch's own ``export_to_nir``, then imported as any NIR graph is.

snntorch's tutorials write ``snn.Leaky(beta=0.9, init_hidden=True)``: one scalar β for the layer.
snntorch 1.0's ``export_to_nir`` cannot write such a layer (nir's type check refuses a scalar
parameter beside a layer of neurons), so every scalar parameter of a ``Leaky`` or ``Synaptic``
(β, α, threshold) is first broadcast to one value per neuron, the layer's size read from a
forward pass of one sample. Nothing changes in what the network computes; each broadcast is
recorded. What NIR cannot say is stated as an approximation, node by node, as the NIR path
states its own: a ``Leaky`` / ``Synaptic`` that resets by subtraction (snntorch's default)
becomes Loihi's reset to zero; a reset to zero is exact.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.models.dnn_checks import first_line

PARAMETERS = ("beta", "alpha", "threshold")


def _neuron_types() -> Tuple[type, ...]:
    import snntorch as snn

    return (snn.Leaky, snn.Synaptic)


def neuron_shapes(net: nn.Module, input_shape: Sequence[int]) -> Dict[str, Tuple[int, ...]]:
    """Per snntorch neuron module (by name), the shape of one sample's input to it, from one
    forward pass of a zero sample (the hidden states reset before and after)."""
    from snntorch import utils

    kinds = _neuron_types()
    shapes: Dict[str, Tuple[int, ...]] = {}
    hooks = []
    for name, module in net.named_modules():
        if isinstance(module, kinds):
            def hook(mod, inputs, output, name=name):
                shapes.setdefault(name, tuple(int(v) for v in inputs[0].shape[1:]))

            hooks.append(module.register_forward_hook(hook))
    try:
        utils.reset(net)
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    except Exception as exc:  # the user's module, whatever it raises
        raise NeurokdError(f"the snntorch model cannot run one sample of shape "
                           f"{list(input_shape)} ({first_line(exc)})") from None
    finally:
        for h in hooks:
            h.remove()
        utils.reset(net)
    return shapes


def broadcast_scalars(net: nn.Module, input_shape: Sequence[int]) -> List[Dict[str, str]]:
    """Give every ``Leaky`` / ``Synaptic`` one value per neuron for each scalar parameter (in
    place) and state how each resets. Returns the notes, in the approximations' format."""
    shapes = neuron_shapes(net, input_shape)
    kinds = _neuron_types()
    notes: List[Dict[str, str]] = []
    found = 0
    for name, module in net.named_modules():
        if not isinstance(module, kinds):
            continue
        found += 1
        if name not in shapes:
            raise NeurokdError(f"snntorch neuron {name!r} is not reached by the forward pass; "
                               "neurokd imports one feed-forward chain")
        shape = shapes[name]
        for param in PARAMETERS:
            value = getattr(module, param, None)
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                full = torch.full(shape, float(value))
                if isinstance(module._parameters.get(param), nn.Parameter):
                    module._parameters[param] = nn.Parameter(full)
                else:
                    setattr(module, param, full)
                notes.append({"node": name, "kind": "broadcast",
                              "detail": f"scalar {param} {float(value):g} given to each of its "
                                        f"{int(torch.tensor(shape).prod())} neurons (exact)"})
        mechanism = getattr(module, "reset_mechanism", "subtract")
        if mechanism == "subtract":
            notes.append({"node": name, "kind": "reset",
                          "detail": "resets by subtracting the threshold (snntorch's default); "
                                    "Loihi resets to zero"})
        elif mechanism == "none":
            notes.append({"node": name, "kind": "reset",
                          "detail": "does not reset (reset_mechanism 'none'); Loihi resets to zero"})
    if not found:
        raise NeurokdError("the snntorch model has no snn.Leaky or snn.Synaptic neurons")
    return notes


def snntorch_graph(net: nn.Module, input_shape: Sequence[int]) -> Tuple[Any, List[Dict[str, str]]]:
    """``net`` (an snntorch model, built with ``init_hidden=True`` neurons as snntorch's export
    needs) as a NIR graph for samples of ``input_shape``, and the notes of what was done."""
    from snntorch.export_nir import export_to_nir

    net = net.eval()
    notes = broadcast_scalars(net, input_shape)
    try:
        graph = export_to_nir(net, torch.zeros(1, *input_shape), ignore_dims=[0])
    except Exception as exc:
        raise NeurokdError(f"snntorch's export_to_nir cannot write this model "
                           f"({first_line(exc)}); its neurons need init_hidden=True") from None
    return graph, notes


def write_snntorch_graph(ref, input_shape: Sequence[int], path) -> Tuple[List[Dict[str, str]],
                                                                         Dict[str, Any]]:
    """Build the snntorch model of ``ref`` (a ``TeacherRef``: ``MODULE:FACTORY``, its kwargs and
    its state_dict, read and checked before the module is imported), write its NIR graph to
    ``path`` (atomically) and return the notes and the record of where it came from."""
    import nir

    from neurokd.fileio import atomic_path
    from neurokd.interop.teachers import _sha256, factory_teacher, load_weights, read_state_dict

    if ref.kind != "factory":
        raise NeurokdError(f"{ref.ref}: --snntorch takes MODULE:FACTORY (the module that builds "
                           "the snntorch network) with --weights")
    state = read_state_dict(ref.weights)
    net = factory_teacher(ref.ref, ref.kwargs, ref.search_path)
    load_weights(net, ref.weights, ref.ref, state)
    graph, notes = snntorch_graph(net, input_shape)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    source = {"kind": "snntorch", "factory": ref.ref, "kwargs": dict(ref.kwargs),
              "weights": str(ref.weights), "weights_sha256": _sha256(ref.weights)}
    return notes, source
