"""Benchmark evaluation: runner, metrics, reports, plots and submission packing."""
