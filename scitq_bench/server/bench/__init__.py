"""Benchmarks on the server: accounts, imported bundles, submissions, their runs as
queue tasks, scores and leaderboards."""
