"""Radio workloads: seeded signal generation, classical baselines, radio metrics, RadioML readers.

``config`` (what to generate) → ``generate`` (frames with per-frame label, SNR, waveform) →
``detectors`` (the energy detector and its theory) and ``metrics`` (Pd at Pfa, ROC, accuracy per
SNR) → ``plots``. ``radioml`` reads the public RadioML files the user has. The datasets
``sensing`` and ``modulation`` (:mod:`neurokd.data.radio`) turn the frames into network inputs.

Symbol detection: ``ofdm`` (MIMO-OFDM subframes, pilots, least-squares channel estimate, detector
features) → ``mimo`` (LMMSE and ML receivers, textbook BER curves) → ``report.symbols_report``
(BER and SER against Eb/N0); the dataset ``symbols`` turns the subframes into network inputs.
"""

from neurokd.radio.config import RadioConfig, radio_config
from neurokd.radio.detectors import (empirical_threshold, energy_detector_pd_theory,
                                     energy_detector_threshold, energy_scores)
from neurokd.radio.generate import RadioFrames, generate
from neurokd.radio.radioml import RadioML, read_radioml2016, read_radioml2018

__all__ = ["RadioConfig", "RadioFrames", "RadioML", "empirical_threshold", "energy_detector_pd_theory",
           "energy_detector_threshold", "energy_scores", "generate", "radio_config",
           "read_radioml2016", "read_radioml2018"]
