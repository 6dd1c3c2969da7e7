"""Every place that tells how to start Qingli's workers starts them so that approved
requests run: all the queues, with the scheduler, and the one cron process beside them."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from retention.management.commands.serve import REDIS_PROCESSES

ROOT = Path(__file__).resolve().parents[2]
WORKER = re.compile(r"rqworker(?P<args>[^`\n#]*)")


def instructions() -> dict[str, str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = {str(page.relative_to(ROOT)): page.read_text() for page in pages}
    texts["manage.py serve (with REDIS_URL)"] = REDIS_PROCESSES
    return texts


def test_every_worker_command_serves_every_queue_with_the_scheduler():
    found, wrong = 0, []
    for where, text in instructions().items():
        for match in WORKER.finditer(text):
            args = match.group("args").split()
            if "--burst" in args:  # a benchmark's or test's one-off worker, not a deployment
                continue
            found += 1
            if "--with-scheduler" not in args or not set(settings.QUEUE_NAMES) <= set(args):
                wrong.append(f"{where}: {match.group(0).strip()}")
    assert found >= 3  # README, configuration, wipes, serve
    assert wrong == []


def test_every_page_that_starts_workers_also_starts_the_one_cron_process():
    missing = [
        where
        for where, text in instructions().items()
        if any("--burst" not in m.group("args") for m in WORKER.finditer(text))
        and "rqcron retention.cron" not in text
    ]
    assert missing == []
