"""Benchmarks: one command each (`python -m bench.<name>`), each printing a table and writing its section of
BENCHMARKS.md. Timings are ratios against a baseline measured in the same run."""
