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


def test_fine_tuning_keeps_the_start_when_no_epoch_beats_it():
    """A trained linear model fine-tuned by an objective that only hurts (it rewards wrong
    classes): with keep_start the start comes back; without it, the least bad epoch does."""
    import copy

    from neurokd.training import fit

    ds = pipeline.load_data(build_config(overrides=["data.limit=400"]))
    ident = lambda x, _g: x  # noqa: E731
    logits = lambda m, x: m(x.flatten(1))  # noqa: E731
    model = torch.nn.Linear(64, 10)
    fit(model, ds.train, ds.val, ident, logits, epochs=30, lr=0.05, batch_size=32, patience=30, seed=0)
    start_acc = accuracy(model, ds.val, ident, logits, seed=1)
    assert start_acc > 0.8
    hurt = lambda m, raw, x, y: -torch.nn.functional.cross_entropy(logits(m, x), y)  # noqa: E731
    runs = {}
    for keep in (True, False):
        m = copy.deepcopy(model)
        res = fit(m, ds.train, ds.val, ident, logits, epochs=2, lr=0.05, batch_size=32, patience=2,
                  seed=0, objective=hurt, keep_start=keep)
        runs[keep] = (m, res)
    kept, res = runs[True]
    assert res.best_epoch == 0 and res.best_val_accuracy == start_acc
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), model.state_dict().values()))
    moved, res = runs[False]
    assert res.best_epoch >= 1 and res.best_val_accuracy < start_acc
    assert not torch.equal(moved.weight, model.weight)
