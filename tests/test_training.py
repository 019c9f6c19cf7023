import numpy as np
import pytest
import torch

from neurokd.config import build_config
from neurokd.data import load_dataset
from neurokd import pipeline
from neurokd.errors import NeurokdError
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
    from neurokd.models.cuba.net import SpikingNet

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


def _trained_linear(ds):
    from neurokd.training import fit

    ident = lambda x, _g: x  # noqa: E731
    logits = lambda m, x: m(x.flatten(1))  # noqa: E731
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    fit(model, ds.train, ds.val, ident, logits, epochs=30, lr=0.05, batch_size=32, patience=30, seed=0,
        progress=False)
    return model, ident, logits


def test_diverging_fine_tuning_keeps_the_start_and_says_so():
    """A learning rate far too large makes fine-tuning worse at every epoch: the start comes back,
    and the log says in one line that fine-tuning did not beat it."""
    import copy

    from neurokd.training import fit

    ds = pipeline.load_data(build_config(overrides=["data.limit=400"]))
    model, ident, logits = _trained_linear(ds)
    start_acc = accuracy(model, ds.val, ident, logits, seed=1)
    assert start_acc > 0.8
    tuned, lines = copy.deepcopy(model), []
    res = fit(tuned, ds.train, ds.val, ident, logits, epochs=3, lr=50.0, batch_size=32, patience=3,
              seed=0, keep_start=True, progress=False, log=lines.append, desc="tune")
    assert res.best_epoch == 0 and res.start_val_accuracy == start_acc == res.best_val_accuracy
    assert max(h["val_accuracy"] for h in res.history) < start_acc
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), model.state_dict().values()))
    verdict = [line for line in lines if "did not beat" in line]
    assert verdict == [lines[-1]]
    assert verdict[0].startswith(f"tune: fine-tuning did not beat the starting weights (validation "
                                 f"accuracy {start_acc:.4f}")
    assert "kept the start" in verdict[0]


def test_cosine_schedule_decays_the_learning_rate_to_zero():
    from neurokd.training import fit

    ds = pipeline.load_data(build_config(overrides=["data.limit=200"]))
    ident = lambda x, _g: x  # noqa: E731
    logits = lambda m, x: m(x.flatten(1))  # noqa: E731
    rates = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    real, torch.optim.Adam = torch.optim.Adam, Spy
    try:
        fit(torch.nn.Linear(64, 10), ds.train, ds.val, ident, logits, epochs=2, lr=0.1,
            batch_size=len(ds.train) // 2 + 1, patience=2, seed=0, progress=False, schedule="cosine")
    finally:
        torch.optim.Adam = real
    # 2 epochs of 2 steps: the rate at each step is 0.1 * (1 + cos(pi * step / 4)) / 2
    assert np.allclose(rates, [0.1, 0.1 * (1 + np.cos(np.pi / 4)) / 2, 0.05,
                               0.1 * (1 + np.cos(3 * np.pi / 4)) / 2])


def test_student_schedule_reaches_the_student_training(monkeypatch, tmp_path):
    """``student.schedule`` is the learning-rate schedule train-snn and distill train with
    (constant unless asked)."""
    seen = []

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        seen.append(kwargs["schedule"])
        raise Stop

    kd = build_config(overrides=["data.limit=200", "student.timesteps=2", "distill.method=kd",
                                 "student.schedule=cosine"])
    ds = pipeline.load_data(kd)
    teacher = pipeline.train_teacher(build_config(overrides=["data.limit=200", "teacher.epochs=1"]),
                                     ds, progress=False)[0]
    path = pipeline.save_teacher(tmp_path / "teacher.pt", teacher, kd, ds)
    monkeypatch.setattr(pipeline, "fit", spy)
    for overrides, want in (([], "constant"), (["student.schedule=cosine"], "cosine")):
        cfg = build_config(overrides=["data.limit=200", "student.timesteps=2", *overrides])
        with pytest.raises(Stop):
            pipeline.train_snn(cfg, ds, progress=False)
        assert seen[-1] == want
    with pytest.raises(Stop):
        pipeline.train_distilled(kd, ds, path, progress=False)
    assert seen == ["constant", "cosine", "cosine"]
    with pytest.raises(NeurokdError, match="schedule"):
        build_config(overrides=["student.schedule=linear"])


def test_without_a_progress_bar_each_epoch_is_one_line_with_its_values():
    """For logs and pipes: one line per epoch (loss, validation accuracy, seconds, time left),
    carrying the values the history records; with the bar, only the outcome is logged."""
    import re

    from neurokd.training import fit

    ds = pipeline.load_data(build_config(overrides=["data.limit=200"]))
    ident = lambda x, _g: x  # noqa: E731
    logits = lambda m, x: m(x.flatten(1))  # noqa: E731
    lines = []
    res = fit(torch.nn.Linear(64, 10), ds.train, ds.val, ident, logits, epochs=3, lr=0.05,
              batch_size=32, patience=3, seed=0, progress=False, log=lines.append, desc="lin")
    pattern = re.compile(r"lin: epoch (\d+)/3: loss ([\d.]+), validation accuracy ([\d.]+) "
                         r"\(best ([\d.]+) at epoch \d+\), ([\d.]+) s; (about .+ left|done)$")
    epochs = [pattern.match(line) for line in lines[:-1]]
    assert len(epochs) == 3 and all(epochs), lines
    for m, h in zip(epochs, res.history):
        assert int(m.group(1)) == h["epoch"]
        assert m.group(2) == f"{h['loss']:.4f}" and m.group(3) == f"{h['val_accuracy']:.4f}"
    assert [m.group(6) == "done" for m in epochs] == [False, False, True]
    assert lines[-1].startswith(f"lin: best validation accuracy {res.best_val_accuracy:.4f} at epoch "
                                f"{res.best_epoch} (3 epochs")
    quiet = []
    fit(torch.nn.Linear(64, 10), ds.train, ds.val, ident, logits, epochs=2, lr=0.05, batch_size=32,
        patience=2, seed=0, progress=True, log=quiet.append, desc="lin")
    assert len(quiet) == 1 and quiet[0].startswith("lin: best validation accuracy")


def test_durations_read_as_minutes_and_hours():
    from neurokd.training import duration

    assert [duration(s) for s in (0.4, 42, 65, 3599.6, 3725)] == ["0 s", "42 s", "1 min 05 s",
                                                                  "1 h 00 min", "1 h 02 min"]
