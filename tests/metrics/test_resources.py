"""One resource model: the search's feasibility filter, the chip-fit check of export and the
report's "fits one chip" all read ``neurokd.metrics.resources.chip_fit``."""

import random

import pytest
import torch

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.metrics import resources
from neurokd.metrics.resources import (Budget, ChipFit, check_fit, chip_fit, fit_violation,
                                       layer_resources, summary)
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer
from neurokd.nas.search import sample_feasible, run_search
from neurokd.nas.space import SearchSpace, arch_key

LOIHI1, LOIHI2 = load_profile("loihi1"), load_profile("loihi2")
# A dense layer reading 5000 inputs: more than the 4096 input axons of a Loihi 2 core.
WIDE_DENSE = ArchSpec(input_shape=[5000], layers=[DenseLayer(units=10)])
WIDE_REASON = ("layer 0 (dense): each neuron reads 5000 inputs, more than the 4096 input axons a "
               "loihi2 core reads (max_fan_in_per_core)")


@pytest.fixture(scope="module")
def digits():
    return pipeline.load_data(build_config(overrides=["data.limit=200"]))


def test_a_dense_layer_over_the_fan_in_limit_is_refused_by_the_search_and_by_export_alike():
    # Its totals alone are small (2 cores: the 5000 inputs split over 2 cores), so a
    # filter on totals would admit it; the chip's rule does not.
    res, problem = Budget().assess(WIDE_DENSE, LOIHI2, 8)
    assert res["cores"] == 2 and Budget().violation(res, LOIHI2) is None
    assert problem == WIDE_REASON == fit_violation(WIDE_DENSE, LOIHI2)
    assert Budget(max_cores=100, max_synops=1e12).assess(WIDE_DENSE, LOIHI2, 8)[1] == WIDE_REASON
    with pytest.raises(NeurokdError) as refused:
        check_fit(WIDE_DENSE, LOIHI2)
    assert str(refused.value) == (f"the network does not fit the chip: {WIDE_REASON}; pass "
                                  "--ignore-fit to go on anyway")
    with pytest.raises(NeurokdError, match="does not fit the chip: layer 0 .dense.: each neuron "
                                           "reads 5000 inputs"):
        pipeline.check_fit_chip(WIDE_DENSE, LOIHI2, [8])
    # a space holding only such networks has nothing to offer, and says why
    only_wide = SearchSpace(timesteps=8, conv_layers=(0, 0), dense_layers=(1, 1), units=[16])
    with pytest.raises(NeurokdError, match="no architecture in the search space meets the budget"
                                           ".*each neuron reads 5000 inputs"):
        sample_feasible(only_wide, random.Random(0), (5000,), 10, LOIHI2, Budget(), set(), tries=20)


def test_chip_fit_counts_what_layer_resources_and_summary_count():
    spec = ArchSpec(input_shape=[64], layers=[DenseLayer(units=32), DenseLayer(units=10)])
    fit = chip_fit(spec, LOIHI2)
    assert isinstance(fit, ChipFit) and fit.fits and fit.weight_bits == (8, 8)
    assert list(fit.layers) == layer_resources(spec, LOIHI2)
    assert fit.cores == summary(spec, LOIHI2, 8)["cores"] == 2
    res, problem = Budget().assess(spec, LOIHI2, 8)
    assert problem is None and res == summary(spec, LOIHI2, 8)
    assert chip_fit(spec, LOIHI2, [4, 6]).weight_bits == (4, 6)


def test_every_candidate_the_search_returns_passes_the_export_check(digits):
    """A seeded search on digits on a chip whose cores read at most 256 input axons: a dense layer
    after a stride-1 convolution of 8 or more channels reads 512 or more, and a filter on the
    totals alone admits such networks within the budget."""
    narrow = LOIHI2.model_copy(update={"max_fan_in_per_core": 256})
    space = SearchSpace(timesteps=4, conv_layers=(0, 1), dense_layers=(1, 2),
                        channels=[4, 8, 16, 32], kernels=[3], strides=[1, 2],
                        units=[16, 32, 64, 128])
    budget = Budget(max_cores=4)
    rng = random.Random(0)
    drawn = [space.sample(rng, digits.input_shape, digits.num_classes) for _ in range(200)]
    admitted_by_totals = [s for s in drawn
                          if budget.violation(summary(s, narrow, 4), narrow) is None]
    assert any(fit_violation(s, narrow) is not None for s in admitted_by_totals)
    for strategy in ("random", "evolution"):
        found = run_search(digits, space, narrow, budget, "params", strategy, candidates=30,
                           batches=1, batch_size=8, seed=5, progress=False)
        cands = found["ranked"]
        assert len(cands) == len({arch_key(c.spec) for c in cands}) == 30
        for c in cands:
            check_fit(c.spec, narrow)  # the export's check, at the student's 8-bit weights
            pipeline.check_fit_chip(c.spec, narrow, [8] * c.spec.num_spiking_layers)
            assert c.resources["cores"] <= 4


