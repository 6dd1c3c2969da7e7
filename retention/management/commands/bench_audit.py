"""manage.py bench_audit --events N [--repeat R] [--keep] [--no-verify]

Times the audit log explorer on a log of N events; the benchmark itself is
:mod:`retention.bench.audit_explorer`.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from retention.bench.audit_explorer import bench_audit


class Command(BaseCommand):
    help = "Time the audit log explorer's pages and API on N events in a scratch database."

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=1_000_000)
        parser.add_argument("--repeat", type=int, default=15, help="timed runs per page")
        parser.add_argument("--keep", action="store_true", help="keep the scratch database")
        parser.add_argument("--no-verify", action="store_true", help="skip digests and verify")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, events: int, repeat: int, keep: bool, no_verify: bool, seed, **o):
        bench_audit(
            self.stdout, events=events, repeat=repeat, keep=keep, no_verify=no_verify, seed=seed
        )
