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
from neurokd.nas.proxies import PROXIES, score_arch
from neurokd.nas.resources import Budget, layer_resources, summary
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
    with pytest.raises(NeurokdError, match="--max-cores must be positive"):
        Budget(max_cores=0).check()


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


@pytest.mark.parametrize("name", PROXIES.names())
def test_every_proxy_is_finite_and_deterministic(name, digits):
    batches = encoded_batches_for_search(digits, "rate", SMALL, 1, 8, seed=0)
    specs = [ArchSpec(input_shape=[1, 8, 8], layers=[DenseLayer(units=16), DenseLayer(units=10)]),
             ArchSpec(input_shape=[1, 8, 8], layers=[ConvLayer(channels=4, kernel=3, stride=2, padding=1),
                                                     FlattenLayer(), DenseLayer(units=10)])]
    for spec in specs:
        a = score_arch(spec, LOIHI2, batches, [0, 1], [name])[name]
        b = score_arch(spec, LOIHI2, batches, [0, 1], [name])[name]
        assert math.isfinite(a) and a == b, (spec, a, b)


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
        return Candidate(spec, {"cores": cores, "synops": ops}, {"p": score, "synops": ops})

    # higher score and fewer cores; synaptic operations (the third number) play no part
    a, b, c, d, e = (cand(3, 2, 100), cand(2, 1, 100), cand(1, 2, 200), cand(4, 3, 300),
                     cand(2, 1, 900))
    front = pareto_front([a, b, c, d, e], "p")
    assert [id(x) for x in front] == [id(b), id(e), id(a), id(d)]  # by cores; b, e are equal
    # the default proxy is the measured synaptic operations: with it as both score and cost,
    # every candidate would be on the front; here only the best of each core count is
    same = [cand(ops, cores, ops) for ops, cores in ((100, 1), (200, 1), (300, 2), (250, 3))]
    assert [x.scores["p"] for x in pareto_front(same, "synops")] == [200, 300]


def test_search_cli_writes_a_spec_that_training_accepts_and_refuses_bad_input(tmp_path):
    r = run_cli("search", "--dataset", "digits", "--max-cores", "4", "--candidates", "6",
                "--workers", "2", "--set", "data.limit=300", "--out", "s", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("ranked.csv", "spec.yaml", "search.json", "pareto.png"):
        assert (tmp_path / "s" / name).is_file(), name
    load_spec(tmp_path / "s" / "spec.yaml").check_task(10, (1, 8, 8))
    assert len((tmp_path / "s" / "ranked.csv").read_text().strip().splitlines()) == 7
    front = json.loads((tmp_path / "s" / "search.json").read_text())["pareto_front"]
    assert 1 <= len(front) < 6  # six candidates cannot all be on a score-against-cores front
    (tmp_path / "space.yaml").write_text("conv_layers: [2, 1]\n")
    (tmp_path / "odd.yaml").write_text("depth: 3\n")
    bad = [(["--proxy", "magic"], "unknown proxy 'magic'"),
           (["--max-cores", "1"], "no architecture in the search space meets the budget"),
           (["--space", "space.yaml"], "conv_layers must be [min, max]"),
           (["--space", "odd.yaml"], "depth: unknown key"),
           (["--candidates", "0"], "--candidates must be positive")]
    for extra, message in bad:
        r = run_cli("search", "--dataset", "digits", "--candidates", "4", "--out", "bad", *extra,
                    cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()


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

    from neurokd.nas.search import _connect_ray

    with pytest.raises(NeurokdError, match=r"Ray address 'junk': expected host:port"):
        _connect_ray("junk")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(NeurokdError, match=r"pip install 'neurokd\[ray\]'"):
        _connect_ray("127.0.0.1:6379")


def test_search_space_samples_one_by_k_convolutions_for_iq_frames():
    import random

    from neurokd.hardware import load_profile
    from neurokd.nas.resources import layer_resources
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