def test_the_search_on_mnist_sized_inputs_returns_only_networks_that_fit():
    """On 28x28 inputs, within 4 cores, the space holds networks whose dense layer reads 6272
    inputs (32 channels at stride 2): totals of 4 cores, refused by the export; the search's draws
    never include them."""
    space = SearchSpace(timesteps=8)
    over = space.build([ConvLayer(channels=32, kernel=3, stride=2, padding=1)],
                       [DenseLayer(units=32)], (1, 28, 28), 10)
    assert summary(over, LOIHI2, 8)["cores"] == 4
    assert Budget(max_cores=4).violation(summary(over, LOIHI2, 8), LOIHI2) is None
    assert Budget(max_cores=4).assess(over, LOIHI2, 8)[1] == fit_violation(over, LOIHI2) == (
        "layer 2 (dense): each neuron reads 6272 inputs, more than the 4096 input axons a loihi2 "
        "core reads (max_fan_in_per_core)")
    rng, seen = random.Random(0), set()
    for _ in range(40):
        cand = sample_feasible(space, rng, (1, 28, 28), 10, LOIHI2, Budget(max_cores=4), seen)
        check_fit(cand.spec, LOIHI2)


def _specs_near_the_limits():
    """Specs drawn from spaces whose inputs put dense fan-ins around 4096 (16 channels of 16x16 is
    4096 exactly) and whose sizes reach a chip's cores, with the profiles they are checked on:
    Loihi 2, Loihi 1 (1024 neurons per core) and a 6-core Loihi 2."""
    small_chip = LOIHI2.model_copy(update={"cores_per_chip": 6})
    space = SearchSpace(timesteps=8, conv_layers=(0, 2), dense_layers=(1, 2),
                        channels=[8, 15, 16, 17, 32], kernels=[3, 5], strides=[1, 2],
                        units=[64, 256, 1024, 4096])
    rng = random.Random(7)
    out = []
    for shape in ((1, 16, 16), (1, 28, 28), (4096,), (4097,)):
        for _ in range(60):
            spec = space.sample(rng, shape, 10)
            out += [(spec, profile) for profile in (LOIHI2, LOIHI1, small_chip)]
    return out


def test_the_search_filter_and_the_export_check_agree_near_the_limits():
    pairs = _specs_near_the_limits()
    fan_ins = {r.fan_in for spec, _ in pairs for r in layer_resources(spec, LOIHI2)}
    assert 4096 in fan_ins and any(f > 4096 for f in fan_ins)  # both sides of the limit
    reasons = set()
    for spec, profile in pairs:
        problem = fit_violation(spec, profile)
        # no budget of the user's: the search admits exactly what the export accepts
        assert Budget().assess(spec, profile, 8)[1] == problem
        # a budget above the chip does not lift the chip's limits
        assert Budget(max_cores=10 * profile.cores_per_chip).assess(spec, profile, 8)[1] == problem
        if problem is None:
            check_fit(spec, profile)
        else:
            reasons.add(problem.split("(")[-1])
            with pytest.raises(NeurokdError, match="does not fit the chip"):
                check_fit(spec, profile)
    assert reasons == {"max_fan_in_per_core)", "cores_per_chip)"}
    assert any(fit_violation(s, p) is None for s, p in pairs)


