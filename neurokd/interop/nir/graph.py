"""Reading a NIR graph: the file checked and read, its chain of nodes parsed into neurokd's layers
(``parse_chain``), and the graph as written simulated in float64 (``simulate_chain``), the
reference an import is measured against. The mapping is described in :mod:`neurokd.interop.nir`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeurokdError
from neurokd.h5safe import check_hdf5

DEFAULT_DT = 1e-4  # snntorch writes (and reads) its NIR graphs with this step
META_KEY = "neurokd"
FORMAT_VERSION = 1
# A zero decay written as a finite time constant: 1 - 2^-40 is 1.0 in float32 (snntorch's beta),
# and consumers that cannot take an infinite tau still read the graph.
NEVER_DECAYS = float(2 ** 40)
# The import's global threshold mantissa stays below 2^12: from 2^12 on, slayer's float32 spike
# test needs a wider margin (models.snn.exact_threshold). Weights then still fill slayer's 8 bits
# unless one input spike carries less than 254/4095 of a threshold.
MAX_IMPORT_VTH = (1 << 12) - 1



# ---------------------------------------------------------------- reading a graph
# The time steps a graph is written or read with: every time constant written (dt · 4096 / decay,
# up to dt · 2^40 for a zero decay) then stays a positive, finite float32.
DT_RANGE = (1e-12, 1e6)


def check_dt(dt: Any) -> float:
    """``dt`` as a float, or one line when it is not a number of seconds in :data:`DT_RANGE`."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) \
            or not DT_RANGE[0] <= dt <= DT_RANGE[1]:
        raise NeurokdError(f"dt must be a number of seconds from {DT_RANGE[0]:g} to "
                           f"{DT_RANGE[1]:g}, got {dt!r}")
    return float(dt)


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - a declared dependency
        raise NeurokdError("the 'nir' package is missing; install it with: pip install nir") from None
    return nir


def _node_type_names(nir) -> List[str]:
    return sorted(n for n in dir(nir) if isinstance(getattr(nir, n), type)
                  and issubclass(getattr(nir, n), nir.NIRNode) and n != "NIRNode")


def _check_node_types(group, p: Path, name: str, nir, depth: int = 0) -> None:
    """Refuse a node whose type NIR does not define, naming it (``nir.read`` only asserts)."""
    import h5py

    if not isinstance(group, h5py.Group) or not isinstance(group.get("type"), h5py.Dataset):
        raise NeurokdError(f"{p}: NIR node {name!r} has no type")
    raw = group["type"]
    if raw.dtype.kind not in "SOU" or raw.size != 1 or raw.dtype.itemsize > 256:
        raise NeurokdError(f"{p}: NIR node {name!r} has a type that is not a short string")
    kind = raw[()]
    kind = kind.decode("utf-8", errors="replace") if isinstance(kind, bytes) else str(kind)
    known = _node_type_names(nir)
    if kind not in known:
        raise NeurokdError(f"{p}: NIR node {name!r} has type {kind!r}, which NIR does not define "
                           f"(known: {', '.join(known)})")
    if kind == "NIRGraph":
        if depth > 16:
            raise NeurokdError(f"{p}: NIR graphs nested deeper than 16 at {name!r}")
        nodes = group.get("nodes")
        if not isinstance(nodes, h5py.Group):
            raise NeurokdError(f"{p}: NIR graph {name!r} has no 'nodes' group")
        for key in nodes:
            _check_node_types(nodes[key], p, key if name == "node" else f"{name}.{key}", nir,
                              depth + 1)


