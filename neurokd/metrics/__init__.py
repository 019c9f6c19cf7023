"""Reports and plots of a run."""
