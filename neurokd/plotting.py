"""Public plot helpers every plot module uses: matplotlib without a display, and figures written
atomically (ground floor: imports nothing of neurokd above ``fileio``)."""

from __future__ import annotations

from pathlib import Path

from neurokd.fileio import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write the figure atomically as PNG and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    pyplot().close(fig)
    return Path(path)
