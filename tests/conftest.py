import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, as MNIST's files are laid out."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A tiny MNIST-like test-set folder (t10k pair only) with learnable synthetic digits."""
    rng = np.random.default_rng(0)
    n = 120
    labels = np.arange(n) % 10
    images = rng.integers(0, 40, size=(n, 28, 28))
    for i, y in enumerate(labels):
        images[i, 2 * y:2 * y + 6, 4:24] = 250  # a class-dependent bar
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    return folder


# Settings that make a whole run take seconds: few samples, few epochs, a small student.
TINY = [
    "--set", "data.limit=300",
    "--set", "teacher.epochs=15", "--set", "teacher.hidden=[32]",
    "--set", "student.epochs=4", "--set", "student.hidden=32", "--set", "student.timesteps=8",
    "--set", "lava.samples=24",
]


def run_cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m neurokd ARGS`` in ``cwd``, as a user runs it; output captured as text."""
    return subprocess.run([sys.executable, "-m", "neurokd", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
