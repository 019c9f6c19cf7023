"""Training-free proxies (registry ``PROXIES``): scores of an SNN at initialization.

``score_arch`` builds the candidate from its spec with slayer's initialization (so the scored
weights are the ones training would start from), runs it in float CUBA dynamics with the
surrogate gradient through time (``neurokd.quant.numerics.cuba_dynamics``), and gives every proxy
a ``Probe``: spikes of every layer, per-sample weight gradients of the summed cross-entropy (one
backward pass: a dense layer's per-sample gradient is ``Σ_t δ_t ⊗ x_t``, a convolution's the same
over unfolded patches), the weights and the resource rows. Scores are averaged over data batches
and initialization seeds. Higher is better for every proxy.

* ``grad_stats``: Σ_layers log Σ_w mean_n|g_nw| / std_n(g_nw) (gradients across samples, as ZiCo);
* ``gradsign``: Σ_w |Σ_n sign(g_nw)| / N (per-sample gradient sign agreement, as GradSign);
* ``snasnet``: log det of the Hamming-similarity kernel of the hidden layers' spike trains (SNASNet);
* ``naswot``: the same on which neurons fired at all in the window (NASWOT on spikes);
* ``snip``: Σ |w · ∂L/∂w|;
* ``synflow``: log Σ |w · ∂R/∂w|, R the output sum of the network with |w| and no neurons, on ones;
* ``params``: distinct weights; ``synops``: synaptic operations per inference at the measured rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from neurokd.hardware import HardwareProfile
from neurokd.models.spec import ArchSpec, ConvLayer, DenseLayer, FlattenLayer
from neurokd.nas.resources import LayerResources, layer_resources, synops
from neurokd.quant.numerics import cuba_dynamics, synaptic_input
from neurokd.registry import Registry


@dataclass
class Probe:
    """What one forward and backward pass of a candidate at initialization yields."""

    spec: ArchSpec
    weights: List[torch.Tensor]  # per spiking layer, float units
    grads: List[torch.Tensor]  # per spiking layer: per-sample gradients (N, *weight.shape)
    spikes: List[torch.Tensor]  # per spiking layer: (N, ..., T) output spikes
    input_rate: float  # events per input neuron per step
    resources: List[LayerResources]
    timesteps: int


Proxy = Callable[[Probe], float]
PROXIES: Registry[Proxy] = Registry("proxy")


def _init_weights(spec: ArchSpec, profile: HardwareProfile, seed: int) -> List[torch.Tensor]:
    from neurokd.models.snn import SpikingNet

    torch.manual_seed(seed)
    snn = SpikingNet(spec, profile)
    blocks = [b for b in snn.blocks if getattr(b, "synapse", None) is not None]
    layers = [layer for layer in spec.layers if not isinstance(layer, FlattenLayer)]
    out = []
    for b, layer in zip(blocks, layers):
        w = b.synapse.weight.detach()
        # slayer keeps a dense weight as (out, in, 1, 1, 1) and a conv weight as (out, in, k, k, 1)
        out.append(w.reshape(w.shape[0], -1).clone() if isinstance(layer, DenseLayer)
                   else w[..., 0].clone())
    return out


def probe(spec: ArchSpec, profile: HardwareProfile, x: torch.Tensor, y: torch.Tensor,
          seed: int) -> Probe:
    """Run the candidate (slayer's initialization, seed ``seed``) on the encoded batch ``x``."""
    from neurokd.quant.qsnn import neuron_integers

    i_decay, v_decay, vth = neuron_integers(spec, profile)
    scale = float(profile.weight_scale)
    n = spec.neuron
    weights = [w.requires_grad_(True) for w in _init_weights(spec, profile, seed)]
    h = x.to(torch.float32)
    if isinstance(spec.layers[0], DenseLayer) and h.dim() > 3:
        h = h.reshape(h.shape[0], -1, h.shape[-1])
    inputs, pre, spikes = [], [], []
    i = 0
    for layer in spec.layers:
        if isinstance(layer, FlattenLayer):
            h = h.reshape(h.shape[0], -1, h.shape[-1])
            continue
        w = weights[i] * scale
        inputs.append(h)
        conv = isinstance(layer, ConvLayer)
        a = synaptic_input(w, h, layer.stride2 if conv else 1, layer.padding2 if conv else 0, conv=conv)
        a.retain_grad()
        pre.append(a)
        h = cuba_dynamics(a, i_decay, v_decay, torch.tensor(float(vth)), profile, exact=False,
                          tau_grad=n.tau_grad, scale_grad=n.scale_grad).to(torch.float32)
        spikes.append(h)
        i += 1
    loss = F.cross_entropy(h.sum(-1), y, reduction="sum")
    loss.backward()
    grads = []
    for layer, w, xin, a in zip([la for la in spec.layers if not isinstance(la, FlattenLayer)],
                                weights, inputs, pre):
        g_a = a.grad * scale  # d loss / d w = scale · d loss / d (scale · w)
        if isinstance(layer, DenseLayer):
            grads.append(torch.einsum("not,nit->noi", g_a, xin))
        else:
            nb, c, hh, ww, t = xin.shape
            frames = xin.permute(0, 4, 1, 2, 3).reshape(nb * t, c, hh, ww)
            cols = F.unfold(frames, layer.kernel2, padding=layer.padding2, stride=layer.stride2)
            g = g_a.permute(0, 4, 1, 2, 3).reshape(nb * t, g_a.shape[1], -1)
            per = torch.bmm(g, cols.transpose(1, 2)).reshape(nb, t, *w.shape[:1], -1).sum(1)
            grads.append(per.reshape(nb, *w.shape))
    rate = float((x != 0).float().mean())
    return Probe(spec, [w.detach() for w in weights], [g.detach() for g in grads],
                 [s.detach() for s in spikes], rate, layer_resources(spec, profile), x.shape[-1])


def _flat(g: torch.Tensor) -> torch.Tensor:
    return g.reshape(g.shape[0], -1).double()


@PROXIES.register("grad_stats")
def grad_stats(p: Probe) -> float:
    total = 0.0
    for g in p.grads:
        g = _flat(g)
        mean_abs, std = g.abs().mean(0), g.std(0)
        keep = std > 0
        ratio = float((mean_abs[keep] / std[keep]).sum())
        total += math.log(ratio) if ratio > 0 else 0.0
    return total


@PROXIES.register("gradsign")
def gradsign(p: Probe) -> float:
    return float(sum(_flat(g).sign().sum(0).abs().sum() / g.shape[0] for g in p.grads))


@PROXIES.register("snip")
def snip(p: Probe) -> float:
    return float(sum((w.double() * g.double().sum(0)).abs().sum() for w, g in zip(p.weights, p.grads)))


def _hamming_logdet(codes: Sequence[torch.Tensor]) -> float:
    """log det of Σ_layers (D − Hamming(c_i, c_j)) / Σ D, with a small ridge so that networks whose
    codes coincide get a finite (very low) score."""
    n = codes[0].shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)
    dims = 0
    for c in codes:
        c = c.reshape(n, -1).double()
        same = c @ c.t() + (1 - c) @ (1 - c).t()  # positions where two codes agree
        k += same
        dims += c.shape[1]
    k = k / max(dims, 1) + 1e-3 * torch.eye(n, dtype=torch.float64)
    return float(torch.linalg.slogdet(k)[1])


