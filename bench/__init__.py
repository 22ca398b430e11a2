"""Benchmarks of the admission host: ``python -m bench.pipeline`` and ``python -m bench.server``."""
