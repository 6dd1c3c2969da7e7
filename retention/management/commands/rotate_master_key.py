"""Move every data key onto the current master key (QINGLI_MASTER_KEY).

Procedure: put the new key in QINGLI_MASTER_KEY and the old one in
QINGLI_RETIRED_MASTER_KEYS, restart, run this; when it reports nothing left under the
old key, remove it from the configuration and destroy it.
"""

from django.core.management.base import BaseCommand

from retention.records import crypto
from retention.records.keys import data_keys_by_master_key, do_rotate_master_key


class Command(BaseCommand):
    help = "Re-wrap every data key (conversations' and export files') with the current master key."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="only report which master keys wrap data keys"
        )

    def handle(self, *args, check: bool, **options):
        current = crypto.current_master_key_id().hex()
        if not check:
            outcome = do_rotate_master_key(actor=None)
            self.stdout.write(
                f"Re-wrapped {outcome['rewrapped']} data keys; "
                f"{outcome['already_current']} were already under the current master key."
            )
        counts = data_keys_by_master_key()
        for key_id, n in sorted(counts.items()):
            mark = "current" if key_id == current else "RETIRED: rotate before destroying it"
            self.stdout.write(f"  master key {key_id}: {n} data keys ({mark})")
        if set(counts) <= {current}:
            self.stdout.write(
                self.style.SUCCESS(
                    "No data key depends on a retired master key: retired keys may be destroyed."
                )
            )
