"""The ``benchmark_pages`` benchmark: the main pages and API reads as each demo role sees
them (server time, in-process).

Run it on a database seeded with seed_demo, e.g. 1,000,000 messages on PostgreSQL:
    manage.py benchmark_pages --repeat 7
"""

from __future__ import annotations

import statistics
import time
from typing import TextIO

from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from retention.models import Conversation, Member, Message

ROLES = ["staff", "manager", "director", "security", "auditor", "admin"]


def benchmark_pages(stdout: TextIO, *, repeat: int) -> None:
    """Time the pages, printing to ``stdout`` (see the module docstring)."""
    PagesBench(stdout).run(repeat)


class PagesBench:
    """Times each page as the demo member who would open it."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout

    def run(self, repeat: int) -> None:
        if repeat < 1:
            raise CommandError("--repeat must be at least 1")
        members = {m.username: m for m in Member.objects.filter(username__in=ROLES)}
        missing = sorted(set(ROLES) - set(members))
        if missing:
            raise CommandError(f"run seed_demo first: no member named {', '.join(missing)}")
        conversation = (
            Conversation.objects.filter(participant__member=members["staff"]).order_by("pk").first()
        )
        self.stdout.write(
            f"{Message.objects.count():,} messages, {Conversation.objects.count():,} "
            f"conversations, {connection.vendor}; median of {repeat} runs\n"
        )
        self.stdout.write(f"{'who':9} {'page':52} {'median ms':>10} {'queries':>8}")
        for who in ROLES:
            for url in ["/", "/conversations/", "/api/v1/conversations/"]:
                self.time_page(members[who], url, repeat)
        for who, url in [
            ("manager", "/conversations/?sensitivity=2"),
            ("director", "/conversations/?q=买家"),
            ("staff", f"/conversations/{conversation.pk}/"),
            ("staff", f"/api/v1/conversations/{conversation.pk}/messages/"),
        ]:
            self.time_page(members[who], url, repeat)

    def time_page(self, member: Member, url: str, repeat: int) -> None:
        client = Client()
        client.force_login(member)
        client.get(url)  # warm caches and connections
        timings = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} as {member.username}: HTTP {response.status_code}")
        median = statistics.median(timings)
        self.stdout.write(f"{member.username:9} {url:52} {median:10.1f} {len(queries):8}")