@PROXIES.register("snasnet")
def snasnet(p: Probe) -> float:
    hidden = p.spikes[:-1] or p.spikes
    return _hamming_logdet([(s > 0).float() for s in hidden])


@PROXIES.register("naswot")
def naswot(p: Probe) -> float:
    hidden = p.spikes[:-1] or p.spikes
    return _hamming_logdet([(s.sum(-1) > 0).float() for s in hidden])


@PROXIES.register("synflow")
def synflow(p: Probe) -> float:
    ws = [w.abs().double().requires_grad_(True) for w in p.weights]
    h = torch.ones(1, *p.spec.input_shape, dtype=torch.float64)
    if isinstance(p.spec.layers[0], DenseLayer):
        h = h.reshape(1, -1)
    i = 0
    for layer in p.spec.layers:
        if isinstance(layer, FlattenLayer):
            h = h.reshape(1, -1)
            continue
        h = h @ ws[i].t() if isinstance(layer, DenseLayer) else F.conv2d(
            h, ws[i], stride=layer.stride2, padding=layer.padding2)
        i += 1
    h.sum().backward()
    total = float(sum((w * w.grad).sum() for w in ws))
    return math.log(total) if total > 0 else -1e9


@PROXIES.register("params")
def params(p: Probe) -> float:
    return float(sum(r.params for r in p.resources))


@PROXIES.register("synops")
def synops_proxy(p: Probe) -> float:
    rates = [p.input_rate] + [float(s.mean()) for s in p.spikes[:-1]]
    return synops(p.resources, p.timesteps, rates)


def score_arch(spec: ArchSpec, profile: HardwareProfile,
               batches: Sequence[Tuple[torch.Tensor, torch.Tensor]], seeds: Sequence[int],
               proxies: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Mean of each proxy over ``batches`` × ``seeds`` (all proxies by default)."""
    names = list(proxies) if proxies is not None else PROXIES.names()
    fns = {name: PROXIES.get(name) for name in names}
    sums = {name: 0.0 for name in names}
    count = 0
    for seed in seeds:
        for x, y in batches:
            p = probe(spec, profile, x, torch.as_tensor(y), seed)
            for name, fn in fns.items():
                sums[name] += fn(p)
            count += 1
    return {name: v / count for name, v in sums.items()}
