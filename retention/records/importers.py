"""Readers that turn export files into ingest records (see docs/formats.md).

They only read: the records they return go through :func:`retention.records.ingest.do_ingest`
like an API batch, so a file gets the same validation, deduplication and all-or-nothing
write. Problems with the file itself raise :class:`ImportFormatError` naming the file
(and line).
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from django.utils.translation import gettext as _

from retention.dates import EARLIEST_DAY
from retention.models import Member
from retention.records.ingest_errors import IngestError, record_error

SLACK_SOURCE = "slack"
# Caps on what a Slack export's members expand to, counted as they are decompressed,
# whatever their headers declare, so that a hostile zip (a "zip bomb") cannot exhaust
# memory: one JSON member larger than this is not a Slack day file...
MAX_ZIP_MEMBER_BYTES = 256 * 1024 * 1024
# ...all the members one import reads, together...
MAX_ZIP_TOTAL_BYTES = 1024 * 1024 * 1024
# ...and bytes out per compressed byte read, once a member has expanded past
# ZIP_RATIO_GRACE (JSON deflates about tenfold; a bomb a thousandfold).
MAX_ZIP_RATIO = 100
ZIP_RATIO_GRACE = 1024 * 1024
_ZIP_CHUNK = 64 * 1024
# Slack message subtypes that are real messages someone wrote; every other subtype
# (channel_join, channel_leave, channel_topic, bot_message, tombstone, ...) is skipped.
SLACK_MESSAGE_SUBTYPES = frozenset({"thread_broadcast", "file_share", "me_message"})
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|([^>]*))?>")
_MAX_JSONL_ERRORS = 100


class ImportFormatError(IngestError):
    """The file cannot be read as the format it claims to be; nothing was written."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None, **kwargs: Any):
        self.message = message
        super().__init__(errors or [record_error(None, None, None, message)], **kwargs)

    @property
    def summary(self) -> str:
        return self.message


class SourceRecords(list):
    """Ingest records read from a file: a list of dicts that also knows where each one
    came from (``labels``: a line number, or "channel/day.json#n") and what the reader
    left out on purpose (``skipped``: counts by reason)."""

    def __init__(
        self,
        records: Iterable[dict[str, Any]] = (),
        labels: Iterable[int | str] = (),
        skipped: dict[str, int] | None = None,
    ):
        super().__init__(records)
        self.labels: list[int | str] = list(labels)
        self.skipped: dict[str, int] = skipped or {}


# --------------------------------------------------------------------------- JSON Lines


def read_jsonl(path: str | Path) -> SourceRecords:
    """One record per line (UTF-8, blank lines ignored); labels are 1-based line numbers."""
    path = Path(path)
    records = SourceRecords()
    errors: list[dict[str, Any]] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFormatError(f"{path.name}: cannot be read ({exc.strerror}).") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            problem = ""
            try:
                # utf-8-sig: files saved by Windows editors start with a byte-order mark.
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            else:
                if not text.strip():
                    continue
                try:
                    value = json.loads(text, parse_constant=_refuse_constant)
                except ValueError as exc:
                    problem = f"not valid JSON ({exc})"
                else:
                    if isinstance(value, dict):
                        records.append(value)
                        records.labels.append(number)
                        continue
                    problem = "not a JSON object"
            errors.append(record_error(number, None, None, f"{problem}."))
    if errors:
        first = errors[0]["record"]
        raise ImportFormatError(
            f"{path.name}: {len(errors)} line(s) are not JSON Lines records "
            f"(first: line {first}); nothing was written.",
            errors[:_MAX_JSONL_ERRORS],
            total=len(errors),
        )
    return records


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are not JSON; Python's json would accept them.
    raise ValueError(f"{name} is not valid JSON")


# --------------------------------------------------------------------------- Slack export


def read_slack_export(path: str | Path, *, department: int | str) -> SourceRecords:
    """Records for a Slack export zip: one group conversation per channel (id = channel
    id) in ``department``, one message per Slack message (id = "<channel id>:<ts>").

    Slack users map to members with the same username; others become an external
    sender with their real name. Joins, leaves, topic changes and other system
    subtypes are skipped. File bytes are not in a Slack export, so files are counted
    in ``skipped["files"]`` and not stored.
    """
    path = Path(path)
    try:
        raw = _MeteredFile(path)
    except OSError as exc:
        raise ImportFormatError(f"{path.name}: not a readable zip file ({exc}).") from exc
    with raw:
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportFormatError(f"{path.name}: not a readable zip file ({exc}).") from exc
        with archive:
            reader = _SlackZip(path.name, archive, raw)
            return reader.records(department)


