"""Signed multi-bit input: the ``signed8`` encoder, the signed I/Q layout of the radio datasets,
the first layer's threshold, the state bound over signed inputs, and exactness in Lava."""

import numpy as np
import pytest
import torch

from neurokd import pipeline
from neurokd.config import build_config
from neurokd.data.encoders import get_encoder
from neurokd.data.radio import iq_signed, load_sensing, load_symbols
from neurokd.deploy.export import read_meta
from neurokd.models.cuba.numerics import synaptic_input, synaptic_range


def test_signed8_sends_the_rounded_signed_level_at_every_step():
    enc = get_encoder("signed8")
    x = torch.tensor([[-1.0, -0.5, 0.0, 0.004, 0.3, 1.0, 2.0, -7.0]])
    out = enc(x, 5)
    assert out.shape == (1, 8, 5)
    expected = torch.tensor([-127.0, -64.0, 0.0, 1.0, 38.0, 127.0, 127.0, -127.0])
    for t in range(5):
        assert torch.equal(out[0, :, t], expected)
    assert enc.signed and enc.message_bits == 8 and enc.input_range == (-127, 127)
    assert get_encoder("direct").input_range == (0, 15)
    assert get_encoder("direct8").input_range == (0, 255)
    assert get_encoder("rate").input_range == (0, 1)


def test_signed_iq_is_the_clipped_sample_and_sensing_keeps_the_level():
    iq = np.array([[0.5 - 0.25j, -3.0 + 1j, 0j]], dtype=np.complex64)
    x = iq_signed(iq, 2.0)
    assert x.shape == (1, 2, 1, 3)
    assert np.allclose(x[0, 0, 0], [0.25, -1.0, 0.0]) and np.allclose(x[0, 1, 0], [-0.125, 0.5, 0.0])

    ds = load_sensing(limit=2000, layout="signed")
    assert ds.input_shape == (2, 1, 128)
    t = ds.test
    scale = 4 * np.sqrt(0.5)  # the nominal noise's full scale, the same for every frame
    assert np.allclose(t.x[:, 0, 0], np.clip(t.iq.real / scale, -1, 1), atol=1e-6)
    assert np.allclose(t.x[:, 1, 0], np.clip(t.iq.imag / scale, -1, 1), atol=1e-6)
    # no per-frame normalisation: a strong primary user is louder than noise alone
    power = (t.x ** 2).mean(axis=(1, 2, 3))
    noise, strong = power[t.y == 0].mean(), power[(t.y == 1) & (t.snr >= 0)].mean()
    assert strong > 1.5 * noise, (strong, noise)
    split = load_sensing(limit=2000)
    assert split.input_shape == (5, 1, 128)
    assert np.array_equal(split.test.iq, t.iq)  # the same frames, only their layout differs


def test_symbols_signed_layout_holds_the_detector_features():
    opts = {"n_subframes": 40, "ebn0_db": [0.0, 10.0]}
    signed = load_symbols(layout="signed", **opts)
    split = load_symbols(**opts)
    assert signed.input_shape == (2, 1, 4) and split.input_shape == (5, 1, 4)
    # I = A (x_I+ - x_I-) below full scale in the split layout
    a, b = signed.test.x[:, 0, 0], split.test.x[:, 0, 0] - split.test.x[:, 1, 0]
    assert np.allclose(a, b, atol=1e-6)


def test_the_encoder_chooses_the_layout_and_the_first_threshold():
    cfg = build_config(overrides=["data.dataset=sensing", "data.limit=600", "student.encoder=signed8"])
    ds = pipeline.load_data(cfg)
    assert ds.input_shape == (2, 1, 128)
    spec = pipeline.student_spec(cfg, ds)
    assert spec.input_threshold == pytest.approx(spec.neuron.threshold * 127)
    assert spec.layer_thresholds()[0] == spec.input_threshold
    assert set(spec.layer_thresholds()[1:]) == {spec.neuron.threshold}
    cfg = build_config(overrides=["data.dataset=sensing", "data.limit=600", "student.encoder=direct"])
    ds = pipeline.load_data(cfg)
    assert ds.input_shape == (5, 1, 128) and pipeline.student_spec(cfg, ds).input_threshold is None


@pytest.mark.parametrize("conv", [False, True])
def test_the_synaptic_range_bounds_every_signed_frame_and_is_reached(conv):
    g = torch.Generator().manual_seed(0)
    if conv:
        w, shape = torch.randint(-40, 41, (3, 2, 1, 5), generator=g).double(), (2, 1, 9)
    else:
        w, shape = torch.randint(-40, 41, (6, 18), generator=g).double(), (18,)
    high, low = synaptic_range(w, shape, 127, conv, 1, 0, input_min=-127)
    frames = torch.randint(-127, 128, (200, *shape, 1), generator=g).double()
    a = synaptic_input(w, frames if conv else frames.reshape(200, -1, 1), 1, 0, conv)
    a = a.reshape(200, -1)
    assert (a <= high).all() and (a >= low).all()
    # the bound is tight: |w| · 127 summed over the inputs that reach each neuron
    reach = synaptic_input(w.abs(), torch.full((1, *shape, 1), 127.0, dtype=torch.float64)
                           if conv else torch.full((1, 18, 1), 127.0, dtype=torch.float64), 1, 0, conv)
    assert torch.equal(high, reach.reshape(-1).round().long()) and torch.equal(low, -high)
    # an unsigned range keeps the old bound
    high0, low0 = synaptic_range(w, shape, 127, conv, 1, 0)
    assert (high0 <= high).all() and (low0 >= low).all() and (high0 < high).any()


