"""DNN → SNN conversion methods (registry ``CONVERT_METHODS``): what each does, as a record that
``neurokd.convert.dnn.convert_dnn`` reads.

``clip``: where each layer's threshold starts, ``max`` (the layer's largest calibration
activation) or ``percentile`` (``ConvertConfig.percentile`` of its activations); ``fine_tuned``:
whether a copy of the DNN with the SNN's quantized weights and spike-count activations is
fine-tuned from the full-precision DNN (quantization through distillation) before the transfer.
A test keeps the registry equal to ``ConvertConfig.method``.
"""

from __future__ import annotations

from dataclasses import dataclass

from neurokd.registry import Registry


@dataclass(frozen=True)
class ConvertMethod:
    name: str
    clip: str = "max"          # "max" or "percentile"
    fine_tuned: bool = False
    description: str = ""


CONVERT_METHODS: Registry[ConvertMethod] = Registry("conversion method")

for _m in (
    ConvertMethod("plain", description="weights transferred, each layer balanced on its largest "
                                       "activation, no training"),
    ConvertMethod("qkd", clip="percentile", fine_tuned=True,
                  description="quantization through distillation: clips and quantized weights "
                              "fine-tuned from the DNN, then transferred"),
):
    CONVERT_METHODS.register(_m.name)(_m)