class _MeteredFile(io.FileIO):
    """The zip file, counting the bytes read from it: a member's compressed bytes read so
    far, against which the bytes it expands to are held (``MAX_ZIP_RATIO``)."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


class _SlackZip:
    def __init__(self, zip_name: str, archive: zipfile.ZipFile, raw: _MeteredFile):
        self.zip_name = zip_name
        self.archive = archive
        self.raw = raw
        self.expanded = 0  # bytes all members read so far expanded to
        self.names = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        self.prefix = self._find_prefix()
        # Day files by their folder, found once: an export has one per channel per day.
        self.day_files: dict[str, list[str]] = {}
        for name in self.names:
            folder, leaf = name[: name.rfind("/") + 1], name[name.rfind("/") + 1 :]
            if _DAY_FILE.match(leaf):
                self.day_files.setdefault(folder, []).append(name)

    def _find_prefix(self) -> str:
        # Some tools zip the export folder itself, so everything sits under "export/".
        if "channels.json" in self.names:
            return ""
        nested = [name for name in self.names if PurePosixPath(name).name == "channels.json"]
        nested = [name for name in nested if name.count("/") == 1]
        if len(nested) == 1:
            return nested[0][: -len("channels.json")]
        raise ImportFormatError(
            f"{self.zip_name}: channels.json is missing; is this a Slack export?"
        )

    def load(self, name: str) -> Any:
        """Parse one JSON member; any problem is an error naming the file."""
        info = self.names.get(self.prefix + name)
        shown = f"{self.zip_name}: {name}"
        if info is None:
            raise ImportFormatError(f"{shown} is missing from the export.")
        if info.file_size > MAX_ZIP_MEMBER_BYTES:
            raise ImportFormatError(f"{shown} is too large ({info.file_size} bytes).")
        try:
            data = self._expand(info, shown)
            return json.loads(data.decode("utf-8-sig"), parse_constant=_refuse_constant)
        except (
            zipfile.BadZipFile,
            OSError,
            EOFError,
            zlib.error,
            RuntimeError,  # an encrypted member
            NotImplementedError,  # a compression method zipfile cannot read
        ) as exc:
            raise ImportFormatError(f"{shown} cannot be read from the zip ({exc}).") from exc
        except UnicodeDecodeError as exc:
            raise ImportFormatError(f"{shown} is not UTF-8 text.") from exc
        except ValueError as exc:
            raise ImportFormatError(f"{shown} is not valid JSON ({exc}).") from exc

    def _expand(self, info: zipfile.ZipInfo, shown: str) -> bytearray:
        """The member's bytes, decompressed a chunk at a time and refused as soon as they
        pass a cap: the member's, the export's, or the compression ratio's. The header's
        size is not trusted: zipfile stops (and checks the CRC) at the declared size, so
        the member is read as if it declared more than its cap, and a member that holds
        another size than it declares is refused."""
        cap = min(MAX_ZIP_MEMBER_BYTES, MAX_ZIP_TOTAL_BYTES - self.expanded)
        probe = copy.copy(info)
        probe.file_size = cap + 2 * _ZIP_CHUNK  # past the cap by more than one read
        data = bytearray()
        with self.archive.open(probe) as stream:
            start = self.raw.bytes_read
            while chunk := stream.read(_ZIP_CHUNK):
                data += chunk
                if len(data) > cap:
                    raise ImportFormatError(self._past_cap(shown, cap))
                compressed = max(self.raw.bytes_read - start, 1)
                if len(data) > ZIP_RATIO_GRACE and len(data) > MAX_ZIP_RATIO * compressed:
                    raise ImportFormatError(
                        _(
                            "%(member)s expands more than %(ratio)s times its compressed "
                            "size, the cap for a file in an export; nothing was written."
                        )
                        % {"member": shown, "ratio": MAX_ZIP_RATIO}
                    )
        if len(data) != info.file_size:
            raise ImportFormatError(
                _(
                    "%(member)s declares %(declared)s bytes but holds %(actual)s; "
                    "nothing was written."
                )
                % {"member": shown, "declared": info.file_size, "actual": len(data)}
            )
        self.expanded += len(data)
        return data

    @staticmethod
    def _past_cap(shown: str, cap: int) -> str:
        if cap < MAX_ZIP_MEMBER_BYTES:  # what the export has left is the smaller cap
            return _(
                "%(member)s expands the export to more than %(cap)s bytes, the cap on a "
                "whole export; nothing was written."
            ) % {"member": shown, "cap": MAX_ZIP_TOTAL_BYTES}
        return _(
            "%(member)s expands to more than %(cap)s bytes, the cap on one file in an "
            "export; nothing was written."
        ) % {"member": shown, "cap": MAX_ZIP_MEMBER_BYTES}

    def records(self, department: int | str) -> SourceRecords:
        channels = self._list_of_objects("channels.json", required=("id", "name"))
        users = {user["id"]: user for user in self._list_of_objects("users.json", ("id",))}
        handles = {uid: user.get("name") for uid, user in users.items()}
        members = set(
            Member.objects.filter(
                username__in=[h for h in handles.values() if isinstance(h, str)]
            ).values_list("username", flat=True)
        )

        def member_of(user_id: Any) -> str | None:
            handle = handles.get(user_id)
            return handle if handle in members else None

        out = SourceRecords(skipped={"system_messages": 0, "files": 0})
        for index, channel in enumerate(channels, start=1):
            messages, labels = self._channel_messages(channel, users, member_of, out.skipped)
            participants = [member_of(uid) for uid in channel.get("members") or []]
            # Members who spoke take part too, even if they have left the channel since:
            # taking part is what lets them delete their own side later.
            participants += [m["sender"] for m in messages]
            out.append(
                {
                    "type": "conversation",
                    "id": channel["id"],
                    "kind": "group",
                    "title": channel["name"],
                    "department": department,
                    "participants": [p for p in dict.fromkeys(participants) if p is not None],
                }
            )
            out.labels.append(f"channels.json#{index}")
            out.extend(messages)
            out.labels.extend(labels)
        return out

    def _list_of_objects(self, name: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
        data = self.load(name)
        if not isinstance(data, list):
            raise ImportFormatError(f"{self.zip_name}: {name} must hold a JSON list.")
        for index, item in enumerate(data, start=1):
            if not isinstance(item, dict) or not all(
                isinstance(item.get(key), str) and item[key] for key in required
            ):
                raise ImportFormatError(
                    f"{self.zip_name}: {name} entry {index} must be an object with "
                    + ", ".join(f'"{key}"' for key in required)
                    + "."
                )
        return data

    def _channel_messages(
        self,
        channel: dict[str, Any],
        users: dict[str, dict[str, Any]],
        member_of: Any,
        skipped: dict[str, int],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        folder = f"{self.prefix}{channel['name']}/"
        days = sorted(name[len(self.prefix) :] for name in self.day_files.get(folder, ()))
        messages: list[dict[str, Any]] = []
        labels: list[str] = []
        for day in days:
            entries = self.load(day)
            if not isinstance(entries, list):
                raise ImportFormatError(f"{self.zip_name}: {day} must hold a JSON list.")
            for position, entry in enumerate(entries, start=1):
                where = f"{day}#{position}"
                if not isinstance(entry, dict):
                    raise ImportFormatError(f"{self.zip_name}: {where} is not a JSON object.")
                if entry.get("type") != "message" or (
                    entry.get("subtype") and entry["subtype"] not in SLACK_MESSAGE_SUBTYPES
                ):
                    skipped["system_messages"] += 1
                    continue
                skipped["files"] += len(entry.get("files") or [])
                user_id = entry.get("user")
                sender = member_of(user_id)
                messages.append(
                    {
                        "type": "message",
                        "id": f"{channel['id']}:{entry.get('ts')}",
                        "conversation": channel["id"],
                        "sender": sender,
                        "sender_name": _display_name(users.get(user_id), entry, user_id),
                        "sent_at": self._sent_at(entry.get("ts"), where),
                        "body": _plain_text(entry.get("text") or "", users),
                    }
                )
                labels.append(where)
        return messages, labels

    def _sent_at(self, ts: Any, where: str) -> str:
        # "1709256600.000200": seconds since the epoch, microseconds after the dot.
        if not isinstance(ts, str) or not re.fullmatch(r"\d{1,12}(\.\d{1,6})?", ts):
            raise ImportFormatError(f'{self.zip_name}: {where} has no valid "ts" ({ts!r}).')
        seconds, _, fraction = ts.partition(".")
        try:
            moment = datetime.fromtimestamp(int(seconds), UTC)
        except (OverflowError, OSError, ValueError) as exc:  # past year 9999
            raise ImportFormatError(
                f'{self.zip_name}: {where} has a "ts" ({ts!r}) past year 9999 (Qingli accepts '
                f"messages sent from {EARLIEST_DAY} to one day from now); nothing was written."
            ) from exc
        # A time outside the range is refused with the record's other errors (ingest).
        return moment.replace(microsecond=int(fraction.ljust(6, "0"))).isoformat()


def _display_name(user: dict[str, Any] | None, entry: dict[str, Any], user_id: Any) -> str:
    """The name Slack showed for the sender, as the transcript's sender name."""
    candidates = []
    if user:
        profile = user.get("profile") or {}
        candidates += [user.get("real_name"), profile.get("real_name"), user.get("name")]
    candidates += [(entry.get("user_profile") or {}).get("real_name"), entry.get("username")]
    candidates.append(user_id)
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:150]
    return "unknown Slack user"


def _plain_text(text: str, users: dict[str, dict[str, Any]]) -> str:
    """Slack's wire text as people saw it: mentions by name, &lt; &gt; &amp; unescaped."""
    if not isinstance(text, str):
        return ""

    def mention(match: re.Match[str]) -> str:
        user = users.get(match.group(1)) or {}
        return "@" + (match.group(2) or user.get("name") or match.group(1))

    text = _MENTION.sub(mention, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
