"""Plots of a run: training curves, output spike rasters (PyTorch against Lava), energy against
accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from neurokd.plotting import pyplot, save_figure


def training_curves(histories: Dict[str, List[Dict[str, float]]], path: str | Path,
                    kept: Optional[Dict[str, int]] = None,
                    start: Optional[Dict[str, Optional[float]]] = None) -> Path:
    """Validation accuracy and training loss per epoch, one line per model. ``kept`` names the
    epoch whose weights each model kept (0: the start), marked with a star; ``start`` gives the
    validation accuracy of the starting weights of a fine-tuning, drawn at epoch 0."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    kept, start = kept or {}, start or {}
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, hist in histories.items():
        epochs = [int(h["epoch"]) for h in hist]
        accs = [h["val_accuracy"] for h in hist]
        if start.get(name) is not None:
            epochs, accs = [0] + epochs, [start[name]] + accs
        line, = ax_acc.plot(epochs, accs, marker=".", label=name)
        ax_loss.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], marker=".", label=name,
                     color=line.get_color())
        if name in kept and kept[name] in epochs:
            at = kept[name]
            ax_acc.plot([at], [accs[epochs.index(at)]], marker="*", markersize=14, linestyle="none",
                        color=line.get_color(), markeredgecolor="black",
                        label=f"{name}: kept {'the start' if at == 0 else f'epoch {at}'}")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    return save_figure(fig, path)


def spike_raster(torch_spikes: np.ndarray, lava_spikes: np.ndarray, path: str | Path,
                 sample: int = 0, labels: Optional[Sequence[int]] = None,
                 class_names: Optional[Sequence[str]] = None) -> Path:
    """Output spikes of one sample: PyTorch as dots, Lava as rings; a mismatch shows as a lone mark.
    With ``labels`` (the true class of each sample), the true class's row is shaded and the title
    names it beside both predictions (the neuron with the most spikes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    n_t, t_t = np.nonzero(torch_spikes[sample])
    n_l, t_l = np.nonzero(lava_spikes[sample])

    def name(k: int) -> str:
        return f"{k} ({class_names[k]})" if class_names and k < len(class_names) else str(k)

    title = f"Output spikes, test sample {sample}"
    if labels is not None:
        true = int(labels[sample])
        ax.axhspan(true - 0.4, true + 0.4, color="tab:green", alpha=0.15, label=f"true class {name(true)}")
        pt = int(torch_spikes[sample].sum(-1).argmax())
        pl = int(lava_spikes[sample].sum(-1).argmax())
        title += f": true {name(true)}, predicted {name(pt)} (PyTorch), {name(pl)} (Lava)"
    ax.scatter(t_t, n_t, s=18, marker="o", color="tab:blue", label="PyTorch (slayer)")
    ax.scatter(t_l, n_l, s=70, marker="o", facecolors="none", edgecolors="tab:orange", label="Lava")
    mismatch = int((torch_spikes[sample] != lava_spikes[sample]).sum())
    ax.set(xlabel="time step", ylabel="output neuron (class)",
           title=f"{title}\n{mismatch} mismatched bins",
           yticks=range(torch_spikes.shape[1]), xlim=(-0.5, torch_spikes.shape[2] - 0.5))
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def rate_scatter(pairs, path: str | Path, names=None, points: int = 3000) -> Path:
    """One panel per layer: the DNN's activation (in units of its scale λ) against the converted
    neuron's spike rate, neuron by neuron; the diagonal is perfect tracking."""
    plt = pyplot()
    n = len(pairs)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.1), squeeze=False)
    gen = np.random.default_rng(0)
    for i, (ax, (act, rate)) in enumerate(zip(axes[0], pairs)):
        keep = gen.permutation(len(act))[:points]
        ax.scatter(act[keep], rate[keep], s=3, alpha=0.3, color="tab:blue")
        ax.plot([0, 1], [0, 1], color="tab:gray", lw=1, ls="--")
        corr = np.corrcoef(act, rate)[0, 1] if act.std() > 0 and rate.std() > 0 else 0.0
        title = names[i] if names else f"layer {i}"
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="DNN activation / λ",
               title=f"{title}  (r = {corr:.3f})")
        if i == 0:
            ax.set_ylabel("spike count / T")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def pareto(points, front, path: str | Path, proxy: str,
           x_label: str = "synaptic ops / inference") -> Path:
    """Proxy score against a cost per inference (log scale: synaptic operations, or the energy
    at their upper bound), colour = estimated cores; the Pareto front
    (``neurokd.nas.search.pareto_front``) circled. ``points`` and ``front``: lists of
    (cores, cost, score)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    c, o, s = (np.array(v, dtype=float) for v in zip(*points))
    sc = ax.scatter(np.maximum(o, 1), s, c=c, cmap="viridis", s=14)
    _, fo, fs = (np.array(v, dtype=float) for v in zip(*sorted(front)))
    ax.scatter(np.maximum(fo, 1), fs, s=80, facecolors="none", edgecolors="tab:red",
               label=f"Pareto front ({len(front)} of {len(points)})")
    fig.colorbar(sc, ax=ax, label="estimated cores").locator = MaxNLocator(integer=True)
    ax.set_xscale("log")
    ax.set(xlabel=x_label, ylabel=f"proxy {proxy}",
           title="Candidates: higher score, fewer cores, less cost")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def energy_accuracy(points, path: str | Path) -> Path:
    """Test accuracy against energy per inference (log scale), one point per network of a run:
    ``points`` are (name, kind, joules, int8 joules or None, accuracy), kind ``snn`` or ``dnn``
    (32-bit float filled, 8-bit integer hollow), all priced by the same digital model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for name, kind, joules, int8, acc in points:
        color = next(colors)
        if kind == "dnn":
            ax.scatter([joules], [acc], marker="s", s=60, color=color, label=f"{name}, fp32")
            if int8:
                ax.scatter([int8], [acc], marker="s", s=60, facecolors="none", edgecolors=color,
                           label=f"{name}, int8")
                ax.plot([int8, joules], [acc, acc], color=color, lw=0.8, ls=":")
        else:
            ax.scatter([joules], [acc], marker="o", s=60, color=color, label=f"{name}, chip")
    ax.set_xscale("log")
    ax.set(xlabel="energy per inference (J, digital model: arithmetic and memory)",
           ylabel="test accuracy",
           title="Energy per inference against accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
