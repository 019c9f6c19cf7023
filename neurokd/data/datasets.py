"""Dataset registry: each entry returns seeded train/val/test splits scaled to [0, 1].

Samples are ``float32`` arrays shaped ``(N, C, H, W)``; labels are ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from neurokd.errors import NeurokdError
from neurokd.registry import Registry


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    snr: Optional[np.ndarray] = None  # radio: each sample's SNR in dB
    iq: Optional[np.ndarray] = None  # radio: complex64 frames (N, L), for the classical baselines
    meta: Optional[Dict[str, np.ndarray]] = None  # more per-sample arrays

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> "Split":
        """The samples at ``index`` (indices, a mask or a slice), every per-sample field with them."""
        def pick(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else a[index]

        meta = None if self.meta is None else {k: v[index] for k, v in self.meta.items()}
        return Split(self.x[index], self.y[index], pick(self.snr), pick(self.iq), meta)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: Tuple[int, ...]
    notes: List[str] = field(default_factory=list)
    task: str = "classification"  # or "detection": class 0 is H0 (noise only), class 1 H1
    class_names: Optional[List[str]] = None
    radio: Optional[Dict[str, Any]] = None  # generated radio data: the resolved generator config


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
          test_fraction: float, seed: int, notes: List[str], whole: Optional[Split] = None,
          **dataset_fields) -> Dataset:
    """Seeded train/val/test of ``x, y`` (or of ``whole``, which carries more per-sample fields)."""
    whole = Split(x, y) if whole is None else whole
    tr, va, te = split_indices(len(whole), val_fraction, test_fraction, seed)
    return Dataset(name, whole.take(tr), whole.take(va), whole.take(te), num_classes,
                   tuple(whole.x.shape[1:]), notes, **dataset_fields)


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
    if len(y) == 0 or min(x.shape[1:]) == 0:
        raise NeurokdError(f"{img.name}: holds no samples (shape {x.shape})")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= MNIST_CLASSES:
        raise NeurokdError(f"{lab.name}: labels must be integers 0..{MNIST_CLASSES - 1}, found "
                           f"{y.min()}..{y.max()} ({y.dtype})")
    return x, y


MNIST_CLASSES = 10


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
        if train[0].shape[1:] != test[0].shape[1:]:
            raise NeurokdError(f"{folder}: training images are {train[0].shape[1:]} but test images "
                               f"are {test[0].shape[1:]}; both sets must have one image size")
        xtr, ytr = train
        if limit is not None:
            xtr, ytr = xtr[:limit], ytr[:limit]
        order = np.random.default_rng(seed).permutation(len(ytr))
        n_val = max(1, int(round(len(ytr) * val_fraction)))
        va, tr = order[:n_val], order[n_val:]
        if len(tr) == 0:
            raise NeurokdError(f"{folder}: {len(ytr)} training samples leave none for training "
                               "after the validation split")
        xte, yte = test
        x_tr = scale(xtr)
        ytr = ytr.astype(np.int64)
        return Dataset("mnist", Split(x_tr[tr], ytr[tr]), Split(x_tr[va], ytr[va]),
                       Split(scale(xte), yte.astype(np.int64)), MNIST_CLASSES, x_tr.shape[1:], notes)
    x, y = train if train is not None else test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    which = "training" if train is not None else "test"
    notes.append(f"mnist: only the {which} files are in {folder}; their {len(y)} samples were "
                 f"split by seed {seed} into train/val/test "
                 f"({1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%})")
    return _make("mnist", scale(x), y.astype(np.int64), MNIST_CLASSES, val_fraction, test_fraction, seed, notes)


def load_dataset(name: str, **kwargs) -> Dataset:
    return DATASETS.get(name)(**kwargs)
