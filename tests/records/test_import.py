"""manage.py import_chats and the JSON Lines / Slack export readers."""

from __future__ import annotations

import json
import os
import zipfile
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from audit.events import EventType
from audit.models import AuditEvent
from retention.models import Conversation, Message, Sensitivity
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
