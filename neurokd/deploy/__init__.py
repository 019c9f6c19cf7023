"""netx export, the Lava runner and PyTorch ↔ Lava verification."""
