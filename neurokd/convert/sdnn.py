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

from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.convert.dnn import stage_activations
from neurokd.convert.stages import dnn_stages, stages_spec
from neurokd.data.encoders import get_encoder
from neurokd.errors import NeurokdError
from neurokd.hardware import HardwareProfile
from neurokd.log import Log, quiet
from neurokd.models.sigma_delta.net import FloatLayer, SigmaDeltaNet, map_relu_network
from neurokd.models.spec import NeuronSpec


def input_levels(encoder: str) -> int:
    """Integer input units per unit of the DNN's input: the encoder's largest integer (signed
    8-bit: 127 for 1.0; unsigned 8-bit: 255 for 1.0)."""
    enc = get_encoder(encoder)
    if enc.message_bits == 0:
        raise NeurokdError(f"encoder {encoder!r} sends binary spikes; a sigma-delta network reads "
                           "graded input: use direct8 (inputs in [0, 1]) or signed8 ([-1, 1])")
    return enc.input_range[1]


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


def convert_sdnn(teacher: nn.Module, ds, encoder: str, profile: HardwareProfile, *,
                 calibration: int = 2000, threshold: float = 0.0, seed: int = 0,
                 log: Log = quiet) -> Tuple[SigmaDeltaNet, Dict[str, Any]]:
    """Convert ``teacher`` for ``ds`` read through the graded ``encoder``. ``threshold``: each
    hidden layer's delta threshold as a fraction of its calibrated largest activation."""
    levels = input_levels(encoder)
    g = torch.Generator().manual_seed(seed)
    n = min(calibration, len(ds.train))
    idx = torch.randperm(len(ds.train), generator=g)[:n]
    x = torch.as_tensor(np.asarray(ds.train.x)[idx.numpy()], dtype=torch.float32)
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


def convert_run(cfg, ds, dnn: nn.Module, log: Log = quiet, check_fit: bool = True
                ) -> Tuple[SigmaDeltaNet, Dict[str, Any]]:
    """``neurokd convert --neuron sdnn`` as a library call: the DNN converted for ``cfg`` and
    measured on the test split beside it: accuracy, and synaptic operations per inference
    against the DNN's MACs."""
    from neurokd.hardware import load_profile
    from neurokd.metrics.activity import measured_synops
    from neurokd.metrics.energy import teacher_macs
    from neurokd.metrics.resources import check_fit as check_fit_chip
    from neurokd.models.sigma_delta.net import sdnn_readout
    from neurokd.training import accuracy, identity, logits_of, make_prepare

    profile = load_profile(cfg.hardware)
    model, metrics = convert_sdnn(dnn, ds, cfg.student.encoder, profile,
                                  calibration=cfg.convert.calibration,
                                  threshold=cfg.convert.delta_threshold, seed=cfg.seed, log=log)
    if check_fit:
        check_fit_chip(model.spec, profile, [8] * model.depth)
    prepare = make_prepare(cfg.student.encoder, model.timesteps, 0)
    metrics["teacher_accuracy"] = accuracy(dnn.eval(), ds.test, identity, logits_of, seed=cfg.seed)
    metrics["snn_accuracy"] = accuracy(model, ds.test, prepare, sdnn_readout, seed=cfg.seed)
    n = min(256, len(ds.test))
    x = prepare(torch.as_tensor(np.asarray(ds.test.x[:n]), dtype=torch.float32),
                torch.Generator().manual_seed(cfg.seed))
    synops = measured_synops(model, x)
    metrics["synops_per_inference"] = synops["synops"]
    metrics["synops_layers"] = synops["layers"]
    metrics["dnn_macs"] = float(teacher_macs(dnn, ds.input_shape)["macs"])
    metrics["hardware"] = cfg.hardware
    log(f"teacher {metrics['teacher_accuracy']:.4f}, SDNN {metrics['snn_accuracy']:.4f}; "
        f"{metrics['synops_per_inference']:,.0f} synaptic operations per inference against the "
        f"DNN's {metrics['dnn_macs']:,.0f} MACs")
    return model, metrics
