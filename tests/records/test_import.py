"""manage.py import_chats and the JSON Lines / Slack export readers."""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
import zipfile
import zlib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from audit.events import EventType
from audit.models import AuditEvent
from retention.models import Conversation, Message, Sensitivity
from retention.records import importers
from retention.records.crypto import ConversationCipher
from retention.records.importers import ImportFormatError, read_jsonl, read_slack_export
from retention.records.store import read_body

pytestmark = pytest.mark.django_db

LINES = [
    {
        "type": "conversation",
        "id": "c-1",
        "kind": "customer",
        "title": "买家 tb_88231 咨询",
        "department": "Company/East region/Hangzhou store",
        "participants": ["staff"],
        "customer": "tb_88231",
    },
    {
        "type": "message",
        "id": "m-1",
        "conversation": "c-1",
        "sender": None,
        "sender_name": "tb_88231",
        "sent_at": "2024-03-01T09:30:00+08:00",
        "body": "我的手机号是 13800138000，请改一下收货电话",
    },
    {
        "type": "message",
        "id": "m-2",
        "conversation": "c-1",
        "sender": "staff",
        "sent_at": "2024-03-01T09:31:00+08:00",
        "body": "好的亲，已为您修改",
    },
]


def write_jsonl(tmp_path: Path, lines: list[Any], name: str = "chats.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "\n".join(
            line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)
            for line in lines
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_chats", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str]:
    err = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_chats", *args, stdout=StringIO(), stderr=err)
    return str(caught.value), err.getvalue()


@pytest.fixture(autouse=True)
def _english():
    # Messages are asserted in English; the default language is zh-hans.
    with translation.override("en"):
        yield


def nothing_written() -> bool:
    return not (
        Conversation.objects.exists() or Message.objects.exists() or AuditEvent.objects.exists()
    )


# --------------------------------------------------------------------------- JSON Lines


def test_a_jsonl_file_imports(tmp_path, cast):
    path = write_jsonl(tmp_path, LINES)

    out, _ = run(str(path), "--source", "qianniu", "--as", "admin")

    assert "1 conversations created, 2 messages created, 0 duplicates skipped" in out
    chat = Conversation.objects.get(source="qianniu", source_id="c-1")
    customer_message = chat.messages.get(source_id="m-1")
    assert (
        read_body(ConversationCipher.for_conversation(chat), customer_message) == LINES[1]["body"]
    )
    assert b"13800138000" not in bytes(customer_message.body)
    assert customer_message.sensitivity == Sensitivity.HIGH
    assert chat.messages.get(source_id="m-2").sender == cast.staff

    event = AuditEvent.objects.get()
    assert event.event_type == EventType.CHATS_IMPORTED
    assert event.actor_id == cast.admin.pk
    assert event.details["file"] == "chats.jsonl"
    assert event.details["format"] == "jsonl"
    assert event.details["source"] == "qianniu"
    assert event.details["messages_created"] == 2
    assert event.details["conversations_created"] == 1


def test_importing_the_same_file_again_creates_nothing(tmp_path, cast):
    path = write_jsonl(tmp_path, LINES)
    run(str(path), "--source", "qianniu")

    out, _ = run(str(path), "--source", "qianniu")

    assert "0 conversations created, 0 messages created, 3 duplicates skipped" in out
    assert Message.objects.count() == 2
    assert AuditEvent.objects.count() == 2
    # Without --as the system is the actor.
    assert AuditEvent.objects.order_by("-id").first().actor_id is None


def test_a_line_that_is_not_json_is_named_and_nothing_is_written(tmp_path, cast):
    path = write_jsonl(tmp_path, [LINES[0], LINES[1], '{"type": "message", "id": ', LINES[2]])

    message, err = run_failing(str(path))

    assert "line 3" in message
    assert "line 3" in err
    assert nothing_written()


def test_a_bad_record_is_named_by_line_and_field(tmp_path, cast):
    bad = {**LINES[2], "body": "好" * 20_001}
    path = write_jsonl(tmp_path, [LINES[0], "", LINES[1], bad])

    message, err = run_failing(str(path))

    assert "nothing was written" in message
    # The blank line counts: the bad record is on line 4 of the file.
    assert "line 4, id 'm-2', field body" in err
    assert nothing_written()


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_a_message_time_outside_the_accepted_dates_is_named_and_nothing_is_written(
    tmp_path, cast, sent_at
):
    path = write_jsonl(tmp_path, [LINES[0], LINES[1], {**LINES[2], "sent_at": sent_at}])

    message, err = run_failing(str(path))

    assert "nothing was written" in message
    assert "line 3, id 'm-2', field sent_at" in err
    assert "between 1990-01-01 and one day from now" in err
    assert nothing_written()


