"""Quantization-aware training: quantizers, schedule, Loihi numerics, export to Lava."""

import json

import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.config import QuantConfig, build_config
from neurokd.deploy.export import read_meta
from neurokd.errors import NeurokdError
from neurokd.hardware import load_profile
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import default_spec
from neurokd.models.cuba.numerics import StateStats, cuba_dynamics, cuba_dynamics_reference
from neurokd.quant.qat import quantize_snn
from neurokd.models.cuba.quantized import QuantSpikingNet, check_bits
from neurokd.models.quantizers import FixedQuantizer, LSQQuantizer, init_step, int_range
from neurokd.quant.schedule import ProbSchedule

from tests.deploy.test_lava import CONV_SPEC

from tests.conftest import run_cli

LOIHI2 = load_profile("loihi2")


def _snn(hidden=32, seed=0, spec=None):
    torch.manual_seed(seed)
    snn = SpikingNet(spec or default_spec((1, 8, 8), 10, hidden))
    snn(torch.zeros(1, *snn.spec.input_shape, 2))
    return snn


@pytest.mark.parametrize("bits", [8, 6, 4, 2])
def test_quantizer_lands_on_the_loihi_integer_grid(bits):
    snn = _snn()
    q = QuantSpikingNet.from_snn(snn, [bits, bits], step_rule="mse")
    qn, qp = int_range(bits)
    g = LOIHI2.weight_shift(bits)
    for i, layer in enumerate(q.export_integers()):
        w = layer["weight"]
        assert w.dtype == torch.int64
        m = w // (1 << g)
        assert torch.equal(m * (1 << g), w)  # every weight is m << g
        assert int(m.min()) >= qn and int(m.max()) <= qp
        assert LOIHI2.weight_mantissa_min <= int(w.min()) and int(w.max()) <= LOIHI2.weight_mantissa_max
        # round trip: the integers are round(w / s), and W / vth equals s·m / θ
        s = float(q.quantizers[i].step)
        expected = torch.clamp(torch.round(q.weights[i].detach() / s), qn, qp)
        assert torch.equal(m.to(expected.dtype), expected)
        theta = q.vth_mant / LOIHI2.weight_scale
        assert layer["vth"] == round(theta * (1 << g) / s)


def test_bit_widths_the_profile_does_not_allow():
    with pytest.raises(NeurokdError, match="16-bit weights are not allowed on loihi2"):
        check_bits([8, 16], LOIHI2)
    with pytest.raises(NeurokdError, match="1-bit"):
        QuantSpikingNet(default_spec((1, 8, 8), 10, 16), LOIHI2, [1, 8])
    with pytest.raises(NeurokdError, match="unknown hardware profile"):
        load_profile("loihi9")


def test_every_profile_states_its_integer_rules():
    for name in ("loihi1", "loihi2"):
        p = load_profile(name)
        assert p.state_limit == 2 ** 23 - 1 and p.decay_scale == 4096
        assert [p.weight_shift(b) for b in (8, 4, 2)] == [1, 5, 7]


