"""Dataset registry: each entry returns seeded train/val/test splits scaled to [0, 1].

Samples are ``float32`` arrays shaped ``(N, C, H, W)``; labels are ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from neurokd.errors import NeurokdError
from neurokd.registry import Registry


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: Tuple[int, ...]
    notes: List[str] = field(default_factory=list)


DatasetLoader = Callable[..., Dataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into train, val and test index arrays."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise NeurokdError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if min(n_test, n_val, n - n_test - n_val) < 1:
        raise NeurokdError(f"{n} samples are too few for the requested split")
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def _make(name: str, x: np.ndarray, y: np.ndarray, num_classes: int, val_fraction: float,
          test_fraction: float, seed: int, notes: List[str]) -> Dataset:
    tr, va, te = split_indices(len(y), val_fraction, test_fraction, seed)
    return Dataset(name, Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                   num_classes, tuple(x.shape[1:]), notes)


@DATASETS.register("digits")
def load_digits(data_dir: Optional[str] = None, val_fraction: float = 0.15,
                test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1797 real samples, offline)."""
    from sklearn.datasets import load_digits as sk_digits

    if data_dir is not None:
        raise NeurokdError("dataset 'digits' is bundled with scikit-learn; drop --data-dir")
    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return _make("digits", x, y, 10, val_fraction, test_fraction, seed, [])


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_pair(folder: Path, prefix: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    from neurokd.data.idx import read_idx

    img = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if img is None and lab is None:
        return None
    if img is None or lab is None:
        missing = f"{prefix}-images-idx3-ubyte[.gz]" if img is None else f"{prefix}-labels-idx1-ubyte[.gz]"
        raise NeurokdError(f"{folder}: {missing} is missing")
    x, y = read_idx(img), read_idx(lab)
    if x.ndim != 3 or y.ndim != 1:
        raise NeurokdError(f"{img.name}/{lab.name}: expected images (N, H, W) and labels (N,), "
                           f"found {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise NeurokdError(f"{folder}: {len(x)} images but {len(y)} labels")
    return x, y


@DATASETS.register("mnist")
def load_mnist(data_dir: Optional[str] = None, val_fraction: float = 0.15,
               test_fraction: float = 0.25, seed: int = 0, limit: Optional[int] = None) -> Dataset:
    """MNIST-style IDX files from a folder (``train-*`` and/or ``t10k-*``, raw or gz).

    With both pairs present, the official test set is the test split and validation is cut from
    the training set. With only the test pair (like ``shared/data/mnist``), that set is split
    deterministically into train/val/test and the returned notes say so.
    """
    if data_dir is None:
        raise NeurokdError("dataset 'mnist' needs --data-dir (a folder with the IDX files)")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise NeurokdError(f"--data-dir {folder}: no such directory")
    train = _read_pair(folder, "train")
    test = _read_pair(folder, "t10k")
    if train is None and test is None:
        raise NeurokdError(f"{folder}: no MNIST IDX files (t10k-images-idx3-ubyte[.gz], ...)")

    def scale(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255.0)[:, None]

    notes: List[str] = []
    if train is not None and test is not None:
        xtr, ytr = train
        if limit is not None:
            xtr, ytr = xtr[:limit], ytr[:limit]
        order = np.random.default_rng(seed).permutation(len(ytr))
        n_val = max(1, int(round(len(ytr) * val_fraction)))
        va, tr = order[:n_val], order[n_val:]
        xte, yte = test
        x_tr = scale(xtr)
        ytr = ytr.astype(np.int64)
        return Dataset("mnist", Split(x_tr[tr], ytr[tr]), Split(x_tr[va], ytr[va]),
                       Split(scale(xte), yte.astype(np.int64)), 10, x_tr.shape[1:], notes)
    x, y = train if train is not None else test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    which = "training" if train is not None else "test"
    notes.append(f"mnist: only the {which} files are in {folder}; their {len(y)} samples were "
                 f"split by seed {seed} into train/val/test "
                 f"({1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%})")
    return _make("mnist", scale(x), y.astype(np.int64), 10, val_fraction, test_fraction, seed, notes)


def load_dataset(name: str, **kwargs) -> Dataset:
    return DATASETS.get(name)(**kwargs)
