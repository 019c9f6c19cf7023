"""Where training runs: the device (``--device auto|cpu|cuda``) and data-parallel processes.

**Devices.** ``resolve_device("auto")`` is the GPU when PyTorch sees one, else the CPU; asking for
``cuda`` where there is none is one clear error. Training (``training.fit``, its validation
included) runs on the device; what follows it (test evaluation, export, Lava) runs on the CPU, where
the exported integers and Lava live. Data are encoded on the CPU with the run's seeded generator
on every device, so the random draws do not depend on the device.

**Data parallel.** A command started by ``torchrun --nproc_per_node N -m neurokd.cli ...`` runs in
N processes (on one machine or several) with PyTorch's ``DistributedDataParallel``: gloo on the
CPU, NCCL on GPUs (process ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK``). Batch-size semantics:
``batch_size`` stays the *global* batch. Every process draws and encodes the same global batch
from the same seeded generator and trains on its own contiguous share of it; each share's loss is
weighted by its size, so the averaged gradient is the gradient of the global batch's mean loss, as
in one process. What differs from one process is only the order of floating-point sums, and
statistics computed inside a model's forward pass over its batch (BatchNorm's batch statistics:
per share, not synchronised). Validation is shared out by batches and the correct counts summed,
so every process takes the same early-stopping and model-selection decisions. Process 0 writes
the run directory and prints; the others run the same command into a temporary directory that
they delete, and print nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from neurokd.errors import NeurokdError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: Optional[str] = "auto") -> torch.device:
    """``auto``: ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` or ``cuda:N`` checked."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise NeurokdError(f"--device {name}: PyTorch sees no CUDA GPU here "
                               "(torch.cuda.is_available() is False); use --device cpu or auto")
        dev = torch.device(name)
        if dev.index is None and world().size > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NeurokdError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return dev
    raise NeurokdError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's rank and the number of processes (1 unless a process group is running)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> World:
    """Join the process group that ``torchrun`` set up (its environment variables), with NCCL when
    the processes train on GPUs and gloo otherwise. A no-op outside torchrun."""
    import torch.distributed as dist

    if not launched_by_torchrun() or dist.is_initialized():
        return world()
    if not dist.is_available():
        raise NeurokdError("torchrun started several processes, but this PyTorch build lacks "
                           "torch.distributed")
    want = (device or "auto").lower()
    gpu = want.startswith("cuda") or (want == "auto" and torch.cuda.is_available())
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group("nccl" if gpu else "gloo")
    except (RuntimeError, ValueError) as exc:
        raise NeurokdError(f"could not join torchrun's process group: {exc}") from None
    return world()


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(n: int, w: World) -> Tuple[slice, float]:
    """This process's contiguous share of a global batch of ``n`` samples, and the weight of its
    mean loss (``len(share) · size / n``) that makes the processes' averaged gradient the global
    batch's. A process whose share is empty takes sample 0 with weight 0."""
    bounds = [n * r // w.size for r in range(w.size + 1)]
    lo, hi = bounds[w.rank], bounds[w.rank + 1]
    if hi == lo:
        return slice(0, 1), 0.0
    return slice(lo, hi), (hi - lo) * w.size / n


def all_sum(values, device: torch.device) -> list:
    """Sum a list of numbers over the processes (returned as floats); unchanged in one process."""
    import torch.distributed as dist

    if world().size == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