@pytest.mark.lava
def test_signed_students_match_lava_spike_for_spike_float_and_quantized(tmp_path):
    cfg = build_config(overrides=["data.dataset=sensing", "data.limit=1500", "student.epochs=2",
                                  "student.encoder=signed8", "student.timesteps=8",
                                  "quant.method=ptq", "quant.bits=8"])
    ds = pipeline.load_data(cfg)
    model, _ = pipeline.train_snn(cfg, ds, progress=False)
    meta = pipeline.snn_meta(cfg, ds)
    q, _ = pipeline.quantize(model, meta, cfg, ds, progress=False)
    for name, net in (("float", model), ("quantized", q)):
        path = pipeline.export_snn(net, tmp_path / f"{name}.net", meta, ds)
        res = pipeline.verify(net, path, ds, read_meta(path), 40, "sim", progress=False)
        assert res["lava_spike_match"] == 1.0 and res["lava_samples_exact"] == 40, name
        assert res["_torch_spikes"].sum() > 0, name  # over real activity
    # the samples Lava ran carry negative messages: the sign really crossed the first synapse
    frames, _ = pipeline.lava_frames(pipeline.make_prepare("signed8", 8, model.window_pad),
                                     ds.test, 40, cfg.seed)
    assert (frames < 0).any() and frames.abs().max() <= 127


def test_phase_rotation_turns_each_frame_and_keeps_its_layout():
    from neurokd.data.radio import iq_channels, rotate_phase

    rng = np.random.default_rng(0)
    iq = ((rng.normal(size=(6, 32)) + 1j * rng.normal(size=(6, 32))) * 0.1).astype(np.complex64)
    g = torch.Generator().manual_seed(5)
    signed = torch.as_tensor(iq_signed(iq, 1.0))
    out = rotate_phase(signed, g)
    z, z0 = out[:, 0, 0] + 1j * out[:, 1, 0], signed[:, 0, 0] + 1j * signed[:, 1, 0]
    ratio = (z / z0).numpy()
    assert np.allclose(np.abs(ratio), 1, atol=1e-4)  # a pure rotation (nothing clipped here) ...
    assert np.allclose(ratio, ratio[:, :1], atol=1e-4)  # ... by one phase per frame ...
    assert np.std(np.angle(ratio[:, 0])) > 0.3  # ... that differs between frames
    split = torch.as_tensor(iq_channels(iq, 1.0))
    again = rotate_phase(split, torch.Generator().manual_seed(5))
    assert torch.allclose(again[:, 0] - again[:, 1], out[:, 0], atol=1e-6)
    assert torch.allclose(again[:, 2] - again[:, 3], out[:, 1], atol=1e-6)
    assert (again[:, :4] >= 0).all() and torch.equal(again[:, 4], split[:, 4])


def test_phase_augmentation_is_refused_where_the_class_depends_on_more_than_shape():
    from neurokd.data.radio import augmentation
    from neurokd.errors import NeurokdError

    with pytest.raises(NeurokdError, match="augment=phase"):
        augmentation("phase", load_sensing(limit=600))
    assert augmentation("none", load_sensing(limit=600)) is None


@pytest.mark.lava
def test_a_teacher_on_signed_iq_converts_with_signed_input_and_matches_lava(tmp_path):
    import json

    from tests.conftest import run_cli

    small = ["--set", "data.radio={n_frames: 1200}", "--no-progress"]
    r = run_cli("train-teacher", "--dataset", "sensing", "--set", "student.encoder=signed8",
                "--set", "teacher.epochs=3", "--out", "t", *small, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # no --encoder: the teacher read signed I/Q, so the SNN does too
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--method", "plain", "--out", "c",
                *small, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "c" / "metrics.json").read_text())
    # the converted network computes what its teacher does, layer by layer
    assert abs(meta["snn_accuracy"] - meta["teacher_accuracy"]) < 0.1, meta
    assert all(row["correlation"] > 0.8 for row in meta["layers"]), meta["layers"]
    r = run_cli("verify", "--snn", "c/snn.pt", "--net", "c/network.net", "--samples", "20", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["lava_spike_match"] == 1.0
    r = run_cli("convert", "--teacher", "t/teacher.pt", "-T", "8", "--encoder", "rate", "--out", "d",
                *small, cwd=tmp_path)
    # a binary encoder would read the split layout, which the teacher was not trained on
    assert r.returncode == 2 and "teacher takes input [2, 1, 128]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "d").exists()