def test_a_record_that_is_not_an_object_is_refused(tmp_path, cast):
    path = write_jsonl(tmp_path, [LINES[0], "[1, 2]"])

    message, err = run_failing(str(path))

    assert "line 2" in err
    assert nothing_written()


def test_read_jsonl_labels_records_with_their_line_numbers(tmp_path):
    path = write_jsonl(tmp_path, [LINES[0], "", "   ", LINES[1]])

    records = read_jsonl(path)

    assert [r["id"] for r in records] == ["c-1", "m-1"]
    assert records.labels == [1, 4]


def test_nan_is_not_json(tmp_path):
    path = write_jsonl(tmp_path, ['{"type": "message", "id": NaN}'])

    with pytest.raises(ImportFormatError) as caught:
        read_jsonl(path)

    assert caught.value.errors[0]["record"] == 1


def test_an_actor_without_permission_may_not_import(tmp_path, cast):
    path = write_jsonl(tmp_path, LINES)

    message, _ = run_failing(str(path), "--as", "staff")

    assert "may not import" in message
    assert nothing_written()


def test_an_unknown_actor_is_refused(tmp_path, cast):
    message, _ = run_failing(str(write_jsonl(tmp_path, LINES)), "--as", "ghost")

    assert "ghost" in message
    assert nothing_written()


def test_department_is_for_slack_only(tmp_path, cast):
    message, _ = run_failing(str(write_jsonl(tmp_path, LINES)), "--department", "1")

    assert "--department" in message


# --------------------------------------------------------------------------- Slack


CHANNELS = [
    {
        "id": "C01GENERAL",
        "name": "general",
        "created": 1709251200,
        "members": ["U01STAFF", "U02ZHANG"],
        "topic": {"value": "全员通知"},
        "purpose": {"value": "公司公告"},
    },
    {"id": "C02ORDERS", "name": "orders", "members": ["U01STAFF"]},
]
USERS = [
    {"id": "U01STAFF", "name": "staff", "real_name": "王小丽", "profile": {"real_name": "王小丽"}},
    {"id": "U02ZHANG", "name": "zhang.wei", "profile": {"real_name": "张伟"}},
]
DAY1 = [
    {
        "type": "message",
        "subtype": "channel_join",
        "user": "U02ZHANG",
        "text": "<@U02ZHANG> has joined the channel",
        "ts": "1709251200.000100",
    },
    {"type": "message", "user": "U01STAFF", "text": "大家早上好", "ts": "1709254800.000200"},
    {
        "type": "message",
        "user": "U02ZHANG",
        "text": "<@U01STAFF> 收到 &amp; 谢谢",
        "ts": "1709254860.000300",
        "files": [{"id": "F1", "name": "报表.xlsx"}],
    },
]
DAY2 = [
    {
        "type": "message",
        "user": "U02ZHANG",
        "text": "客户电话 13800138000 请回电",
        "ts": "1709341200.000000",
    },
]
ORDERS = [{"type": "message", "user": "U01STAFF", "text": "今日订单已汇总", "ts": "1709341300.5"}]


