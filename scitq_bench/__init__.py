"""scitq_bench: a cloud-elastic batch scheduler for evaluation work."""

__version__ = "0.1.0"
