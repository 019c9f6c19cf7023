"""Quantization-aware training of a trained SNN for Loihi (``neurokd quantize``).

``quantize_snn`` starts from a trained slayer student, builds a ``QuantSpikingNet`` with the
requested bit-widths and, by method:

* ``ptq``: steps at round-to-nearest (the largest weight on the top level); no training;
* ``fixed_qat``: the ``ptq`` steps kept fixed, weights fine-tuned with every layer quantized;
* ``lsq``: trainable steps (LSQ, started at the least-squared-error step), every layer quantized;
* ``lsq_prob``: trainable steps, layers enter quantization by ``ProbSchedule``;
* ``lsq_prob_kd``: as ``lsq_prob``, and the full-precision model (the float SNN, or any
  ``reference``, e.g. a DNN teacher) supervises the quantized student through the distillation
  ``kd`` loss on spike counts scaled by a learned positive factor.

Evaluation and model selection always use the fully quantized network in Loihi numerics; the
starting point (the rounded network, before any fine-tuning) takes part in model selection, so
fine-tuning that only moves the weights off a good rounding is not kept.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from neurokd.config import QuantConfig
from neurokd.data.datasets import Dataset
from neurokd.distill.losses import LOSSES
from neurokd.quant.methods import QAT_METHODS
from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile
from neurokd.models.cuba.numerics import StateStats
from neurokd.models.cuba.quantized import QuantSpikingNet, check_bits
from neurokd.quant.schedule import ConstantSchedule, ProbSchedule
from neurokd.training import Prepare, accuracy, encoded_batches, fit, seed_everything

class Reference(nn.Module):
    """The full-precision model that supervises ``lsq_prob_kd``: ``reference(raw samples, encoded
    window)`` gives its class scores, ``scores(model, raw, window)``. Held as a module so that it
    goes to the training device with the student; frozen, and kept in evaluation mode."""

    def __init__(self, model: nn.Module,
                 scores: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.scores = scores

    def train(self, mode: bool = True) -> "Reference":
        return super().train(False)

    def forward(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.model, raw, x)
def layer_bits(q: QuantConfig, num_layers: int) -> List[int]:
    bits = list(q.layer_bits) if q.layer_bits else [q.bits] * num_layers
    if len(bits) != num_layers:
        raise NeurokdError(f"--layer-bits gives {len(bits)} bit-widths; the SNN has {num_layers} "
                           "spiking layers")
    return bits


def counts(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).sum(-1)


class _QATObjective(nn.Module):
    """Cross-entropy on spike counts, optionally mixed with soft targets of a reference model;
    advances the layer schedule at every training step."""

    def __init__(self, student: QuantSpikingNet, schedule, total_steps: int, q: QuantConfig,
                 reference: Optional[Reference]) -> None:
        super().__init__()
        self.student = student
        self.schedule = schedule
        self.total_steps = max(1, total_steps)
        self.q = q
        self.reference = reference
        self.log_logit_scale = nn.Parameter(torch.zeros(()))
        self.step_count = 0
        # States of the quantized layers during training, before Loihi's wrap and clip.
        self.stats = [StateStats() for _ in student.weights]

    def objective(self, raw: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = self.schedule.probabilities(self.step_count / self.total_steps)
        self.student.quant_prob.copy_(torch.tensor(probs))
        self.step_count += 1
        s = self.student(x, self.stats).sum(-1)
        loss = LOSSES.get("ce")(s, y)
        if self.reference is None:
            return loss
        with torch.no_grad():
            t = self.reference(raw, x)
        soft = LOSSES.get("kd")(s * self.log_logit_scale.exp(), t, temperature=self.q.temperature)
        return (1 - self.q.alpha) * loss + self.q.alpha * soft


def overflow_rows(stats: List[StateStats], limit: int) -> List[Dict[str, Any]]:
    return [{"layer": i, **st.as_dict(), "overflow": bool(max(st.max_abs_current, st.max_abs_voltage) > limit)}
            for i, st in enumerate(stats)]


FIT_SAMPLES = 1024  # training samples on which ``fit_state(mode="measured")`` measures states


def _state_peaks(model: QuantSpikingNet, mode: str, x: Optional[torch.Tensor],
                 encoder: Optional[str], timesteps: Optional[int]) -> List[int]:
    if mode == "bound":
        rows = model.state_bound(encoder, timesteps)
    else:
        # Measured in registers wide enough never to wrap or clip: the state the layer asks for,
        # which scales as 1 / step (a clipped voltage would understate it).
        profile = model.profile
        model.profile = profile.model_copy(update={"state_bits": 48})
        try:
            stats = [StateStats() for _ in model.weights]
            for start in range(0, len(x), 256):
                model(x[start:start + 256], stats)
        finally:
            model.profile = profile
        rows = [s.as_dict() for s in stats]
    return [max(r["max_abs_current"], r["max_abs_voltage"]) for r in rows]


@torch.no_grad()
def fit_state(model: QuantSpikingNet, mode: str, target: float, x: Optional[torch.Tensor] = None,
              encoder: Optional[str] = None, timesteps: Optional[int] = None) -> List[Dict[str, Any]]:
    """Coarsen the weight step of every layer whose state passes ``target`` times the profile's
    state limit, first layer first, until it does not; returns per layer the step factor, the
    peak state before and after and the largest integer ``|m|`` before and after.

    A layer's integers are ``W = m·2^g`` with ``m = round(w / s)`` and its threshold mantissa is
    ``θ·2^g / s``: multiplying ``s`` by ``f`` divides the weights, the threshold and so the whole
    state (current and voltage) by about ``f`` and leaves ``W / vth`` as it was, up to the rounding
    of the ``m``, which now take about ``f`` times fewer levels (``log2 f`` bits of weight
    precision). ``mode``: ``measured`` (the states of the batch ``x``), ``bound`` (the worst case
    over every input of ``encoder`` on ``timesteps`` frames, ``QuantSpikingNet.state_bound``)."""
    if mode == "bound" and (encoder is None or timesteps is None):
        raise NeurokdError("fit_state 'bound' needs the encoder and the number of time steps")
    if mode == "measured" and x is None:
        raise NeurokdError("fit_state 'measured' needs samples to measure the states on")
    was = model.training
    model.eval()
    limit = target * model.profile.state_limit
    before = _state_peaks(model, mode, x, encoder, timesteps)
    levels = [int(r["weight"].abs().max()) >> model.profile.weight_shift(r["bits"])
              for r in model.export_integers()]
    factors = [1.0] * len(model.weights)
    peaks = list(before)
    for i in range(len(model.weights)):
        for _ in range(32):
            if peaks[i] <= limit:
                break
            f = max(peaks[i] / limit, 1.02)  # the state scales as 1 / step
            model.quantizers[i].step.mul_(f)
            factors[i] *= f
            peaks = _state_peaks(model, mode, x, encoder, timesteps)
    after = [int(r["weight"].abs().max()) >> model.profile.weight_shift(r["bits"])
             for r in model.export_integers()]
    model.train(was)
    return [{"layer": i, "step_factor": round(factors[i], 4), "peak_before": before[i],
             "peak_after": peaks[i], "levels_before": levels[i], "levels_after": after[i]}
            for i in range(len(model.weights))]


def full_precision(snn: nn.Module, bits: List[int]) -> QuantSpikingNet:
    """The float reference of ``snn`` in the same code path (no rounding, no wrap)."""
    fp = QuantSpikingNet.from_snn(snn, bits, "fixed", step_rule="max").eval()
    fp.full_precision = True
    return fp


def quantize_snn(snn: nn.Module, ds: Dataset, prepare: Prepare, q: QuantConfig, seed: int = 0,
                 reference: Optional[Reference] = None, profile: Optional[HardwareProfile] = None,
                 progress: bool = True, log: Callable[[str], None] = lambda _m: None,
                 encoder: Optional[str] = None, timesteps: Optional[int] = None,
                 device: str = "cpu") -> Tuple[QuantSpikingNet, Dict[str, Any]]:
    """Quantize the trained slayer student ``snn`` for ``profile`` (default: the SNN's own);
    returns the quantized model and metrics. ``q.fit_state`` (not ``off``) fits the states to
    the chip after rounding and any QAT, before the final evaluation (``fit_state``; ``bound``
    needs ``encoder`` and ``timesteps``); metrics ``state_fit`` say per layer what it changed.
    With ``off``, a network whose state passes the chip's bits on the first test batch also gets
    ``state_fit_option``: what ``measured`` would change and its test accuracy. ``device``: where
    QAT trains (``neurokd.runtime``)."""
    profile = profile or snn.profile
    bits = layer_bits(q, snn.spec.num_spiking_layers)
    check_bits(bits, profile)
    seed_everything(seed)
    method = QAT_METHODS.get(q.method)
    model = QuantSpikingNet.from_snn(snn, bits, method.quantizer, step_rule=method.step_rule,
                                     profile=profile)
    fp = full_precision(snn, bits)
    # The checkpoint itself, evaluated exactly as training evaluated it (same test split, encoding
    # seed and batches): the number ``train-snn`` reported. ``fp`` is another network, the same
    # weights in float arithmetic without slayer's 8-bit weight rounding: the distillation
    # reference, reported under its own name.
    metrics: Dict[str, Any] = {
        "method": q.method, "bits": bits,
        "float_snn_accuracy": accuracy(snn, ds.test, prepare, counts, seed=seed),
        "float_unrounded_accuracy": accuracy(fp, ds.test, prepare, counts, seed=seed)}
    if method.trained:
        schedule = (ProbSchedule(len(bits), q.ramp) if method.probabilistic
                    else ConstantSchedule(len(bits)))
        if not method.distilled:
            reference = None
        else:
            if reference is None:
                reference = Reference(fp, lambda m, raw, x: counts(m, x))
        steps = q.epochs * -(-len(ds.train) // q.batch_size)
        wrapper = _QATObjective(model, schedule, steps, q, reference)
        res = fit(wrapper, ds.train, ds.val, prepare, lambda m, x: counts(m.student, x),
                  epochs=q.epochs, lr=q.lr, batch_size=q.batch_size, patience=q.patience, seed=seed,
                  desc=f"quantize {q.method}", progress=progress, log=log,
                  objective=lambda m, raw, x, y: m.objective(raw, x, y), keep_start=True,
                  schedule=q.schedule, device=device)
        model.quant_prob.fill_(1.0)
        metrics.update({"qat_val_accuracy": res.best_val_accuracy, "qat_epochs": res.epochs_run,
                        "qat_best_epoch": res.best_epoch,
                        "qat_start_val_accuracy": res.start_val_accuracy,
                        "qat_epoch_seconds": res.epoch_seconds, "qat_history": res.history,
                        "train_overflow": overflow_rows(wrapper.stats, model.profile.state_limit)})
    model.eval()

    def calibration() -> torch.Tensor:
        return torch.cat([xb for xb, _ in encoded_batches(ds.train, prepare, seed=seed,
                                                          limit=FIT_SAMPLES)])

    if q.fit_state != "off":
        metrics["state_fit"] = fit_state(model, q.fit_state, q.state_target,
                                         calibration() if q.fit_state == "measured" else None,
                                         encoder, timesteps)
    xb = next(iter(encoded_batches(ds.test, prepare, seed=seed)))[0]
    metrics["test_overflow"] = model.state_extremes(xb)
    if q.fit_state == "off" and any(r["overflow"] for r in metrics["test_overflow"]):
        # What the remedy would cost: the same network with fit_state "measured" (the fit
        # changes the steps only; they are put back).
        steps = [qz.step.detach().clone() for qz in model.quantizers]
        rows = fit_state(model, "measured", q.state_target, calibration())
        metrics["state_fit_option"] = {
            "fit_state": "measured", "state_target": q.state_target, "layers": rows,
            "quant_accuracy": accuracy(model, ds.test, prepare, counts, seed=seed),
            "test_overflow": model.state_extremes(xb)}
        with torch.no_grad():
            for qz, st in zip(model.quantizers, steps):
                qz.step.copy_(st)
    ints = model.export_integers()  # raises if a layer cannot be represented
    metrics.update({
        "quant_accuracy": accuracy(model, ds.test, prepare, counts, seed=seed),
        "weight_bytes": model.weight_bytes(),
        "layers": [{"bits": b["bits"], "threshold_mantissa": b["vth"],
                    "step": float(model.quantizers[i].step.abs())} for i, b in enumerate(ints)],
    })
    return model, metrics
