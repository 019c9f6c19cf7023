import math

import pytest
import torch

from neurokd import pipeline
from neurokd.config import DistillConfig, build_config
from neurokd.distill.colearn import CoLearner
from neurokd.distill.decoders import DECODERS, FeatureAdapter, exp_readout
from neurokd.distill.hooks import FeatureTap
from neurokd.distill.losses import LOSSES
from neurokd.errors import NeurokdError
from neurokd.models.cuba.net import SpikingNet
from neurokd.models.spec import default_spec
from neurokd.models.teachers import build_teacher


# ---------------------------------------------------------------- losses against hand-computed values
def test_kd_equals_hand_computed_kl():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    tau = 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [ps[1], ps[0]]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    assert LOSSES.get("kd")(s, t, temperature=tau).item() == pytest.approx(kl * tau * tau, rel=1e-6)
    assert LOSSES.get("kd")(t, t, temperature=tau).item() == pytest.approx(0.0, abs=1e-7)


def test_hint_is_mean_squared_error():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert LOSSES.get("hint")(a, b).item() == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_relational_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # Gram = I, rows already unit length
    t = torch.tensor([[1.0], [1.0]])            # Gram = all ones, rows -> [1/√2, 1/√2]
    r = 1 / math.sqrt(2)
    expected = ((1 - r) ** 2 * 2 + r ** 2 * 2) / 4
    assert LOSSES.get("relational")(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert LOSSES.get("relational")(t * 3, t).item() == pytest.approx(0.0, abs=1e-7)


def test_ce_by_hand():
    logits = torch.tensor([[2.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert LOSSES.get("ce")(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def test_decoders_by_hand():
    spikes = torch.tensor([[[1.0, 0.0, 1.0]]])
    assert DECODERS.get("rate")()(spikes).item() == pytest.approx(2 / 3)
    lam = torch.tensor(0.5)
    # weights λ^2, λ^1, λ^0 for steps 0, 1, 2
    assert exp_readout(spikes, lam).item() == pytest.approx((0.25 + 1) / (0.25 + 0.5 + 1))
    dec = DECODERS.get("exp")()
    dec(spikes).sum().backward()
    assert dec.logit.grad is not None


@pytest.mark.parametrize("name", DECODERS.names())
def test_every_decoder_maps_spike_trains_to_features(name):
    out = DECODERS.get(name)()(torch.rand(4, 3, 5, 5, 7).round())
    assert out.shape == (4, 3, 5, 5) and torch.isfinite(out).all()


def test_feature_adapter_projections_and_unmatchable_shapes():
    assert FeatureAdapter("rate", (32,), (64,))(torch.rand(2, 32, 6)).shape == (2, 64)
    assert FeatureAdapter("rate", (4, 8, 8), (16,))(torch.rand(2, 4, 8, 8, 6)).shape == (2, 16)
    assert FeatureAdapter("rate", (4, 8, 8), (6, 8, 8))(torch.rand(2, 4, 8, 8, 6)).shape == (2, 6, 8, 8)
    with pytest.raises(NeurokdError, match="cannot be matched"):
        FeatureAdapter("rate", (4, 8, 8), (6, 4, 4))


def test_feature_tap_reads_by_path_and_leaves_no_hooks():
    teacher = build_teacher("mlp", (1, 8, 8), 10, hidden=[16])
    with FeatureTap(teacher, ["relu1"]) as tap:
        teacher(torch.rand(3, 1, 8, 8))
        assert tap["relu1"].shape == (3, 16) and (tap["relu1"] >= 0).all()
    assert not teacher.relu1._forward_hooks
    with pytest.raises(NeurokdError, match="no layer 'fc9'"):
        FeatureTap(teacher, ["fc9"])


# ---------------------------------------------------------------- gradients through both models
def _learner(**cfg):
    torch.manual_seed(0)
    student = SpikingNet(default_spec((1, 8, 8), 10, 16))
    teacher = build_teacher("mlp", (1, 8, 8), 10, hidden=[16])
    raw = torch.rand(6, 1, 8, 8)
    inp = (torch.rand(6, 1, 8, 8, 10) < raw.unsqueeze(-1)).float()
    learner = CoLearner(student, [teacher], DistillConfig(**cfg), raw, inp)
    return learner, raw, inp, torch.arange(6) % 10


def _grad_norm(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_bidirectional_colearning_sends_gradients_to_both_models():
    learner, raw, inp, y = _learner(method="colearn", mutual=True)
    learner.train()
    learner.objective(raw, inp, y).backward()
    assert _grad_norm(learner.student) > 0
    assert _grad_norm(learner.teachers[0]) > 0
    assert _grad_norm(learner.adapter) > 0


def test_frozen_teacher_gets_no_gradient():
    for cfg in ({"method": "colearn", "freeze_teacher": True}, {"method": "kd"},
                {"method": "fitnet"}, {"method": "relational"}):
        learner, raw, inp, y = _learner(**cfg)
        learner.train()
        learner.objective(raw, inp, y).backward()
        assert _grad_norm(learner.student) > 0
        assert all(p.grad is None for p in learner.teachers[0].parameters()), cfg
        assert len(learner.param_groups(1e-3)) <= 2


def test_mutual_term_moves_the_teacher_towards_the_student():
    learner, raw, inp, y = _learner(method="colearn", mutual=True, mutual_weight=1.0, feature=False)
    learner.train()
    learner.objective(raw, inp, y).backward()
    with_mutual = [p.grad.clone() for p in learner.teachers[0].parameters()]
    learner2, *_ = _learner(method="colearn", mutual=False, feature=False)
    learner2.train()
    learner2.objective(raw, inp, y).backward()
    without = [p.grad for p in learner2.teachers[0].parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(with_mutual, without))


# ---------------------------------------------------------------- bad input before training
def test_bad_layers_and_teachers_fail_before_training(tmp_path):
    cfg = build_config(overrides=["data.limit=200", "teacher.epochs=2", "teacher.hidden=[16]"])
    ds = pipeline.load_data(cfg)
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    pipeline.save_teacher(tmp_path / "t.pt", teacher, cfg, ds)
    for override, message in [("distill.teacher_layer=conv7", "the teacher has no layer 'conv7'"),
                              ("distill.student_layer=blocks.9", "the student has no layer 'blocks.9'"),
                              ("distill.decoder=fourier", "unknown spike decoder")]:
        bad = build_config(overrides=["data.limit=200", "student.epochs=50", override])
        with pytest.raises(NeurokdError, match=message):
            pipeline.train_distilled(bad, ds, tmp_path / "t.pt", progress=False)
    other = build_teacher("mlp", (1, 8, 8), 5, hidden=[16])
    from neurokd.models.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "five.pt", "teacher", {"model": "mlp", "input_shape": [1, 8, 8],
                    "num_classes": 5, "hidden": [16]}, other.state_dict(), {})
    with pytest.raises(NeurokdError, match="teacher predicts 5 classes, the data has 10"):
        pipeline.train_distilled(cfg, ds, tmp_path / "five.pt", progress=False)
    wide = build_teacher("mlp", (1, 28, 28), 10, hidden=[16])
    save_checkpoint(tmp_path / "wide.pt", "teacher", {"model": "mlp", "input_shape": [1, 28, 28],
                    "num_classes": 10, "hidden": [16]}, wide.state_dict(), {})
    with pytest.raises(NeurokdError, match="teacher takes input"):
        pipeline.train_distilled(cfg, ds, tmp_path / "wide.pt", progress=False)
    with pytest.raises(NeurokdError, match="needs a teacher"):
        pipeline.train_distilled(build_config(overrides=["distill.method=kd"]), ds, None)
    with pytest.raises(NeurokdError, match="more teachers"):
        pipeline.train_distilled(build_config(overrides=["distill.method=ensemble"]), ds, tmp_path / "t.pt")


def test_ensemble_averages_teacher_logits():
    torch.manual_seed(0)
    student = SpikingNet(default_spec((1, 8, 8), 10, 16))
    teachers = [build_teacher("mlp", (1, 8, 8), 10, hidden=[8]) for _ in range(3)]
    raw = torch.rand(4, 1, 8, 8)
    learner = CoLearner(student, teachers, DistillConfig(method="ensemble"), raw,
                        (torch.rand(4, 1, 8, 8, 6) < 0.5).float())
    expected = sum(t(raw) for t in teachers) / 3
    assert torch.allclose(learner.teacher_logits(raw), expected, atol=1e-6)
    assert all(not p.requires_grad for t in teachers for p in t.parameters())


def test_short_colearning_run_beats_the_untrained_student(tmp_path):
    from neurokd.training import accuracy

    cfg = build_config(overrides=["data.limit=400", "teacher.epochs=20", "teacher.hidden=[32]",
                                  "student.epochs=10", "student.hidden=32", "student.timesteps=8",
                                  "distill.method=colearn"])
    ds = pipeline.load_data(cfg)
    teacher, _ = pipeline.train_teacher(cfg, ds, progress=False)
    pipeline.save_teacher(tmp_path / "t.pt", teacher, cfg, ds)
    torch.manual_seed(cfg.seed)
    untrained = SpikingNet(pipeline.student_spec(cfg, ds))
    prepare = pipeline.make_prepare("rate", 8, untrained.window_pad)
    before = accuracy(untrained.eval(), ds.test, prepare, pipeline.spike_counts)
    student, co_teacher, m = pipeline.train_distilled(cfg, ds, tmp_path / "t.pt", progress=False)
    assert m["snn_accuracy"] > max(0.5, before + 0.2), (m["snn_accuracy"], before)
    assert "teacher_accuracy_after" in m and 0 <= m["teacher_accuracy_after"] <= 1
    assert student.window_pad == 2 and co_teacher is not None
