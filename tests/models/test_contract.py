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


def test_the_one_float_to_chip_mapping_rounds_as_slayer_does():
    """chip_neuron is the family's only float → integer mapping; slayer (and its netx export)
    computes the same integers from the same floats, including the rounding edges."""
    import random

    from neurokd.hardware import load_profile
    from neurokd.models.cuba.net import _slayer
    from neurokd.models.cuba.numerics import chip_neuron
    from neurokd.models.spec import NeuronSpec

    profile = load_profile("loihi2")
    slayer = _slayer()
    rng = random.Random(0)
    edges = [0.0, 1.0, 0.25, 0.03, 0.5 / 4096, 1.5 / 4096, 2.5 / 4096, 4095.5 / 4096]
    decays = edges + [rng.random() for _ in range(40)]
    thresholds = [1.25, 0.01, 64.0, 100.3, 1 / 64, 3 / 128, 1 / 128] + [rng.uniform(0.02, 300)
                                                                        for _ in range(41)]
    seen = set()
    for cd, vd, th in zip(decays, reversed(decays), thresholds):
        n = slayer.neuron.cuba.Neuron(threshold=th, current_decay=cd, voltage_decay=vd,
                                      scale=profile.weight_scale)
        chip = chip_neuron(NeuronSpec(threshold=th, current_decay=cd, voltage_decay=vd), profile)
        assert (chip.i_decay, chip.v_decay, chip.vth_mant) == (
            int(n.cx_current_decay), int(n.cx_voltage_decay), int(n.v_th_mant)), (cd, vd, th)
        seen.add(chip.i_decay)
    assert {0, 2, 4096} <= seen  # half-way decays round to even, as torch.round does
