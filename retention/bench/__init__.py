"""Benchmarks (development only): scratch databases, samplers of transactions and
memory, and the bodies of the ``bench_*`` / ``benchmark_*`` management commands.

May import anything in ``retention``; nothing in the application imports it.
"""
