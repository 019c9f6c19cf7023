"""Training-free architecture search: space, resource model, proxies, strategies, CLI."""

import json
import math
import random

import pytest
import torch

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer, load_spec
from neurokd.nas.proxies import NEEDS, PROXIES, Probe, probe, proxy_descriptions, score_arch
from neurokd.metrics.resources import Budget, layer_resources, summary
from neurokd.nas.search import (Candidate, Scorer, aging_evolution, encoded_batches_for_search,
                                pareto_front, random_search)
from neurokd.nas.space import SearchSpace, arch_key

from tests.conftest import run_cli

LOIHI1, LOIHI2 = load_profile("loihi1"), load_profile("loihi2")
SMALL = SearchSpace(timesteps=6, conv_layers=(0, 1), dense_layers=(1, 1), channels=[4, 8, 16],
                    kernels=[3], strides=[2], units=[16, 32, 64])


@pytest.fixture(scope="module")
def digits():
    return pipeline.load_data(build_config(overrides=["data.limit=200"]))


def test_resource_model_counts_a_known_network_exactly():
    spec = ArchSpec(input_shape=[1, 8, 8], layers=[ConvLayer(channels=4, kernel=3, stride=2, padding=1),
                                                   FlattenLayer(), DenseLayer(units=10)])
    conv, dense = layer_resources(spec, LOIHI2)
    assert (conv.neurons, conv.fan_in, conv.synapses, conv.params) == (64, 9, 576, 36)
    assert (dense.neurons, dense.fan_in, dense.synapses, dense.params) == (10, 64, 640, 640)
    assert (conv.memory_bytes, dense.memory_bytes) == (576, 640)  # 8-bit weights
    assert summary(spec, LOIHI2, 10)["synops"] == (576 + 640) * 10
    # Cores: the most of neurons, synaptic memory and input axons per core (Loihi 1's figures).
    big = ArchSpec(input_shape=[5000], layers=[DenseLayer(units=2000), DenseLayer(units=100)])
    first, second = layer_resources(big, LOIHI1)
    assert first.cores == max(math.ceil(2000 / 1024), math.ceil(5000 * 2000 / 131072),
                              math.ceil(5000 / 4096)) == 77
    assert second.cores == math.ceil(2000 * 100 / 131072) == 2


def test_budget_rejects_what_it_should():
    spec = ArchSpec(input_shape=[64], layers=[DenseLayer(units=32), DenseLayer(units=10)])
    res = summary(spec, LOIHI2, 8)
    assert Budget(max_cores=2).violation(res, LOIHI2) is None
    assert Budget(max_cores=1).violation(res, LOIHI2) == "2 cores > 1"
    assert "bytes of synaptic memory" in Budget(max_memory_bytes=100).violation(res, LOIHI2)
    # synaptic operations: the upper bound, (64·32 + 32·10) synapses × 8 steps
    assert res["synops"] == (64 * 32 + 32 * 10) * 8 == 18944
    assert Budget(max_synops=18944).violation(res, LOIHI2) is None
    assert Budget(max_synops=18943).violation(res, LOIHI2) == \
        "1.894e+04 synaptic operations per inference > 1.894e+04"
    with pytest.raises(NeurokdError, match="--max-cores must be positive"):
        Budget(max_cores=0).check()
    with pytest.raises(NeurokdError, match="--max-synops must be positive"):
        Budget(max_synops=float("nan")).check()


def test_sampled_and_mutated_architectures_stay_in_the_space():
    rng = random.Random(0)
    for _ in range(30):
        spec = SMALL.sample(rng, (1, 8, 8), 10)
        child = SMALL.mutate(spec, rng)
        for s in (spec, child):
            convs = [layer for layer in s.layers if isinstance(layer, ConvLayer)]
            assert len(convs) <= 1 and all(c.channels in (4, 8, 16) for c in convs)
            assert isinstance(s.layers[-1], DenseLayer) and s.layers[-1].units == 10
            s.check_task(10, (1, 8, 8))
    # Flat input: no convolutions are drawn.
    assert not any(isinstance(layer, ConvLayer) for layer in SMALL.sample(rng, (20,), 3).layers)


