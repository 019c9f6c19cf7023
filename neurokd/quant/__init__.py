"""Quantization-aware training for Loihi: quantizers, Loihi integer numerics, quantized SNNs."""
