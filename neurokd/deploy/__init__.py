"""netx export, the Lava runner, PyTorch ↔ Lava verification, and NIR in and out (nir_io)."""
