"""Distillation between DNN teachers and SNN students: losses, spike decoders, feature taps, trainer."""
