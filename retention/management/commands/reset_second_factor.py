"""manage.py reset_second_factor USERNAME --reason TEXT

For an operator at the server's shell when no admin can reset an authenticator on the
security pages (the only admin lost their phone). Audited, with no member as the actor."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from retention.access.second_factor import do_reset_device
from retention.errors import Conflict
from retention.models import Member


class Command(BaseCommand):
    help = (
        "Remove a member's authenticator (and revoke the API tokens issued with it) so that "
        "they can set up a new one. Audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--reason", required=True, help="why (written to the audit log)")

    def handle(self, *args, **options) -> None:
        member = Member.objects.filter(username=options["username"]).first()
        if member is None:
            raise CommandError(f"no member is called {options['username']!r}")
        try:
            revoked = do_reset_device(
                member, acting_user=None, verified_second_factor=False, reason=options["reason"]
            )
        except (Conflict, ValidationError) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(text) from exc
        self.stdout.write(
            f"{member.username}'s authenticator is removed; {len(revoked)} API token(s) "
            "issued with it revoked. They set up a new one on their Security page."
        )
