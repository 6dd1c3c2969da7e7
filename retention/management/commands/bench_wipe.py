"""manage.py bench_wipe --messages N [--keep] [--database-url URL] [--redis-url URL]

Times every way Qingli removes chat records against one plain SQL ``DELETE``; the
benchmark itself is :mod:`retention.bench.wipe`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from retention.bench.wipe import SPARE_REDIS_DB, bench_wipe


class Command(BaseCommand):
    help = (
        "Time moving to the recycle bin, restoring, purging and server-side wipes of half "
        "of N seeded messages through a real RQ worker, against one plain SQL DELETE."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--messages", type=int, required=True, help="messages to seed")
        parser.add_argument(
            "--keep", action="store_true", help="keep the scratch databases and files"
        )
        parser.add_argument(
            "--database-url",
            default=None,
            help="PostgreSQL server to create the scratch databases on (default: DATABASE_URL)",
        )
        parser.add_argument(
            "--redis-url",
            default=None,
            help=f"Redis database for the queue, flushed first (default: db {SPARE_REDIS_DB} "
            "of REDIS_URL's server, or of 127.0.0.1:6379)",
        )
        parser.add_argument("--seed", type=int, default=1, help="seed_demo's random seed")

    def handle(self, *args, **options) -> None:
        bench_wipe(
            self.stdout,
            messages=options["messages"],
            keep=options["keep"],
            database_url=options["database_url"],
            redis_url=options["redis_url"],
            seed=options["seed"],
        )