def write_slack_zip(tmp_path: Path, files: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "slack-export.zip"
    contents: dict[str, Any] = {
        "channels.json": CHANNELS,
        "users.json": USERS,
        "general/2024-03-01.json": DAY1,
        "general/2024-03-02.json": DAY2,
        "orders/2024-03-02.json": ORDERS,
    }
    contents.update(files or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in contents.items():
            if value is None:
                continue
            data = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            archive.writestr(name, data)
    return path


def test_a_slack_export_imports(tmp_path, org, cast):
    path = write_slack_zip(tmp_path)

    out, _ = run(str(path), "--department", "Company/East region", "--as", "admin")

    assert "2 conversations created, 4 messages created, 0 duplicates skipped" in out
    assert "1 Slack system messages" in out
    assert "1 Slack files not imported" in out

    general = Conversation.objects.get(source="slack", source_id="C01GENERAL")
    assert (general.kind, general.title, general.department) == ("group", "general", org.east)
    # Only Slack users who are members (by username) take part.
    assert list(general.participants.all()) == [cast.staff]
    cipher = ConversationCipher.for_conversation(general)
    messages = {m.source_id: m for m in general.messages.all()}
    assert set(messages) == {
        "C01GENERAL:1709254800.000200",
        "C01GENERAL:1709254860.000300",
        "C01GENERAL:1709341200.000000",
    }
    greeting = messages["C01GENERAL:1709254800.000200"]
    assert greeting.sender == cast.staff
    assert greeting.sender_name == "王小丽"
    assert greeting.sent_at.isoformat() == "2024-03-01T01:00:00.000200+00:00"
    reply = messages["C01GENERAL:1709254860.000300"]
    assert reply.sender is None
    assert reply.sender_name == "张伟"
    assert read_body(cipher, reply) == "@staff 收到 & 谢谢"
    assert messages["C01GENERAL:1709341200.000000"].sensitivity == Sensitivity.HIGH

    orders = Conversation.objects.get(source="slack", source_id="C02ORDERS")
    assert orders.messages.get().sent_at.microsecond == 500_000

    event = AuditEvent.objects.get()
    assert event.event_type == EventType.CHATS_IMPORTED
    assert event.actor_id == cast.admin.pk
    assert event.department_id == org.east.pk
    assert event.details["format"] == "slack"
    assert event.details["file"] == "slack-export.zip"
    assert event.details["messages_created"] == 4
    assert event.details["conversations"] == 2
    assert event.details["skipped"] == {"system_messages": 1, "files": 1}


def test_a_slack_export_imported_again_creates_nothing(tmp_path, org, cast):
    path = write_slack_zip(tmp_path)
    run(str(path), "--department", str(org.east.pk))

    out, _ = run(str(path), "--department", str(org.east.pk))

    assert "0 conversations created, 0 messages created, 6 duplicates skipped" in out
    assert Message.objects.count() == 4


def test_a_slack_export_needs_a_department(tmp_path, cast):
    message, _ = run_failing(str(write_slack_zip(tmp_path)))

    assert "--department" in message
    assert nothing_written()


def test_an_unknown_slack_department_is_refused(tmp_path, cast):
    message, err = run_failing(str(write_slack_zip(tmp_path)), "--department", "Company/Mars")

    assert "Company/Mars" in err
    assert nothing_written()


def test_a_corrupt_zip_is_refused(tmp_path, cast):
    path = tmp_path / "export.zip"
    path.write_bytes(os.urandom(2048))

    message, _ = run_failing(str(path), "--department", "Company")

    assert "export.zip" in message
    assert "not a readable zip" in message
    assert nothing_written()


def test_an_export_without_channels_json_is_refused(tmp_path, cast):
    path = write_slack_zip(tmp_path, {"channels.json": None})

    message, _ = run_failing(str(path), "--department", "Company")

    assert "channels.json is missing" in message
    assert nothing_written()


def test_bad_json_in_a_day_file_names_the_file(tmp_path, cast):
    path = write_slack_zip(tmp_path, {"general/2024-03-02.json": '[{"type": "message",'})

    message, _ = run_failing(str(path), "--department", "Company")

    assert "general/2024-03-02.json" in message
    assert "not valid JSON" in message
    assert nothing_written()


@pytest.mark.parametrize(
    ("ts", "said"),
    [
        # Past year 9999: Python cannot hold the time at all.
        ("999999999999.000100", "past year 9999"),
        # 9999-12-31: a time Python holds, outside the dates Qingli accepts.
        ("253402300799.000000", "between 1990-01-01 and one day from now"),
    ],
)
def test_a_slack_time_outside_the_accepted_dates_is_refused(tmp_path, cast, ts, said):
    day = [{"type": "message", "user": "U01STAFF", "text": "未来的消息", "ts": ts}]
    path = write_slack_zip(tmp_path, {"orders/2024-03-02.json": day})

    message, err = run_failing(str(path), "--department", "Company")

    assert said in message + err
    assert "nothing was written" in message
    assert nothing_written()


def test_an_export_zipped_inside_a_folder_is_read(tmp_path, org):
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export/channels.json", json.dumps(CHANNELS[1:]))
        archive.writestr("export/users.json", json.dumps(USERS))
        archive.writestr("export/orders/2024-03-02.json", json.dumps(ORDERS))

    records = read_slack_export(path, department=org.company.pk)

    assert [r["type"] for r in records] == ["conversation", "message"]
    assert records.labels == ["channels.json#1", "orders/2024-03-02.json#1"]
    # No member is named "staff" yet: the sender is kept by name only.
    assert records[1]["sender"] is None
    assert records[1]["sender_name"] == "王小丽"


# --------------------------------------------------------------------------- hostile zips


def deflated_zeros(size_mib: int) -> bytes:
    """A raw deflate stream of ``size_mib`` MiB of zeros, about 1 KiB per MiB, built from
    one compressed MiB repeated (a full flush resets the compressor, so every MiB
    compresses to the same bytes) without ever holding the expanded bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = compressor.compress(bytes(1024 * 1024)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return one * size_mib + compressor.flush(zlib.Z_FINISH)


def add_member(path: Path, name: str, data: bytes, *, deflated: bytes | None = None) -> None:
    """Append ``name`` to the zip: ``data`` as is, or ``deflated`` (a raw deflate stream)
    stored and then marked as deflated, so its expansion is never made here."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, deflated if deflated is not None else data)
    if deflated is not None:
        patch_member(path, name, method=zipfile.ZIP_DEFLATED)


def patch_member(
    path: Path, name: str, *, method: int | None = None, declared: int | None = None
) -> None:
    """Rewrite ``name``'s compression method or uncompressed size in its local header and
    in the central directory, as a hostile tool would."""
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    directory = struct.unpack_from("<I", blob, blob.rindex(b"PK\x05\x06") + 16)[0]
    central = directory
    while blob[central + 46 : central + 46 + len(name.encode())] != name.encode():
        lengths = struct.unpack_from("<HHH", blob, central + 28)
        central += 46 + sum(lengths)
    for offset, method_at, size_at in ((local, 8, 22), (central, 10, 24)):
        if method is not None:
            struct.pack_into("<H", blob, offset + method_at, method)
        if declared is not None:
            struct.pack_into("<I", blob, offset + size_at, declared)
    path.write_bytes(bytes(blob))


def import_measured(path: Path) -> tuple[str, float, int]:
    """Run the import expecting a refusal: its message, seconds taken, peak bytes held."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        message, _ = run_failing(str(path), "--department", "Company")
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return message, elapsed, peak


def test_a_zip_bomb_that_lies_about_its_size_is_refused_fast_in_bounded_memory(tmp_path, cast):
    """A member declaring 1,000 bytes that expands to 1 GiB (about 1 MB in the zip)."""
    path = write_slack_zip(tmp_path, {"general/2024-03-02.json": None})
    add_member(path, "general/2024-03-02.json", b"", deflated=deflated_zeros(1024))
    patch_member(path, "general/2024-03-02.json", declared=1000)
    assert path.stat().st_size < 2 * 1024 * 1024

    message, elapsed, peak = import_measured(path)

    assert "general/2024-03-02.json" in message
    assert f"expands more than {importers.MAX_ZIP_RATIO} times its compressed size" in message
    assert peak < 48 * 1024 * 1024, peak
    assert elapsed < 5, elapsed
    assert nothing_written()


def test_a_member_past_its_cap_is_refused_whatever_its_header_says(tmp_path, cast, monkeypatch):
    monkeypatch.setattr(importers, "MAX_ZIP_MEMBER_BYTES", 4096)
    day = [
        dict(DAY2[0], ts=f"17093412{i:02d}.000000", text=os.urandom(40).hex()) for i in range(60)
    ]
    path = write_slack_zip(tmp_path, {"general/2024-03-02.json": day})
    patch_member(path, "general/2024-03-02.json", declared=1000)

    message, _ = run_failing(str(path), "--department", "Company")

    assert message == (
        "slack-export.zip: general/2024-03-02.json expands to more than 4096 bytes, "
        "the cap on one file in an export; nothing was written."
    )
    assert nothing_written()


def test_an_export_past_the_total_cap_is_refused(tmp_path, cast, monkeypatch):
    path = write_slack_zip(tmp_path)
    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    # Room for channels.json, users.json and the first day file, not the second.
    read_first = ("channels.json", "users.json", "general/2024-03-01.json")
    monkeypatch.setattr(importers, "MAX_ZIP_TOTAL_BYTES", sum(sizes[n] for n in read_first) + 10)

    message, _ = run_failing(str(path), "--department", "Company")

    assert "general/2024-03-02.json expands the export to more than" in message
    assert "the cap on a whole export" in message
    assert nothing_written()


def test_a_member_that_holds_less_than_it_declares_is_refused(tmp_path, cast):
    path = write_slack_zip(tmp_path)
    patch_member(path, "users.json", declared=100_000)

    message, _ = run_failing(str(path), "--department", "Company")

    assert "users.json declares 100000 bytes but holds" in message
    assert nothing_written()


def test_a_large_ordinary_slack_export_imports_under_the_caps(tmp_path, org, cast):
    """A day file of several MiB of ordinary messages is well within every cap."""
    day = [
        {
            "type": "message",
            "user": "U01STAFF",
            "text": f"订单 {i} 已发货，明细 {os.urandom(1200).hex()}",
            "ts": f"{1709341200 + i}.000000",
        }
        for i in range(1500)
    ]
    path = write_slack_zip(tmp_path, {"general/2024-03-02.json": day})
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("general/2024-03-02.json").file_size > 3 * 1024 * 1024

    out, _ = run(str(path), "--department", "Company/East region", "--as", "admin")

    assert "2 conversations created, 1503 messages created" in out
