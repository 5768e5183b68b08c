"""Benchmark scripts: each prints its figures and writes a section of docs/benchmarks.md."""
