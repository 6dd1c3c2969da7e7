"""manage.py seed_demo --messages N --password P [--reset] [--seed S]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retention.demo.org import DemoDataError
from retention.demo.seed import SeedReport, seed_demo


class Command(BaseCommand):
    help = (
        "Generate a demo company (清风电商: regions, stores, teams, people) with N realistic "
        "Simplified-Chinese chat messages, classified and encrypted like real ones. "
        "Refuses to run over earlier demo data unless --reset is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--messages",
            type=int,
            required=True,
            help="how many messages to generate (0 or more; a million takes minutes)",
        )
        parser.add_argument(
            "--password",
            default=None,
            help="password of every demo sign-in (admin, admin2, security, auditor, director, "
            "manager, manager2, staff, staff2 and the generated members)",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="remove earlier demo data (its chat records, members and departments) first",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed; the same seed gives the same data"
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=20_000,
            help="messages written per transaction (default 20,000)",
        )

    def handle(self, *args, **options) -> None:
        messages = options["messages"]
        password = options["password"]
        if messages < 0:
            raise CommandError(f"--messages must be 0 or more, not {messages}")
        if not password:
            raise CommandError(
                "--password is required: it becomes the password of every demo sign-in"
            )
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        try:
            report = seed_demo(
                messages=messages,
                password=password,
                seed=options["seed"],
                reset=options["reset"],
                chunk_size=options["chunk_size"],
                progress=self.stdout.write,
            )
        except DemoDataError as exc:
            raise CommandError(str(exc)) from exc
        self._summary(report, password)

    def _summary(self, report: SeedReport, password: str) -> None:
        out = self.stdout.write
        out("")
        out(self.style.SUCCESS("Demo data ready."))
        out(f"  departments     {report.departments} over {report.department_levels} levels")
        out(f"  members         {report.members}")
        kinds = ", ".join(f"{k} {v:,}" for k, v in report.conversations.items())
        # "supplier groups" are group chats too: listed, not added again.
        total = sum(v for k, v in report.conversations.items() if k != "supplier groups")
        out(f"  conversations   {total:,} ({kinds})")
        out(f"  messages        {report.messages:,}")
        levels = ", ".join(f"{k} {v:,}" for k, v in report.sensitivity.items())
        out(f"  sensitivity     {levels}")
        out(f"  attachments     {report.attachments:,}")
        out(f"  written with    {'PostgreSQL COPY' if report.copy else 'bulk_create'}")
        message_rate = report.messages / report.message_seconds if report.message_seconds else 0
        out(
            f"  elapsed         {report.seconds:.1f} s, {report.rate:,.0f} messages/s "
            f"({message_rate:,.0f}/s while writing messages)"
        )
        out("")
        rows = [("username", "role", "department", "password")]
        rows += [(u, role, dept, password) for u, role, dept in report.sign_ins]
        widths = [max(_width(r[i]) for r in rows) for i in range(4)]
        for i, row in enumerate(rows):
            out("  " + "  ".join(_pad(cell, widths[j]) for j, cell in enumerate(row)))
            if i == 0:
                out("  " + "  ".join("-" * w for w in widths))
        out("  (generated members share the same password)")
        if report.second_factor_off:
            out("")
            out(
                self.style.WARNING(
                    "Two-factor authentication is NOT enforced in this demo: the policy "
                    "require_second_factor is switched off, so approving, holds, policy "
                    "changes and restores work without an authenticator code. Switch it on "
                    "under Policies (as admin, after setting up an authenticator) before "
                    "real use."
                )
            )


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