@pytest.fixture(scope="module")
def all_scores(digits):
    """Every proxy scored together on two clearly different networks (one batch, two seeds)."""
    batches = encoded_batches_for_search(digits, "rate", SMALL, 1, 8, seed=0)
    specs = [ArchSpec(input_shape=[1, 8, 8], layers=[DenseLayer(units=16), DenseLayer(units=10)]),
             ArchSpec(input_shape=[1, 8, 8], layers=[ConvLayer(channels=4, kernel=3, stride=2, padding=1),
                                                     FlattenLayer(), DenseLayer(units=64),
                                                     DenseLayer(units=10)])]
    return batches, specs, [score_arch(spec, LOIHI2, batches, [0, 1]) for spec in specs]


@pytest.mark.parametrize("name", PROXIES.names())
def test_every_proxy_is_finite_deterministic_and_tells_networks_apart(name, all_scores):
    """Alone, a proxy scores exactly what it scores among all the others (a probe computes only
    what its proxies need, and nothing one needs changes another), repeatably; the two
    networks get different scores."""
    batches, specs, together = all_scores
    alone = []
    for spec, scores in zip(specs, together):
        a = score_arch(spec, LOIHI2, batches, [0, 1], [name])[name]
        b = score_arch(spec, LOIHI2, batches, [0, 1], [name])[name]
        assert math.isfinite(a) and a == b == scores[name], (spec, a, b, scores[name])
        alone.append(a)
    assert alone[0] != alone[1]
    fn = PROXIES.get(name)
    assert fn.needs <= set(NEEDS)
    line = proxy_descriptions()[name]
    assert line and "\n" not in line and len(line) < 120


def test_per_sample_gradients_sum_to_the_batch_gradient(digits):
    """The one-pass per-sample gradients agree with autograd's gradient of the summed loss."""
    from neurokd.nas.proxies import probe

    x, y = encoded_batches_for_search(digits, "rate", SMALL, 1, 6, seed=1)[0]
    spec = ArchSpec(input_shape=[1, 8, 8], layers=[ConvLayer(channels=4, kernel=3, stride=2, padding=1),
                                                   FlattenLayer(), DenseLayer(units=10)])
    p = probe(spec, LOIHI2, x, y, seed=0)
    # Reference: one sample at a time.
    for i in (0, 3):
        q = probe(spec, LOIHI2, x[i:i + 1], y[i:i + 1], seed=0)
        for g_all, g_one in zip(p.grads, q.grads):
            assert torch.allclose(g_all[i], g_one[0], rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in p.grads)


def _probe_of(grads=None, spikes=None, jacobian=None) -> Probe:
    spec = ArchSpec(input_shape=[2], layers=[DenseLayer(units=2)])
    return Probe(spec, None, grads, spikes, 0.0, layer_resources(spec, LOIHI2), 4, jacobian)


