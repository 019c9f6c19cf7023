"""Devices and data-parallel training: --device, and torchrun with 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurokd import runtime
from neurokd.errors import NeurokdError
from neurokd.models.checkpoint import load_checkpoint

from tests.conftest import run_cli

SMALL = ["--set", "data.limit=600", "--set", "student.hidden=32", "--timesteps", "8",
         "--set", "student.batch_size=64"]


def _torchrun(nproc: int, *args: str, cwd: Path, tmp: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc -m neurokd.cli ARGS``, each process on one
    thread; temporary files go to ``tmp`` so that a test sees what the processes leave there."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "-m", "neurokd.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "snn.pt")["state_dict"]


def test_resolve_device_names_and_refusals():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(NeurokdError, match="choose auto, cpu, cuda"):
        runtime.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(NeurokdError, match="sees no CUDA GPU"):
            runtime.resolve_device("cuda")


def test_share_splits_a_global_batch_so_weighted_means_average_to_the_global_mean():
    for n, size in ((64, 2), (41, 2), (10, 3), (1, 2)):
        parts = [runtime.share(n, runtime.World(r, size)) for r in range(size)]
        covered = [i for part, weight in parts if weight > 0 for i in range(n)[part]]
        assert covered == list(range(n))  # contiguous, disjoint, complete
        losses = torch.arange(n, dtype=torch.float64) ** 2
        averaged = sum(float(losses[part].mean()) * weight for part, weight in parts) / size
        assert averaged == pytest.approx(float(losses.mean()), rel=1e-12)


def test_device_flag_trains_on_the_cpu_and_refuses_a_missing_gpu(tmp_path):
    res = run_cli("train-snn", "--out", str(tmp_path / "cpu"), "--device", "cpu", "--epochs", "1",
                  *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _metrics(tmp_path / "cpu")["snn_epochs"] == 1
    bad = run_cli("train-snn", "--out", str(tmp_path / "gpu"), "--device", "gpu", cwd=tmp_path)
    assert bad.returncode == 2 and "'gpu' is not a device" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "gpu").exists()
    if not torch.cuda.is_available():
        res = run_cli("train-snn", "--out", str(tmp_path / "cuda"), "--device", "cuda", cwd=tmp_path)
        assert res.returncode == 2 and "sees no CUDA GPU" in res.stderr
        assert not (tmp_path / "cuda").exists()


def test_two_processes_train_as_one_train_snn_then_quantize(tmp_path):
    """torchrun with 2 gloo processes gives the one-process result: the same global batches,
    each process on half of each, gradients averaged. Only float summation order differs."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"snn{n}"
        res = _torchrun(n, "train-snn", "--out", str(out), "--epochs", "3", *SMALL, cwd=tmp_path,
                        tmp=scratch)
        assert res.returncode == 0, res.stderr[-2000:]
        runs[n] = out
    one, two = _metrics(runs[1]), _metrics(runs[2])
    assert one["snn_accuracy"] == two["snn_accuracy"] and one["snn_accuracy"] > 0.2
    assert one["snn_val_accuracy"] == two["snn_val_accuracy"]
    w1, w2 = _weights(runs[1]), _weights(runs[2])
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
    # Only process 0 wrote: one run directory each, and process 1's scratch run is gone.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("snn")) == ["snn1", "snn2"]
    assert list(scratch.glob("neurokd-rank*")) == []

    for n in (1, 2):
        out = tmp_path / f"q{n}"
        res = _torchrun(n, "quantize", "--snn", str(runs[1] / "snn.pt"), "--out", str(out),
                        "--method", "lsq_prob", "--bits", "4", "--epochs", "2",
                        "--set", "lava.samples=5", cwd=tmp_path, tmp=scratch)
        assert res.returncode == 0, res.stderr[-2000:]
    q1, q2 = _metrics(tmp_path / "q1"), _metrics(tmp_path / "q2")
    for key in ("qat_start_val_accuracy", "qat_val_accuracy", "qat_best_epoch", "quant_accuracy"):
        assert q1[key] == q2[key]
    assert list(scratch.glob("neurokd-rank*")) == []


def test_torchrun_refuses_a_command_that_does_not_train(tmp_path):
    res = _torchrun(2, "export", "--snn", "missing.pt", "--out", "x.net", cwd=tmp_path, tmp=tmp_path)
    assert res.returncode != 0
    assert "export does not train; run it without torchrun" in res.stderr


def test_two_processes_co_learn_as_one_student_and_teacher_alike(tmp_path):
    """distill --method colearn under torchrun: the teacher trains beside the student, both
    data-parallel, and 2 gloo processes give the one-process student and teacher."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    res = run_cli("train-teacher", "--out", "t", "--epochs", "3", "--set", "data.limit=600",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for n in (1, 2):
        res = _torchrun(n, "distill", "--teacher", "t/teacher.pt", "--method", "colearn", "--out",
                        f"c{n}", "--epochs", "2", *SMALL, cwd=tmp_path, tmp=scratch)
        assert res.returncode == 0, res.stderr[-2000:]
    one, two = _metrics(tmp_path / "c1"), _metrics(tmp_path / "c2")
    for key in ("snn_accuracy", "snn_val_accuracy", "teacher_accuracy", "teacher_accuracy_after"):
        assert one[key] == two[key], key
    before = load_checkpoint(tmp_path / "t" / "teacher.pt")["state_dict"]
    after = load_checkpoint(tmp_path / "c1" / "teacher.pt")["state_dict"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the teacher did learn
    for name in ("snn.pt", "teacher.pt"):
        w1 = load_checkpoint(tmp_path / "c1" / name)["state_dict"]
        w2 = load_checkpoint(tmp_path / "c2" / name)["state_dict"]
        assert w1.keys() == w2.keys()
        for key in w1:
            torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
    assert list(scratch.glob("neurokd-rank*")) == []
