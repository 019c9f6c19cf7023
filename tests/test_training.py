import numpy as np
import torch

from neurokd.config import build_config
from neurokd.data import load_dataset
from neurokd import pipeline
from neurokd.training import accuracy, encoded_batches


def _cfg(*extra):
    return build_config(overrides=["data.limit=400", "teacher.epochs=20", "teacher.hidden=[32]",
                                   "student.epochs=3", "student.hidden=32", "student.timesteps=8",
                                   *extra])


def test_teacher_learns_and_same_seed_gives_same_model():
    cfg = _cfg()
    ds = pipeline.load_data(cfg)
    a, ma = pipeline.train_teacher(cfg, ds, progress=False)
    b, mb = pipeline.train_teacher(cfg, ds, progress=False)
    assert ma["teacher_accuracy"] > 0.8  # chance is 0.1
    assert ma["teacher_accuracy"] == mb["teacher_accuracy"]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_snn_training_beats_its_untrained_self():
    cfg = _cfg("student.epochs=6")
    ds = pipeline.load_data(cfg)
    torch.manual_seed(0)
    from neurokd.models.snn import SpikingNet

    untrained = SpikingNet(pipeline.student_spec(cfg, ds))
    prepare = pipeline.make_prepare("rate", 8, untrained.window_pad)
    before = accuracy(untrained.eval(), ds.test, prepare, pipeline.spike_counts)
    model, metrics = pipeline.train_snn(cfg, ds, progress=False)
    assert metrics["snn_accuracy"] > max(0.5, before + 0.2)
    assert metrics["snn_epochs"] >= 1 and len(metrics["snn_history"]) == metrics["snn_epochs"]


def test_encoded_head_equals_head_of_full_encoding():
    ds = load_dataset("digits", limit=600)
    prepare = pipeline.make_prepare("rate", 5, 2)
    full = torch.cat([x for x, _ in encoded_batches(ds.test, prepare, seed=1, batch_size=64)])
    head = torch.cat([x for x, _ in encoded_batches(ds.test, prepare, seed=1, batch_size=64, limit=70)])
    assert head.shape[0] == 70 and torch.equal(head, full[:70])
    ys = np.concatenate([y for _, y in encoded_batches(ds.test, prepare, seed=1, batch_size=64, limit=70)])
    assert np.array_equal(ys, ds.test.y[:70])
