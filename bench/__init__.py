"""Benchmarks: ``python -m bench.spike`` (a 10x call spike) and ``python -m bench.valve``."""