def test_trainable_scales_receive_gradients_and_fixed_ones_do_not():
    x = (torch.rand(8, 1, 8, 8, 12, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    for quantizer, learns in (("lsq", True), ("fixed", False)):
        q = QuantSpikingNet.from_snn(_snn(), [4, 4], quantizer).train()
        q.quant_prob.fill_(1.0)
        q(x).sum().backward()
        for qz, w in zip(q.quantizers, q.weights):
            assert w.grad is not None and float(w.grad.abs().sum()) > 0
            if learns:
                assert qz.step.grad is not None and float(qz.step.grad.abs()) > 0
            else:
                assert qz.step.grad is None
    assert isinstance(LSQQuantizer(4, 0.1), torch.nn.Module) and not FixedQuantizer(4, 0.1).step.requires_grad


def test_step_initialisations():
    w = torch.linspace(-1, 1, 201)
    assert init_step(w, 8, "max") == pytest.approx(1 / 127)
    assert init_step(w, 4, "lsq") == pytest.approx(2 * float(w.abs().mean()) / 7 ** 0.5)
    # the least-squared-error step is never worse than round-to-nearest at the max
    for bits in (2, 4):
        qn, qp = int_range(bits)
        err = lambda s: float(((torch.clamp(torch.round(w / s), qn, qp) * s - w) ** 2).sum())  # noqa: E731
        assert err(init_step(w, bits, "mse")) <= err(init_step(w, bits, "max"))


def test_probability_schedule_is_staggered_and_reaches_full_quantization():
    sched = ProbSchedule(3, ramp=0.6)
    assert sched.probabilities(0.0) == [0.0, 0.0, 0.0]
    mid = sched.probabilities(0.2)
    assert mid[0] > mid[1] > mid[2] == 0.0  # the first layer enters first
    grid = [sched.probabilities(r / 100) for r in range(101)]
    for layer in range(3):
        seq = [p[layer] for p in grid]
        assert all(a <= b for a, b in zip(seq, seq[1:]))  # never falls
    assert all(p == [1.0, 1.0, 1.0] for p in grid[60:])
    with pytest.raises(ValueError):
        ProbSchedule(2, ramp=0.0)


def test_selective_quantization_draws_layers_by_probability():
    q = QuantSpikingNet.from_snn(_snn(), [4, 4]).train()
    q.quant_prob.copy_(torch.tensor([1.0, 0.0]))
    assert q._quantized_layers() == [True, False]
    q.quant_prob.copy_(torch.tensor([0.5, 0.5]))
    draws = np.array([q._quantized_layers() for _ in range(400)])
    assert 0.4 < draws.mean() < 0.6
    q.eval()
    assert q._quantized_layers() == [True, True]  # evaluation is always fully quantized


def _lava_cuba(a_in, i_decay, v_decay, vth):
    """Lava's fixed_pt LIF update (lava/proc/lif/models.py), transcribed in numpy int64."""
    max_uv = 2 ** 23
    u = np.zeros(a_in.shape[:-1], np.int64)
    v = np.zeros_like(u)
    out = []
    for t in range(a_in.shape[-1]):
        du = u * (4096 - i_decay)
        u = np.sign(du) * (np.abs(du) >> 12) + (a_in[..., t].astype(np.int64) << 6)
        u = np.where(u > max_uv, u - 2 * max_uv, u)
        u = np.where(u <= -max_uv, u + 2 * max_uv, u)
        dv = v * (4096 - v_decay)
        v = np.clip(np.sign(dv) * (np.abs(dv) >> 12) + u, -max_uv + 1, max_uv - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        out.append(s)
    out = np.stack(out, -1).astype(np.float64)
    return np.concatenate([np.zeros_like(out[..., :1]), out[..., :-1]], -1)


def test_numerics_equal_lavas_fixed_point_lif_including_wrap_and_clip():
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-40000, 60000, (16, 5, 40), generator=gen)  # large enough to wrap u
    stats = StateStats()
    ours = cuba_dynamics(a.double(), 1024, 512, torch.tensor(90000.0), LOIHI2, stats=stats)
    ref = _lava_cuba(a.numpy(), 1024, 512, 90000)
    assert np.array_equal(ours.numpy(), ref)
    assert stats.current_wraps > 0 and stats.voltage_clips > 0 and ref.sum() > 0


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("conv", [False, True])
def test_fused_kernel_equals_the_step_by_step_reference_spikes_states_and_gradients(exact, conv):
    """The fused time loop gives the reference's spikes and state statistics bit for bit (wraps
    and clips included) and its gradients for the input, the threshold and the bias."""
    gen = torch.Generator().manual_seed(5)
    shape, bias_shape = ((4, 3, 5, 5, 12), (1, 3, 1, 1)) if conv else ((8, 30, 20), (1, 30))
    a = torch.randint(-300, 600, shape, generator=gen).double()
    if exact:
        a[0, 0] = 2 ** 17  # drives the current past 24 bits (wraps) and the voltage to the clip
    else:
        a = a * 1.37
    bias0 = (torch.randn(bias_shape, generator=gen, dtype=torch.float64) * 40).round()
    weights = torch.randn(shape, generator=gen, dtype=torch.float64)
    results = []
    for fn in (cuba_dynamics, cuba_dynamics_reference):
        x = a.clone().requires_grad_(True)
        vth = torch.tensor(3000.0, dtype=torch.float64, requires_grad=True)
        bias = bias0.clone().requires_grad_(True)
        stats = StateStats()
        out = fn(x, 1024, 512, vth * 1.0, LOIHI2, exact=exact, stats=stats, bias=bias,
                 tau_grad=0.7, scale_grad=1.3)
        (out * weights).sum().backward()
        results.append((out.detach(), x.grad, vth.grad, bias.grad, stats.as_dict()))
    (out, gx, gth, gb, st), (out_r, gx_r, gth_r, gb_r, st_r) = results
    assert torch.equal(out, out_r) and 0.02 < float(out.mean()) < 0.5
    assert st == st_r
    if exact:  # the dense case clips the voltage too
        assert st["current_wraps"] > 0 and (conv or st["voltage_clips"] > 0)
    for g, g_r in ((gx, gx_r), (gth, gth_r), (gb, gb_r)):
        assert float(g_r.abs().max()) > 0
        torch.testing.assert_close(g, g_r, rtol=1e-9, atol=1e-12)


def test_fused_kernel_backward_in_float32_follows_the_float64_gradients():
    """A float32 input (as the quantized student gives it) keeps the exact float64 state and
    returns float32 gradients within float32 rounding of the float64 ones."""
    gen = torch.Generator().manual_seed(6)
    a = torch.randint(-200, 500, (16, 40, 16), generator=gen).float()
    grads = []
    for dtype in (torch.float32, torch.float64):
        x = a.to(dtype, copy=True).requires_grad_(True)
        out = cuba_dynamics(x, 1024, 512, torch.tensor(2500.0), LOIHI2)
        assert out.dtype == dtype
        (out * torch.linspace(-1, 1, out.shape[-1], dtype=dtype)).sum().backward()
        grads.append((out.detach().double(), x.grad.double()))
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)


def test_quantized_model_equals_slayer_on_its_integers_without_overflow():
    x = (torch.rand(32, 1, 8, 8, 16, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    for bits in (8, 4, 2):
        q = QuantSpikingNet.from_snn(_snn(64), [bits, bits], step_rule="max").eval()
        ours, theirs = q(x), q.to_slayer()(x)
        assert ours.sum() > 0 and torch.equal(ours, theirs)


def _small_run(tmp_path, *extra):
    cfg = build_config(overrides=["data.limit=400", "student.epochs=4", "student.hidden=32",
                                  "student.timesteps=8", *extra])
    ds = pipeline.load_data(cfg)
    snn, _ = pipeline.train_snn(cfg, ds, progress=False)
    return cfg, ds, snn


@pytest.mark.lava
@pytest.mark.parametrize("bits", [8, 6, 4, 2])
def test_exported_integers_reproduce_the_trained_spikes_in_lava(tmp_path, bits):
    cfg, ds, snn = _small_run(tmp_path)
    meta = pipeline.snn_meta(cfg, ds)
    q = QuantSpikingNet.from_snn(snn, [bits, bits], step_rule="mse").eval()
    net = pipeline.export_snn(q, tmp_path / "q.net", meta, ds)
    assert read_meta(net)["quant"]["bits"] == [bits, bits]
    res = pipeline.verify(q, net, ds, read_meta(net), 30, "sim", progress=False)
    assert res["lava_spike_match"] == 1.0 and res["_torch_spikes"].sum() > 0


@pytest.mark.lava
def test_conv_network_and_24_bit_overflow_match_lava(tmp_path):
    spec_path = tmp_path / "conv.yaml"
    spec_path.write_text(CONV_SPEC)
    cfg, ds, snn = _small_run(tmp_path, f"student.spec={spec_path}", "student.encoder=direct")
    q = QuantSpikingNet.from_snn(snn, [6, 4, 8], step_rule="mse").eval()
    # Push the dense layer far past 24 bits: largest weights, the largest threshold the profile has.
    with torch.no_grad():
        theta = q.vth_mant / LOIHI2.weight_scale
        s = theta * (1 << LOIHI2.weight_shift(4)) / LOIHI2.threshold_mantissa_max
        q.quantizers[1].step.fill_(s)
        q.weights[1].copy_(torch.where(torch.rand(q.weights[1].shape) < 0.8, 7 * s, -8 * s))
    meta = pipeline.snn_meta(cfg, ds)
    net = pipeline.export_snn(q, tmp_path / "q.net", meta, ds)
    res = pipeline.verify(q, net, ds, read_meta(net), 20, "sim", progress=False)
    assert res["state_overflow"]
    assert any(r["current_wraps"] + r["voltage_clips"] > 0 for r in res["state_extremes"])
    assert res["lava_spike_match"] == 1.0


def test_a_step_too_small_for_the_threshold_is_raised_to_the_floor_or_refused():
    q = QuantSpikingNet.from_snn(_snn(), [8, 8])
    with torch.no_grad():
        q.quantizers[0].step.fill_(1e-7)  # would need a threshold mantissa far beyond 17 bits
    # the layer's step floor keeps its threshold within the chip's 17-bit mantissa
    assert 0 < q.export_integers()[0]["vth"] <= LOIHI2.threshold_mantissa_max
    assert float(q.quantizers[0].effective_step(1)) == pytest.approx(q.quantizers[0].min_step)
    q.quantizers[0].min_step = 1e-8  # without the floor, the export refuses the layer
    with pytest.raises(NeurokdError, match="layer 0: .*threshold mantissa .* beyond the 17 bits"):
        q.export_integers()


def test_qat_beats_round_to_nearest_at_two_bits(tmp_path):
    cfg = build_config(overrides=["student.epochs=8", "student.hidden=64", "student.timesteps=12"])
    ds = pipeline.load_data(cfg)
    snn, _ = pipeline.train_snn(cfg, ds, progress=False)
    prepare = pipeline.make_prepare("rate", 12, snn.window_pad)
    ptq, m_ptq = quantize_snn(snn, ds, prepare, QuantConfig(method="ptq", bits=2), progress=False)
    qat, m_qat = quantize_snn(snn, ds, prepare, QuantConfig(method="lsq_prob_kd", bits=2, epochs=3),
                              progress=False)
    assert m_qat["quant_accuracy"] > m_ptq["quant_accuracy"] + 0.1, (m_qat["quant_accuracy"],
                                                                     m_ptq["quant_accuracy"])
    assert m_ptq["weight_bytes"] == m_qat["weight_bytes"] == (64 * 64 + 64 * 10) * 2 // 8
    assert "qat_epochs" not in m_ptq and m_qat["qat_epochs"] >= 1
    assert all(not r["overflow"] for r in m_qat["train_overflow"])


def test_same_seed_same_quantized_model(tmp_path):
    cfg, ds, snn = _small_run(tmp_path)
    prepare = pipeline.make_prepare("rate", 8, snn.window_pad)
    qc = QuantConfig(method="lsq_prob_kd", bits=4, epochs=2)
    a, _ = quantize_snn(snn, ds, prepare, qc, seed=5, progress=False)
    b, _ = quantize_snn(snn, ds, prepare, qc, seed=5, progress=False)
    for x, y in zip(a.export_integers(), b.export_integers()):
        assert torch.equal(x["weight"], y["weight"]) and x["vth"] == y["vth"]



@pytest.mark.lava
def test_quantize_cli_then_verify(tmp_path):
    r = run_cli("train-snn", "--out", "snn", "--set", "data.limit=400", "--set", "student.epochs=3",
             "--set", "student.hidden=32", "-T", "8", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("quantize", "--snn", "snn/snn.pt", "--layer-bits", "6,4", "--epochs", "2",
             "--out", "q", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "quant_accuracy" in r.stdout and (tmp_path / "q" / "network.net").is_file()
    r = run_cli("verify", "--snn", "q/snn.pt", "--net", "q/network.net", "--samples", "20", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0
    r = run_cli("quantize", "--snn", "snn/snn.pt", "--out", "bad", "--bits", "9", cwd=tmp_path)
    assert r.returncode == 2 and "9-bit weights are not allowed" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()
    r = run_cli("quantize", "--snn", "q/snn.pt", "--out", "bad", cwd=tmp_path)
    assert r.returncode == 2 and "already quantized" in r.stderr


def test_quantize_refuses_bad_arguments_before_training(tmp_path):
    from neurokd.cli.commands import _layer_bits

    cfg, ds, snn = _small_run(tmp_path, "student.epochs=1")
    meta = pipeline.snn_meta(cfg, ds)
    pipeline.save_snn(tmp_path / "snn.pt", snn, cfg, ds)
    with pytest.raises(NeurokdError, match="expected integers separated by commas"):
        _layer_bits("8,x")
    bad = [(["hardware=nochip"], None, "unknown hardware profile 'nochip'"),
           (["quant.layer_bits=[8]"], None, "gives 1 bit-widths; the SNN has 2"),
           (["quant.method=lsq"], tmp_path / "snn.pt", "--kd-from is used by method lsq_prob_kd"),
           ([], tmp_path / "missing.pt", "no such checkpoint")]
    for overrides, kd_from, message in bad:
        with pytest.raises(NeurokdError, match=message):
            pipeline.quantize(snn, meta, build_config(overrides=overrides), ds, kd_from, progress=False)
    q = QuantSpikingNet.from_snn(snn, [8, 8])
    from neurokd.models.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "q.pt", "snn", q.arch(), q.state_dict(), meta)
    with pytest.raises(NeurokdError, match="needs a full-precision model"):
        pipeline.quantize(snn, meta, cfg, ds, tmp_path / "q.pt", progress=False)


@pytest.mark.parametrize("name", __import__("neurokd.models.quantizers", fromlist=["QUANTIZERS"]).QUANTIZERS.names())
def test_every_registered_quantizer_builds_an_exportable_model(name):
    q = QuantSpikingNet.from_snn(_snn(), [6, 3], name, step_rule="mse").eval()
    ints = q.export_integers()
    assert [layer["bits"] for layer in ints] == [6, 3]
    x = (torch.rand(4, 1, 8, 8, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    assert torch.equal(q(x), q.to_slayer()(x))


def _saturated(snn, seed=0, negative=0.7, firing=0):
    """``snn`` at 8 bits with its output layer pushed past 24 bits: the largest threshold mantissa
    the profile has and mostly negative weights (a fraction ``negative``), so that inhibited
    voltages run into the clip; the last ``firing`` output neurons get mostly positive ones."""
    q = QuantSpikingNet.from_snn(snn, [8, 8], "fixed", step_rule="max").eval()
    with torch.no_grad():
        theta = q.vth_mant / LOIHI2.weight_scale
        s = theta * (1 << LOIHI2.weight_shift(8)) / LOIHI2.threshold_mantissa_max
        q.quantizers[1].step.fill_(s)
        draw = torch.rand(q.weights[1].shape, generator=torch.Generator().manual_seed(seed))
        share = torch.full((draw.shape[0], 1), negative)
        share[draw.shape[0] - firing:] = 1 - negative
        q.weights[1].copy_(torch.where(draw < share, -120 * s, 120 * s))
        q.weights[0].abs_()  # a busy hidden layer
    return q


def test_fit_state_removes_the_clips_that_round_to_nearest_causes():
    from neurokd.quant.qat import fit_state

    limit = LOIHI2.state_limit
    x = (torch.rand(64, 1, 8, 8, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    q = _saturated(_snn(32))
    before = q.state_extremes(x)
    assert before[1]["overflow"] and before[1]["voltage_clips"] > 100, before
    ratio = [layer["weight"].double() / layer["vth"] for layer in q.export_integers()]
    rows = fit_state(q, "measured", 0.75, x)
    after = q.state_extremes(x)
    assert [r["voltage_clips"] + r["current_wraps"] for r in after] == [0, 0]
    assert max(after[1]["max_abs_current"], after[1]["max_abs_voltage"]) <= 0.75 * limit
    # The peak is measured without the clip, so it is above what the clipped register showed.
    assert rows[1]["peak_before"] > max(limit, before[1]["max_abs_voltage"])
    assert rows[1]["peak_after"] <= 0.75 * limit
    assert rows[1]["step_factor"] > 1.3 and rows[1]["levels_before"] == 120
    assert rows[1]["levels_after"] < 120 / 1.3
    assert rows[0]["step_factor"] == 1.0  # layer 0 stayed inside: untouched
    # Weights and threshold shrank together: W / vth is kept up to the coarser rounding.
    new = [layer["weight"].double() / layer["vth"] for layer in q.export_integers()]
    assert torch.equal(new[0], ratio[0])
    assert float((new[1] - ratio[1]).abs().max()) < 0.01 * float(ratio[1].abs().max())


def test_fit_state_bound_keeps_every_admissible_input_inside():
    from neurokd.quant.qat import fit_state

    q = _saturated(_snn(32))
    assert any(r["overflow"] for r in q.state_bound("rate", 12))
    rows = fit_state(q, "bound", 0.5, encoder="rate", timesteps=12)
    bound = q.state_bound("rate", 12)
    assert all(max(r["max_abs_current"], r["max_abs_voltage"]) <= 0.5 * LOIHI2.state_limit
               for r in bound), bound
    assert rows[0]["step_factor"] == 1.0 and rows[1]["step_factor"] > 2  # layer 0 was inside
    with pytest.raises(NeurokdError, match="'bound' needs the encoder"):
        fit_state(q, "bound", 0.5)


def test_quantize_with_fit_state_reports_what_it_changed(tmp_path):
    cfg, ds, snn = _small_run(tmp_path, "student.epochs=1")
    prepare = pipeline.make_prepare("rate", 8, snn.window_pad)
    limit = LOIHI2.state_limit
    # A tiny target forces a fit on this small network, whose states stay far inside 24 bits.
    q = QuantConfig(method="ptq", bits=8, fit_state="measured", state_target=0.01)
    model, m = quantize_snn(snn, ds, prepare, q, progress=False)
    assert [r["layer"] for r in m["state_fit"]] == [0, 1]
    for r in m["state_fit"]:
        assert r["peak_after"] <= 0.01 * limit < r["peak_before"]
        assert r["step_factor"] > 1 and r["levels_after"] < r["levels_before"] == 127
    off, m_off = quantize_snn(snn, ds, prepare, QuantConfig(method="ptq", bits=8), progress=False)
    assert "state_fit" not in m_off and "state_fit_option" not in m_off  # nothing clipped
    for a, b in zip(model.quantizers, off.quantizers):
        assert float(a.step) > float(b.step)


@pytest.mark.lava
def test_fitted_network_has_no_clips_and_still_matches_lava(tmp_path):
    from neurokd.quant.qat import fit_state

    cfg, ds, snn = _small_run(tmp_path)
    meta = pipeline.snn_meta(cfg, ds)
    prepare = pipeline.make_prepare("rate", 8, snn.window_pad)
    train, _ = next(pipeline.encoded_batches(ds.train, prepare, seed=0))
    test, _ = next(pipeline.encoded_batches(ds.test, prepare, seed=0, limit=20))  # verify's
    q = _saturated(snn, negative=0.9, firing=3)
    assert q.state_extremes(test)[1]["voltage_clips"] > 50
    fit_state(q, "measured", 0.75, train)
    net = pipeline.export_snn(q, tmp_path / "q.net", meta, ds)
    res = pipeline.verify(q, net, ds, read_meta(net), 20, "sim", progress=False)
    assert not res["state_overflow"], res["state_extremes"]
    assert res["lava_spike_match"] == 1.0 and res["_torch_spikes"].sum() > 0


def test_quantize_names_the_remedy_and_its_cost():
    from neurokd.cli.commands import _state_fit_lines

    rows = [{"layer": 0, "step_factor": 1.0, "peak_before": 10, "peak_after": 10,
             "levels_before": 127, "levels_after": 127},
            {"layer": 1, "step_factor": 2.8331, "peak_before": 17897035, "peak_after": 6273357,
             "levels_before": 127, "levels_after": 45}]
    clipped = [{"current_wraps": 0, "voltage_clips": 0}] * 2
    off = QuantConfig(method="ptq")
    lines = _state_fit_lines({"quant_accuracy": 0.9131, "state_fit_option": {
        "layers": rows, "quant_accuracy": 0.9065, "test_overflow": clipped}}, off, 24)
    assert lines == ["remedy: --fit-state measured (quant.fit_state) keeps the state inside 24 "
                     "bits by coarsening the weight steps: layer 1 step ×2.83 (|m| up to 127 → 45, "
                     "1.5 bits of weight precision); test accuracy 0.9131 → 0.9065, wraps and "
                     "clips on the first test batch 0 after it (--fit-state bound: for every "
                     "input, at a larger cost)"]
    on = QuantConfig(method="ptq", fit_state="measured")
    assert _state_fit_lines({"state_fit": rows}, on, 24) == [
        "state fit (quant.fit_state=measured): layer 1 step ×2.83 (|m| up to 127 → 45, 1.5 bits "
        "of weight precision); states kept within 0.75 of the 24-bit limit on the training "
        "samples measured"]
    assert _state_fit_lines({"quant_accuracy": 0.9}, off, 24) == []
