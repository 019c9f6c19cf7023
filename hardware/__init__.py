"""Hardware target profiles (YAML), installed as ``neurokd.hardware_profiles``."""
