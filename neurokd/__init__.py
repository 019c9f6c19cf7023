"""neurokd: compress deep neural networks into quantized spiking networks for Loihi 2 and Lava.

The package imports nothing heavy at import time: torch and Lava load when a stage needs them.
"""

__version__ = "0.1.0"
