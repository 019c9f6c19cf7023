"""Teacher DNNs, the architecture spec, and SNN students of slayer CUBA blocks."""
