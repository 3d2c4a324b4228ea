"""Benchmarks: AR vs Orthrus side by side (``python -m bench.throughput``)."""
