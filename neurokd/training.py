"""One training loop for teachers and students: seeded batches, progress bar, early stopping."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurokd import runtime
from neurokd.data.datasets import Split
from neurokd.data.encoders import encode_window, get_encoder
from neurokd.errors import NeurokdError

# prepare(x, generator) turns a batch of samples into the model's input (identity, or an encoder).
Prepare = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# readout(model, input) returns class logits (N, K).
Readout = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# objective(model, raw batch, model input, labels) returns the training loss.
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class FitResult:
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    history: List[Dict[str, float]] = field(default_factory=list)
    # Validation accuracy of the starting weights (``keep_start``), before any epoch: epoch 0.
    start_val_accuracy: Optional[float] = None

    @property
    def epoch_seconds(self) -> float:
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else 0.0


SCHEDULES = ("constant", "cosine")


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


EVAL_BATCH = 256


def identity(x: torch.Tensor, _: torch.Generator) -> torch.Tensor:
    return x


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def make_prepare(encoder: str, timesteps: int, pad: int) -> Prepare:
    """Samples → the SNN's input window: ``timesteps`` encoded frames and ``pad`` zero frames."""
    enc = get_encoder(encoder)
    if timesteps <= 0:
        raise NeurokdError(f"timesteps must be positive, got {timesteps}")

    def prepare(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return encode_window(x, enc, timesteps, pad, gen)

    return prepare


def spike_counts(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Decoded output of an SNN: output spike counts over the window, used as class logits."""
    return model(x).sum(-1)


def encoded_batches(split: Split, prepare: Prepare, seed: int, batch_size: int = EVAL_BATCH,
                    limit: Optional[int] = None) -> Iterator[Tuple[torch.Tensor, np.ndarray]]:
    """Yield ``(model input, labels)`` batches of ``split`` in order, encoded with a seeded generator.

    The draws depend only on ``seed`` and ``batch_size``, so the first samples get the same
    encoding whether the whole split is evaluated or only a ``limit``-sized head of it.
    """
    gen = torch.Generator().manual_seed(seed)
    stop = len(split) if limit is None else min(limit, len(split))
    for start in range(0, stop, batch_size):
        xb = prepare(torch.as_tensor(split.x[start:start + batch_size]), gen)
        keep = min(batch_size, stop - start)
        yield xb[:keep], split.y[start:start + keep]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, split: Split, prepare: Prepare, readout: Readout,
            batch_size: int = EVAL_BATCH, seed: int = 0) -> np.ndarray:
    """Predicted class per sample; the encoder's randomness is seeded so the result is repeatable.
    Samples are encoded on the CPU and evaluated on ``model``'s device."""
    model.eval()
    dev = model_device(model)
    preds = [readout(model, xb.to(dev)).argmax(1).cpu().numpy()
             for xb, _ in encoded_batches(split, prepare, seed, batch_size)]
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, split: Split, prepare: Prepare, readout: Readout,
             batch_size: int = EVAL_BATCH, seed: int = 0) -> float:
    w = runtime.world()
    if w.size == 1:
        return float((predict(model, split, prepare, readout, batch_size, seed) == split.y).mean())
    # Data parallel: every process encodes the same batches (the draws stay those of one
    # process) and evaluates every size-th of them; the correct counts are summed.
    model.eval()
    dev = model_device(model)
    correct = 0
    with torch.no_grad():
        for i, (xb, yb) in enumerate(encoded_batches(split, prepare, seed, batch_size)):
            if i % w.size == w.rank:
                pred = readout(model, xb.to(dev)).argmax(1).cpu().numpy()
                correct += int((pred == yb).sum())
    return runtime.all_sum([correct], dev)[0] / max(1, len(split))


def _every_parameter_trains(model: nn.Module) -> bool:
    """Whether every step's loss reaches every trainable parameter of ``model``: true of SNN
    students and plain DNNs, not of the training wrappers (a QAT layer drawn unquantized leaves
    its quantizer step out; a distillation path may leave an adapter or a scale out)."""
    from neurokd.models.cuba.net import SpikingNet

    return isinstance(model, (SpikingNet, nn.Sequential))


class _Step(nn.Module):
    """One training step's loss as a module's forward pass, for DistributedDataParallel (which
    synchronises the gradients of what its wrapped module's forward computed)."""

    def __init__(self, model: nn.Module, readout: Readout, objective: Optional[Objective]) -> None:
        super().__init__()
        self.model = model
        self.readout, self.objective = readout, objective
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, raw: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if self.objective is None:
            return self.loss_fn(self.readout(self.model, xb), yb)
        return self.objective(self.model, raw, xb, yb)


def fit(model: nn.Module, train: Split, val: Split, prepare: Prepare, readout: Readout, *,
        epochs: int, lr: float, batch_size: int, patience: int, seed: int,
        weight_decay: float = 0.0, desc: str = "train", progress: bool = True,
        objective: Optional[Objective] = None, param_groups: Optional[List[Dict]] = None,
        log: Optional[Callable[[str], None]] = None, keep_start: bool = False,
        schedule: str = "constant", device: str | torch.device = "cpu",
        companions: Sequence[nn.Module] = (), train_prepare: Optional[Prepare] = None,
        keep_last: bool = False) -> FitResult:
    """Adam on ``objective`` (default: cross-entropy of ``readout``); keeps the weights of the best
    validation epoch, judged by ``readout``. Stops early after ``patience`` epochs without a better
    validation accuracy. ``param_groups`` (Adam's format) default to all of ``model``'s parameters.
    With ``keep_start`` (fine-tuning), the starting weights are validated too, as epoch 0, and kept
    when no epoch beats them. ``schedule``: ``constant`` learning rate, or ``cosine`` decay from
    ``lr`` towards 0 over the ``epochs``, step by step. ``train_prepare``: how training batches
    are prepared, when it differs from validation (data augmentation; default ``prepare``).
    ``keep_last``: keep the last epoch's weights, not the best (a loss that trades accuracy for
    something else, such as sparsity, would otherwise be undone by the selection).

    ``progress`` shows a progress bar; without it, each epoch is reported as one line to ``log``
    (loss, validation accuracy, seconds, an estimate of the time left), for logs and pipes. The
    outcome is one line to ``log`` either way.

    ``device``: where the model trains and validates (``runtime.resolve_device`` names); the
    model is back on the CPU when ``fit`` returns, and so are ``companions``: modules the
    ``objective`` uses besides ``model`` (a frozen teacher), which go to the device with it. Under ``torchrun``, the processes train one
    model data-parallel (``neurokd.runtime`` states the batch-size semantics).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    seed_everything(seed)
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(device)
    w = runtime.world()
    for m in (model, *companions):
        m.to(dev)
    step = _Step(model, readout, objective)
    if w.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers are not broadcast: slayer's neuron state buffers take the shape of the last
        # batch, which differs between processes after the shared-out validation.
        step = DistributedDataParallel(step, device_ids=[dev.index] if dev.type == "cuda" else None,
                                       find_unused_parameters=not _every_parameter_trains(model),
                                       broadcast_buffers=False)
    groups = param_groups if param_groups is not None else [{"params": list(model.parameters())}]
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    trained = [p for g in opt.param_groups for p in g["params"]]
    n = len(train)
    total_steps = max(1, epochs * -(-n // batch_size))
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    gen = torch.Generator().manual_seed(seed)
    best_state = copy.deepcopy(model.state_dict())
    best_val, best_epoch, stale = -1.0, 0, 0
    start_val: Optional[float] = None
    lines = log if (log is not None and not progress) else None
    if keep_start:
        best_val = start_val = accuracy(model, val, prepare, readout, seed=seed + 1)
        if lines is not None:
            lines(f"{desc}: start: validation accuracy {start_val:.4f}")
    history: List[Dict[str, float]] = []
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
    began = time.perf_counter()
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        total, count = _train_epoch(step, opt, sched, trained, train, train_prepare or prepare,
                                    order, gen, batch_size, w, dev, desc, epoch)
        total, count = runtime.all_sum([total, count], dev)
        seconds = time.perf_counter() - t0
        val_acc = accuracy(model, val, prepare, readout, seed=seed + 1)
        history.append({"epoch": epoch, "loss": total / count, "val_accuracy": val_acc,
                        "seconds": seconds})
        bar.set_postfix(loss=f"{total / count:.3f}", val=f"{val_acc:.3f}")
        improved = val_acc > best_val
        if improved:
            best_val, best_epoch, stale = val_acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if lines is not None:
            elapsed = time.perf_counter() - began
            left = elapsed / epoch * (epochs - epoch)
            lines(f"{desc}: epoch {epoch}/{epochs}: loss {total / count:.4f}, validation accuracy "
                  f"{val_acc:.4f} (best {best_val:.4f} at {_at(best_epoch)}), {seconds:.1f} s; "
                  + (f"about {duration(left)} left" if epoch < epochs else "done"))
        if stale >= patience and not keep_last:
            break
    bar.close()
    if keep_last and history:
        best_val, best_epoch = history[-1]["val_accuracy"], history[-1]["epoch"]
    else:
        model.load_state_dict(best_state)
    for m in (model, *companions):
        m.to("cpu")
    if log is not None:
        _log_outcome(log, desc, history, epochs, patience, keep_start, best_epoch, best_val,
                     start_val)
    return FitResult(best_epoch, best_val, len(history), history, start_val)


def _train_epoch(step: nn.Module, opt: torch.optim.Optimizer,
                 sched: Optional[torch.optim.lr_scheduler.LambdaLR],
                 trained: Sequence[torch.Tensor], train: Split, prepare: Prepare,
                 order: torch.Tensor, gen: torch.Generator, batch_size: int, w: runtime.World,
                 dev: torch.device, desc: str, epoch: int) -> Tuple[float, int]:
    """One epoch of optimizer steps over ``train`` in ``order``: this process's summed loss and
    its sample count (before they are summed over the processes)."""
    n = len(order)
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size].numpy()
        raw = torch.as_tensor(train.x[idx])
        xb = prepare(raw, gen)  # on the CPU, with the same draws on every device
        yb = torch.as_tensor(train.y[idx])
        part, weight = runtime.share(len(idx), w)
        raw, xb, yb = raw[part].to(dev), xb[part].to(dev), yb[part].to(dev)
        loss = step(raw, xb, yb)
        opt.zero_grad()
        (loss * weight).backward()  # weight 1 in one process
        opt.step()
        if sched is not None:
            sched.step()
        value = float(loss)
        if not (math.isfinite(value) and _finite(trained)):
            # averaged gradients carry a NaN to every process's weights, so under torchrun
            # every process stops at the same step
            what = f"the loss is {value}" if not math.isfinite(value) else \
                "the weights hold NaN or infinite values"
            raise NeurokdError(
                f"{desc}: training diverged at epoch {epoch}, batch {start // batch_size + 1}: "
                f"{what}; stopped, nothing saved (look for NaN or infinite values in the "
                "teacher, the data or the configuration; a lower learning rate may help)")
        total += value * len(yb) * (weight > 0)
        count += len(yb) * (weight > 0)
    return total, count


def _log_outcome(log: Callable[[str], None], desc: str, history: List[Dict[str, float]],
                 epochs: int, patience: int, keep_start: bool, best_epoch: int, best_val: float,
                 start_val: Optional[float]) -> None:
    """The one line that says how ``fit`` ended: the epochs run, and the weights kept."""
    ran = len(history)
    how = (f"{ran} epochs, stopped early after {patience} without a better validation "
           f"accuracy" if ran < epochs else f"{ran} epochs")
    if history:
        how += f", {np.mean([h['seconds'] for h in history]):.2f} s/epoch"
    if keep_start and best_epoch == 0:
        peak = max(history, key=lambda h: h["val_accuracy"]) if history else None
        tried = (f"; its best epoch, {peak['epoch']}, reached {peak['val_accuracy']:.4f}"
                 if peak else "")
        log(f"{desc}: fine-tuning did not beat the starting weights (validation accuracy "
            f"{start_val:.4f}{tried}); kept the start ({how})")
    else:
        since = f", start {start_val:.4f}" if start_val is not None else ""
        log(f"{desc}: best validation accuracy {best_val:.4f} at epoch {best_epoch} "
            f"({how}{since})")


def _finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` is finite (one device synchronisation)."""
    flags = [torch.isfinite(t.detach()).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _at(epoch: int) -> str:
    return f"epoch {epoch}" if epoch else "the start"
