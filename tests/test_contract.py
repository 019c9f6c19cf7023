"""The SpikingModel contract: float and quantized networks answer the same questions the same way."""

import torch

from neurokd.metrics.activity import layer_outputs
from neurokd.models.contract import SpikingModel
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.cuba.quantized import QuantSpikingNet
from neurokd.models.spec import ArchSpec

SPEC = ArchSpec(input_shape=[1, 8, 8], layers=[
    {"type": "conv", "channels": 4, "kernel": 3, "stride": 2, "padding": 1},
    {"type": "flatten"}, {"type": "dense", "units": 12}, {"type": "dense", "units": 10}])


def nets():
    torch.manual_seed(0)
    snn = SpikingNet(SPEC).eval()
    x = (torch.rand(3, 1, 8, 8, 10) < 0.4).float()
    with torch.no_grad():
        snn(x)
        for block in snn.blocks:
            if getattr(block, "synapse", None) is not None:
                block.synapse.weight.mul_(3)
    q = QuantSpikingNet.from_snn(snn, [8, 8, 8], "fixed").eval()
    return snn, q, x


def test_both_families_of_output_keep_the_contract():
    snn, q, x = nets()
    assert isinstance(snn, SpikingModel) and isinstance(q, SpikingModel)
    assert (snn.quantized, q.quantized) == (False, True)
    assert snn.family == q.family == "cuba"
    with torch.no_grad():
        for model in (snn, q):
            outs = model.forward_intermediates(x)
            assert len(outs) == len(SPEC.layers)
            assert torch.equal(outs[-1], model(x))
            assert outs[1].shape == (3, 4 * 4 * 4, outs[0].shape[-1])  # the flatten layer's output
            spiking = model.spiking_outputs(x)
            assert [o.shape[1] for o in spiking] == [4, 12, 10]
            assert all(torch.equal(a, b) for a, b in zip(layer_outputs(model, x), spiking))
            assert spiking[-1].sum() > 0


def test_both_networks_report_the_chip_decays_they_compute_with():
    snn, q, _ = nets()
    block = next(b for b in snn.blocks if getattr(b, "neuron", None) is not None)
    assert snn.chip_decays() == (int(block.neuron.cx_current_decay),
                                 int(block.neuron.cx_voltage_decay))
    assert q.chip_decays() == snn.chip_decays()  # quantization keeps the neuron's decays
    assert all(0 <= d <= snn.profile.decay_scale for d in snn.chip_decays())
