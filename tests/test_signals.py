"""SIGTERM and SIGINT, to the process or its group, end a run cleanly: exit status 128 + signal,
one line on stderr and no traceback, nothing half-written left, and no child process alive.

The CLI runs as a user runs it, in its own session (so that its process group can be signalled
as a terminal's Ctrl-C does); every wait is on a condition, with a generous time limit.
"""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from neurokd.interrupts import Interrupted, signals_to_exceptions

# Limits for a machine twice as slow as the one the tests were written on, and busy: a run
# ended within about 1.5 s there.
START_LIMIT = 240  # seconds for a command to reach the point where it is signalled
END_LIMIT = 30  # seconds for it to end after the signal
GONE_LIMIT = 30  # seconds for every process it started to be gone


def _stat(pid: int):
    """(state, ppid, pgrp) of a process, or None if there is none (or only its zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _processes():
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def _descendants(root: int):
    procs = _processes()
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        for pid, (_, ppid, _) in procs.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _cpu_seconds(pids) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def _group(pgid: int):
    return {pid for pid, (_, _, pgrp) in _processes().items() if pgrp == pgid}


class Cli:
    """``python -m neurokd ARGS`` in its own session; output to files outside ``cwd``."""

    def __init__(self, args, cwd: Path, logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.out, self.err = logs / "stdout", logs / "stderr"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "neurokd", *args], cwd=cwd,
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.children = set()  # every process seen below it

    def wait_until(self, condition, what: str) -> None:
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            self.children |= _descendants(self.proc.pid)
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended (status {self.proc.returncode}) before {what}: "
                            f"{self.err.read_text()[-2000:]}")
            if condition():
                self.children |= _descendants(self.proc.pid)
                return
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"no {what} within {START_LIMIT} s")

    def signal(self, signum: int, group: bool) -> float:
        t0 = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            os.kill(self.proc.pid, signum)
        return t0

    def ended(self, t0: float):
        """Wait for the exit; return (status, seconds after the signal, stderr)."""
        try:
            code = self.proc.wait(END_LIMIT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {END_LIMIT} s after the signal: "
                        f"{self.err.read_text()[-2000:]}")
        return code, time.monotonic() - t0, self.err.read_text()

    def assert_nothing_survives(self) -> None:
        deadline = time.monotonic() + GONE_LIMIT
        while time.monotonic() < deadline:
            left = {pid for pid in self.children if _stat(pid) is not None} | _group(self.proc.pid)
            if not left:
                return
            time.sleep(0.05)
        for pid in left:  # so that they outlive no test
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pytest.fail(f"processes still alive {GONE_LIMIT} s after the command ended: "
                    f"{sorted(left)} of {sorted(self.children)}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()


def _assert_one_line(stderr: str, signame: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert f"neurokd: interrupted ({signame}); nothing half-written was kept" in lines, stderr
    # Lava's import may print one note of its own (no CUDA runtime found).
    assert len(lines) <= 2, stderr


def _partial(folder: Path) -> bool:
    return any(p.name.endswith(".partial") for p in folder.iterdir())


def test_sigterm_during_train_snn_leaves_no_run_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(["train-snn", "--out", "run", "--no-progress", "--set", "student.epochs=300",
               "--set", "student.patience=300", "--set", "student.hidden=16"],
              work, tmp_path / "logs")
    cli.wait_until(lambda: _partial(work), "run directory being written")
    code, seconds, stderr = cli.ended(cli.signal(signal.SIGTERM, group=False))
    assert code == 143, stderr
    _assert_one_line(stderr, "SIGTERM")
    assert sorted(p.name for p in work.iterdir()) == []  # no --out, no .partial, no lock
    cli.assert_nothing_survives()
    print(f"train-snn: ended {seconds:.2f} s after SIGTERM")


@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm-process", "sigint-group"])
def test_search_workers_end_with_the_search(tmp_path, signum, group):
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(["search", "--dataset", "digits", "--max-cores", "8", "--candidates", "5000",
               "--workers", "2", "--out", "s", "--no-progress"], work, tmp_path / "logs")
    # Signalled once both scoring workers run.
    cli.wait_until(lambda: len(_descendants(cli.proc.pid)) >= 2 and _partial(work),
                   "scoring workers")
    workers = len(cli.children)
    code, seconds, stderr = cli.ended(cli.signal(signum, group))
    assert code == 128 + signum, stderr
    _assert_one_line(stderr, signal.Signals(signum).name)
    assert sorted(p.name for p in work.iterdir()) == []
    cli.assert_nothing_survives()
    print(f"search: ended {seconds:.2f} s after {signal.Signals(signum).name}, {workers} children")


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    """A small exported network (digits, T = 24): Lava runs 400 test samples for seconds."""
    from neurokd import pipeline
    from neurokd.config import build_config

    folder = tmp_path_factory.mktemp("net")
    cfg = build_config(overrides=["student.epochs=1", "student.hidden=16"])
    ds = pipeline.load_data(cfg)
    model, _ = pipeline.train_snn(cfg, ds, progress=False)
    return pipeline.export_snn(model, folder / "net.net", pipeline.snn_meta(cfg, ds), ds)


@pytest.mark.lava
@pytest.mark.parametrize("signum, group, twice, running", [
    (signal.SIGINT, True, True, True),  # Ctrl-C, and again, in a terminal, mid-run
    (signal.SIGTERM, False, False, False),  # while Lava's runtime is starting its processes
], ids=["ctrl-c-twice-to-group-mid-run", "sigterm-process-at-start"])
def test_run_lava_ends_its_runtime_processes(tmp_path, small_net, signum, group, twice, running):
    cli = Cli(["run-lava", "--net", str(small_net), "--samples", "400", "--no-progress",
               "--metrics", str(tmp_path / "work" / "m.json")], tmp_path, tmp_path / "logs")
    # On its first run Lava's runtime forks a process per process model, a runtime service and
    # a shared-memory manager (7 here, with multiprocessing's resource tracker 9); mid-run they
    # have used a second of CPU time between them.
    if running:
        cli.wait_until(lambda: len(d := _descendants(cli.proc.pid)) >= 8 and _cpu_seconds(d) >= 1,
                       "Lava run under way")
    else:
        cli.wait_until(lambda: len(_descendants(cli.proc.pid)) >= 4, "Lava runtime processes")
    lava_processes = len(cli.children)
    t0 = cli.signal(signum, group)
    if twice:  # Ctrl-C pressed again while the first one is being handled
        time.sleep(0.2)
        if cli.proc.poll() is None:
            cli.signal(signum, group)
    code, seconds, stderr = cli.ended(t0)
    assert code == 128 + signum, stderr
    _assert_one_line(stderr, signal.Signals(signum).name)
    assert not (tmp_path / "work").exists()  # no metrics file, whole or partial
    cli.assert_nothing_survives()
    print(f"run-lava: ended {seconds:.2f} s after {signal.Signals(signum).name}, "
          f"{lava_processes} child processes")


def test_a_second_signal_does_not_cut_the_cleanup_short():
    steps = []
    outside = signal.getsignal(signal.SIGINT)
    with signals_to_exceptions(ignore_after=False) as state:
        with pytest.raises(Interrupted) as info:
            try:
                signal.raise_signal(signal.SIGTERM)
                steps.append("not reached")
            finally:
                signal.raise_signal(signal.SIGINT)  # ignored: the cleanup runs to its end
                steps.append("cleaned up")
        assert state.received == signal.SIGTERM
    assert info.value.signum == signal.SIGTERM and steps == ["cleaned up"]
    assert signal.getsignal(signal.SIGINT) is outside  # restored after the block


def test_a_signal_whose_exception_is_dropped_is_delivered_again():
    """Code that swallows the exception (a bare ``except``, C code that clears errors) must not
    make the run go on as if no signal had come."""
    with signals_to_exceptions(ignore_after=False) as state:
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            pass  # dropped, as some library code does
        with pytest.raises(Interrupted) as info:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)
        assert info.value.signum == signal.SIGTERM and state.received == signal.SIGTERM


class SystemProcess(mp.Process):
    """Named as Lava's process class; sleeps and ignores SIGTERM, as a Lava process does while
    neurokd's handlers run."""

    def run(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)


