"""The one contract every spiking network of neurokd keeps, whatever its neuron family and whether
it computes in floats or in the chip's integers. The stages (training, QAT, conversion, export,
NIR, the energy report) ask a model through it, never by probing for attributes."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from neurokd.models.spec import FlattenLayer


class SpikingModel(nn.Module):
    """A feed-forward SNN built from an ``ArchSpec``.

    Every model has ``spec`` (the architecture), ``profile`` (the hardware profile whose integer
    rules it follows), ``window_pad`` (zero frames a sample needs after its input: one step of
    delay per spiking layer), and says:

    - ``family``: the neuron family (``"cuba"``: Loihi's current-based LIF with binary spikes;
      ``"sdnn"``: sigma-delta neurons with graded spikes, ``neurokd.models.sigma_delta``);
    - ``quantized``: True when it computes in the chip's integers exactly as Lava does (after QAT
      or conversion), False for a float network that trains with surrogate gradients;
    - ``forward(x)``: output spikes ``(N, K, T)`` of input frames ``(N, *input_shape, T)``;
    - ``forward_intermediates(x)``: the output of every layer of the spec, in order, flatten
      layers included (the last is ``forward``'s result);
    - ``spiking_outputs(x)``: the output spikes of its spiking layers only, in order;
    - ``chip_decays()``: its neurons' current and voltage decays as the chip's integers.
    """

    family: str = "cuba"
    quantized: bool = False

    def forward_intermediates(self, x: torch.Tensor) -> List[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def chip_decays(self) -> Tuple[int, int]:  # pragma: no cover
        raise NotImplementedError

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, K)`` from the output layer's ``(N, K, T)`` result: spike counts, or
        (sigma-delta) the logits read at the window's last step."""
        return out.sum(-1)

    def first_layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the first synapse receives for the encoded frames ``x``: the frames themselves,
        or (sigma-delta) the input layer's graded messages."""
        return x

    def chip_weights(self, i: int) -> torch.Tensor:
        """Spiking layer ``i``'s weights as the chip holds them (``(out, in)`` or ``(out, in, kh,
        kw)``; a weight that rounds to zero is zero)."""
        raise NotImplementedError  # pragma: no cover

    def spiking_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = self.forward_intermediates(x)
        return [o for o, layer in zip(outs, self.spec.layers) if not isinstance(layer, FlattenLayer)]
