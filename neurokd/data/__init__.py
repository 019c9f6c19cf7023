"""Datasets (registry) and encoders (registry)."""

from neurokd.data.datasets import DATASETS, Dataset, Split, load_dataset
from neurokd.data.encoders import ENCODERS, encode_window, get_encoder
from neurokd.data import radio as _radio  # noqa: F401  registers the sensing and modulation datasets

__all__ = ["DATASETS", "ENCODERS", "Dataset", "Split", "load_dataset", "encode_window", "get_encoder"]