class _HungNetwork:
    """A network whose stop never returns (Lava's stop waits without a limit)."""

    runtime = None

    def stop(self):
        threading.Event().wait()


def test_a_lava_stop_that_hangs_is_cut_short_and_its_processes_killed():
    from neurokd.deploy.lava_run import stop_lava

    before = set(mp.active_children())
    child = SystemProcess()
    child.start()
    t0 = time.monotonic()
    stop_lava(_HungNetwork(), before, timeout=0.5)
    assert time.monotonic() - t0 < END_LIMIT  # about 3.5 s: 0.5 s, then 3 s for the stop to end
    child.join(10)
    assert child.exitcode == -signal.SIGKILL


def _noop():
    pass


def test_a_signal_during_a_fork_waits_until_the_fork_is_done(monkeypatch):
    """A signal that lands inside multiprocessing's fork (at-fork hooks included: logging takes
    its module lock before a fork and releases it after) is delivered once the fork is done. An
    exception raised in an at-fork hook is dropped and leaves the hook's work undone: the lock
    would stay held, and the next log call from another thread (Lava's stop logs) would hang."""
    import logging

    real_fork = os.fork

    def fork_hit_by_a_signal():
        signal.raise_signal(signal.SIGTERM)  # the handler runs here, inside the fork
        return real_fork()

    monkeypatch.setattr(os, "fork", fork_hit_by_a_signal)
    child = mp.get_context("fork").Process(target=_noop)
    with signals_to_exceptions(ignore_after=False):
        with pytest.raises(Interrupted):
            child.start()
            time.sleep(30)  # the signal comes back within 0.05 s
    monkeypatch.undo()
    assert child.pid is not None  # the fork was completed before the signal was raised
    child.join(10)
    assert child.exitcode == 0
    logged = threading.Event()
    threading.Thread(target=lambda: (logging.getLogger("neurokd.test").info("x"), logged.set()),
                     daemon=True).start()
    assert logged.wait(10), "logging's lock is still held after the signal"
