"""Sweeps: a temperature x seed grid of cells (spec, cells, runner, slurm, report)."""
