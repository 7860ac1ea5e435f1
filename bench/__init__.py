"""Benchmarks (``make bench``): the worker through a real broker, offline replay; tables."""
