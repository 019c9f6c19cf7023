"""DNN → quantized Loihi SNN: layer parsing, BatchNorm folding, threshold balancing, quantization
through distillation (``neurokd convert``).

A DNN's layers become a list of ``Stage``s, one per spiking layer (read by
:mod:`neurokd.convert.stages`: ``BatchNorm`` folded into the layer before it, average pooling
rewritten as a strided convolution or merged into the layer after it); any layer it cannot
convert is refused by name.

The spiking network uses integrate-and-fire neurons (current decay 1, voltage decay 0) with
Loihi's reset to zero, driven by the ``direct`` encoder: the input's ``levels``-level integers at
every step. A hidden layer's activation ``a`` maps to a firing rate ``a / λ``, ``λ`` being the
layer's balancing scale (the DNN's activation at a high percentile, or a clip learned by
quantization through distillation), so each layer's weights become ``W · λ_in / λ_out`` in units
of its threshold and its bias ``b / λ_out``. The bias is added at every step of the sample's
window of ``T + L`` steps, so it is scaled by ``T / (T + L)`` to total ``T`` steps' worth.

Quantization through distillation (``qkd``) fine-tunes a copy of the DNN whose weights are
rounded to the chip's 8-bit grid and whose hidden activations are what an IF neuron with reset
to zero emits in ``T`` steps for a constant input ``z = a / λ`` (in units of its threshold; the
chip threshold is set one below the nominal one, so that a neuron fires when its integer voltage
reaches the nominal threshold)::

    count(z) = floor(T / ceil(1 / z))               (z > 0; 0 otherwise)
    â = λ · count(z) / T

with a straight-through gradient (of ``λ · clip(z, 0, 1)``) and a trainable ``λ`` per layer; the
full-precision DNN supervises it through the ``kd`` loss. Its activation grid is then the spike
count grid of the converted network.

Whatever the conversion computes from the DNN (folded weights, calibration activations, scales,
quantized weights) must be finite, and the tensors it allocates (pooling kernels, calibration
activations) are sized from the layers' shapes and refused, with one line, before they are made
if this machine cannot hold them.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurokd.convert.stages import (IF_NEURON, SUPPORTED, Stage, _check_finite, dnn_stages,
                                    stages_spec)
from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile
from neurokd.log import Log, quiet
from neurokd.models.dnn_checks import nonfinite, refuse_activations
from neurokd.models.cuba.quantized import QuantSpikingNet
from neurokd.models.quantizers import int_range, round_ste

__all__ = ["IF_NEURON", "SUPPORTED", "ClippedDNN", "Stage", "balance_scales", "check_calibration",
           "check_scales", "convert_dnn", "dnn_stages", "fake_quant", "if_count_rate",
           "layer_rates", "rate_tracking", "stage_activations", "stage_sizes", "stages_spec",
           "tie_pool_scales", "to_quant_snn"]


def stage_sizes(stages: Sequence[Stage], input_shape: Sequence[int]) -> List[Tuple[str, int]]:
    """Per spiking stage, the values in one sample's output, from the stages' shapes alone."""
    shape = tuple(int(v) for v in input_shape)
    out = []
    for s in stages:
        if s.kind == "flatten":
            shape = (math.prod(shape),)
            continue
        if s.kind == "dense":
            shape = (int(s.weight.shape[0]),)
        else:
            k = s.weight.shape[-2:]
            shape = (int(s.weight.shape[0]),
                     *((shape[i + 1] + 2 * s.padding[i] - int(k[i])) // s.stride[i] + 1
                       for i in range(2)))
        out.append((s.name, math.prod(shape)))
    return out


def check_calibration(stages: Sequence[Stage], input_shape: Sequence[int], samples: int) -> None:
    """Refuse, before it runs, a calibration of ``samples`` samples whose activations (every
    spiking layer's, kept for threshold balancing) this machine cannot hold."""
    sizes = stage_sizes(stages, input_shape)
    per_sample = 4 * sum(n for _, n in sizes)
    # every layer's activations are kept; the largest one's positive values are then selected
    # (a mask of 1 byte a value) and copied in double precision (8 more) for the quantile
    need = samples * (per_sample + 13 * max(n for _, n in sizes))
    refuse_activations("", sizes, per_sample, need, samples, "calibration",
                       "; lower convert.calibration or use a smaller network")


@torch.no_grad()
def stage_activations(stages: Sequence[Stage], x: torch.Tensor,
                      batch: int = 512) -> List[torch.Tensor]:
    """Output of every spiking stage (after ReLU; logits for the head) of the folded DNN."""
    outs: List[List[torch.Tensor]] = [[] for s in stages if s.spiking]
    for i in range(0, len(x), batch):
        h = x[i:i + batch]
        k = 0
        for s in stages:
            h = s.apply(h)
            if s.spiking:
                if s.relu:
                    h = F.relu(h)
                outs[k].append(h)
                k += 1
    return [torch.cat(o) for o in outs]


def balance_scales(acts: Sequence[torch.Tensor], percentile: float) -> List[float]:
    """Per spiking layer, the ``percentile`` of its positive activations (100: the maximum)."""
    scales = []
    for i, a in enumerate(acts):
        if not bool(torch.isfinite(a).all()):
            raise NeurokdError(f"spiking layer {i}: the DNN's calibration activations hold NaN or "
                               "infinite values (its weights overflow); it cannot be converted")
        pos = a[a > 0].double()
        if pos.numel() == 0:
            scales.append(1.0)
            continue
        if pos.numel() > 2_000_000:  # a fixed subsample keeps the quantile cheap and repeatable
            pos = pos[torch.randperm(pos.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
        q = float(torch.quantile(pos, percentile / 100.0)) if percentile < 100 else float(pos.max())
        scales.append(max(q, 1e-6))
    return scales


# ---------------------------------------------------------------- quantization through distillation
def if_count_rate(z: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Rate (count / T) of an IF neuron with reset to zero over ``T`` steps of constant input ``z``
    (in units of its threshold, firing when the voltage reaches it); gradient of
    ``clip(z, 0, 1)``."""
    zc = z.detach().clamp_min(1e-6)
    period = torch.ceil((1.0 / zc) * (1.0 - 1e-6))  # 1/z an integer despite float rounding
    rate = torch.where(z.detach() > 0, torch.floor(timesteps / period) / timesteps, torch.zeros_like(zc))
    clipped = z.clamp(0.0, 1.0)
    return clipped + (rate - clipped).detach()


def fake_quant(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-layer rounding on the largest |w|, as the conversion exports it."""
    qn, qp = int_range(bits)
    step = w.detach().abs().max().clamp_min(1e-12) / qp
    return round_ste(torch.clamp(w / step, qn, qp)) * step


class ClippedDNN(nn.Module):
    """The DNN as the converted SNN sees it: ``levels``-level input, weights on the chip's grid,
    hidden activations on the IF spike-count grid of ``T`` steps, head output as spike counts
    (times a learned positive factor, so that cross-entropy sees sensible logits)."""

    def __init__(self, stages: Sequence[Stage], scales: Sequence[float], timesteps: int,
                 levels: int, bits: int = 8, signed: bool = False) -> None:
        super().__init__()
        self.stages = list(stages)
        self.timesteps, self.levels, self.bits = int(timesteps), int(levels), int(bits)
        self.low = -1.0 if signed else 0.0  # the input's range: [0, 1], or [-1, 1] when signed
        trainable = [s for s in self.stages if s.kind in ("dense", "conv")]
        self.weights = nn.ParameterList([nn.Parameter(s.weight.clone()) for s in trainable])
        self.biases = nn.ParameterList([nn.Parameter(s.bias.clone()) for s in trainable])
        self.log_scales = nn.Parameter(torch.tensor([math.log(v) for v in scales], dtype=torch.float32))
        self.log_logit_scale = nn.Parameter(torch.zeros(()))

    def _lambdas(self) -> List[torch.Tensor]:
        return tie_pool_scales(self.stages, list(self.log_scales.exp().unbind()))

    def param_groups(self, lr: float) -> List[Dict[str, Any]]:
        """Adam's groups for fine-tuning at a step relative to each layer's size: a layer's weights
        and bias move by about ``lr`` times its mean |weight| per step, the log-scales by ``lr``.
        One absolute rate moved the small weights of a dense head by several percent a step and
        made the fine-tuning diverge (digits, T = 16: validation accuracy 0.96 to 0.10 in five
        epochs at 5e-4)."""
        groups: List[Dict[str, Any]] = []
        for w, b in zip(self.weights, self.biases):
            size = max(float(w.detach().abs().mean()), 1e-8)
            groups.append({"params": [w, b], "lr": lr * size})
        groups.append({"params": [self.log_scales, self.log_logit_scale], "lr": lr})
        return groups

    def scales(self) -> List[float]:
        """λ of every spiking layer, pooling layers inheriting their input's."""
        return [float(v) for v in self._lambdas()]

    def forward(self, x: torch.Tensor, record: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        h = torch.round(x.clamp(self.low, 1) * self.levels) / self.levels
        lam = self._lambdas()
        j = k = 0
        for s in self.stages:
            if s.kind in ("dense", "conv"):
                h = s.apply(h, fake_quant(self.weights[j], self.bits), self.biases[j])
                j += 1
            else:
                h = s.apply(h)
            if not s.spiking:
                continue
            rate = if_count_rate(h / lam[k], self.timesteps)
            if k == len(lam) - 1:
                out = rate * self.timesteps * self.log_logit_scale.exp()
                if record is not None:
                    record.append(rate * lam[k])
                return out
            h = rate * lam[k]
            if record is not None:
                record.append(h)
            k += 1
        raise AssertionError("unreachable: the last stage is the dense head")

    @torch.no_grad()
    def write_back(self) -> List[Stage]:
        """The stages with the fine-tuned (unrounded) weights and biases."""
        out, j = [], 0
        for s in self.stages:
            if s.kind in ("dense", "conv"):
                s = Stage(s.kind, s.name, self.weights[j].detach().clone(),
                          self.biases[j].detach().clone(), s.stride, s.padding, s.relu, list(s.sources))
                j += 1
            out.append(s)
        return out


def check_scales(stages: Sequence[Stage], scales: Sequence[float], when: str) -> None:
    """Every balancing scale must be a positive finite number."""
    spiking = [s for s in stages if s.spiking]
    for s, lam in zip(spiking, scales):
        if not (math.isfinite(float(lam)) and float(lam) > 0):
            raise NeurokdError(f"layer {s.name!r}: its balancing scale {float(lam)} {when} is "
                               "not a positive finite number")


def tie_pool_scales(stages: Sequence[Stage], scales: Sequence[Any]) -> List[Any]:
    """A pooling layer averages rates: its scale is its input's (so its weights stay 1/k²)."""
    out, k = list(scales), 0
    for s in stages:
        if not s.spiking:
            continue
        if s.kind == "pool" and k > 0:
            out[k] = out[k - 1]
        k += 1
    return out


# ---------------------------------------------------------------- the spiking network
def to_quant_snn(stages: Sequence[Stage], scales: Sequence[float], input_shape: Sequence[int],
                 timesteps: int, levels: int, profile: HardwareProfile, bits: int = 8) -> QuantSpikingNet:
    """Weight transfer: the integer IF network with balanced thresholds and Lava-exact biases."""
    spec = stages_spec(stages, input_shape)
    spiking = [s for s in stages if s.spiking]
    L = len(spiking)
    model = QuantSpikingNet(spec, profile, [bits] * L, "fixed", bias=True)
    theta = model.vth_mant / float(profile.weight_scale)
    g = float(1 << profile.weight_shift(bits))
    _, qp = int_range(bits)
    bias_share = timesteps / (timesteps + model.window_pad)
    lam_in = 1.0 / levels  # the input's integers are levels · x
    check_scales(stages, scales, "from calibration")
    with torch.no_grad():
        for i, (s, lam) in enumerate(zip(spiking, scales)):
            w = s.weight * (lam_in / lam) * theta
            b = s.bias / lam * bias_share * theta
            _check_finite(s.name, " scaled by its thresholds", weight=w, bias=b)
            step = max(float(w.abs().max()) / qp,
                       float(b.abs().max()) * g / profile.bias_mantissa_max,
                       theta * g / (profile.threshold_mantissa_max + 1), 1e-8)
            # The nominal threshold K = θ·g/step is made an integer; the chip threshold is K − 1,
            # so the neuron fires when the voltage reaches K (integer states).
            ratio = theta * g / step
            if not (math.isfinite(step) and math.isfinite(ratio)):
                raise NeurokdError(f"layer {s.name!r}: its quantization step {step} is not finite; "
                                   "the DNN cannot be converted")
            nominal = max(2, round(ratio))
            if float(b.abs().max()) * nominal / theta > profile.bias_mantissa_max:
                # rounding up shrank the step below what the largest bias needs (a bias mantissa
                # of 4096 against the 13-bit ±4095 was measured); round down instead
                nominal = max(2, int(ratio))
            step = theta * g / nominal
            model.weights[i].copy_(w.reshape(model.weights[i].shape))
            model.biases[i].copy_(b)
            model.quantizers[i].step.fill_(step)
            model.threshold_offset[i] = 1.0
            lam_in = lam
    bad = nonfinite(iter([*model.named_parameters(), *model.named_buffers()]))
    if bad is not None:
        raise NeurokdError(f"the converted network's {bad} holds NaN or infinite values; the DNN "
                           "cannot be converted")
    model.export_integers()  # raises if a layer does not fit the profile
    return model.eval()


@torch.no_grad()
def layer_rates(model: QuantSpikingNet, window: torch.Tensor, acts: Sequence[torch.Tensor],
                scales: Sequence[float], timesteps: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Per spiking layer: the DNN's activation in units of ``λ`` (clipped to [0, 1], as a rate
    is) and the converted neuron's spike count / T, on the same samples, neuron by neuron."""
    record: List[torch.Tensor] = []
    model.eval()
    model(window, record=record)
    pairs = []
    for spikes, act, lam in zip(record, acts, scales):
        rate = (spikes.sum(-1) / timesteps).reshape(len(act), -1).double().flatten()
        ref = (act.reshape(len(act), -1).double() / lam).clamp(0, 1).flatten()
        pairs.append((ref.numpy(), rate.numpy()))
    return pairs


def rate_tracking(pairs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> List[Dict[str, float]]:
    """Pearson correlation, mean absolute error and means of each layer's (activation, rate)."""
    rows = []
    for i, (a, r) in enumerate(pairs):
        corr = float(np.corrcoef(a, r)[0, 1]) if a.std() > 0 and r.std() > 0 else 0.0
        rows.append({"layer": i, "correlation": corr, "mae": float(np.abs(r - a).mean()),
                     "mean_rate": float(r.mean()), "mean_activation": float(a.mean())})
    return rows


def convert_dnn(teacher: nn.Module, ds, timesteps: int, c, profile: HardwareProfile,
                encoder: str = "direct", seed: int = 0, progress: bool = True,
                log: Log = quiet, device: str = "cpu") -> Tuple[QuantSpikingNet, Dict[str, Any]]:
    """Convert ``teacher`` for ``T = timesteps`` steps by ``c.method`` (a ``ConvertConfig``).
    Returns the integer IF network (a ``QuantSpikingNet`` with biases) and metrics. ``device``:
    where the ``qkd`` fine-tuning trains (``neurokd.runtime``)."""
    from neurokd.convert.methods import CONVERT_METHODS
    from neurokd.data.encoders import encode_window, get_encoder
    from neurokd.distill.losses import LOSSES
    from neurokd.quant.qat import counts
    from neurokd.models.cuba.quantized import check_bits
    from neurokd.training import accuracy, fit, seed_everything

    if timesteps <= 0:
        raise NeurokdError(f"timesteps must be positive, got {timesteps}")
    enc = get_encoder(encoder)
    if enc.message_bits == 0:
        raise NeurokdError(f"conversion drives the first layer with graded input; encoder "
                           f"{encoder!r} sends binary spikes (use 'direct')")
    check_bits([c.bits], profile)
    method = CONVERT_METHODS.get(c.method)
    low, levels = enc.input_range  # the input's integers are levels · x, x in [low/levels, 1]
    teacher = teacher.eval()
    stages = dnn_stages(teacher, ds.input_shape)
    check_calibration(stages, ds.input_shape, min(c.calibration, len(ds.train.x)))
    seed_everything(seed)
    x_cal = torch.as_tensor(ds.train.x[:c.calibration])
    x_cal = torch.round(x_cal.clamp(low / levels, 1) * levels) / levels
    acts = stage_activations(stages, x_cal)
    metrics: Dict[str, Any] = {"method": c.method, "timesteps": timesteps, "bits": c.bits,
                               "converted_layers": [{"kind": s.kind, "from": s.sources}
                                                    for s in stages if s.spiking]}

    def dnn_logits(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(x)

    def ident(x: torch.Tensor, _g: torch.Generator) -> torch.Tensor:
        return x

    metrics["teacher_accuracy"] = accuracy(teacher, ds.test, ident, dnn_logits, seed=seed)
    percentile = c.percentile if method.clip == "percentile" else 100.0
    if not method.fine_tuned:
        scales = tie_pool_scales(stages, balance_scales(acts, percentile))
    else:
        clipped = ClippedDNN(stages, balance_scales(acts, percentile), timesteps, levels, c.bits,
                             signed=enc.signed)
        metrics["qkd_start_accuracy"] = accuracy(clipped, ds.test, ident, dnn_logits, seed=seed)
        kd, ce = LOSSES.get("kd"), LOSSES.get("ce")

        def objective(m: nn.Module, raw: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            s = m(x)
            with torch.no_grad():
                t = teacher(raw)
            return (1 - c.alpha) * ce(s, y) + c.alpha * kd(s, t, temperature=c.temperature)

        res = fit(clipped, ds.train, ds.val, ident, dnn_logits, epochs=c.epochs, lr=c.lr,
                  batch_size=c.batch_size, patience=c.patience, seed=seed, desc="qkd",
                  progress=progress, log=log, objective=objective, keep_start=True,
                  schedule=c.schedule, param_groups=clipped.param_groups(c.lr),
                  device=device, companions=[teacher])
        teacher.eval()
        metrics.update({"qkd_accuracy": accuracy(clipped.eval(), ds.test, ident, dnn_logits, seed=seed),
                        "qkd_val_accuracy": res.best_val_accuracy, "qkd_epochs": res.epochs_run,
                        "qkd_best_epoch": res.best_epoch,
                        "qkd_start_val_accuracy": res.start_val_accuracy,
                        "qkd_history": res.history})
        stages, scales = clipped.write_back(), clipped.scales()
        for s in stages:
            bad = nonfinite(iter([("weight", s.weight), ("bias", s.bias)]))
            if bad is not None:
                raise NeurokdError(f"layer {s.name!r}: the qkd fine-tuning made its {bad} NaN or "
                                   "infinite (it diverged; lower convert.lr or use --method "
                                   "plain)")
        check_scales(stages, scales, "after the qkd fine-tuning")
        acts = stage_activations(stages, x_cal)
    model = to_quant_snn(stages, scales, ds.input_shape, timesteps, levels, profile, c.bits)
    prepare = lambda x, g: encode_window(x, enc, timesteps, model.window_pad, g)  # noqa: E731
    metrics["snn_accuracy"] = accuracy(model, ds.test, prepare, counts, seed=seed)
    probe = x_cal[:256]
    window = encode_window(probe, enc, timesteps, model.window_pad)
    ints = model.export_integers()
    pairs = layer_rates(model, window, [a[:256] for a in acts], scales, timesteps)
    metrics["layers"] = [
        {"kind": s.kind, "scale": float(lam), "threshold_mantissa": row["vth"],
         "max_abs_weight": int(row["weight"].abs().max()), "max_abs_bias": int(row["bias"].abs().max()),
         **{k: v for k, v in track.items() if k != "layer"}}
        for s, lam, row, track in zip([s for s in stages if s.spiking], scales, ints,
                                      rate_tracking(pairs))]
    metrics["_rate_pairs"] = pairs
    metrics["state_overflow"] = any(r["overflow"] for r in model.state_extremes(window))
    metrics["weight_bytes"] = model.weight_bytes()
    return model, metrics
