"""Run a netx network in Lava, many samples in one run, and collect the output spikes.

Each sample occupies a window of ``W = T + pad`` steps: its ``T`` encoded frames, then ``pad``
zero frames (``pad >= L`` for ``L`` spiking layers). netx resets each layer every ``W`` steps,
one step later per layer, in step with the one-step synaptic delay between layers, so that every
layer starts each sample from zero state as the PyTorch model does, and only zero frames reach a
layer between its reset and the sample's first frame. The output of sample ``i`` is ``out[:, i*W:(i+1)*W]``.

Backends: ``sim`` is Lava's CPU simulator in bit-accurate fixed point (``Loihi2SimCfg``,
``fixed_pt``); ``loihi2`` runs on a Loihi 2 chip through Intel's lava-loihi (``Loihi2HwCfg``);
``auto`` takes the chip when lava-loihi reports one, else the simulator. The chip path follows
lava-loihi's documented adapters; it has not been run on a chip from this project yet.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from neurokd.errors import NeurokdError
from neurokd.h5safe import check_hdf5

BACKENDS = ("auto", "sim", "loihi2")


def loihi2_available() -> bool:
    """True when Intel's lava-loihi is installed and a Loihi 2 host is configured (SLURM, or an
    Ethernet host in ``NXSDKHOST`` as set by ``lava.utils.loihi.use_ethernet_host``)."""
    import os

    try:
        from lava.utils import loihi, slurm
    except ImportError:
        return False
    if not loihi.is_installed():
        return False
    return bool(os.environ.get("NXSDKHOST")) or bool(slurm.is_available())


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise NeurokdError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "loihi2" if loihi2_available() else "sim"
    if backend == "loihi2" and not loihi2_available():
        raise NeurokdError("backend loihi2 asked for, but no Loihi 2 system is reachable "
                           "(needs Intel's lava-loihi); use --backend sim or auto")
    return backend


@dataclass
class LavaResult:
    spikes: np.ndarray  # (N, K, W) output spikes per sample (any non-zero output)
    backend: str
    seconds: float
    values: Optional[np.ndarray] = None  # (N, K, W) the output's payloads (graded networks)


def lava_input_frames(frames: np.ndarray, conv_input: bool) -> np.ndarray:
    """(N, C[, H, W], steps) in slayer's order → (N, *lava_shape, steps).

    netx lays images out as (x, y, channel) = (W, H, C); dense inputs are flat in C·H·W order.
    """
    if conv_input:
        return np.ascontiguousarray(frames.transpose(0, 3, 2, 1, 4))
    return frames.reshape(frames.shape[0], -1, frames.shape[-1])


def pad_needed(num_spiking_layers: int) -> int:
    """Zero frames a sample needs after its input for an exact per-sample reset in Lava."""
    return max(1, num_spiking_layers)


def count_spiking_layers(net_path: str | Path) -> int:
    """Layers of the netx file that hold neurons (and so a synaptic delay and a reset)."""
    import h5py

    check_hdf5(net_path, "netx network")  # nothing outside the file is ever read
    with h5py.File(net_path, "r") as h:
        layers = h["layer"]
        count = 0
        for key in layers:
            kind = layers[key]["type"][0].decode() if hasattr(layers[key]["type"][0], "decode") \
                else str(layers[key]["type"][0])
            if kind in ("dense", "conv") or (kind == "input" and "neuron" in layers[key]):
                count += 1
    return count


def import_lava():
    """Import netx and Lava's runtime; return ``(netx, RunSteps, Loihi2SimCfg, Loihi2HwCfg, io)``.

    Lava calls ``multiprocessing.set_start_method('fork')`` when its runtime is first imported,
    which raises if anything in the process already fixed the start method (torch can, during
    training). Lava needs 'fork' either way, so the call is made idempotent for that import.
    """
    import multiprocessing as mp
    from unittest import mock

    original = mp.set_start_method

    def set_fork(method=None, force=False):
        if mp.get_start_method(allow_none=True) != "fork":
            original("fork", force=True)

    with mock.patch.object(mp, "set_start_method", set_fork), \
            contextlib.redirect_stdout(io.StringIO()):
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
        from lava.proc import io as lava_io
    return netx, RunSteps, Loihi2SimCfg, Loihi2HwCfg, lava_io


STOP_SECONDS = 5.0


def stop_lava(net, before=frozenset(), timeout: float = STOP_SECONDS) -> None:
    """Stop the network's Lava runtime and end its processes, within ``timeout`` seconds.

    Lava's runtime runs each process model, its runtime service and a shared-memory manager in
    processes forked on the first ``run``. ``net.stop()`` tells them to stop and waits for each
    one, without a time limit: it never returns when a run was cut off before the runtime came
    up, or when a process model died. It runs in a helper thread; if it has not finished after
    ``timeout`` seconds, the process models and runtime service (children started since
    ``before``) are killed, which lets the stop go on to shut down the shared-memory manager;
    failing that, it is shut down directly, and finally whatever is left is killed.
    After an interruption, neurokd's signal handling makes those children ignore the signal
    (it reaches the whole process group on Ctrl-C), so that this ordered stop can run.
    """
    from neurokd.interrupts import end_processes, in_thread

    def started():
        return [p for p in mp.active_children() if p not in before]

    def end_models():
        end_processes([p for p in started() if type(p).__name__ == "SystemProcess"], grace=0)

    runtime = getattr(net, "runtime", None)
    if runtime is not None and not getattr(runtime, "_is_started", True):
        # Cut off before the first run began: the processes wait for a first command and Lava's
        # stop would wait for them; end them first, then stop removes the shared memory.
        end_models()
    stopped = in_thread(net.stop, name="lava-stop")
    if stopped.wait(timeout):
        return
    end_models()
    if stopped.wait(3.0):
        return
    # Still blocked (on a message from a runtime service that is gone): shut down the
    # shared-memory manager directly, so that its segments are removed, then kill the rest.
    infrastructure = getattr(getattr(net, "runtime", None), "_messaging_infrastructure", None)
    smm = getattr(infrastructure, "smm", None)
    if smm is not None:
        in_thread(smm.shutdown, name="lava-smm-shutdown").wait(3.0)
    end_processes(started(), grace=0)


def run_lava(net_path: str | Path, frames: np.ndarray, message_bits: int, backend: str = "auto",
             chunk: int = 50, progress: bool = True, stream: bool = False) -> LavaResult:
    """Run ``frames`` (N, *lava_shape, W) through the network; return the output spikes per sample.

    ``stream``: the samples follow each other with no reset and no leading quiet window, the
    network keeping its state (sigma-delta networks, which netx cannot reset); the result also
    holds the output's payloads."""
    import time

    from neurokd.interrupts import start_resource_tracker

    backend = resolve_backend(backend)
    netx, RunSteps, Loihi2SimCfg, Loihi2HwCfg, lava_io = import_lava()

    # One window of zeros goes first: the first reset of a layer falls inside it, so the first
    # real sample, like every later one, finds each biased layer reset L steps before its first
    # frame (without it, layer l of the first sample integrated its bias l + 1 steps instead of L).
    if not stream:
        frames = np.concatenate([np.zeros_like(frames[:1]), frames], axis=0)
    n, window = frames.shape[0], frames.shape[-1]
    data = np.moveaxis(frames, 0, -2).reshape(*frames.shape[1:-1], n * window)
    if message_bits == 0:
        data = (data > 0).astype(np.int32)
    else:
        data = data.astype(np.int32)
    t0 = time.perf_counter()
    # netx resets layer l at Lava steps (reset_offset + 1 + l) mod W (steps count from 1), and a
    # sample's frame 0 reaches layer l at step i*W + l + 2. reset_offset = 1 - L puts the output
    # layer's reset on the first step of each output window; every layer then sees exactly L zero
    # frames between its reset and the sample's first frame.
    depth = count_spiking_layers(net_path)
    if stream:
        net = netx.hdf5.Network(net_config=str(net_path), input_message_bits=message_bits)
    elif frames.shape[-1] - pad_needed(depth) < 1:
        raise NeurokdError(f"a window of {window} steps is too short for a {depth}-layer network")
    else:
        net = netx.hdf5.Network(net_config=str(net_path), reset_interval=window,
                                reset_offset=(1 - depth) % window, input_message_bits=message_bits)
    if tuple(net.inp.shape) != tuple(data.shape[:-1]):
        raise NeurokdError(f"{net_path}: network input shape {tuple(net.inp.shape)} does not "
                           f"match the data's {tuple(data.shape[:-1])}")
    source = lava_io.source.RingBuffer(data=data)
    sink = lava_io.sink.RingBuffer(shape=net.out.shape, buffer=n * window)
    if backend == "sim":
        source.s_out.connect(net.inp)
        net.out.connect(sink.a_in)
        run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
    else:
        # On the chip, spikes cross between the host's Python processes and the neuro-cores
        # through lava-loihi's embedded I/O adapters.
        from lava.proc import embedded_io as eio

        into_chip = eio.spike.PyToNxAdapter(shape=net.inp.shape,
                                            num_message_bits=message_bits)
        out_of_chip = eio.spike.NxToPyAdapter(shape=net.out.shape)
        source.s_out.connect(into_chip.inp)
        into_chip.out.connect(net.inp)
        net.out.connect(out_of_chip.inp)
        out_of_chip.out.connect(sink.a_in)
        run_cfg = Loihi2HwCfg(select_tag="fixed_pt")
    per_run = max(1, chunk) * window
    before = set(mp.active_children())  # Lava forks its runtime's processes on the first run
    start_resource_tracker()
    first = 0 if stream else 1
    bar = tqdm(total=n - first, desc=f"lava ({backend})", unit="sample", disable=not progress, leave=False)
    try:
        done = 0
        while done < n * window:
            steps = min(per_run, n * window - done)
            net.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
            done += steps
            bar.update(max(0, min(n - first, done // window - first) - bar.n))
        out = sink.data.get()
    finally:
        bar.close()
        stop_lava(net, before)
    values = out.reshape(out.shape[0], n, window).transpose(1, 0, 2)[first:]
    return LavaResult(spikes=(values != 0).astype(np.uint8), backend=backend,
                      seconds=time.perf_counter() - t0,
                      values=np.rint(values).astype(np.int64) if stream else None)