def test_search_export_and_report_all_call_chip_fit(monkeypatch):
    """The three decision points go through the one function: replacing it changes all three."""
    from neurokd.metrics.activity import activity_counts
    from neurokd.metrics.energy import snn_costs
    from neurokd.models.cuba.net import SpikingNet

    calls = []
    real = resources.chip_fit

    def recording(spec, profile, weight_bits=None, input_bits=0):
        calls.append(arch_key(spec))
        return real(spec, profile, weight_bits, input_bits)

    monkeypatch.setattr(resources, "chip_fit", recording)
    space = SearchSpace(timesteps=4, conv_layers=(0, 0), dense_layers=(1, 1), units=[16])
    cand = sample_feasible(space, random.Random(0), (64,), 10, LOIHI2, Budget(), set())
    assert calls == [arch_key(cand.spec)]  # the search
    with pytest.raises(NeurokdError, match="each neuron reads 5000 inputs"):
        pipeline.check_fit_chip(WIDE_DENSE, LOIHI2, [8])  # export's check
    assert calls[-1] == arch_key(WIDE_DENSE)
    net = SpikingNet(WIDE_DENSE, LOIHI2).eval()
    x = (torch.rand(1, 5000, 3) < 0.1).float()
    report = snn_costs(net, activity_counts(net, x), samples=1)  # the report
    assert calls[-1] == arch_key(WIDE_DENSE) and len(calls) == 3
    assert report["fits"] is False and report["fit_problem"] == WIDE_REASON
    assert report["cores"] == 2 == sum(r["cores"] for r in report["layers"])

    # a stricter rule put in its place is what all three then apply
    def strict(spec, profile, weight_bits=None, input_bits=0):
        fit = real(spec, profile, weight_bits, input_bits)
        return ChipFit(fit.layers, fit.weight_bits, "no network fits (test)")

    monkeypatch.setattr(resources, "chip_fit", strict)
    with pytest.raises(NeurokdError, match=r"no network fits \(test\)"):
        sample_feasible(space, random.Random(0), (64,), 10, LOIHI2, Budget(), set(), tries=3)
    with pytest.raises(NeurokdError, match=r"no network fits \(test\)"):
        pipeline.check_fit_chip(cand.spec, LOIHI2, [8] * cand.spec.num_spiking_layers)
    small = SpikingNet(cand.spec, LOIHI2).eval()
    counts = activity_counts(small, torch.zeros(1, 64, 3))
    assert snn_costs(small, counts, samples=1)["fit_problem"] == "no network fits (test)"


def test_message_bits_follow_the_family_and_the_input_and_the_chip_limits_them():
    """Binary spikes carry no payload; a graded input its encoder's bits, into the first layer
    only; a sigma-delta network's every layer the profile's message width. A chip refuses a
    payload wider than its messages carry, by the same rule the export checks."""
    from neurokd.metrics.resources import message_bits

    cuba = ArchSpec(input_shape=[64], layers=[DenseLayer(units=32), DenseLayer(units=10)])
    sdnn = cuba.model_copy(update={"neuron": cuba.neuron.model_copy(update={"type": "sdnn"})})
    assert [r.message_bits for r in layer_resources(cuba, LOIHI2)] == [0, 0]
    assert [r.message_bits for r in layer_resources(cuba, LOIHI2, input_bits=8)] == [8, 0]
    assert message_bits(sdnn, LOIHI2) == [LOIHI2.sigma_delta.message_bits] * 2 == [16, 16]
    assert chip_fit(cuba, LOIHI2, input_bits=8).fits
    assert chip_fit(cuba, LOIHI1, input_bits=8).problem == (
        "layer 0 (dense): receives 8-bit messages, more than the 1 bits a loihi1 message "
        "carries (max_message_bits)")
    with pytest.raises(NeurokdError, match="no sigma-delta neurons"):
        message_bits(sdnn, LOIHI1)
    with pytest.raises(NeurokdError, match="direct8 sends 8-bit graded spikes; a loihi1 message "
                                           "carries at most 1"):
        pipeline.check_names(build_config(overrides=["hardware=loihi1", "student.encoder=direct8"]))


def test_the_energy_budget_prices_the_activity_upper_bound_with_the_report_model():
    """Budget.max_energy_j bounds the digital model's energy at the upper bound of the activity
    (every input an event at each of T steps, every neuron spiking at each), the figure the search
    writes per candidate; a network over it is refused, one under it admitted."""
    from neurokd.metrics.pricing import snn_digital

    spec = ArchSpec(input_shape=[64], layers=[DenseLayer(units=32), DenseLayer(units=10)])
    res, problem = Budget().assess(spec, LOIHI2, 8)
    assert problem is None
    counts = [{"synops": 64 * 32 * 8, "neuron_updates": 32 * 10, "events_in": 64 * 8,
               "spikes_out": 32 * 8, "neurons": 32, "weight_bits": 8, "message_bits": 0,
               "memory_bytes": 64 * 32},
              {"synops": 32 * 10 * 8, "neuron_updates": 10 * 10, "events_in": 32 * 8,
               "spikes_out": 10 * 8, "neurons": 10, "weight_bits": 8, "message_bits": 0,
               "memory_bytes": 32 * 10}]  # window: T + one step per layer
    want = snn_digital(counts, "cuba", 24, LOIHI2.energy.digital)["total"]
    assert res["energy_upper_j"] == pytest.approx(want, rel=1e-12)
    assert Budget(max_energy_j=want * 1.01).assess(spec, LOIHI2, 8)[1] is None
    assert "J per inference (upper bound)" in Budget(max_energy_j=want * 0.99).assess(spec, LOIHI2, 8)[1]
    with pytest.raises(NeurokdError, match="--max-energy must be positive"):
        Budget(max_energy_j=0).check()
