"""manage.py bench_report --events N [--runs R] [--keep] [--database-url URL]

Times the quarterly audit report on an audit log of N events; the benchmark itself is
:mod:`retention.bench.quarterly_report`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from retention.bench.quarterly_report import bench_report


class Command(BaseCommand):
    help = "Time the quarterly audit report on N seeded audit events in a scratch database."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--events", type=int, required=True, help="audit events to seed")
        parser.add_argument("--runs", type=int, default=5, help="report runs to time")
        parser.add_argument("--keep", action="store_true", help="keep the scratch database")
        parser.add_argument(
            "--database-url",
            default=None,
            help="PostgreSQL server for the scratch database (default: DATABASE_URL)",
        )

    def handle(self, *args, **options) -> None:
        bench_report(
            self.stdout,
            events=options["events"],
            runs=options["runs"],
            keep=options["keep"],
            database_url=options["database_url"],
        )
