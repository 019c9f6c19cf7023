"""The package's scheduler (neurokd.parallel): tasks in forked worker processes, in this process
or on Ray, with ordered results, one torch thread each, one clear error for a failed task, and
signals that end every worker and its children. The search's scorer uses it (that 1 and 2
workers score alike is tests/nas/test_nas.py's
test_the_search_does_not_depend_on_the_worker_count); the benchmarks' cells use it too
(tests/benchmarks/test_bench_cells.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch  # imported before the workers fork, as by the search and the benchmarks

from neurokd.parallel import Outcome, TaskError, Workers, WorkerTraceback
from tests.conftest import process_alive

_STATE = {}  # what the initializer prepares, in each worker (or this process)


@pytest.fixture(autouse=True)
def _fresh_state():
    _STATE.clear()
    yield
    _STATE.clear()


# ---------------------------------------------------------------- tiny tasks
def prepare(offset):
    _STATE["offset"] = offset
    _STATE["prepared"] = _STATE.get("prepared", 0) + 1


def cell(x):
    """x squared plus the initializer's offset, with where and how it ran."""
    time.sleep(0.05 * (x % 3))  # so that tasks finish out of order
    return {"value": x * x + _STATE.get("offset", 0), "pid": os.getpid(),
            "threads": torch.get_num_threads(), "prepared": _STATE.get("prepared", 0)}


def raises_on_three(x):
    if x == 3:
        raise ValueError(f"no square for {x}")
    if x > 3:
        time.sleep(30)  # still running when the failure is known: it is ended
    return x * x


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a} and {b}")


def raises_unpicklable(x):
    raise Unpicklable(x, x)


def exits(x):
    sys.exit(4)


def dies(x):
    os._exit(3)


def _values(results):
    return [r["value"] for r in results]


# ---------------------------------------------------------------- tests
def test_workers_and_this_process_give_the_same_results_in_order():
    xs = list(range(7))
    with Workers(2, initializer=prepare, initargs=(100,)) as workers:
        forked = workers.map(cell, xs)
        again = workers.map(cell, xs)  # the same workers, still prepared
    threads = torch.get_num_threads()
    with Workers(in_process=True, initializer=prepare, initargs=(100,)) as workers:
        here = workers.map(cell, xs)
    assert torch.get_num_threads() == threads  # this process's thread count came back
    assert _values(forked) == _values(again) == _values(here) == [100 + x * x for x in xs]
    pids = {r["pid"] for r in forked + again}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers, reused
    assert {r["prepared"] for r in forked + again} == {1}  # prepared once each
    assert {r["pid"] for r in here} == {os.getpid()}
    assert {r["threads"] for r in forked + here} == {1}
    # one process per task when asked
    _STATE.clear()
    with Workers(2, reuse=False) as workers:
        single = workers.map(cell, xs)
    assert _values(single) == [x * x for x in xs] and len({r["pid"] for r in single}) == len(xs)


def test_start_and_wait_report_each_task_by_its_key():
    with Workers(2, reuse=False) as workers:
        assert workers.slots == 2 and workers.running == [] and workers.wait(0.1) == []
        workers.start("b", cell, 2)
        workers.start("a", cell, 1)
        assert sorted(workers.running) == ["a", "b"]
        finished = []
        while workers.running:
            finished += workers.wait(timeout=1.0)
    assert [k for k, _ in finished] == ["a", "b"]  # in the order they finished
    outcome = dict(finished)["b"]
    assert isinstance(outcome, Outcome) and outcome.ok and outcome.value["value"] == 4
    assert outcome.seconds >= 0.1


def test_a_failed_task_is_one_clear_error_and_ends_what_still_runs():
    t0 = time.monotonic()
    with Workers(2) as workers:
        with pytest.raises(ValueError, match="no square for 3") as info:
            workers.map(raises_on_three, [1, 2, 3, 4, 5])
        assert workers.running == []  # the task still sleeping was ended
        assert workers.map(raises_on_three, [1, 2]) == [1, 4]  # and the workers go on
    assert time.monotonic() - t0 < 20
    cause = info.value.__cause__
    assert isinstance(cause, WorkerTraceback) and "task 2 failed in a worker" in str(cause)
    assert "raise ValueError" in str(cause)  # the worker's traceback
    with Workers(in_process=True) as workers:  # here it is raised as it is
        with pytest.raises(ValueError, match="no square for 3"):
            workers.map(raises_on_three, [1, 2, 3])


@pytest.mark.parametrize("fn, message", [
    (raises_unpicklable, "task 0 failed: Unpicklable: 0 and 0"),
    (exits, "task 0 failed: SystemExit: 4"),
    (dies, r"task 0 failed: the worker died without a result \(exit code 3\)"),
])
def test_errors_that_cannot_be_raised_again_name_their_task(fn, message):
    with Workers(2) as workers:
        with pytest.raises(TaskError, match=message):
            workers.map(fn, [0, 1])


SIGNAL_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, time
    from neurokd.interrupts import Interrupted, signals_to_exceptions
    from neurokd.parallel import Workers

    def hold(i):
        child = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(sys.argv[1], f"{{i}}.pids"), "w") as fh:
            fh.write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(60)

    if __name__ == "__main__":
        try:
            with signals_to_exceptions(), Workers(2) as workers:
                workers.map(hold, [0, 1, 2])
        except Interrupted as exc:
            sys.exit(128 + exc.signum)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_every_worker_and_its_children(tmp_path, signum):
    script = tmp_path / "run.py"
    script.write_text(SIGNAL_SCRIPT.format())
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while len(list(tmp_path.glob("*.pids"))) < 2 and time.time() < deadline:
            time.sleep(0.1)
        pids = [int(p) for f in tmp_path.glob("*.pids") for p in f.read_text().split()]
        assert len(pids) == 4 and all(process_alive(p) for p in pids)
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, output
    deadline = time.time() + 5
    while any(process_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if process_alive(p)]
    assert not (tmp_path / "2.pids").exists()  # the third task never started


RAY_TASKS = textwrap.dedent("""
    STATE = {}

    def prepare(table):
        STATE["table"] = table

    def look_up(x):
        import torch
        return STATE["table"][x], torch.get_num_threads()
""")

RAY_SCRIPT = textwrap.dedent("""
    import ray
    from neurokd.parallel import Workers
    from ray_tasks import look_up, prepare  # importable on the workers, as neurokd is

    if __name__ == "__main__":
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            with Workers(ray_address="auto", initializer=prepare,
                         initargs=({x: x * x for x in range(6)},)) as workers:
                print(workers.slots, workers.map(look_up, [5, 4, 3, 2, 1, 0]))
            print(ray.is_initialized())  # joined before: left joined
        finally:
            ray.shutdown()
""")


def test_tasks_run_on_ray_in_order(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "ray_tasks.py").write_text(RAY_TASKS)
    (tmp_path / "ray_map.py").write_text(RAY_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled", PYTHONPATH=str(tmp_path))
    res = subprocess.run([sys.executable, "ray_map.py"], capture_output=True, text=True,
                         timeout=240, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-2:] == [
        "2 [(25, 1), (16, 1), (9, 1), (4, 1), (1, 1), (0, 1)]", "True"]
