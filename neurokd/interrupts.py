"""Signals end a run cleanly: nothing half-written is kept, no child process outlives the run.

While :func:`signals_to_exceptions` is active (``neurokd.cli.main`` wraps every command in it),
SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main
thread, so every ``with RunDir(...)``, ``atomic_path`` and ``finally`` on the way out runs. Only
the first signal raises: later ones are ignored, so that a second Ctrl-C cannot cut the cleanup
short; every wait in the cleanup is bounded instead. A signal is never raised inside a fork
(at-fork hooks would be left half-done, logging's lock held), and it is not lost where its
exception is dropped instead of unwinding the run (an at-fork hook, ``__del__``, C code that
clears errors, a bare ``except``): when the exception is freed before the run has ended, the
signal is delivered again 0.05 s later.

Processes forked while the handlers are installed (Lava's runtime processes, the shared-memory
manager) inherit them: in a child whose parent is still the main process, a signal is ignored,
since a signal to the process group reaches them too and the main process then stops them in
order (Lava's own stop; the workers of ``neurokd.parallel`` are terminated). A child whose parent
is gone dies by the signal's default action. Those workers (the search's scoring processes, the
benchmarks' cells) ignore SIGINT and die at once on SIGTERM (:func:`worker_signals`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import weakref
from multiprocessing import popen_fork
from typing import Callable, Iterable, Iterator, List, Optional, Set

# imported here, not in the signal handler (which may run in the middle of an import)
_LAUNCH = popen_fork.Popen._launch.__code__

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A signal asked the run to end; ``signum`` tells which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _State:
    pid: Optional[int] = None  # the process that installed the handlers
    received: Optional[int] = None  # the first signal it got
    holding: bool = False  # record signals without raising
    keep: frozenset = frozenset()  # descendants the process had before (an in-process caller's)
    unraisable_hook: Callable = sys.__unraisablehook__
    raised: Optional[weakref.ref] = None  # the Interrupted raised, while it is alive
    dropped: Optional[int] = None  # a signal whose exception was dropped, being delivered again

    @property
    def signum(self) -> Optional[int]:
        """The signal that interrupted the run, if one did."""
        return self.received if self.received is not None else self.dropped

    def hold(self) -> None:
        """From now on a signal is only recorded (in ``received``), not raised: for the last
        steps of a run, which must not be cut short. ``main`` calls it once the run has unwound
        (or ended)."""
        self.holding = True


_STATE = _State()


def _handler(signum: int, frame) -> None:
    if os.getpid() != _STATE.pid:
        # A forked child (Lava's runtime, a manager process): the main process ends it in order.
        if os.getppid() == _STATE.pid:
            return
        signal.signal(signum, signal.SIG_DFL)  # orphaned: die as the signal says
        os.kill(os.getpid(), signum)
        return
    if _STATE.received is not None:
        return  # already ending: let the cleanup run to its end
    if not _STATE.holding and (_forking(frame) or _importing(frame)):
        _again_soon(signum)
        return
    _STATE.received = signum
    if not _STATE.holding:
        raise _interrupted(signum)


def _interrupted(signum: int) -> Interrupted:
    # Made here, so that no frame of its traceback holds it (a cycle would keep it alive).
    exc = Interrupted(signum)
    _STATE.raised = weakref.ref(exc, _dropped)
    return exc


def _dropped(ref) -> None:
    """The raised :class:`Interrupted` was freed before the run reached its end (``hold``):
    something dropped it instead of letting it unwind the run (C code that clears errors, a bare
    ``except``, an at-fork hook, ``__del__``). Deliver the signal again, a moment later."""
    if ref is _STATE.raised and not _STATE.holding and os.getpid() == _STATE.pid:
        _STATE.raised = None
        signum, _STATE.received = _STATE.received, None
        if signum is not None:
            _STATE.dropped = signum
            _again_soon(signum)


def _forking(frame) -> bool:
    """True inside multiprocessing's fork, at-fork hooks included. An exception raised in an
    at-fork hook is dropped, and it leaves that hook's work undone: logging's module lock, taken
    before the fork and released after it, would stay held, and the next log call from another
    thread (Lava's stop logs) would wait for ever."""
    launch = _LAUNCH
    depth = 0
    while frame is not None and depth < 100:
        if frame.f_code is launch:
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def _importing(frame) -> bool:
    """True while a module is being imported. An exception raised there can reach a C extension's
    own import (numpy's ``import_array``), which prints it as a traceback and turns it into an
    ImportError, so the run would end as an internal error instead of an interruption."""
    depth = 0
    while frame is not None and depth < 200:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def interrupted() -> bool:
    """True once this process received a signal that ends the run (for code that catches broad
    exceptions: an error then is a consequence of the signal, not a failure of its own)."""
    return _STATE.pid == os.getpid() and _STATE.signum is not None


class _Redelivery:
    """A helper thread that sends a signal to this process again 0.05 s after it is asked to. It
    is started with the handlers, so that no thread has to be started inside a signal handler (or
    inside a fork); the request goes through a SimpleQueue, which is safe to use there."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="neurokd-signals", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.requests.put(None)
            self.thread.join(5.0)
        self.thread = None

    def _run(self) -> None:
        while True:
            request = self.requests.get()
            if request is None:
                return
            pid, signum = request
            time.sleep(0.05)
            # Only while the handlers that asked for it are still in place, and nothing else
            # was raised meanwhile.
            if pid == os.getpid() == _STATE.pid and _STATE.received is None \
                    and not _STATE.holding:
                os.kill(pid, signum)


_REDELIVERY = _Redelivery()


def _again_soon(signum: int) -> None:
    """Deliver ``signum`` to this process again in 0.05 s."""
    _REDELIVERY.requests.put((os.getpid(), signum))


def _unraisable(hook_args) -> None:
    """An exception raised where Python cannot propagate it (an at-fork hook, ``__del__``, a
    weakref callback) is printed and dropped. For a signal's, print nothing: once it is freed,
    :func:`_dropped` delivers the signal again."""
    if isinstance(hook_args.exc_value, Interrupted) and os.getpid() == _STATE.pid:
        return
    _STATE.unraisable_hook(hook_args)


@contextlib.contextmanager
def signals_to_exceptions(ignore_after: bool = True) -> Iterator[_State]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` for the block (main thread only;
    elsewhere the block runs unchanged). The previous handlers come back after the block, unless a
    signal arrived and ``ignore_after``: then further signals stay ignored until the process
    exits, so that the exit itself (joining what is left) is not interrupted either."""
    if threading.current_thread() is not threading.main_thread():
        yield _State()  # signals stay as they are; nothing is recorded
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    saved = (_STATE.pid, _STATE.received, _STATE.holding, _STATE.keep, _STATE.unraisable_hook)
    _STATE.pid, _STATE.received, _STATE.holding = os.getpid(), None, False
    _STATE.raised = _STATE.dropped = None
    _STATE.keep = frozenset(descendants())
    _STATE.unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable
    _REDELIVERY.start()
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield _STATE
    finally:
        if _STATE.signum is not None and ignore_after:
            # SIG_IGN, not a Python handler: Python's finalization puts SIG_DFL back in place of
            # Python handlers, and a second Ctrl-C would then kill the process as it exits.
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)
        else:
            # The state first: from here on nothing asks for or sends a signal again.
            sys.unraisablehook = _STATE.unraisable_hook
            _STATE.raised = _STATE.dropped = None
            (_STATE.pid, _STATE.received, _STATE.holding, _STATE.keep,
             _STATE.unraisable_hook) = saved
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
            if saved[0] is None:  # the outermost block
                _REDELIVERY.stop()


