"""manage.py import_chats PATH: import a JSON Lines file or a Slack export, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.events import EventType
from retention.models import Member
from retention.records.importers import (
    SLACK_SOURCE,
    ImportFormatError,
    SourceRecords,
    read_jsonl,
    read_slack_export,
)
from retention.records.ingest import do_ingest
from retention.records.ingest_errors import IngestError

# One import is one batch (all or nothing), so it gets a far larger limit than the API;
# the writes are chunked inside the one transaction.
MAX_IMPORT_RECORDS = 200_000


class Command(BaseCommand):
    help = (
        "Import chat records from a JSON Lines file or a Slack export zip. The whole file "
        "is validated first; on any error nothing is written. Records already imported "
        "(same source and id) are skipped, so a file may be imported again safely."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The .jsonl file or Slack export .zip.")
        parser.add_argument(
            "--format",
            choices=["jsonl", "slack"],
            help="Default: slack for a .zip, jsonl otherwise.",
        )
        parser.add_argument(
            "--source",
            help='The source name the ids belong to. Default: "slack" or "jsonl".',
        )
        parser.add_argument(
            "--department",
            help="Slack only (required): department id or name path, e.g. 公司/华东区/杭州西湖店.",
        )
        parser.add_argument(
            "--as",
            dest="acting_username",
            metavar="USERNAME",
            help="The admin recorded as the actor in the audit log. Default: the system.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        fmt = options["format"] or ("slack" if path.suffix.lower() == ".zip" else "jsonl")
        source = options["source"] or (SLACK_SOURCE if fmt == "slack" else "jsonl")
        actor = self._actor(options["acting_username"])
        department = options["department"]
        if fmt == "slack" and not department:
            raise CommandError("--department is required for a Slack export.")
        if fmt == "jsonl" and department:
            raise CommandError(
                "--department applies to Slack exports; JSON Lines records name their own."
            )

        try:
            if fmt == "slack":
                # A number is an id; anything else is a name path.
                ref: int | str = int(department) if department.isdigit() else department
                records = read_slack_export(path, department=ref)
            else:
                records = read_jsonl(path)
            result = do_ingest(
                actor=actor,
                source=source,
                records=records,
                event_type=EventType.CHATS_IMPORTED,
                details_extra={
                    "file": path.name,
                    "format": fmt,
                    **({"skipped": records.skipped} if records.skipped else {}),
                },
                record_labels=records.labels,
                max_records=MAX_IMPORT_RECORDS,
            )
        except IngestError as exc:
            # A file-level problem is its own summary; list record problems one a line.
            if [e["message"] for e in exc.errors] != [exc.summary]:
                for error in exc.errors:
                    self.stderr.write(_describe(error, fmt))
            # Errors about the file itself already name it.
            where = "" if isinstance(exc, ImportFormatError) else f"{path.name}: "
            raise CommandError(f"{where}{exc.summary}") from exc
        except PermissionDenied as exc:
            raise CommandError(f"{actor} may not import chat records.") from exc

        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {path.name} ({fmt}, source {source!r}): "
                f"{result.conversations_created} conversations created, "
                f"{result.messages_created} messages created, "
                f"{result.duplicates_skipped} duplicates skipped."
            )
        )
        _report_skipped(self, records)

    def _actor(self, username: str | None) -> Member | None:
        if not username:
            return None
        try:
            return Member.objects.get(username=username)
        except Member.DoesNotExist as exc:
            raise CommandError(f"--as: no member named {username!r}.") from exc


def _report_skipped(command: BaseCommand, records: SourceRecords) -> None:
    labels = {
        "system_messages": "Slack system messages (joins, topic changes, ...) skipped",
        "files": "Slack files not imported (a Slack export holds links, not the files)",
    }
    for key, count in records.skipped.items():
        if count:
            command.stdout.write(f"{count} {labels.get(key, key)}.")


def _describe(error: dict[str, Any], fmt: str) -> str:
    """One error as a line: where, which record, which field, what is wrong."""
    parts = []
    record = error.get("record")
    if isinstance(record, int):
        parts.append(f"line {record}" if fmt == "jsonl" else f"record {record}")
    elif record:
        parts.append(str(record))
    if error.get("id"):
        parts.append(f"id {error['id']!r}")
    if error.get("field"):
        parts.append(f"field {error['field']}")
    prefix = ", ".join(parts)
    return f"{prefix}: {error['message']}" if prefix else error["message"]
