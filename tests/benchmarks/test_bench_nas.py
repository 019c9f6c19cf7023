"""The architecture-search benchmarks' statistics: how well a ground truth ranks itself, the
expected best of K random architectures, and the stored tables rendering."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
import nas_correlation  # noqa: E402
import nas_probe_choices  # noqa: E402
import nas_search  # noqa: E402


def test_across_tables_ranks_by_the_worst_held_out_tau():
    def table(taus):
        return {"seeds": [0, 1, 2], "proxies": {p: {"tau": t} for p, t in taus.items()}}

    results = {"datasets": {
        "digits": table({"synops": 0.4, "snip_wide": 0.7, "rank(synops+snip_wide)": 0.6,
                         "params": 0.5}),
        "mnist": table({"synops": 0.5, "snip_wide": 0.0, "rank(synops+snip_wide)": 0.3,
                        "params": 0.2}),
        "old": {"proxies": {"synops": {"tau": 0.9}}}}}  # an earlier table without seeds: ignored
    rows = [r for r in nas_correlation.across(results) if r.startswith("| ")][1:]
    got = {r.split(" | ")[0][2:]: r.split(" | ")[1:] for r in rows}
    assert [r.split(" | ")[0][2:] for r in rows] == ["synops", "rank(synops+snip_wide)", "params",
                                                    "snip_wide"]
    # snip_wide's digits tau is in-sample: marked, and left out of the worst and the mean
    assert got["snip_wide"] == ["0.700 †", "0.000", "0.000", "0.000 |"]
    assert got["synops"] == ["0.400", "0.500", "0.400", "0.450 |"]
    assert nas_correlation.across({"datasets": {"digits": results["datasets"]["digits"]}}) == []


def test_reliability_of_a_table_that_repeats_itself_and_of_one_that_is_noise():
    gen = np.random.default_rng(0)
    arch = np.linspace(0.8, 0.95, 40)
    exact = np.repeat(arch[:, None], 3, axis=1)
    r = nas_correlation.reliability(exact)
    assert r["seed_vs_rest_tau"] == pytest.approx(1.0)
    assert r["icc_single"] == r["icc_mean"] == pytest.approx(1.0)
    assert r["within_seed_std"] == pytest.approx(0.0, abs=1e-12)
    assert r["ceiling_mean_tau"] == pytest.approx(1.0)
    noise = gen.normal(0.9, 0.01, size=(400, 3))  # no architecture differs from another
    r = nas_correlation.reliability(noise)
    assert abs(r["seed_vs_rest_tau"]) < 0.1 and r["icc_single"] < 0.1
    assert r["within_seed_std"] == pytest.approx(0.01, rel=0.1)
    # seeds with noise equal to the spread between architectures: ICC(1) = 1/2, ICC(3) = 3/4
    half = gen.normal(0, 1, size=(4000, 1)) + gen.normal(0, 1, size=(4000, 3))
    r = nas_correlation.reliability(half)
    assert r["icc_single"] == pytest.approx(0.5, abs=0.03)
    assert r["icc_mean"] == pytest.approx(0.75, abs=0.03)
    assert r["ceiling_mean_tau"] == pytest.approx(2 / np.pi * np.arcsin(np.sqrt(0.75)), abs=0.02)


def test_expected_best_of_k_is_the_mean_of_the_largest_over_every_k_subset():
    values = np.array([0.91, 0.85, 0.93, 0.88, 0.80, 0.95, 0.90])
    for k in (1, 2, 3, 7):
        brute = np.mean([max(c) for c in itertools.combinations(values, k)])
        assert nas_search.expected_best_of(values, k) == pytest.approx(brute)
    assert nas_search.expected_best_of(values[:2], 3) == pytest.approx(0.91)


def test_budget_labels_keep_the_first_results_key():
    assert nas_search.budget_label({"max_cores": 4}) == "4"
    assert nas_search.budget_label({"max_cores": 4, "max_synops": 1e6}) == "4 cores, synops 1e+06"


@pytest.mark.parametrize("module, stem", [(nas_correlation, "nas_correlation"),
                                          (nas_search, "nas_search"),
                                          (nas_probe_choices, "nas_probe_choices")])
def test_the_stored_results_render(module, stem):
    results = json.loads((BENCH / "results" / f"{stem}.json").read_text())
    text = module.markdown(results)
    assert text == (BENCH / "results" / f"{stem}.md").read_text()


class _Undecided(__import__("torch").nn.Module):
    """A two-output detector that spikes the same on every frame: it cannot tell H1 from H0."""
    window_pad = 0

    def forward(self, x):
        import torch

        out = torch.zeros(x.shape[0], 2, x.shape[-1])
        out[:, 1, ::2] = 1.0
        return out


def test_a_sensing_cell_is_ranked_by_pd_and_a_blind_detector_detects_at_the_false_alarm_rate():
    from neurokd import pipeline
    from neurokd.config import build_config

    cfg = build_config(overrides=["data.dataset=sensing", "data.limit=1300", "student.timesteps=8"])
    ds = pipeline.load_data(cfg)
    got = nas_correlation.detection(_Undecided(), cfg, ds)
    # every score ties, so the randomised Neyman-Pearson test detects at exactly Pfa 0.1 at every SNR
    assert got["score"] == pytest.approx(0.1, abs=1e-12)
    assert got["auc"] == pytest.approx(0.5, abs=1e-12)
    assert nas_correlation.score_of({"acc": 0.71, **got}) == pytest.approx(0.1, abs=1e-12)
    assert nas_correlation.score_of({"acc": 0.71}) == 0.71  # the image tables rank accuracy
