"""Experiments: bench (a preset's grid of searches into a resumable run directory), presets, the run store,
cells and pools, and the reports made from run directories."""
