"""Tasks in parallel: in this process, in forked worker processes, or as one-CPU tasks on a Ray
cluster. The architecture search scores its candidates with it and the benchmarks run their
cells with it.

A task is ``fn(*args)``, ``fn`` a module-level function. :class:`Workers` runs tasks in one of
three ways:

- **in this process** (``in_process``): one after the other, with one torch thread while the
  workers are open (the previous count comes back on ``close``);
- **in forked worker processes**, at most ``jobs`` at once. Each worker computes with one torch
  thread, runs in a process group of its own (so that ending the group ends the worker's own
  children too), leaves Ctrl-C to the parent, dies at once on SIGTERM and SIGHUP, and dies with
  the parent (Linux). A worker takes task after task (``reuse``, the default; ``initializer``
  runs once in each) or runs a single task in a process of its own (``reuse=False``). A worker's
  first task is handed to it as it forks; later ones are pickled to it;
- **on a Ray cluster** (``ray_address``, the optional ``ray`` extra), up to as many at once as
  the cluster has CPUs, each task with one torch thread; ``initargs`` go into Ray's object store
  once and ``initializer`` runs before each task.

``start(key, fn, *args)`` and ``wait(timeout)`` run tasks as a caller schedules them (results
in the order they finish, as :class:`Outcome`); ``map`` and ``imap`` run one function over a
list and give the results in the list's order. ``stop`` ends every running task, the workers'
children included (SIGTERM to each worker's process group, SIGKILL to what is left after a grace
period; on Ray, forced cancellation). Leaving a ``with Workers(...)`` block by an exception (a
signal turned into :class:`neurokd.interrupts.Interrupted`, a failed task) stops them; leaving it
normally lets the idle workers exit.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple

from neurokd.errors import NeurokdError
from neurokd.interrupts import worker_signals


# ---------------------------------------------------------------- Ray
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable address for minutes; a plain TCP connection tells at once."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise NeurokdError(f"Ray address {address!r}: expected host:port, ray://host:port or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise NeurokdError(f"could not reach the Ray cluster at {address!r}: "
                           f"{exc.strerror or exc}") from None


def connect_ray(address: str):
    """Join the Ray cluster at ``address`` (``host:port``, ``ray://host:port`` or ``auto``) and
    return the ``ray`` module. A malformed or unreachable address, or a missing ``ray`` extra, is a
    :class:`NeurokdError` at once. The caller's SIGTERM handler is kept (``ray.init`` would
    replace it with ``sys.exit``)."""
    try:
        import ray
    except ImportError:
        raise NeurokdError("--ray needs Ray, an optional extra: pip install 'neurokd[ray]'") from None
    import logging

    _check_reachable(address)
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError ...
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NeurokdError(f"could not join the Ray cluster at {address!r}: {message}") from None
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return ray


# ---------------------------------------------------------------- one task
@dataclass
class Outcome:
    """What one task came to: its ``value`` and the ``seconds`` it took, or ``error`` (the
    exception's type and the first line of its message), the worker's ``traceback`` and, where it
    could be sent back, the ``exception`` itself."""

    value: Any = None
    seconds: float = 0.0
    error: Optional[str] = None
    traceback: str = ""
    exception: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class WorkerTraceback(Exception):
    """The traceback of a task that failed in a worker (the ``__cause__`` of the error that
    ``map`` raises), naming the task."""

    def __init__(self, task: str, text: str) -> None:
        super().__init__(task, text)
        self.task, self.text = task, text

    def __str__(self) -> str:
        return f"{self.task} failed in a worker:\n{self.text.rstrip()}"


class TaskError(RuntimeError):
    """A task failed and its own exception could not be sent back (or a worker died without a
    result): the task and the error."""


def one_thread() -> None:
    """One torch thread in this process (and one OpenMP or MKL thread in what it starts)."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)


def _portable(exc: BaseException) -> Optional[BaseException]:
    """``exc`` if it survives pickling (to be sent back to the parent), else None."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that cannot travel is described in text
        return None
    return exc


def _failure(exc: BaseException, portable: bool = True) -> Outcome:
    """The outcome of a task that raised ``exc`` (called in its ``except`` block)."""
    text = str(exc).strip().splitlines()
    # only an Exception is raised again in the parent: a task's SystemExit or KeyboardInterrupt
    # must not end or "interrupt" the caller
    sendable = (_portable(exc) if portable else exc) if isinstance(exc, Exception) else None
    return Outcome(error=f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "),
                   traceback=traceback.format_exc(), exception=sendable)


def _execute(fn: Callable[..., Any], args: Sequence[Any]) -> Outcome:
    """Run one task in a worker: its value and seconds, or what it raised."""
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported with the task's name by the parent
        return _failure(exc)
    return Outcome(value=value, seconds=time.perf_counter() - t0)


def _ray_task(initializer: Optional[Callable[..., Any]], initargs: Sequence[Any],
              fn: Callable[..., Any], *args: Any) -> Outcome:
    """One task on a Ray worker: one torch thread, the initializer, then the task."""
    one_thread()
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - reported as the task's failure
            return _failure(exc)
    return _execute(fn, args)


# ---------------------------------------------------------------- forked workers
def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _send(conn, outcome: Outcome) -> None:
    try:
        conn.send(outcome)
    except Exception as exc:  # noqa: BLE001 - e.g. a value that cannot be pickled
        conn.send(Outcome(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()))


def _worker(conn, parent: int, first: Tuple[Callable[..., Any], Sequence[Any]],
            initializer: Optional[Callable[..., Any]], initargs: Sequence[Any], reuse: bool,
            inherited: Sequence[Any]) -> None:
    """A forked worker: a process group of its own (the parent ends the group, the worker's
    children included), Ctrl-C left to the parent, SIGTERM fatal, and it dies with the parent.
    It runs ``first``, then (``reuse``) each task it receives until it receives None."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    worker_signals()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    for other in inherited:  # the parent's ends of the pipes, this worker's own included
        with contextlib.suppress(OSError):
            other.close()
    one_thread()
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - reported as the first task's failure
            _send(conn, _failure(exc))
            conn.close()
            return
    task: Optional[Tuple[Callable[..., Any], Sequence[Any]]] = first
    while task is not None:
        _send(conn, _execute(*task))
        if not reuse:
            break
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
    conn.close()


def _signal_group(process, signum: int) -> None:
    """``signum`` to a worker's process group (itself and its children), or to the worker alone
    where it has no group of its own (yet); never to a pid already reaped."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signum)


class _Process:
    """One forked worker: its process, the parent's end of its pipe, and its task (None: idle)."""

    def __init__(self, process, conn, key: Hashable) -> None:
        self.process, self.conn, self.key = process, conn, key


class _Processes:
    def __init__(self, jobs: int, initializer, initargs, reuse: bool) -> None:
        import multiprocessing as mp

        self.mp = mp.get_context("fork")
        self.slots = max(1, int(jobs))
        self.initializer, self.initargs, self.reuse = initializer, tuple(initargs), reuse
        self.workers: List[_Process] = []

    @property
    def running(self) -> List[Hashable]:
        return [w.key for w in self.workers if w.key is not None]

    def start(self, key: Hashable, fn, args) -> None:
        for w in [w for w in self.workers if w.key is None]:
            if not w.process.is_alive():
                self._drop(w)
                continue
            try:
                w.conn.send((fn, args))
            except (OSError, ValueError):  # it ended meanwhile
                self._drop(w)
                continue
            w.key = key
            return
        conn, child = self.mp.Pipe(duplex=True)
        p = self.mp.Process(target=_worker, name=f"worker {key}",
                            args=(child, os.getpid(), (fn, args), self.initializer, self.initargs,
                                  self.reuse, [w.conn for w in self.workers] + [conn]))
        p.start()
        child.close()
        with contextlib.suppress(OSError):
            os.setpgid(p.pid, p.pid)  # also here: whichever of parent and child comes first
        self.workers.append(_Process(p, conn, key))

    def _drop(self, w: _Process) -> None:
        with contextlib.suppress(Exception):
            w.conn.close()
        w.process.join(2.0)
        self.workers.remove(w)

    def wait(self, timeout: float) -> List[Tuple[Hashable, Outcome]]:
        from multiprocessing.connection import wait

        busy = {w.conn: w for w in self.workers if w.key is not None}
        if not busy:
            return []
        finished = []
        for conn in wait(list(busy), timeout=timeout):
            w = busy[conn]
            key, w.key = w.key, None
            try:
                outcome = conn.recv()
            except (EOFError, OSError):
                outcome = None
            if outcome is None or not self.reuse:
                conn.close()
                w.process.join()
                self.workers.remove(w)
            if outcome is None:
                code = w.process.exitcode
                why = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit code {code}")
                outcome = Outcome(error=f"the worker died without a result ({why})")
            finished.append((key, outcome))
        return finished

    def stop(self, grace: float, idle: bool = False) -> None:
        """End the workers that run a task (``idle``: all of them)."""
        ending = [w for w in self.workers if idle or w.key is not None]
        # only processes not reaped yet: a reaped one's pid may belong to another process now
        procs = [w.process for w in ending if w.process.exitcode is None]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            _signal_group(p, signal.SIGKILL)
            p.join(2.0)
        for w in ending:
            with contextlib.suppress(Exception):
                w.conn.close()
            self.workers.remove(w)

    def close(self) -> None:
        """Let the idle workers exit (they receive None), then end what is left."""
        for w in self.workers:
            if w.key is None:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            if w.key is None:
                w.process.join(max(0.0, deadline - time.monotonic()))
        self.stop(grace=2.0, idle=True)


class _Ray:
    def __init__(self, address: str, initializer, initargs, ship: Iterable[str], retries: int) -> None:
        try:
            import ray
        except ImportError:
            raise NeurokdError("--ray needs Ray, an optional extra: pip install 'neurokd[ray]'") from None
        self.joined = not ray.is_initialized()
        if self.joined:
            ray = connect_ray(address)
        self.ray = ray
        # modules that are not installed on the cluster's nodes travel with the tasks
        for name in ship:
            module = sys.modules.get(name)
            if module is not None and name != "__main__" and name.split(".")[0] != "neurokd":
                ray.cloudpickle.register_pickle_by_value(module)
        self.task = ray.remote(num_cpus=1, max_retries=retries)(_ray_task)
        self.initializer = initializer
        self.initargs = ray.put(tuple(initargs)) if initializer is not None else ()
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.tasks: Dict[Any, Hashable] = {}

    @property
    def running(self) -> List[Hashable]:
        return list(self.tasks.values())

    def start(self, key: Hashable, fn, args) -> None:
        self.tasks[self.task.remote(self.initializer, self.initargs, fn, *args)] = key

    def wait(self, timeout: float) -> List[Tuple[Hashable, Outcome]]:
        if not self.tasks:
            return []
        done, _ = self.ray.wait(list(self.tasks), num_returns=1, timeout=timeout)
        finished = []
        for ref in done:
            key = self.tasks.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a task lost with its worker or node
                outcome = Outcome(error=f"the Ray task failed: {type(exc).__name__}: {exc}")
            finished.append((key, outcome))
        return finished

    def stop(self, grace: float, idle: bool = False) -> None:
        for ref in list(self.tasks):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.tasks.clear()

    def close(self) -> None:
        self.stop(0.0)
        if self.joined:
            self.ray.shutdown()  # leaves the driver; the cluster keeps running


class _InProcess:
    def __init__(self, initializer, initargs) -> None:
        self.slots = 1
        self.threads: Optional[int] = None
        with contextlib.suppress(ImportError):
            import torch

            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)
        if initializer is not None:
            initializer(*initargs)
        self.done: List[Tuple[Hashable, Outcome]] = []

    @property
    def running(self) -> List[Hashable]:
        return []

    def start(self, key: Hashable, fn, args) -> None:
        t0 = time.perf_counter()
        try:
            value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a signal's exception ends the run instead
            self.done.append((key, _failure(exc, portable=False)))
        else:
            self.done.append((key, Outcome(value=value, seconds=time.perf_counter() - t0)))

    def wait(self, timeout: float) -> List[Tuple[Hashable, Outcome]]:
        done, self.done = self.done, []
        return done

    def stop(self, grace: float, idle: bool = False) -> None:
        self.done = []

    def close(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
            self.threads = None


# ---------------------------------------------------------------- the scheduler
class Workers:
    """Runs tasks at most ``jobs`` at once in forked worker processes, or (``in_process``) in
    this one, or (``ray_address``, whatever ``in_process`` says) as one-CPU tasks on that Ray
    cluster (``jobs`` is then its CPU count). ``initializer(*initargs)`` prepares each worker (this process, once, with
    ``in_process``; each Ray task before it runs). ``reuse=False``: each task in a worker process
    of its own. ``ship``: names of modules that Ray sends with the tasks by value (code that is not
    installed on the cluster's nodes); ``ray_retries``: how often Ray runs again a task whose
    worker was lost."""

    def __init__(self, jobs: int = 1, ray_address: Optional[str] = None, *, in_process: bool = False,
                 initializer: Optional[Callable[..., Any]] = None, initargs: Sequence[Any] = (),
                 reuse: bool = True, ship: Iterable[str] = (), ray_retries: int = 0) -> None:
        if ray_address:
            self._backend: Any = _Ray(ray_address, initializer, initargs, ship, ray_retries)
        elif in_process:
            self._backend = _InProcess(initializer, initargs)
        else:
            self._backend = _Processes(jobs, initializer, initargs, reuse)
        self.in_process = isinstance(self._backend, _InProcess)
        self._closed = False

    @property
    def slots(self) -> int:
        """How many tasks run at once."""
        return self._backend.slots

    @property
    def running(self) -> List[Hashable]:
        """The keys of the tasks running now."""
        return self._backend.running

    def start(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Start ``fn(*args)`` as the task ``key`` (the caller keeps at most ``slots`` running;
        in this process, it runs now)."""
        self._backend.start(key, fn, args)

    def wait(self, timeout: float) -> List[Tuple[Hashable, Outcome]]:
        """The tasks that finished within ``timeout`` seconds (none when nothing runs), as
        ``(key, outcome)`` in the order they finished."""
        return self._backend.wait(timeout)

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``fn(item)`` for each of ``items``, in their order, as they become available. A task
        that fails raises its own exception when its turn comes (chained from a
        :class:`WorkerTraceback` that names it and holds the worker's traceback), or a
        :class:`TaskError` where its exception could not be sent back; what still runs is then
        stopped."""
        if self.in_process:
            for item in items:
                yield fn(item)
            return
        if self.running:
            raise RuntimeError("imap and map need workers with no task running")
        todo = list(enumerate(items))
        count = len(todo)
        todo.reverse()
        done: Dict[int, Outcome] = {}
        failed: Optional[int] = None  # the first task known to have failed
        turn = 0  # the next result to give
        try:
            while turn < count:
                # in the items' order, so that every task before a failed one has started
                while todo and failed is None and len(self.running) < self.slots:
                    i, item = todo.pop()
                    self.start(i, fn, item)
                if turn in done:
                    outcome = done.pop(turn)
                    if not outcome.ok:
                        self._raise(turn, outcome)
                    yield outcome.value
                    turn += 1
                    continue
                for key, outcome in self.wait(timeout=0.5):
                    done[key] = outcome
                    if not outcome.ok and (failed is None or key < failed):
                        failed = key
        except BaseException:  # a failed task, a signal, or the consumer gone (GeneratorExit)
            self.stop()
            raise

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> List[Any]:
        """``[fn(item) for item in items]``, run in parallel; errors as in :meth:`imap`."""
        return list(self.imap(fn, items))

    @staticmethod
    def _raise(index: int, outcome: Outcome) -> None:
        task = f"task {index}"
        if outcome.exception is not None:
            raise outcome.exception from WorkerTraceback(task, outcome.traceback)
        raise TaskError(f"{task} failed: {outcome.error}") from (
            WorkerTraceback(task, outcome.traceback) if outcome.traceback else None)

    def stop(self, grace: float = 5.0) -> None:
        """End every running task: SIGTERM to the process group of each worker that runs one
        (its children included), SIGKILL to what is left after ``grace`` seconds; on Ray, cancel
        them. Idle workers stay for the next tasks."""
        self._backend.stop(grace)

    def close(self, abort: bool = False) -> None:
        """Release the workers: the idle ones exit; ``abort`` (an error, a signal) ends them at
        once. Leaves the Ray cluster if these workers joined it; in this process, the torch
        thread count comes back."""
        if self._closed:
            return
        self._closed = True
        if abort:
            self._backend.stop(grace=2.0, idle=True)
        self._backend.close()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)
