"""Benchmarks: figures printed as a table and saved as JSON under benchmarks/results/.

Every benchmark measures a baseline in the same run, so ratios survive a noisy shared machine.
Run all with ``python -m benchmarks`` (``make bench``) or one with ``python -m benchmarks.<name>``.
"""
