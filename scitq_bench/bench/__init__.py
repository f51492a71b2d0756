"""Benchmarks: bundles, ranking and runs."""
