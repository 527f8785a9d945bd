"""Benchmarks: each module prints figures and ratios (`python -m bench.<name>`).
Never timed asserts in tests."""