def read_graph(path: Union[str, Path]):
    """The NIR graph in the HDF5 file at ``path``, read with the ``nir`` package (h5py; nothing
    is unpickled). Shapes are checked by ``parse_chain``, not by ``nir``'s own type inference,
    which refuses graphs with per-layer (scalar) neuron parameters."""
    import h5py

    nir = _nir()
    p = Path(path)
    if not p.is_file():
        raise NeurokdError(f"{p}: no such NIR file")
    check_hdf5(p, "NIR graph")
    try:
        with h5py.File(p, "r") as h:
            if "node" not in h:
                raise NeurokdError(f"{p}: HDF5 file without a 'node' group; not a NIR graph")
            _check_node_types(h["node"], p, "node", nir)
    except OSError:
        raise NeurokdError(f"{p}: not an HDF5 file (NIR graphs are HDF5)") from None
    try:
        graph = nir.read(str(p), type_check=False)
    except NeurokdError:
        raise
    except Exception as exc:  # nir raises ValueError, KeyError, TypeError ... on bad content
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise NeurokdError(f"{p}: unreadable NIR graph ({why})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NeurokdError(f"{p}: holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


@dataclass
class GraphStage:
    """One spiking layer of a NIR chain: a synapse node and the neuron node after it, with every
    neuron parameter as one value per output channel (float64)."""

    synapse: str                 # node names, for messages
    neuron: str
    neuron_type: str             # LIF, CubaLIF, IF
    kind: str                    # dense or conv
    weight: np.ndarray           # (out, in) or (out, in, kh, kw)
    bias: np.ndarray             # (out,); zeros for Linear
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    in_shape: Tuple[int, ...] = ()
    out_shape: Tuple[int, ...] = ()
    du: np.ndarray = field(default_factory=lambda: np.zeros(0))   # current decay per step
    dv: np.ndarray = field(default_factory=lambda: np.zeros(0))   # voltage decay per step
    gain: np.ndarray = field(default_factory=lambda: np.zeros(0))  # input → voltage per step
    threshold: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_leak: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_reset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    decay_clamped: List[str] = field(default_factory=list)
    flatten_after: bool = False  # a Flatten node follows (or sat between synapse and neuron)


@dataclass
class Chain:
    """A NIR graph read as neurokd's layers: the input shape and the spiking stages in order."""

    input_shape: Tuple[int, ...]
    stages: List[GraphStage]
    dt: float
    node_types: Dict[str, str]


# The most neurons one layer may have (one Loihi 2 chip: 128 cores of 8192 neurons) and the most
# values one input frame may have: sizes past these are refused before anything is allocated.
MAX_LAYER_NEURONS = 128 * 8192
MAX_INPUT_VALUES = 1 << 24


def _numeric(value: Any, what: str, where: str) -> np.ndarray:
    """``value`` as a float64 array, refusing strings, records, objects and complex numbers (whose
    imaginary part a float conversion would drop without a word)."""
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged or exotic content
        raise NeurokdError(f"{where}: {what} is not a numeric array") from None
    if arr.dtype.kind == "c":
        raise NeurokdError(f"{where}: {what} holds complex numbers; Loihi computes with real "
                           "values and the imaginary part would be lost")
    if arr.dtype.kind not in "biuf":
        raise NeurokdError(f"{where}: {what} is stored as {arr.dtype} data, not as numbers")
    return arr.astype(np.float64)


def _elements(shape: Sequence[int]) -> int:
    """The number of values of ``shape``, in Python integers (no int64 overflow)."""
    return math.prod(int(v) for v in shape)


def _ints(value: Any, n: int, what: str, where: str) -> Tuple[int, ...]:
    arr = _numeric(value, what, where).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    shown = [int(v) if np.isfinite(v) and v == round(v) else float(v) for v in arr[:8]]
    shown = shown if arr.size <= 8 else f"{arr.size} values"
    if arr.size != n or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise NeurokdError(f"{where}: {what} {shown} is not {n} integers")
    if np.any(np.abs(arr) >= 2.0 ** 40):
        raise NeurokdError(f"{where}: {what} {shown} is out of range (each at most 2^40)")
    return tuple(int(v) for v in arr)


def _param(node: Any, name: str, shape: Tuple[int, ...], where: str, default: Optional[float] = None
           ) -> np.ndarray:
    """A neuron parameter as one float64 per output channel of a layer of output ``shape``
    (``(units,)`` or ``(C, H, W)``): a scalar is broadcast; a convolution's parameter must not vary
    within a channel, since a convolution shares its weights across positions."""
    value = getattr(node, name, None)
    if value is None:
        if default is None:
            raise NeurokdError(f"{where}: has no {name}")
        value = default
    arr = _numeric(value, name, where)
    if np.any(np.isnan(arr)):
        raise NeurokdError(f"{where}: {name} holds NaN")
    channels = shape[0]
    if arr.size == 1:
        return np.full(channels, float(arr.reshape(-1)[0]))
    if arr.size == int(np.prod(shape)):
        per = arr.reshape(channels, -1)
    elif arr.size == channels:
        per = arr.reshape(channels, 1)
    else:
        raise NeurokdError(f"{where}: {name} has shape {list(arr.shape)}, but the layer before it "
                           f"gives {list(shape)}")
    if per.shape[1] > 1:
        spread = np.abs(per - per[:, :1]).max()
        if spread > 1e-6 * max(1.0, float(np.abs(per).max())):
            raise NeurokdError(f"{where}: {name} varies within a channel; a convolution shares "
                               "its weights across positions, so its neurons must share "
                               "their parameters per channel")
    return per[:, 0].copy()


def _decay(dt: float, tau: np.ndarray, name: str, where: str, clamped: List[str]) -> np.ndarray:
    if np.any(tau <= 0):
        raise NeurokdError(f"{where}: {name} must be positive, found {float(tau.min()):g}")
    decay = dt / tau  # tau = inf: no decay
    if np.any(decay > 1):
        clamped.append(f"{name}: dt/{name} = {float(decay.max()):.4g} > 1 (an unstable Euler "
                       "step) taken as 1, as snntorch clamps its decay factors")
        decay = np.minimum(decay, 1.0)
    return decay


def _back_edge(names: List[str], succ: Dict[str, List[str]]) -> Optional[Tuple[str, str]]:
    """An edge that closes a cycle (found by depth-first search from each node in turn), or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for root in names:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return node, nxt
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return None


def _chain_order(graph, where: str) -> List[str]:
    """The node names from the Input node to the Output node, refusing any other graph shape."""
    nir = _nir()
    nodes = graph.nodes
    edges = sorted({(str(a), str(b)) for a, b in graph.edges})
    for a, b in edges:
        for name in (a, b):
            if name not in nodes:
                raise NeurokdError(f"{where}: edge {a!r} → {b!r} names an unknown node {name!r}")
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NeurokdError(f"{where}: node {name!r} is a subgraph (NIRGraph), as snntorch writes "
                               "recurrent layers (RLeaky, RSynaptic); neurokd imports feed-forward "
                               "chains only")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NeurokdError(f"{where}: the graph has {len(inputs)} Input and {len(outputs)} Output "
                           "nodes; neurokd imports one chain from one Input to one Output")
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    pred: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a == b:
            raise NeurokdError(f"{where}: node {a!r} feeds itself (a recurrent edge); neurokd "
                               "imports feed-forward chains only")
        succ[a].append(b)
        pred[b].append(a)
    back = _back_edge(list(nodes), succ)
    if back is not None:
        raise NeurokdError(f"{where}: edge {back[0]!r} → {back[1]!r} closes a loop (a recurrent "
                           "connection); neurokd imports feed-forward chains only")
    for name in nodes:
        if len(pred[name]) > 1:
            raise NeurokdError(f"{where}: node {name!r} has {len(pred[name])} inputs "
                               f"({', '.join(pred[name])}); neurokd imports one chain, no merges "
                               "or recurrence")
        if len(succ[name]) > 1:
            raise NeurokdError(f"{where}: node {name!r} feeds {len(succ[name])} nodes "
                               f"({', '.join(succ[name])}); neurokd imports one chain, no branches")
    order = [inputs[0]]
    seen = {inputs[0]}
    while succ[order[-1]]:
        nxt = succ[order[-1]][0]
        order.append(nxt)
        seen.add(nxt)
    if order[-1] != outputs[0]:
        raise NeurokdError(f"{where}: the chain from {inputs[0]!r} ends at {order[-1]!r} before "
                           f"reaching the Output node {outputs[0]!r}")
    stray = [n for n in nodes if n not in seen]
    if stray:
        raise NeurokdError(f"{where}: node {stray[0]!r} is not on the chain from {inputs[0]!r} to "
                           f"{outputs[0]!r}")
    return order


def _conv_geometry(node: Any, kernel: Tuple[int, int], where: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    groups = _ints(getattr(node, "groups", 1), 1, "groups", where)[0]
    if groups != 1:
        raise NeurokdError(f"{where}: groups = {groups}; neurokd's convolutions are dense (groups 1)")
    dilation = _ints(getattr(node, "dilation", 1), 2, "dilation", where)
    if dilation != (1, 1):
        raise NeurokdError(f"{where}: dilation {list(dilation)}; Loihi convolutions in neurokd "
                           "have dilation 1")
    stride = _ints(getattr(node, "stride", 1), 2, "stride", where)
    if min(stride) < 1:
        raise NeurokdError(f"{where}: stride {list(stride)} must be positive")
    padding = getattr(node, "padding", 0)
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            return stride, (0, 0)
        if padding == "same" and stride == (1, 1) and kernel[0] % 2 and kernel[1] % 2:
            return stride, (kernel[0] // 2, kernel[1] // 2)
        raise NeurokdError(f"{where}: padding {padding!r} (with stride {list(stride)} and kernel "
                           f"{list(kernel)}) has no symmetric integer form")
    pad = _ints(padding, 2, "padding", where)
    if min(pad) < 0:
        raise NeurokdError(f"{where}: padding {list(pad)} must not be negative")
    return stride, pad


SYNAPSE_TYPES = ("Affine", "Linear", "Conv2d")
NEURON_TYPES = ("LIF", "CubaLIF", "IF")


def parse_chain(graph, dt: float = DEFAULT_DT, where: str = "NIR graph") -> Chain:
    """Read ``graph`` as neurokd's layers, or refuse it with one line naming the node."""
    check_dt(dt)
    order = _chain_order(graph, where)
    nodes = graph.nodes
    node_types = {n: type(nodes[n]).__name__ for n in order}
    shape = _input_shape(nodes[order[0]], order[0], where)
    input_shape = shape
    stages: List[GraphStage] = []
    pending: Optional[GraphStage] = None
    for name in order[1:-1]:
        node = nodes[name]
        kind = type(node).__name__
        at = f"{where}: node {name!r} ({kind})"
        if kind == "Flatten":
            if len(shape) == 1:
                continue  # flattening a flat vector does nothing
            start = _ints(node.start_dim, 1, "start_dim", at)[0]
            end = _ints(node.end_dim, 1, "end_dim", at)[0]
            if start % len(shape) != 0 or end % len(shape) != len(shape) - 1:
                raise NeurokdError(f"{at}: flattens dims {start}..{end} of {list(shape)}; neurokd "
                                   "flattens all of them (start_dim 0, end_dim -1)")
            if pending is not None:
                pending.flatten_after = True  # neurons act element-wise: flatten after them
            elif stages:
                stages[-1].flatten_after = True
            # before the first synapse: a dense first layer takes its input flat anyway
            shape = (_elements(shape),)
            continue
        if kind in SYNAPSE_TYPES:
            if pending is not None:
                raise NeurokdError(f"{at}: follows {pending.synapse!r} without spiking neurons "
                                   "between them; each neurokd layer is a synapse followed by "
                                   "LIF, CubaLIF or IF neurons")
            pending = _synapse_stage(node, name, kind, at, shape, bool(stages))
            shape = pending.out_shape
            continue
        if kind in NEURON_TYPES:
            if pending is None:
                raise NeurokdError(f"{at}: has no synapse (Affine, Linear or Conv2d) before it; "
                                   "each neurokd layer is a synapse followed by spiking neurons")
            _set_neurons(pending, node, name, kind, at, dt)
            stages.append(pending)
            pending = None
            continue
        if kind in ("AvgPool2d", "SumPool2d"):
            raise NeurokdError(f"{at}: Loihi students in neurokd have no pooling (netx refuses "
                               "it); use a strided convolution instead")
        raise NeurokdError(f"{at}: node type {kind} cannot be mapped; neurokd imports "
                           f"{', '.join(SYNAPSE_TYPES + NEURON_TYPES)} and Flatten nodes")
    if pending is not None:
        raise NeurokdError(f"{where}: node {pending.synapse!r} ({node_types[pending.synapse]}) ends "
                           "the chain without spiking neurons after it; a neurokd network ends in "
                           "a layer of spiking neurons whose spike counts are the class scores")
    if not stages:
        raise NeurokdError(f"{where}: the chain holds no spiking layer")
    return Chain(tuple(input_shape), stages, float(dt), node_types)


def _input_shape(in_node: Any, name: str, where: str) -> Tuple[int, ...]:
    """The per-step shape the Input node ``name`` gives: (features,) or (channels, height,
    width), of at most :data:`MAX_INPUT_VALUES` values."""
    raw = (in_node.input_type or {}).get("input") if isinstance(in_node.input_type, dict) else None
    if raw is None:
        raise NeurokdError(f"{where}: Input node {name!r} does not give its shape")
    size = int(np.asarray(raw).size)
    if not 1 <= size <= 3:
        raise NeurokdError(f"{where}: Input node {name!r} has a shape of {size} dimensions; "
                           "neurokd takes (features,) or (channels, height, width) inputs")
    shape = _ints(raw, size, "input shape", f"{where}: node {name!r}")
    if min(shape) <= 0:
        raise NeurokdError(f"{where}: Input node {name!r} has shape {list(shape)}; neurokd takes "
                           "(features,) or (channels, height, width) inputs")
    if _elements(shape) > MAX_INPUT_VALUES:
        raise NeurokdError(f"{where}: Input node {name!r} has shape {list(shape)}, "
                           f"{_elements(shape):,} values per step; neurokd takes at most "
                           f"{MAX_INPUT_VALUES:,}")
    return shape


def _synapse_stage(node: Any, name: str, kind: str, at: str, shape: Tuple[int, ...],
                   after_layers: bool) -> GraphStage:
    """The synapse node ``name`` (one of :data:`SYNAPSE_TYPES`) reading ``shape``, as a stage
    still without its neurons; ``after_layers``: spiking layers come before it."""
    weight = _numeric(node.weight, "weight", at)
    if not np.all(np.isfinite(weight)):
        raise NeurokdError(f"{at}: weights hold NaN or infinite values")
    if kind == "Conv2d":
        if weight.ndim != 4:
            raise NeurokdError(f"{at}: weight has shape {list(weight.shape)}, expected "
                               "(out, in, kh, kw)")
        if len(shape) != 3 or shape[0] != weight.shape[1]:
            raise NeurokdError(f"{at}: takes {weight.shape[1]} input channels, but its "
                               f"input has shape {list(shape)}")
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        stride, padding = _conv_geometry(node, kernel, at)
        h = (shape[1] + 2 * padding[0] - kernel[0]) // stride[0] + 1
        w = (shape[2] + 2 * padding[1] - kernel[1]) // stride[1] + 1
        if h <= 0 or w <= 0:
            raise NeurokdError(f"{at}: kernel {list(kernel)} does not fit input {list(shape)}")
        out_shape: Tuple[int, ...] = (int(weight.shape[0]), h, w)
        if _elements(out_shape) > MAX_LAYER_NEURONS:
            raise NeurokdError(f"{at}: gives {list(out_shape)}, {_elements(out_shape):,} "
                               "neurons in one layer (stride "
                               f"{list(stride)}, padding {list(padding)}); one Loihi 2 "
                               f"chip holds {MAX_LAYER_NEURONS:,}")
        stage = GraphStage(name, "", "", "conv", weight, np.zeros(weight.shape[0]), stride,
                      padding, shape, out_shape)
    else:
        if weight.ndim != 2:
            raise NeurokdError(f"{at}: weight has shape {list(weight.shape)}, expected "
                               "(out, in)")
        if len(shape) > 1 and after_layers:
            raise NeurokdError(f"{at}: reads a {list(shape)} output; put a Flatten node "
                               "before it")
        if _elements(shape) != weight.shape[1]:
            raise NeurokdError(f"{at}: takes {weight.shape[1]} inputs, but its input has "
                               f"shape {list(shape)}")
        out_shape = (int(weight.shape[0]),)
        stage = GraphStage(name, "", "", "dense", weight, np.zeros(weight.shape[0]),
                      in_shape=shape, out_shape=out_shape)
    if kind in ("Affine", "Conv2d") and getattr(node, "bias", None) is not None:
        bias = _numeric(node.bias, "bias", at).reshape(-1)
        if bias.size == 1:
            bias = np.full(weight.shape[0], float(bias[0]))
        if bias.size != weight.shape[0] or not np.all(np.isfinite(bias)):
            raise NeurokdError(f"{at}: bias has {bias.size} values for {weight.shape[0]} "
                               "outputs, or non-finite ones")
        stage.bias = bias
    return stage


def _set_neurons(st: GraphStage, node: Any, name: str, kind: str, at: str, dt: float) -> None:
    """Give ``st`` the neuron node ``name`` (one of :data:`NEURON_TYPES`) after its synapse: its
    decays, input gain, threshold, leak and reset per output value."""
    out = st.out_shape
    thr = _param(node, "v_threshold", out, at)
    v_reset = _param(node, "v_reset", out, at, default=0.0)
    if kind == "IF":
        r = _param(node, "r", out, at, default=1.0)
        du, dv, gain, v_leak = np.ones_like(thr), np.zeros_like(thr), r, np.zeros_like(thr)
    elif kind == "LIF":
        tau = _param(node, "tau", out, at)
        r = _param(node, "r", out, at, default=1.0)
        v_leak = _param(node, "v_leak", out, at, default=0.0)
        dv = _decay(dt, tau, "tau", at, st.decay_clamped)
        du = np.ones_like(dv)
        gain = r * dv
    else:
        tau_syn = _param(node, "tau_syn", out, at)
        tau_mem = _param(node, "tau_mem", out, at)
        r = _param(node, "r", out, at, default=1.0)
        w_in = _param(node, "w_in", out, at, default=1.0)
        v_leak = _param(node, "v_leak", out, at, default=0.0)
        du = _decay(dt, tau_syn, "tau_syn", at, st.decay_clamped)
        dv = _decay(dt, tau_mem, "tau_mem", at, st.decay_clamped)
        gain = w_in * du * r * dv
    if np.any(~np.isfinite(gain)) or np.any(gain <= 0):
        raise NeurokdError(f"{at}: input gain (from r, w_in, tau and dt) must be positive "
                           f"and finite; found {float(np.nanmin(gain)):g}")
    if np.any(~np.isfinite(thr)) or np.any(thr <= 0):
        raise NeurokdError(f"{at}: v_threshold must be positive and finite; found "
                           f"{float(np.nanmin(thr)):g}")
    for label, arr in (("v_reset", v_reset), ("v_leak", v_leak)):
        if np.any(~np.isfinite(arr)):
            raise NeurokdError(f"{at}: {label} must be finite")
    st.neuron, st.neuron_type = name, kind
    st.du, st.dv, st.gain, st.threshold = du, dv, gain, thr
    st.v_leak, st.v_reset = v_leak, v_reset


# ---------------------------------------------------------------- the NIR graph, simulated
def _synapse(st: GraphStage, x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(st.weight, dtype=x.dtype)
    if st.kind == "conv":
        y = torch.nn.functional.conv2d(x, w, stride=st.stride, padding=st.padding)
        return y + torch.as_tensor(st.bias, dtype=x.dtype).reshape(1, -1, 1, 1)
    return x.reshape(x.shape[0], -1) @ w.T + torch.as_tensor(st.bias, dtype=x.dtype)


@torch.no_grad()
def simulate_chain(chain: Chain, x: torch.Tensor) -> torch.Tensor:
    """Output spikes ``(N, K, T)`` of the NIR graph as written, in float64, for input frames
    ``x`` ``(N, *input_shape, T)``: Euler steps of ``chain.dt`` as in the module docstring, no
    synaptic delay, biases, ``v_leak`` and ``v_reset`` included. The reference an import is
    measured against."""
    x = x.to(torch.float64)
    steps = x.shape[-1]
    states = []
    for st in chain.stages:
        view = (1, -1) + (1,) * (len(st.out_shape) - 1)

        def col(a: np.ndarray, view=view) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float64).reshape(view)

        states.append({"keep_u": col(1 - st.du), "keep_v": col(1 - st.dv), "gain": col(st.gain),
                       "leak": col(st.dv * st.v_leak), "theta": col(st.threshold),
                       "reset": col(st.v_reset), "u": None, "v": None})
    out = []
    for t in range(steps):
        s = x[..., t]
        for st, z in zip(chain.stages, states):
            a = _synapse(st, s) * z["gain"]
            u = a if z["u"] is None else z["keep_u"] * z["u"] + a
            v = u + z["leak"] if z["v"] is None else z["keep_v"] * z["v"] + u + z["leak"]
            s = (v > z["theta"]).to(torch.float64)
            z["u"], z["v"] = u, torch.where(s > 0, z["reset"].expand_as(v), v)
            if st.flatten_after:
                s = s.reshape(s.shape[0], -1)
        out.append(s.reshape(s.shape[0], -1))
    return torch.stack(out, dim=-1)


def nir_input_window(model: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """``(x_nir, lag)``: the input frames under which a NIR simulator (no synaptic delay)
    reproduces ``model``'s output on ``x``, and the lag: ``model(x)[..., lag + t]`` is the graph's
    output ``[..., t]``. A network without biases lags one step per spiking layer; a biased one
    (``QuantSpikingNet`` with biases, as ``convert`` makes) already runs without the delay, on its
    window's zero frames moved to the front."""
    lag = int(model.window_pad)
    if getattr(model, "has_bias", False):
        lead = x.new_zeros(*x.shape[:-1], lag)
        return torch.cat([lead, x[..., :x.shape[-1] - lag]], dim=-1), 0
    return x, lag


def spike_agreement(model_spikes: torch.Tensor, nir_spikes: torch.Tensor, lag: int
                    ) -> Dict[str, float]:
    """Agreement of ``model``'s output spikes with a NIR simulator's, lined up by ``lag``: the
    fraction of equal output bins and of equal predictions (argmax of spike counts) over the
    steps both cover."""
    steps = model_spikes.shape[-1] - lag
    a = model_spikes[..., lag:].to(torch.float64)
    b = nir_spikes[..., :steps].to(torch.float64)
    return {"spike_match": float((a == b).to(torch.float64).mean()),
            "prediction_agreement": float((a.sum(-1).argmax(1) == b.sum(-1).argmax(1))
                                          .to(torch.float64).mean())}


