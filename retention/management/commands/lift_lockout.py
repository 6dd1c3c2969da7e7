"""Lift a sign-in lockout from the server's shell, audited like the /lockouts/ page.

For when no admin can sign in to lift it (e.g. every admin's address is locked out):
  manage.py lift_lockout --as admin --ip 203.0.113.7
  manage.py lift_lockout --as admin --username manager
  manage.py lift_lockout --list
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from retention.access import signin
from retention.models import Member


class Command(BaseCommand):
    help = "List sign-in lockouts, or lift one in an admin's name (audited)."

    def add_arguments(self, parser):
        parser.add_argument("--as", dest="admin", help="the admin's username, for the audit log")
        parser.add_argument("--username", default="", help="the locked-out username")
        parser.add_argument("--ip", default="", help="the locked-out address")
        parser.add_argument(
            "--list", dest="only_list", action="store_true", help="only list the lockouts"
        )

    def handle(self, *args, admin: str | None, username: str, ip: str, only_list: bool, **opts):
        if only_list:
            for lockout in signin.active_lockouts():
                self.stdout.write(
                    f"{lockout.kind} {lockout.value}: {lockout.failures} failures, "
                    f"ends {lockout.ends_at:%Y-%m-%d %H:%M:%S}"
                )
            return
        actor = Member.objects.filter(username=admin or "", is_active=True).first()
        if actor is None:
            raise CommandError("--as must name an active admin: the audit log records who lifted")
        try:
            cleared = signin.do_lift_lockout(actor=actor, username=username, ip_address=ip)
        except (PermissionDenied, ValidationError) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from exc
        self.stdout.write(self.style.SUCCESS(f"Lifted: {cleared} failure records cleared."))
