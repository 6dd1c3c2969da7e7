import re

from django.core.management.base import BaseCommand, CommandError

from audit.chain import recorded_digests, verify_chain

DIGEST = re.compile(r"^(\d+):([0-9a-f]{64})$")


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and the daily digests; exits non-zero at the "
        "first broken event. With --digest EVENT_ID:HASH (a digest you kept), verify the "
        "chain up to that event and that the event still has that hash."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--digest",
            action="append",
            default=[],
            metavar="EVENT_ID:HASH",
            help="a head event id and its SHA-256 hash, as the digests list them (repeatable)",
        )

    def handle(self, *args, digest: list[str], **options):
        held: dict[int, list[tuple[str, str]]] = {}
        for text in digest:
            match = DIGEST.match(text.strip().lower())
            if not match:
                raise CommandError(f"--digest {text!r}: give EVENT_ID:HASH (64 hex digits)")
            event_id = int(match[1])
            held.setdefault(event_id, []).append(
                (f"the digest you hold (event {event_id})", match[2])
            )
        up_to = max(held) if held else None
        pins = recorded_digests(up_to=up_to)
        for event_id, pairs in held.items():
            pins.setdefault(event_id, []).extend(pairs)
        report = verify_chain(up_to=up_to, digests=pins)
        if not report.intact:
            raise CommandError(
                f"Audit chain BROKEN at event {report.broken_id}: {report.reason}. "
                f"Intact up to event {report.last_good_id} ({report.events_checked - 1} events)."
            )
        if held:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Digest{'s' if len(held) > 1 else ''} confirmed: the chain is intact up to "
                    f"event {report.last_good_id} ({report.events_checked} events) and matches "
                    f"{len(digest)} digest{'s' if len(digest) > 1 else ''} you hold; nothing "
                    "up to it changed."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {report.events_checked} events, "
                f"head event {report.last_good_id}, {report.digests_checked} daily digests checked."
            )
        )
