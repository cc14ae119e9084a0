"""Benchmark and evaluation tooling for sam_widget (not part of the installed package).

Run from the repository root, e.g. ``python -m benchmarks.bench --size tiny --no-append``;
see ``benchmarks/README.md``.
"""
