"""Helpers of the benchmark harness ``scripts/bench.py`` (assets, statistics, measurements)."""
