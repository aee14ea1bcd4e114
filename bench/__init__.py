"""Benchmarks: throughput (``bench.load``) and latency at one client (``bench.latency``); see docs/performance.md."""
