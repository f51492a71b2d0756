"""The worker agent: registers with the server, claims executions, runs them as local
processes and reports back. ``WorkerAgent`` (in ``agent``) is the entry point."""
