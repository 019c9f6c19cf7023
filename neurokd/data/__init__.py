"""Datasets (registry) and encoders (registry)."""

from neurokd.data.datasets import DATASETS, Dataset, Split, load_dataset
from neurokd.data.encoders import ENCODERS, encode_window, get_encoder
from neurokd.data import radio as _radio  # noqa: F401  registers the sensing and modulation datasets
from neurokd.data import radioml as _radioml  # noqa: F401  registers radioml2016 and radioml2018

__all__ = ["DATASETS", "ENCODERS", "Dataset", "Split", "load_dataset", "encode_window", "get_encoder"]
