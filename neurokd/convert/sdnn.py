"""Conversion of a trained ReLU DNN into a sigma-delta network (``neurokd convert --neuron sdnn``).

The DNN's layers are read as for the CUBA conversion (:func:`neurokd.convert.stages.dnn_stages`:
batch norm folded, average pools as fixed strided convolutions), each layer's largest activation
is measured on calibration samples, and :func:`neurokd.models.sigma_delta.net.map_relu_network`
puts weights, biases and thresholds on the chip's integers. There is no time window to choose: a
frame is held for one step per layer, and the output is read at the last. No training: the
network computes the DNN's ReLU activations to within each layer's delta threshold and the
integer rounding, which the accuracy figures measure.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.convert.dnn import stage_activations
from neurokd.convert.stages import dnn_stages, stages_spec
from neurokd.data.encoders import get_encoder
from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile
from neurokd.log import Log, quiet
from neurokd.convert.dnn import fake_quant
from neurokd.models.sigma_delta.net import FloatLayer, SigmaDeltaNet, map_relu_network
from neurokd.models.spec import NeuronSpec

WEIGHT_BITS = 8
SOFT_COUNT = 0.05  # an activation above a tenth of its layer's largest counts as (nearly) one event


def input_levels(encoder: str) -> int:
    """Integer input units per unit of the DNN's input: the encoder's largest integer (signed
    8-bit: 127 for 1.0; unsigned 8-bit: 255 for 1.0)."""
    enc = get_encoder(encoder)
    if enc.message_bits == 0:
        raise NeurokdError(f"encoder {encoder!r} sends binary spikes; a sigma-delta network reads "
                           "graded input: use direct8 (inputs in [0, 1]) or signed8 ([-1, 1])")
    return enc.input_range[1]


def on_input_grid(x: torch.Tensor, encoder: str) -> torch.Tensor:
    """Samples as a sigma-delta network's first layer reads them: clipped to the encoder's range
    and rounded to its graded levels (``input_levels``)."""
    x = x.clamp(-1.0 if get_encoder(encoder).signed else 0.0, 1.0)
    levels = input_levels(encoder)
    return torch.round(x * levels) / levels


def float_layers(teacher: nn.Module, input_shape, calibration: torch.Tensor
                 ) -> Tuple[List[FloatLayer], Any]:
    """The DNN's layers as the sigma-delta mapping reads them, with each one's largest calibrated
    activation (after ReLU; the largest |logit| for the head)."""
    stages = dnn_stages(teacher.eval(), input_shape)  # refuses a hidden layer with no ReLU
    acts = stage_activations(stages, calibration)
    layers, flat, k = [], False, 0
    for s in stages:
        if not s.spiking:
            flat = True
            continue
        a = acts[k]
        if not bool(torch.isfinite(a).all()):
            raise NeurokdError(f"layer {s.name!r}: the DNN's calibration activations are not finite")
        amax = float(a.abs().max()) if a.numel() else 1.0
        layers.append(FloatLayer(s.weight, s.bias, max(amax, 1e-6), s.stride, s.padding,
                                 flatten_before=flat))
        flat = False
        k += 1
    spec = stages_spec(stages, input_shape)
    spec = spec.model_copy(update={"neuron": NeuronSpec(type="sdnn")})
    return layers, spec


class SparseReLUNet(nn.Module):
    """The DNN as its sigma-delta network computes it, for fine-tuning: the input on the encoder's
    integer grid, weights on the 8-bit grid (straight-through), ReLU activations. ``cost(x)``
    returns the logits and a differentiable estimate of the synaptic operations per sample over
    the DNN's MACs: per hidden activation ``a``, ``tanh(a / (SOFT_COUNT · a_max))`` (near 1 for an
    activation that sends a message, 0 for one that does not; ``a_max`` its layer's calibrated
    largest) times the number of synapses it feeds. The input layer's messages are the data's and
    are not counted."""

    def __init__(self, stages, act_max: Sequence[float], encoder: str) -> None:
        super().__init__()
        self.stages, self.encoder = list(stages), encoder
        layers = [st for st in self.stages if st.spiking]  # an average pool's fixed weights stay
        self.weights = nn.ParameterList([nn.Parameter(st.weight.clone(), requires_grad=st.kind != "pool")
                                         for st in layers])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(st.weight.shape[0]) if st.bias is None
                                                     else st.bias.clone(), requires_grad=st.kind != "pool")
                                        for st in layers])
        self.act_max = [float(a) for a in act_max]
        self.fan_out: List[float] = []
        self.macs = 1.0

    def param_groups(self, lr: float) -> List[Dict[str, Any]]:
        """Each layer's weights and bias move by about ``lr`` times its mean |weight| per step."""
        return [{"params": [w, b], "lr": lr * max(float(w.detach().abs().mean()), 1e-8)}
                for w, b in zip(self.weights, self.biases) if w.requires_grad]

    @torch.no_grad()
    def measure_fan_out(self, x: torch.Tensor) -> None:
        """Per hidden layer, the mean number of synapses one of its outputs feeds, and the DNN's
        MACs per sample (of the layers that have weights), from one forward pass."""
        sizes, macs, h = [], [], x[:1]
        for st in self.stages:
            out = st.apply(h)
            if st.spiking:
                macs.append(out.numel() * (st.weight[0].numel()))
                sizes.append(h.numel())
                h = torch.relu(out) if st.relu else out
            else:
                h = out
        self.fan_out = [macs[i + 1] / sizes[i + 1] for i in range(len(macs) - 1)]
        self.macs = float(sum(macs))

    def cost(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = on_input_grid(x, self.encoder)  # the data: no gradient flows into it
        j = k = 0
        synops = torch.zeros(())
        for st in self.stages:
            if not st.spiking:
                h = st.apply(h)
                continue
            h = st.apply(h, fake_quant(self.weights[j], WEIGHT_BITS), self.biases[j])
            j += 1
            if st.relu:
                h = torch.relu(h)
            if k < len(self.fan_out):
                soft = torch.tanh(h / (SOFT_COUNT * self.act_max[k])).flatten(1).sum(1).mean()
                synops = synops + soft * self.fan_out[k]
            k += 1
        return h, synops / self.macs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cost(x)[0]

    @torch.no_grad()
    def write_back(self):
        from neurokd.convert.stages import Stage

        out, j = [], 0
        for st in self.stages:
            if st.spiking:
                st = Stage(st.kind, st.name, self.weights[j].detach().clone(),
                           self.biases[j].detach().clone(), st.stride, st.padding, st.relu,
                           list(st.sources))
                j += 1
            out.append(st)
        return out


TARGET_WEIGHT = 10.0


def trades_sparsity(c) -> bool:
    """Whether the fine-tuning loss charges messages (``convert.sparsity`` or ``target_rate``)."""
    return c.sparsity > 0 or c.target_rate is not None


def sparsity_loss(c, synops: torch.Tensor) -> torch.Tensor:
    """The loss's price of ``synops`` (estimated synaptic operations per DNN MAC): ``c.sparsity ·
    synops``; with ``c.target_rate``, only the excess is charged, ``w · max(0, synops −
    target_rate)`` with ``w`` = ``c.sparsity`` or ``TARGET_WEIGHT`` when that is 0, so the
    network is pushed down to the rate the user asked for and no further."""
    if c.target_rate is None:
        return c.sparsity * synops
    weight = c.sparsity if c.sparsity > 0 else TARGET_WEIGHT
    return weight * torch.relu(synops - c.target_rate)


def calibration_batch(ds, samples: int, seed: int) -> torch.Tensor:
    """``samples`` training samples drawn with ``seed``: what every sigma-delta mapping and
    fine-tuning measures activations on."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.train), generator=g)[:min(samples, len(ds.train))]
    return torch.as_tensor(np.asarray(ds.train.x)[idx.numpy()], dtype=torch.float32)


def sparsity_finetune(teacher: nn.Module, ds, encoder: str, c, seed: int,
                      progress: bool = False, log: Log = quiet, device: str = "cpu",
                      reference: Any = "self", absolute_lr: bool = False
                      ) -> Tuple[nn.Module, Dict[str, Any]]:
    """Fine-tune a copy of the DNN, as its sigma-delta network computes it (``SparseReLUNet``),
    from the DNN itself (``kd`` and ``ce`` as ``qkd`` mixes them, ``convert.alpha``) plus
    ``convert.sparsity`` times its estimated synaptic operations per DNN MAC. Returns the
    fine-tuned network (a ``StagesModule``) and metrics (the kept epoch: the best validation
    accuracy, or with a sparsity weight the last, every epoch run). Activations are measured on
    ``calibration_batch(ds, c.calibration, seed)``.

    ``reference``: the DNN whose outputs are the soft targets (``"self"``: ``teacher`` as given;
    None: labels only, as when a student is trained from scratch); ``absolute_lr``: ``c.lr`` is
    Adam's step itself, not a step relative to each layer's weights."""
    from neurokd.distill.losses import LOSSES
    from neurokd.training import fit, seed_everything

    x_cal = calibration_batch(ds, c.calibration, seed)
    stages = dnn_stages(teacher.eval(), ds.input_shape)
    acts = stage_activations(stages, x_cal)
    net = SparseReLUNet(stages, [max(float(a.abs().max()), 1e-6) for a in acts], encoder)
    net.measure_fan_out(x_cal)
    kd, ce = LOSSES.get("kd"), LOSSES.get("ce")
    seed_everything(seed)

    ref = teacher if isinstance(reference, str) and reference == "self" else reference

    def objective(m: nn.Module, raw: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s, synops = m.cost(x)
        if ref is None:
            return ce(s, y) + sparsity_loss(c, synops)
        with torch.no_grad():
            t = ref(raw)
        return ((1 - c.alpha) * ce(s, y) + c.alpha * kd(s, t, temperature=c.temperature)
                + sparsity_loss(c, synops))

    def ident(x: torch.Tensor, _g: torch.Generator) -> torch.Tensor:
        return x

    def logits(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(x)

    res = fit(net, ds.train, ds.val, ident, logits, epochs=c.epochs, lr=c.lr,
              batch_size=c.batch_size, patience=c.patience, seed=seed, desc="sdnn fine-tuning",
              progress=progress, log=log, objective=objective, schedule=c.schedule,
              param_groups=None if absolute_lr else net.param_groups(c.lr), device=device,
              companions=[m for m in (ref,) if m is not None], keep_last=trades_sparsity(c))
    if ref is not None:
        ref.eval()
    with torch.no_grad():
        est = float(net.eval().cost(x_cal[:512])[1])
    return StagesModule(net.write_back()).eval(), {"finetune_val_accuracy": res.best_val_accuracy,
                              "finetune_best_epoch": res.best_epoch,
                              "finetune_epochs": res.epochs_run, "finetune_history": res.history,
                              "estimated_synops_per_mac": est}


def convert_sdnn(teacher: nn.Module, ds, encoder: str, profile: HardwareProfile, *,
                 calibration: int = 2000, threshold: float = 0.0, seed: int = 0,
                 log: Log = quiet) -> Tuple[SigmaDeltaNet, Dict[str, Any]]:
    """Convert ``teacher`` for ``ds`` read through the graded ``encoder``. ``threshold``: each
    hidden layer's delta threshold as a fraction of its calibrated largest activation."""
    levels = input_levels(encoder)
    x = calibration_batch(ds, calibration, seed)
    n = len(x)
    layers, spec = float_layers(teacher, ds.input_shape, x)
    ints, scales = map_relu_network(layers, levels, profile, threshold=threshold)
    model = SigmaDeltaNet(spec, profile, ints, scales["input_vth"], scales["out_scale"], levels,
                          scales["input_shift"])
    log(f"sigma-delta: {model.depth} layers, window {model.timesteps} steps, delta threshold "
        f"{threshold:g} of each layer's largest activation")
    metrics = {"neuron": "sdnn", "delta_threshold": threshold, "calibration_samples": n,
               "timesteps": model.timesteps,
               "layers": [{"layer": i, "act_max": lay.act_max, "weight_levels":
                           int(q.weight.abs().max()), "vth": int(q.vth)}
                          for i, (lay, q) in enumerate(zip(layers, ints))]}
    return model, metrics


class StagesModule(nn.Sequential):
    """Fine-tuned stages as a module ``dnn_stages`` reads again (Linear / Conv2d / ReLU / Flatten)."""

    def __init__(self, stages) -> None:
        mods: List[nn.Module] = []
        for st in stages:
            if st.kind == "flatten":
                mods.append(nn.Flatten())
                continue
            if st.kind == "dense":
                m = nn.Linear(st.weight.shape[1], st.weight.shape[0])
            else:
                m = nn.Conv2d(st.weight.shape[1], st.weight.shape[0], tuple(st.weight.shape[2:]),
                              stride=st.stride, padding=st.padding)
            with torch.no_grad():
                m.weight.copy_(st.weight)
                m.bias.copy_(st.bias if st.bias is not None else torch.zeros(st.weight.shape[0]))
            mods.append(m)
            if st.relu or st.kind == "pool":  # a pool of ReLU outputs is its own ReLU
                mods.append(nn.ReLU())
        super().__init__(*mods)


def measure(model: SigmaDeltaNet, ds, cfg, metrics: Dict[str, Any], samples: int = 256) -> None:
    """The network's test accuracy and its synaptic operations per inference on the first
    ``samples`` test samples, from rest and on a stream (8 streams), into ``metrics``."""
    from neurokd.metrics.activity import measured_synops
    from neurokd.models.sigma_delta.net import parallel_streams, sdnn_readout
    from neurokd.training import accuracy, make_prepare

    prepare = make_prepare(cfg.student.encoder, model.timesteps, 0)
    metrics["snn_accuracy"] = accuracy(model, ds.test, prepare, sdnn_readout, seed=cfg.seed)
    n = min(samples, len(ds.test))
    x = prepare(torch.as_tensor(np.asarray(ds.test.x[:n]), dtype=torch.float32),
                torch.Generator().manual_seed(cfg.seed))
    synops = measured_synops(model, x)
    metrics["synops_per_inference"] = synops["synops"]
    metrics["synops_layers"] = synops["layers"]
    streams, count = parallel_streams(x)
    metrics["synops_per_frame_stream"] = measured_synops(model, streams)["synops"] * len(streams) / count


def convert_run(cfg, ds, dnn: nn.Module, log: Log = quiet, check_fit: bool = True,
                progress: bool = False) -> Tuple[SigmaDeltaNet, Dict[str, Any]]:
    """``neurokd convert --neuron sdnn`` as a library call: the DNN converted for ``cfg`` and
    measured on the test split beside it: accuracy, and synaptic operations per inference
    against the DNN's MACs."""
    from neurokd.hardware import load_profile
    from neurokd.metrics.energy import teacher_macs
    from neurokd.metrics.resources import check_fit as check_fit_chip
    from neurokd.training import accuracy, identity, logits_of

    profile = load_profile(cfg.hardware)
    source, tuned = dnn, {}
    if cfg.convert.method == "qkd":
        source, tuned = sparsity_finetune(dnn, ds, cfg.student.encoder, cfg.convert, cfg.seed,
                                          progress, log, cfg.device)
    model, metrics = convert_sdnn(source, ds, cfg.student.encoder, profile,
                                  calibration=cfg.convert.calibration,
                                  threshold=cfg.convert.delta_threshold, seed=cfg.seed, log=log)
    metrics.update(tuned)
    if check_fit:
        check_fit_chip(model.spec, profile, [8] * model.depth)
    metrics["teacher_accuracy"] = accuracy(dnn.eval(), ds.test, identity, logits_of, seed=cfg.seed)
    measure(model, ds, cfg, metrics)
    metrics["dnn_macs"] = float(teacher_macs(dnn, ds.input_shape)["macs"])
    metrics["hardware"] = cfg.hardware
    log(f"teacher {metrics['teacher_accuracy']:.4f}, SDNN {metrics['snn_accuracy']:.4f}; synaptic "
        f"operations per inference {metrics['synops_per_frame_stream']:,.0f} on a stream "
        f"({metrics['synops_per_inference']:,.0f} from rest) against the DNN's "
        f"{metrics['dnn_macs']:,.0f} MACs")
    return model, metrics


def relu_net(spec, seed: int) -> nn.Sequential:
    """A freshly initialised ReLU network of ``spec``'s layers (Linear / Conv2d, a ReLU after each
    but the last, Flatten where the spec has one or a dense network reads an image): what a
    sigma-delta student computes, trained as such before its mapping onto the chip."""
    from neurokd.models.spec import ConvLayer, FlattenLayer

    torch.manual_seed(seed)
    mods: List[nn.Module] = []
    shape = tuple(spec.input_shape)
    if not isinstance(spec.layers[0], ConvLayer) and len(shape) > 1:
        mods.append(nn.Flatten())
    last = len(spec.layers) - 1
    for i, (layer, out) in enumerate(zip(spec.layers, spec.shapes())):
        if isinstance(layer, FlattenLayer):
            mods.append(nn.Flatten())
        elif isinstance(layer, ConvLayer):
            mods.append(nn.Conv2d(shape[0], layer.channels, layer.kernel2, stride=layer.stride2,
                                  padding=layer.padding2))
        else:
            mods.append(nn.Linear(int(np.prod(shape)), layer.units))
        if not isinstance(layer, FlattenLayer) and i < last:
            mods.append(nn.ReLU())
        shape = out
    return nn.Sequential(*mods)


def train_student(cfg, ds, spec, teacher: nn.Module | None = None, progress: bool = False,
                  log: Log = quiet) -> Tuple[SigmaDeltaNet, Dict[str, Any]]:
    """``train-snn`` / ``distill`` of a sigma-delta student of ``spec``: its ReLU network trained
    on the 8-bit grid (``sparsity_finetune`` with the student's epochs, step, batch and patience;
    soft targets from ``teacher`` with ``distill``'s ``kd`` weights), plus ``convert.sparsity``
    times its estimated synops per MAC; then mapped onto the chip (``convert_sdnn``)."""
    from neurokd.hardware import load_profile

    st, enc = cfg.student, cfg.student.encoder
    input_levels(enc)
    net = relu_net(spec, cfg.seed)
    c = cfg.convert.model_copy(update={"epochs": st.epochs, "lr": st.lr, "batch_size": st.batch_size,
                                       "patience": st.patience, "schedule": st.schedule,
                                       "alpha": cfg.distill.alpha, "temperature": cfg.distill.temperature})
    trained, tuned = sparsity_finetune(net, ds, enc, c, cfg.seed, progress, log, cfg.device,
                                       reference=teacher, absolute_lr=True)
    model, metrics = convert_sdnn(trained, ds, enc, load_profile(cfg.hardware),
                                  calibration=cfg.convert.calibration,
                                  threshold=cfg.convert.delta_threshold, seed=cfg.seed, log=log)
    metrics.update({k.replace("finetune", "snn"): v for k, v in tuned.items()})
    measure(model, ds, cfg, metrics)
    log(f"sigma-delta student: test accuracy {metrics['snn_accuracy']:.4f}; synaptic operations per "
        f"inference {metrics['synops_per_frame_stream']:,.0f} on a stream "
        f"({metrics['synops_per_inference']:,.0f} from rest)")
    return model, metrics
