"""Time the main pages and API reads as each demo role sees them (server time, in-process).

Run it on a database seeded with seed_demo, e.g. 1,000,000 messages on PostgreSQL:
    manage.py benchmark_pages --repeat 7

The benchmark itself is :mod:`retention.bench.pages`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from retention.bench.pages import benchmark_pages


class Command(BaseCommand):
    help = "Print median server times of the main pages per demo role."

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=int, default=5, help="timed runs per page")

    def handle(self, *args, repeat: int, **options):
        benchmark_pages(self.stdout, repeat=repeat)