def test_sample_wise_proxies_compute_their_definitions():
    """The sample-wise proxies on hand-made per-sample gradients, Jacobians and spikes, against
    their formulas worked out by hand."""
    # gradients of 3 samples over one layer of 2 weights
    g = torch.tensor([[[1.0, 2.0]], [[1.0, -2.0]], [[-1.0, 2.0]]])  # (N, out, in)
    p = _probe_of(grads=[g])
    # GradSign: |1 + 1 − 1| + |2 − 2 + 2| / 3 = (1 + 1) / 3
    assert PROXIES.get("gradsign")(p) == pytest.approx(2 / 3)
    # cosines: (1 − 4)/5, (−1 + 4)/5, (−1 − 4)/5 → mean −5/15
    assert PROXIES.get("grad_cosine")(p) == pytest.approx(-1 / 3)
    # ZiCo's mean: per weight mean|g| / population std(g) = 1 / 0.9428 and 2 / 1.8856
    std = math.sqrt(8 / 9)
    assert PROXIES.get("zico_mean")(p) == pytest.approx(math.log(1 / std))
    assert PROXIES.get("grad_stats")(p) == pytest.approx(math.log(2 / math.sqrt(4 / 3)))
    # identical gradients agree fully; a sample without gradient has cosine 0 with the others
    same = _probe_of(grads=[torch.ones(3, 1, 2)])
    assert PROXIES.get("grad_cosine")(same) == pytest.approx(1.0)
    dead = _probe_of(grads=[torch.tensor([[[1.0, 1.0]], [[1.0, 1.0]], [[0.0, 0.0]]])])
    assert PROXIES.get("grad_cosine")(dead) == pytest.approx(2 / 6)
    # Jacobian covariance: uncorrelated Jacobians give the correlation matrix I (every λ = 1)
    k = 1e-5
    eye = _probe_of(jacobian=torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    assert PROXIES.get("jacob_cov")(eye) == pytest.approx(-2 * (math.log(1 + k) + 1 / (1 + k)))
    # identical ones give λ = 2 and 0; a constant Jacobian counts as an eigenvalue 0
    twin = _probe_of(jacobian=torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    expected = -(math.log(2 + k) + 1 / (2 + k) + math.log(k) + 1 / k)
    assert PROXIES.get("jacob_cov")(twin) == pytest.approx(expected, rel=1e-6)
    flat = _probe_of(jacobian=torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    assert PROXIES.get("jacob_cov")(flat) == pytest.approx(
        -(math.log(1 + k) + 1 / (1 + k) + math.log(k) + 1 / k), rel=1e-6)
    # SAHD: 2 samples, one hidden layer of D = 4 neurons, one step; rates 1/2 and 1/4;
    # Hamming distance 3; expected distance 4 (1/2 · 3/4 + 1/4 · 1/2) = 2
    hidden = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])[..., None]
    p = _probe_of(spikes=[hidden, torch.zeros(2, 2, 1)])
    off = 4 - 0.5 * 3 / (2 + 1e-3)
    assert PROXIES.get("sahd")(p) == pytest.approx(math.log(16 - off * off))


def test_a_wide_variant_scores_its_proxy_at_its_own_surrogate_width(all_scores):
    """snip_wide is snip through a surrogate of width 0.3, whatever the search's width; snip
    follows the search's width. A variant scored beside its base proxy gets its own probe."""
    from neurokd.nas.proxies import WIDE_JACOB, WIDE_SNIP, proxy_tau_grad, register_proxy

    batches, specs, _ = all_scores
    spec = specs[1]
    for variant, base, width in (("snip_wide", "snip", WIDE_SNIP),
                                 ("jacob_cov_wide", "jacob_cov", WIDE_JACOB)):
        at_width = score_arch(spec, LOIHI2, batches, [0], [base], tau_grad=width)[base]
        own = score_arch(spec, LOIHI2, batches, [0], [base])[base]
        assert at_width != own  # the width changes the score
        assert proxy_tau_grad(variant, 0.05) == width and proxy_tau_grad(base, 0.05) == 0.05
        for search_width in (None, 0.05):
            both = score_arch(spec, LOIHI2, batches, [0], [base, variant], tau_grad=search_width)
            assert both[variant] == at_width
            assert both[base] == score_arch(spec, LOIHI2, batches, [0], [base],
                                            tau_grad=search_width)[base]
    with pytest.raises(NeurokdError, match="tau_grad must be positive"):
        register_proxy("bad_width", "x", needs=("grads",), tau_grad=0.0)
    assert "bad_width" not in PROXIES.names()


def test_a_probe_computes_only_what_its_proxies_need(digits):
    """synops: a forward pass and no gradients; params: not even the network; an input Jacobian
    row is the gradient of that sample's own output spike count (the samples do not mix)."""
    from neurokd.nas.proxies import proxy_needs

    x, y = encoded_batches_for_search(digits, "rate", SMALL, 1, 4, seed=2)[0]
    spec = ArchSpec(input_shape=[1, 8, 8], layers=[DenseLayer(units=32), DenseLayer(units=10)])
    assert proxy_needs(["synops"]) == {"spikes"} and proxy_needs(["params"]) == set()
    fwd = probe(spec, LOIHI2, x, y, 0, proxy_needs(["synops"]))
    assert fwd.spikes is not None and fwd.grads is None and fwd.jacobian is None
    assert not any(s.requires_grad for s in fwd.spikes)
    bare = probe(spec, LOIHI2, x, y, 0, proxy_needs(["params"]))
    assert bare.weights is None and bare.spikes is None
    full = probe(spec, LOIHI2, x, y, 0)
    assert full.jacobian.shape == (4, 64) and float(full.jacobian.abs().sum()) > 0
    for i in (0, 3):
        one = probe(spec, LOIHI2, x[i:i + 1], y[i:i + 1], 0, {"jacobian"})
        assert torch.allclose(one.jacobian[0], full.jacobian[i], rtol=1e-5, atol=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(fwd.spikes, full.spikes))
    # tau_grad replaces the spec neuron's surrogate width for the probe, and nothing else
    wide = probe(spec, LOIHI2, x, y, 0, {"jacobian"}, tau_grad=0.3)
    neuron = spec.neuron.model_copy(update={"tau_grad": 0.3})
    same = probe(spec.model_copy(update={"neuron": neuron}), LOIHI2, x, y, 0, {"jacobian"})
    assert torch.equal(wide.jacobian, same.jacobian)
    assert not torch.allclose(wide.jacobian, full.jacobian, rtol=0.1)
    with pytest.raises(NeurokdError, match="tau_grad must be positive"):
        probe(spec, LOIHI2, x, y, 0, {"grads"}, tau_grad=0.0)


def test_a_search_scores_only_its_ranking_proxy_unless_asked(digits):
    from neurokd.nas.search import run_search

    common = dict(candidates=6, batches=1, batch_size=8, seed=1, progress=False)
    plain = run_search(digits, SMALL, LOIHI2, Budget(max_cores=8), "synops", "random", **common)
    every = run_search(digits, SMALL, LOIHI2, Budget(max_cores=8), "synops", "random",
                       score_proxies=PROXIES.names(), **common)
    assert plain["scored_proxies"] == ["synops"]
    assert all(set(c.scores) == {"synops"} for c in plain["ranked"])
    assert all(set(c.scores) == set(PROXIES.names()) for c in every["ranked"])
    assert [(arch_key(c.spec), c.scores["synops"]) for c in plain["ranked"]] == \
        [(arch_key(c.spec), c.scores["synops"]) for c in every["ranked"]]
    # a synaptic-operations budget keeps every candidate under it
    cap = sorted(c.resources["synops"] for c in plain["ranked"])[3]
    capped = run_search(digits, SMALL, LOIHI2, Budget(max_synops=cap), "params", "random",
                        candidates=3, batches=1, batch_size=8, progress=False)
    assert all(c.resources["synops"] <= cap for c in capped["ranked"])
    with pytest.raises(NeurokdError, match="unknown proxy 'magic'"):
        run_search(digits, SMALL, LOIHI2, Budget(), "synops", score_proxies=["magic"], **common)


def test_searches_respect_the_budget_and_repeat_with_the_seed(digits):
    budget = Budget(max_cores=3)
    batches = encoded_batches_for_search(digits, "rate", SMALL, 1, 8, seed=0)
    with Scorer(batches, LOIHI2, [0], ["params", "grad_stats", "synops"], workers=1) as scorer:
        a = random_search(SMALL, (1, 8, 8), 10, LOIHI2, budget, scorer, 6, seed=2, progress=False)
        b = random_search(SMALL, (1, 8, 8), 10, LOIHI2, budget, scorer, 6, seed=2, progress=False)
        evo = aging_evolution(SMALL, (1, 8, 8), 10, LOIHI2, budget, scorer, 10, "grad_stats",
                              seed=0, population=4, sample_size=2, progress=False)
    assert [arch_key(c.spec) for c in a] == [arch_key(c.spec) for c in b]
    assert [c.scores for c in a] == [c.scores for c in b]
    for c in a + evo:
        assert c.resources["cores"] <= 3
    assert len({arch_key(c.spec) for c in evo}) == len(evo) == 10
    with pytest.raises(NeurokdError, match="holds only 3 distinct architectures within the budget"):
        random_search(SMALL, (1, 8, 8), 10, LOIHI2, Budget(max_cores=2), scorer, 5, progress=False)
    with pytest.raises(NeurokdError, match="no architecture in the search space meets the budget"):
        random_search(SMALL, (1, 8, 8), 10, LOIHI2, Budget(max_cores=1), scorer, 2, progress=False)


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_the_search_does_not_depend_on_the_worker_count(digits, strategy):
    """Forked workers score exactly as this process does, and evolution makes its children in
    rounds of a fixed size, not of the worker count: the same seed ranks the same architectures
    with the same scores, for 1 or 2 workers."""
    from neurokd.nas.search import run_search

    space = SearchSpace(timesteps=6, conv_layers=(0, 1), dense_layers=(1, 2), channels=[4, 8],
                        kernels=[3], strides=[2], units=[16, 24, 32, 48, 64])
    runs = [run_search(digits, space, LOIHI2, Budget(max_cores=8), "synops", strategy,
                       candidates=30, workers=workers, batches=1, batch_size=8, seed=3,
                       progress=False) for workers in (1, 2)]
    one, two = ([(arch_key(c.spec), c.scores) for c in run["ranked"]] for run in runs)
    assert len(one) == 30 and one == two
    assert arch_key(runs[0]["chosen"].spec) == arch_key(runs[1]["chosen"].spec)


def test_pareto_front_keeps_exactly_the_non_dominated():
    spec = ArchSpec(input_shape=[4], layers=[DenseLayer(units=2)])

    def cand(score, cores, ops):
        return Candidate(spec, {"cores": cores, "synops": ops}, {"p": score})

    # higher score, fewer cores, fewer synaptic operations (the resource model's)
    a, b, c, d, e, f = (cand(3, 2, 100), cand(2, 1, 100), cand(1, 2, 200), cand(4, 3, 300),
                        cand(2, 1, 900), cand(2, 1, 100))
    front = pareto_front([a, b, c, d, e, f], "p")
    # c: a beats it on all three; e: b beats it on synops alone; b and f are equal, both kept
    assert [id(x) for x in front] == [id(b), id(f), id(a), id(d)]  # by cores, then synops
    # fewer synaptic operations alone keep a lower score on the front
    g = cand(1, 2, 50)
    assert g in pareto_front([a, b, g], "p") and len(pareto_front([a, b, g], "p")) == 3


def test_search_cli_writes_a_spec_that_training_accepts_and_refuses_bad_input(tmp_path):
    r = run_cli("search", "--dataset", "digits", "--max-cores", "4", "--candidates", "6",
                "--workers", "2", "--set", "data.limit=300", "--out", "s", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("ranked.csv", "spec.yaml", "search.json", "pareto.png"):
        assert (tmp_path / "s" / name).is_file(), name
    load_spec(tmp_path / "s" / "spec.yaml").check_task(10, (1, 8, 8))
    import csv

    with open(tmp_path / "s" / "ranked.csv", newline="") as fh:
        ranked = list(csv.DictReader(fh))
    assert len(ranked) == 6
    # only the ranking proxy is scored by default
    assert [k for k in ranked[0] if k.startswith("proxy_")] == ["proxy_synops"]
    # the front: exactly the candidates no other beats on score, cores and synaptic operations
    key = [(-float(r["score"]), int(r["cores"]), float(r["synops_upper"])) for r in ranked]
    expected = {r["arch"] for r, k in zip(ranked, key)
                if not any(all(a <= b for a, b in zip(o, k)) and o != k for o in key)}
    front = json.loads((tmp_path / "s" / "search.json").read_text())["pareto_front"]
    assert {r["arch"] for r in front} == expected and len(front) == len(expected) >= 1
    (tmp_path / "space.yaml").write_text("conv_layers: [2, 1]\n")
    (tmp_path / "odd.yaml").write_text("depth: 3\n")
    bad = [(["--proxy", "magic"], "invalid choice: 'magic'"),
           (["--max-cores", "1"], "no architecture in the search space meets the budget"),
           (["--max-synops", "100"], "no architecture in the search space meets the budget"),
           (["--space", "space.yaml"], "conv_layers must be [min, max]"),
           (["--space", "odd.yaml"], "depth: unknown key"),
           (["--candidates", "0"], "--candidates must be positive")]
    for extra, message in bad:
        r = run_cli("search", "--dataset", "digits", "--candidates", "4", "--out", "bad", *extra,
                    cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()


def test_search_options_refuse_bad_values_in_one_line(tmp_path, capsys):
    from neurokd.cli import main

    bad = [(["--max-synops", "-1"], "--max-synops must be positive, got -1.0"),
           (["--max-energy", "0"], "--max-energy must be positive, got 0.0"),
           (["--max-energy", "1e-12", "--set", "data.limit=200"],
            "J per inference (upper bound) > 1e-12"),
           (["--train-epochs", "2"], "--train-epochs goes with --train-top"),
           (["--train-top", "5"], "--train-top 5 is more than the 4 candidates"),
           (["--train-top", "0"], "--train-top must be positive, got 0"),
           (["--probe-tau-grad", "0"], "--probe-tau-grad must be positive, got 0.0")]
    for extra, message in bad:
        code = main(["search", "--candidates", "4", "--out", str(tmp_path / "bad"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit) as exc:
        main(["search", "--max-synops", "lots", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2
    assert "argument --max-synops: expected a number, got 'lots'" in capsys.readouterr().err


def test_search_help_offers_every_registered_proxy(capsys):
    from neurokd.cli import SEARCH_PROXIES, main

    assert sorted(SEARCH_PROXIES) == PROXIES.names()
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in PROXIES.names():
        assert name in text
    for option in ("--max-synops", "--all-proxies", "--train-top", "--train-epochs",
                   "--probe-tau-grad"):
        assert option in text


def test_search_trains_the_top_candidates_and_returns_the_best_by_validation(tmp_path):
    """--train-top K: the K best-ranked candidates (within the budget) trained briefly; spec.yaml
    is the one with the best validation accuracy, and search.json records every trained one.
    --all-proxies scores every registered proxy; --max-synops bounds the candidates."""
    import csv

    import yaml

    (tmp_path / "space.yaml").write_text("timesteps: 4\nconv_layers: [0, 0]\ndense_layers: [1, 1]\n"
                                         "units: [8, 16, 32, 64]\n")
    r = run_cli("search", "--dataset", "digits", "--space", "space.yaml", "--candidates", "2",
                "--max-synops", "6000", "--all-proxies", "--train-top", "2", "--train-epochs", "1",
                "--set", "data.limit=150", "--out", "s", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "s" / "ranked.csv", newline="") as fh:
        ranked = list(csv.DictReader(fh))
    # (64·d + d·10) synapses × 4 steps ≤ 6000: d = 8 and 16 (2368, 4736) fit, 32 (9472) does not
    assert sorted(row["arch"] for row in ranked) == ["d16-d10", "d8-d10"]
    assert [float(row["synops_upper"]) for row in ranked] in ([2368, 4736], [4736, 2368])
    summary = json.loads((tmp_path / "s" / "search.json").read_text())
    assert summary["scored_proxies"][0] == "synops"
    assert sorted(summary["scored_proxies"]) == PROXIES.names()
    assert {f"proxy_{p}" for p in PROXIES.names()} <= set(ranked[0])
    trained = summary["train_top"]["candidates"]
    assert [t["arch"] for t in trained] == [row["arch"] for row in ranked[:2]]
    for t in trained:
        assert 0 <= t["val_accuracy"] <= 1 and 0 <= t["test_accuracy"] <= 1
        assert t["train_epochs"] == 1 and t["train_seconds"] > 0
        assert 0 < t["synops_trained"] <= t["synops_upper"] * 2  # window: T + trailing frames
        assert (tmp_path / "s" / t["spec_file"]).is_file()
    best = max(trained, key=lambda t: (t["val_accuracy"], -t["rank"]))
    assert summary["chosen"]["arch"] == best["arch"]
    assert summary["chosen_by"] == "validation accuracy after --train-top training"
    chosen = yaml.safe_load((tmp_path / "s" / "spec.yaml").read_text())
    assert chosen["layers"] == summary["chosen_spec"]["layers"]
    assert [layer["units"] for layer in chosen["layers"]] == \
        [int(best["arch"].split("-")[0][1:]), 10]


def test_a_searched_spec_trains_at_the_searched_T_unless_told_otherwise(tmp_path):
    """spec.yaml records the search's T and encoder; train-snn --spec trains at that T, and an
    explicit -T wins with one line saying so."""
    import yaml

    (tmp_path / "space.yaml").write_text("timesteps: 6\nconv_layers: [0, 0]\ndense_layers: [1, 1]\n"
                                         "units: [16, 32]\n")
    r = run_cli("search", "--dataset", "digits", "--space", "space.yaml", "--candidates", "2",
                "--encoder", "direct", "--set", "data.limit=200", "--out", "s", "--no-progress",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recorded = yaml.safe_load((tmp_path / "s" / "spec.yaml").read_text())
    assert (recorded["timesteps"], recorded["encoder"]) == (6, "direct")
    quick = ["--set", "data.limit=200", "--set", "student.epochs=1", "--no-progress"]
    r = run_cli("train-snn", "--spec", "s/spec.yaml", "--out", "t", *quick, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = pipeline.load_snn(tmp_path / "t" / "snn.pt")[1]
    assert (meta["timesteps"], meta["encoder"]) == (6, "direct") and "note:" not in r.stdout
    r = run_cli("train-snn", "--spec", "s/spec.yaml", "-T", "4", "--out", "u", *quick, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert pipeline.load_snn(tmp_path / "u" / "snn.pt")[1]["timesteps"] == 4
    notes = [line for line in r.stdout.splitlines() if line.startswith("note:")]
    assert notes == ["note: s/spec.yaml was searched with student.timesteps = 6; this run uses 4, "
                     "as set explicitly"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with two CPUs, standing in for an existing cluster; yields its address."""
    import os

    ray = pytest.importorskip("ray", reason="the optional ray extra is not installed")
    old = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED")
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = old


def test_search_on_a_ray_cluster_scores_exactly_as_local_processes(tmp_path, ray_cluster):
    import csv

    def ranked(out):
        with open(tmp_path / out / "ranked.csv", newline="") as fh:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]

    common = ["search", "--dataset", "digits", "--max-cores", "4", "--candidates", "8",
              "--set", "data.limit=300", "--no-progress"]
    r = run_cli(*common, "--ray", ray_cluster, "--out", "on_ray", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "on_ray" / "search.json").read_text())["scored_on"] == \
        f"ray:{ray_cluster}"
    r = run_cli(*common, "--workers", "1", "--out", "local", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ranked("on_ray") == ranked("local") and len(ranked("local")) == 8
    # an address where no cluster listens: one clear line at once, and no run folder left
    r = run_cli(*common, "--ray", "127.0.0.1:1", "--out", "nowhere", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "could not reach the Ray cluster at '127.0.0.1:1'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "nowhere").exists()


def test_ray_option_refuses_a_missing_extra_and_a_malformed_address(monkeypatch):
    import sys

    from neurokd.parallel import connect_ray

    with pytest.raises(NeurokdError, match=r"Ray address 'junk': expected host:port"):
        connect_ray("junk")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(NeurokdError, match=r"pip install 'neurokd\[ray\]'"):
        connect_ray("127.0.0.1:6379")


def test_search_space_samples_one_by_k_convolutions_for_iq_frames():
    import random

    from neurokd.hardware import load_profile
    from neurokd.metrics.resources import layer_resources
    from neurokd.nas.space import SearchSpace, describe

    space = SearchSpace(conv_layers=(1, 2), kernels=[5, 7])
    rng = random.Random(0)
    specs = [space.sample(rng, (4, 1, 128), 2) for _ in range(20)]
    specs += [space.mutate(s, rng) for s in specs]
    convs = [layer for s in specs for layer in s.layers if layer.type == "conv"]
    assert convs and all(layer.kernel2[0] == 1 and layer.kernel2[1] in (5, 7) for layer in convs)
    assert all(layer.stride2[0] == 1 and layer.padding2 == (0, layer.kernel2[1] // 2) for layer in convs)
    first = next(s for s in specs if s.layers[0].type == "conv")
    assert describe(first).startswith(f"c{first.layers[0].channels}k1x")
    rows = layer_resources(first, load_profile("loihi2"))
    kernel = first.layers[0].kernel2
    assert rows[0].fan_in == 4 * kernel[0] * kernel[1]


SD_SPACE = SMALL.model_copy(update={"neuron": "sdnn"})


def test_sigma_delta_probes_score_the_relu_network_training_starts_from(digits):
    """A sigma-delta candidate is probed as its ReLU network (relu_net's initialization) on the
    8-bit input grid: per-sample gradients equal autograd's, sample by sample, on that very
    network; a spike is a non-zero activation, and synops counts one frame's messages from rest."""
    from neurokd.convert.sdnn import relu_net

    x, y = encoded_batches_for_search(digits, "direct8", SD_SPACE, 1, 6, seed=1)[0]
    assert x.shape == (6, 1, 8, 8) and torch.equal(torch.round(x * 255), x * 255)
    spec = ArchSpec(input_shape=[1, 8, 8], neuron="sdnn",
                    layers=[ConvLayer(channels=4, kernel=3, stride=2, padding=1), FlattenLayer(),
                            DenseLayer(units=16), DenseLayer(units=10)])
    p = probe(spec, LOIHI2, x, y, seed=3)
    net = relu_net(spec, 3)
    params = [m.weight for m in net if hasattr(m, "weight")]
    for i in (0, 4):
        loss = torch.nn.functional.cross_entropy(net(x[i:i + 1]), torch.as_tensor(y[i:i + 1]))
        for g_probe, g_ref in zip(p.grads, torch.autograd.grad(loss, params)):
            assert torch.allclose(g_probe[i], g_ref, rtol=1e-4, atol=1e-6)
    hidden = torch.relu(net[0](x)).flatten(1)
    assert torch.equal(p.spikes[0].flatten(1), (hidden > 0).float())
    rows = layer_resources(spec, LOIHI2)
    rates = [float((x != 0).float().mean())] + [float(s.mean()) for s in p.spikes[:-1]]
    expected = sum(r.synapses * rate for r, rate in zip(rows, rates))
    assert PROXIES.get("synops")(p) == pytest.approx(expected)
    scores = score_arch(spec, LOIHI2, [(x, y)], [0], ["snip", "snip_wide", "jacob_cov"])
    assert scores["snip"] == scores["snip_wide"] and math.isfinite(scores["jacob_cov"])


def test_a_sigma_delta_search_yields_sigma_delta_specs_and_refuses_loihi1(digits, tmp_path):
    from neurokd.nas.search import run_search

    res = run_search(digits, SD_SPACE, LOIHI2, Budget(), "snip", "random", candidates=5,
                     encoder="direct8", progress=False)
    for c in res["ranked"]:
        assert c.spec.family == "sdnn"
        # the upper bound of a frame held for depth + 1 steps
        assert c.resources["synops"] == c.resources["synapses"] * (c.spec.num_spiking_layers + 1)
    with pytest.raises(NeurokdError, match="no sigma-delta neurons"):
        run_search(digits, SD_SPACE, LOIHI1, Budget(), "snip", "random", candidates=5,
                   encoder="direct8", progress=False)
    with pytest.raises(NeurokdError, match="binary spikes"):
        run_search(digits, SD_SPACE, LOIHI2, Budget(), "snip", "random", candidates=5,
                   encoder="rate", progress=False)
    r = run_cli("search", "--dataset", "digits", "--neuron", "sdnn", "--candidates", "4",
                "--proxy", "snip", "--out", "s", "--set", "data.limit=200", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec = load_spec(tmp_path / "s" / "spec.yaml")
    assert spec.family == "sdnn"
    r = run_cli("train-snn", "--spec", "s/spec.yaml", "--epochs", "1", "--out", "t", "--set",
                "data.limit=200", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["neuron"] == "sdnn"


def test_the_probe_device_is_explicit_and_a_gpu_scores_in_this_process(digits, tmp_path):
    """``device="cpu"`` scores exactly as the default; a GPU device with several workers is
    refused in one line (CUDA does not survive a fork); on a machine without a GPU, asking for
    one is one error line before any work, for search and report alike."""
    from neurokd.nas.search import Scorer

    batches = encoded_batches_for_search(digits, "rate", SMALL, 1, 8, seed=0)
    spec = ArchSpec(input_shape=[1, 8, 8], layers=[DenseLayer(units=16), DenseLayer(units=10)])
    names = ["snip", "synops", "naswot", "jacob_cov", "synflow"]
    assert score_arch(spec, LOIHI2, batches, [0], names, device="cpu") == \
        score_arch(spec, LOIHI2, batches, [0], names)
    with pytest.raises(NeurokdError, match="--device cuda scores in this process; use --workers 1"):
        Scorer(batches, LOIHI2, [0], ["snip"], workers=2, device="cuda")
    if not torch.cuda.is_available():
        for args in (["search", "--candidates", "4", "--out", "s"], ["report", "--snn", "x.pt"]):
            r = run_cli(*args, "--device", "cuda", cwd=tmp_path)
            assert r.returncode == 2 and "PyTorch sees no CUDA GPU" in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
