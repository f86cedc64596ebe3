"""Benchmarks: ``python -m bench.spike`` (a 10x call spike), ``python -m bench.valve`` (the
valve alone), ``python -m bench.memory`` (the read model's Redis memory); docs/benchmarks.md.
"""