def worker_signals() -> None:
    """For a forked worker that holds nothing to clean up: ignore Ctrl-C (the parent handles it
    and ends the worker) and die at once, quietly, on SIGTERM or SIGHUP."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in SIGNALS:
        if s != signal.SIGINT:
            signal.signal(s, signal.SIG_DFL)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (which removes shared memory that a killed
    process left) immune to SIGHUP as it is to SIGINT and SIGTERM: a hang-up to the process group
    would otherwise end it, and the next shared-memory call would warn that it died. Before
    Lava's runtime creates its shared memory."""
    from multiprocessing import resource_tracker

    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited through exec
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)


def in_thread(fn: Callable[[], object], name: str = "neurokd-cleanup") -> threading.Event:
    """Run ``fn`` in a daemon thread; the returned event is set when it has finished. Its
    exceptions are dropped: this is for cleanup that must not hang or mask the first error (wait
    on the event with a timeout)."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except BaseException:  # noqa: BLE001 - cleanup: the caller only needs to know it ended
            pass
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    return done


def end_processes(procs: Iterable[mp.process.BaseProcess], grace: float = 2.0) -> None:
    """Terminate multiprocessing children (SIGTERM), wait up to ``grace`` seconds, kill what is
    left (SIGKILL) and reap them. ``grace=0`` kills at once."""
    procs = [p for p in procs if _alive(p)]
    if grace > 0:
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        deadline = time.monotonic() + grace
        for p in procs:
            _join(p, max(0.0, deadline - time.monotonic()))
    for p in procs:
        if _alive(p):
            with contextlib.suppress(Exception):
                p.kill()
    for p in procs:
        _join(p, 2.0)


def _join(p: mp.process.BaseProcess, timeout: float) -> None:
    # The base class's join: a subclass may drop the timeout (Lava's SystemProcess does).
    with contextlib.suppress(Exception):
        mp.process.BaseProcess.join(p, timeout)


def _alive(p: mp.process.BaseProcess) -> bool:
    try:
        return p.is_alive()
    except Exception:  # closed, or not our child
        return False


def descendants(pid: Optional[int] = None) -> List[int]:
    """Pids of every living descendant of ``pid`` (default: this process), from /proc; on systems
    without /proc, this process's multiprocessing children."""
    root = os.getpid() if pid is None else pid
    if not os.path.isdir("/proc"):
        return [p.pid for p in mp.active_children()] if root == os.getpid() else []
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and fields[0] != b"Z":  # zombies have ended already
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(keep: Iterable[int] = ()) -> List[int]:
    """Last resort after a run was interrupted: SIGKILL every descendant of this process except
    ``keep`` and multiprocessing's resource tracker (which exits by itself once this process has,
    and removes what shared memory was left). Returns the pids killed."""
    from multiprocessing import resource_tracker

    spare: Set[int] = set(keep)
    tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    if tracker is not None:
        spare.add(tracker)
    killed = []
    for pid in descendants():
        if pid in spare:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    if killed:
        mp.active_children()  # reaps the multiprocessing children among them
    return killed
