"""The scitq_bench server: domain modules (no Flask) plus the HTTP API in ``api/``."""
