"""Run an exported network in Lava on test samples, and compare it with the PyTorch model that
was exported, sample by sample and step by step (``neurokd run-lava``, ``neurokd verify``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import nn

from neurokd.data.datasets import Dataset, Split
from neurokd.data.encoders import get_encoder
from neurokd.errors import NeurokdError
from neurokd.training import Prepare, encoded_batches, make_prepare


def lava_frames(prepare: Prepare, split: Split, samples: int, seed: int) -> Tuple[torch.Tensor, np.ndarray]:
    """``samples`` test windows, encoded exactly as ``accuracy`` encodes them: the first ones, or,
    for radio data (a split with SNRs, whose test samples may run SNR by SNR, as the symbol
    detector's subframes do), ones evenly spaced over the whole split, so that every SNR is run."""
    if split.snr is not None and 0 < samples < len(split):
        split = split.take(np.linspace(0, len(split) - 1, samples).round().astype(np.int64))
    xs, ys = zip(*encoded_batches(split, prepare, seed, limit=samples))
    return torch.cat(xs), np.concatenate(ys)


def run_on_lava(net_path: str | Path, ds: Dataset, meta: Dict[str, Any], samples: int,
                backend: str = "auto", seed: int = 0, progress: bool = True) -> Dict[str, Any]:
    """Run the exported network in Lava on ``samples`` test samples (``lava_frames``); report
    accuracy."""
    if meta.get("family") == "sdnn":
        return _sdnn_on_lava(net_path, ds, meta, samples, backend, seed, progress)
    from neurokd.deploy.lava_run import lava_input_frames, run_lava
    from neurokd.models.spec import ConvLayer, spec_from_dict

    spec = spec_from_dict(meta["spec"], where=f"{net_path}: spec")
    prepare = make_prepare(meta["encoder"], meta["timesteps"], meta["window_pad"])
    frames, labels = lava_frames(prepare, ds.test, samples, seed)
    res = run_lava(net_path, lava_input_frames(frames.numpy(), isinstance(spec.layers[0], ConvLayer)),
                   get_encoder(meta["encoder"]).message_bits, backend, progress=progress)
    pred = res.spikes.sum(-1).argmax(1)
    return {"lava_accuracy": float((pred == labels).mean()), "lava_samples": int(len(labels)),
            "backend": res.backend, "lava_seconds": res.seconds,
            "lava_samples_per_s": len(labels) / res.seconds,
            "_frames": frames, "_labels": labels, "_spikes": res.spikes}


@torch.no_grad()
def verify(model: nn.Module, net_path: str | Path, ds: Dataset, meta: Dict[str, Any], samples: int,
           backend: str = "auto", seed: int = 0, progress: bool = True) -> Dict[str, Any]:
    """Compare output spikes of the PyTorch model and the Lava run, sample by sample, step by step."""
    if meta.get("family") == "sdnn":
        return _verify_sdnn(model, net_path, ds, meta, samples, backend, seed, progress)
    lava = run_on_lava(net_path, ds, meta, samples, backend, seed, progress)
    frames, labels, lava_spikes = lava.pop("_frames"), lava.pop("_labels"), lava.pop("_spikes")
    model.eval()
    torch_spikes = torch.cat([model(frames[i:i + 256]) for i in range(0, len(frames), 256)]).numpy()
    if torch_spikes.shape != lava_spikes.shape:
        raise NeurokdError(f"PyTorch output {torch_spikes.shape} and Lava output "
                           f"{lava_spikes.shape} differ in shape: the network file does not "
                           "belong to this checkpoint")
    torch_pred = torch_spikes.sum(-1).argmax(1)
    lava_pred = lava_spikes.sum(-1).argmax(1)
    state = model.state_extremes(frames)
    out = dict(lava)
    out.update({
        "lava_spike_match": float((torch_spikes == lava_spikes).mean()),
        "lava_samples_exact": int((torch_spikes == lava_spikes).all(axis=(1, 2)).sum()),
        "lava_prediction_agreement": float((torch_pred == lava_pred).mean()),
        "snn_accuracy_on_lava_samples": float((torch_pred == labels).mean()),
        "state_extremes": state,
        "state_overflow": any(r["overflow"] for r in state),
        "_torch_spikes": torch_spikes, "_lava_spikes": lava_spikes, "_labels": labels,
    })
    return out


def _sdnn_on_lava(net_path: str | Path, ds: Dataset, meta: Dict[str, Any], samples: int,
                  backend: str, seed: int, progress: bool) -> Dict[str, Any]:
    """A sigma-delta network in Lava: the samples as one stream (each frame held for the window,
    the network's state kept, as netx runs sigma-delta layers with no reset); the host sends the
    input layer's graded messages."""
    from neurokd.deploy.lava_run import lava_input_frames, run_lava
    from neurokd.hardware import load_profile
    from neurokd.models.sigma_delta.net import as_stream, from_stream
    from neurokd.models.sigma_delta.numerics import delta_scan
    from neurokd.models.spec import ConvLayer, spec_from_dict

    spec = spec_from_dict(meta["spec"], where=f"{net_path}: spec")
    sd = load_profile(str(meta.get("hardware", "loihi2"))).sigma_delta
    prepare = make_prepare(meta["encoder"], meta["timesteps"], 0)
    frames, labels = lava_frames(prepare, ds.test, samples, seed)
    n = len(frames)
    shifted = as_stream(frames).to(torch.int64) << int(meta["sdnn"]["input_shift"])
    msgs = from_stream(delta_scan(shifted, int(meta["sdnn"]["input_vth"]), sd.state_exp)[0], n)
    res = run_lava(net_path, lava_input_frames(msgs.numpy(), isinstance(spec.layers[0], ConvLayer)),
                   sd.message_bits, backend, progress=progress, stream=True)
    logits = (res.values[..., -1] + np.asarray(meta["out_bias"])) / float(meta["sdnn"]["out_scale"])
    pred = logits.argmax(1)
    return {"lava_accuracy": float((pred == labels).mean()), "lava_samples": int(n),
            "backend": res.backend, "lava_seconds": res.seconds,
            "lava_samples_per_s": n / res.seconds,
            "_frames": frames, "_labels": labels, "_values": res.values}


def _verify_sdnn(model: nn.Module, net_path: str | Path, ds: Dataset, meta: Dict[str, Any],
                 samples: int, backend: str, seed: int, progress: bool) -> Dict[str, Any]:
    """Sigma-delta: the PyTorch model runs the same stream; every payload of the output layer,
    every step of every sample, is compared (``lava_payload_match``)."""
    from neurokd.models.sigma_delta.net import as_stream, from_stream, message_extremes

    lava = _sdnn_on_lava(net_path, ds, meta, samples, backend, seed, progress)
    frames, labels, lava_values = lava.pop("_frames"), lava.pop("_labels"), lava.pop("_values")
    model.eval()
    out, msgs, _ = model.run(as_stream(frames), record=True)
    mine = from_stream(out, len(frames)).numpy()
    if mine.shape != lava_values.shape:
        raise NeurokdError(f"PyTorch output {mine.shape} and Lava output {lava_values.shape} "
                           "differ in shape: the network file does not belong to this checkpoint")
    equal = mine == lava_values
    stream_pred = model.logits(torch.from_numpy(mine)).argmax(1).numpy()
    rest_pred = model.logits(model(frames)).argmax(1).numpy()
    extremes = message_extremes(model, out, msgs)
    out = dict(lava)
    out.update({
        "lava_payload_match": float(equal.mean()),
        "lava_spike_match": float(((mine != 0) == (lava_values != 0)).mean()),
        "lava_samples_exact": int(equal.all(axis=(1, 2)).sum()),
        "lava_prediction_agreement": float(
            (stream_pred == model.logits(torch.from_numpy(lava_values)).argmax(1).numpy()).mean()),
        "snn_accuracy_on_lava_samples": float((stream_pred == labels).mean()),
        "snn_accuracy_from_rest": float((rest_pred == labels).mean()),
        "state_extremes": extremes,
        "state_overflow": any(r["overflow"] for r in extremes),
        "_torch_spikes": mine, "_lava_spikes": lava_values, "_labels": labels,
    })
    return out

