"""Time the deletion preview (``compute_preview``) for representative scopes.

Run it on a database seeded with seed_demo, e.g. 1,000,000 messages on PostgreSQL:
    manage.py benchmark_preview --repeat 7

``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest query of each scope.
The benchmark itself is :mod:`retention.bench.preview`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from retention.bench.preview import benchmark_preview


class Command(BaseCommand):
    help = "Print median and maximum times of the deletion preview for typical scopes."

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=int, default=5, help="timed runs per scope")
        parser.add_argument(
            "--explain",
            action="store_true",
            help="print EXPLAIN ANALYZE of each scope's slowest query (PostgreSQL)",
        )

    def handle(self, *args, repeat: int, explain: bool, **options):
        benchmark_preview(self.stdout, repeat=repeat, explain=explain)
