"""Datasets: readers of standard on-disk layouts and generators (Trifeature)."""
