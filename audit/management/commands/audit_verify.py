from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exits non-zero at the first broken event."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.intact:
            raise CommandError(
                f"Audit chain BROKEN at event {report.broken_id}: {report.reason}. "
                f"Intact up to event {report.last_good_id} ({report.events_checked - 1} events)."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {report.events_checked} events, "
                f"head event {report.last_good_id}."
            )
        )
