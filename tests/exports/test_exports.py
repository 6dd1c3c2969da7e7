"""Exports: exactly the frozen scope in every format (recycle-bin records included, purged
and later ones not), Chinese text intact, everything escaped, destroyed keys marked,
checksums that match the bytes, who may export and download, and the audit trail."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
from datetime import timedelta

import django_rq
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from audit.events import EventType
from audit.models import AuditEvent
from retention.exports import build, writers
from retention.exports import sealed as export_files
from retention.exports import service as exports
from retention.exports.sealed import opened
from retention.governance.decisions import do_approve_step
from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import resolve_scope
from retention.models import (
    DataKey,
    DeletionRequest,
    Export,
    ExportStatus,
    Message,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.policies import get_policy
from retention.records import crypto
from retention.records.crypto import ConversationCipher, DecryptionError
from retention.records.keys import data_keys_by_master_key, do_rotate_master_key
from retention.records.store import NewAttachment, NewMessage, add_messages, create_conversation
from retention.wipes import runner
from retention.wipes.evidence import has_evidence_export
from tests.conftest import file_request, make_chat, make_member
from tests.governance.test_api_requests import api_for
from tests.wipes.test_execution import approved, run, store

pytestmark = pytest.mark.django_db

__all__ = ["store"]  # fixtures shared with the run tests

FORMATS = ["jsonl", "csv", "html"]


@pytest.fixture
def small_reads(monkeypatch):
    # Tiny batches: even a handful of messages takes several reads per conversation.
    monkeypatch.setattr(writers, "BATCH_MESSAGES", 2)
    monkeypatch.setattr(writers, "CONVERSATIONS_PER_QUERY", 1)


@pytest.fixture
def hangzhou_request(people, org, store):
    """A batch request over the Hangzhou store (customer, group, warehouse), approved."""
    return approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )


def filed(requester, **scope) -> DeletionRequest:
    """A batch request, filed and pending."""
    return file_request(requester, RequestMethod.BATCH, reason="清理旧记录", **scope)


def say(conversation, body: str) -> Message:
    (message,) = add_messages(
        conversation,
        [NewMessage(sender=None, sender_name="客户", sent_at=timezone.now(), body=body)],
    )
    return message


@pytest.fixture
def export_of(django_capture_on_commit_callbacks):
    """Ask for an export as ``member``, check its job is enqueued on commit, and run it."""

    def make(target, member, fmt: str = "jsonl") -> Export:
        with django_capture_on_commit_callbacks() as callbacks:
            export = exports.do_request_export(target, fmt=fmt, acting_user=member)
        assert len(callbacks) == 1  # enqueued only once the asking transaction commits
        assert build.build_export_job(export.pk) == ExportStatus.READY
        export.refresh_from_db()
        return export

    return make


def file_bytes(export: Export) -> bytes:
    """The export's plaintext: its stored file, decrypted with its own key."""
    key = crypto.export_key(export.pk, export.wrapped_key)
    return b"".join(opened(default_storage.open(export.file.name, "rb"), key, export.pk))


def stored_bytes(export: Export) -> bytes:
    with default_storage.open(export.file.name, "rb") as handle:
        return handle.read()


def rows_of(export: Export) -> list[dict]:
    """The exported messages as dicts (JSON Lines or CSV)."""
    data = file_bytes(export)
    if export.format == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    assert data.startswith("\ufeff".encode())  # spreadsheets read the UTF-8 right
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    for row in rows:
        row["id"], row["conversation"] = int(row["id"]), int(row["conversation"])
        row["body"] = row["body"] or None
        row["unreadable"] = row["unreadable"] or None
    return rows


def scope_rows(request, *conversations) -> dict[int, str]:
    """Stored messages of the request's frozen scope, by id: what an export must hold."""
    return dict(
        Message.all_rows.filter(
            conversation__in=conversations, id__lte=request.max_message_id
        ).values_list("pk", "sender_name")
    )


# --- content ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_request_export_holds_exactly_the_frozen_scope(
    people, store, hangzhou_request, export_of, small_reads, fmt
):
    late = say(store["group"], "批准之后的新消息")  # after max_message_id: not in scope
    expected = scope_rows(hangzhou_request, store["customer"], store["group"], store["warehouse"])

    export = export_of(hangzhou_request, people.manager, fmt)  # reads every body

    rows = rows_of(export)
    assert [r["id"] for r in rows] == sorted(  # conversation order, then id order
        expected, key=lambda pk: (Message.all_rows.get(pk=pk).conversation_id, pk)
    )
    assert late.pk not in {r["id"] for r in rows}
    assert store["elsewhere"].pk not in {r["conversation"] for r in rows}
    bodies = {r["body"] for r in rows}
    assert {f"客户消息{i}" for i in range(7)} | {"盘点1", "盘点2", "发票见附件"} <= bodies
    assert not bodies & {"深圳1", "深圳2", "深圳3", "批准之后的新消息"}
    assert export.messages == len(expected) == hangzhou_request.preview["messages"]
    assert export.unreadable == 0


def test_an_export_holds_only_the_bodies_its_member_may_read(
    people, store, hangzhou_request, export_of
):
    # Staff filed the store's request; the warehouse chat below it is not theirs to read.
    rows = rows_of(export_of(hangzhou_request, people.staff))
    warehouse = [r for r in rows if r["conversation"] == store["warehouse"].pk]
    assert len(warehouse) == 2
    assert all(r["body"] is None and r["unreadable"] == "not_permitted" for r in warehouse)
    assert {r["body"] for r in rows if r["conversation"] == store["customer"].pk} >= {
        "客户消息0",
        "发票见附件",
    }


def test_batches_across_many_conversations_give_what_a_read_per_conversation_gives(
    people, org, store, export_of, monkeypatch
):
    """Conversations wholly before the request's date range or partly in it, with
    attachments, a destroyed key or nothing left, their ids interleaved: every batch and
    conversation-list size gives the same bytes, and the rows are those read one
    conversation at a time."""
    now = timezone.now()
    chats = [
        create_conversation(
            kind="group", title=f"群{i}", department=org.hangzhou, participants=[people.staff]
        )
        for i in range(7)
    ]
    old = {0: 5, 3: 3, 5: 2}  # messages sent before the date range
    recent = {1: 7, 2: 1, 3: 4, 4: 6, 6: 9}
    for n in range(max([*old.values(), *recent.values()])):  # interleaved ids
        for i, chat in enumerate(chats):
            for days, counts in ((30, old), (0, recent)):
                if n < counts.get(i, 0):
                    files = (NewAttachment(f"附件{n}.txt", b"x" * n, "text/plain"),) * (n % 3)
                    add_messages(
                        chat,
                        [
                            NewMessage(
                                sender_name=f"发送者{n}",
                                sent_at=now - timedelta(days=days, minutes=100 - n),
                                body=f"{chat.title}·{days}·{n}",
                                attachments=files,
                            )
                        ],
                    )
    since = timezone.localtime(now - timedelta(days=10)).date()
    request = approved(
        people.staff,
        [people.manager],
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
        sent_after=since,
    )
    DataKey.objects.filter(conversation=chats[4]).update(
        wrapped_key=None, destroyed_at=timezone.now()
    )
    Message.all_rows.filter(conversation=chats[2]).delete()  # purged: a target left empty

    # The reference: each conversation of the scope read whole, in conversation order.
    expected = []
    for conversation_id in sorted(request.targets.values_list("conversation_id", flat=True)):
        key = DataKey.objects.get(conversation_id=conversation_id).wrapped_key
        cipher = ConversationCipher(conversation_id, key) if key is not None else None
        for message in Message.all_rows.filter(
            conversation_id=conversation_id,
            id__lte=request.max_message_id,
            sent_at__gte=request.sent_after,
        ).order_by("id"):
            expected.append(
                (
                    message.pk,
                    conversation_id,
                    message.conversation.title,
                    cipher.decrypt_text(message.body) if cipher else None,
                    [a.name for a in message.attachments.order_by("pk")],
                )
            )
    assert request.targets.count() == 8  # five of the seven chats, and the store's three
    assert len({row[1] for row in expected}) == 7
    assert sum(1 for row in expected if row[3] is None) == 6

    outputs = []
    for batch, conversations in ((2000, 500), (1, 1), (2, 1), (3, 2), (5, 500), (7, 3)):
        monkeypatch.setattr(writers, "BATCH_MESSAGES", batch)
        monkeypatch.setattr(writers, "CONVERSATIONS_PER_QUERY", conversations)
        made = {fmt: export_of(request, people.manager, fmt) for fmt in FORMATS}
        rows = rows_of(made["jsonl"])
        got = [
            (r["id"], r["conversation"], r["conversation_title"], r["body"])
            + ([a["name"] for a in r["attachments"]],)
            for r in rows
        ]
        assert got == expected, (batch, conversations)
        page = file_bytes(made["html"]).decode()
        assert page.count("<section>") == 7
        outputs.append(
            (
                file_bytes(made["jsonl"]),
                file_bytes(made["csv"]),
                page.split("</header>")[1],  # the header names the export and its time
            )
        )
    assert all(output == outputs[0] for output in outputs)


def test_the_html_transcript_escapes_everything_and_keeps_chinese(people, org, export_of):
    chat = make_chat(
        org.hangzhou,
        [people.staff],
        ['<script>alert("x")</script>', "退款已处理，谢谢亲 😊"],
        title="<b>杭州</b> & 客服",
    )
    export = export_of(chat, people.staff, "html")

    page = file_bytes(export).decode()
    assert '<meta charset="utf-8">' in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "&lt;b&gt;杭州&lt;/b&gt; &amp; 客服" in page
    assert "<b>" not in page
    assert "退款已处理，谢谢亲 😊" in page
    assert export.messages == 2


def test_the_html_transcript_of_a_request_holds_only_its_scope(
    people, store, hangzhou_request, export_of, small_reads
):
    say(store["group"], "批准之后的新消息")
    page = file_bytes(export_of(hangzhou_request, people.manager, "html")).decode()
    for body in ["客户消息0", "客户消息6", "店内群3", "盘点2"]:
        assert body in page
    for body in ["深圳1", "批准之后的新消息"]:
        assert body not in page
    assert page.count("<section>") == 3  # one per conversation, however many reads


def test_recycle_bin_records_are_exported_and_purged_ones_are_absent(people, org, store, export_of):
    # The wide request is filed first; a narrower one then takes the group chat for good.
    wide = filed(people.staff, departments=[org.hangzhou.pk])
    narrow = approved(
        people.staff, [people.manager], RequestMethod.BATCH, conversations=[store["group"].pk]
    )
    run(narrow)
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(days=8))
    runner.run_execution(purge_id)
    run(
        do_approve_step(
            DeletionRequest.objects.get(pk=wide.pk),
            acting_user=people.manager,
            verified_second_factor=True,
        )
    )
    assert not Message.objects.filter(conversation__in=[store["customer"], store["warehouse"]])

    rows = rows_of(export_of(wide, people.auditor))

    assert {r["id"] for r in rows} == set(scope_rows(wide, store["customer"], store["warehouse"]))
    assert store["group"].pk not in {r["conversation"] for r in rows}


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_whose_key_is_destroyed_are_exported_without_a_body(
    people, store, hangzhou_request, export_of, fmt
):
    DataKey.objects.filter(conversation=store["group"]).update(
        wrapped_key=None, destroyed_at=timezone.now()
    )
    export = export_of(hangzhou_request, people.manager, fmt)

    assert export.unreadable == 4
    if fmt == "html":
        page = file_bytes(export).decode()
        assert page.count('data-unreadable="key_destroyed"') == 4
        assert "店内群" not in page
        return
    group = [r for r in rows_of(export) if r["conversation"] == store["group"].pk]
    assert len(group) == 4
    assert all(r["body"] is None and r["unreadable"] == "key_destroyed" for r in group)
    others = [r for r in rows_of(export) if r["conversation"] != store["group"].pk]
    assert others and all(r["body"] and r["unreadable"] is None for r in others)


def test_a_tampered_record_is_exported_without_a_body_and_the_rest_still_is(
    people, store, export_of
):
    tampered = Message.objects.filter(conversation=store["group"]).order_by("id").first()
    Message.all_rows.filter(pk=tampered.pk).update(body=b"\x00" * 40)

    export = export_of(store["group"], people.staff)

    rows = {r["id"]: r for r in rows_of(export)}
    assert (rows[tampered.pk]["body"], rows[tampered.pk]["unreadable"]) == (
        None,
        "decryption_failed",
    )
    assert sorted(r["body"] for pk, r in rows.items() if pk != tampered.pk) == [
        "店内群1",
        "店内群2",
        "店内群3",
    ]
    assert export.unreadable == 1


def test_a_personal_deletion_exports_just_its_message(people, store, export_of):
    message = Message.objects.filter(conversation=store["customer"]).order_by("id").first()
    personal, _created = do_file_request(
        requester=people.staff,
        scope=resolve_scope(RequestMethod.PERSONAL, {"messages": [message.pk]}, people.staff),
        reason="发错了",
    )
    rows = rows_of(export_of(personal, people.staff))
    assert [(r["id"], r["body"]) for r in rows] == [(message.pk, "客户消息0")]


def test_csv_cells_that_look_like_formulas_are_defused(people, org, export_of):
    chat = make_chat(org.hangzhou, [people.staff], ['=HYPERLINK("http://x")', "普通消息"])
    rows = rows_of(export_of(chat, people.staff, "csv"))
    assert [r["body"] for r in rows] == ['\'=HYPERLINK("http://x")', "普通消息"]
    jsonl = rows_of(export_of(chat, people.staff, "jsonl"))
    assert jsonl[0]["body"] == '=HYPERLINK("http://x")'  # the exact text, in JSON Lines


# --- the job, checksum, download ----------------------------------------------------------


@pytest.fixture
def default_queue():
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


def test_the_job_runs_on_the_default_queue_after_commit(
    people, hangzhou_request, default_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
        assert default_queue.count == 0  # not before the commit
    assert default_queue.count == 1
    assert Export.objects.get(pk=export.pk).status == ExportStatus.QUEUED

    SimpleWorker([default_queue], connection=default_queue.connection).work(burst=True)

    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    assert export.finished_at is not None
    assert re.fullmatch(r"exports/[0-9a-f]{32}\.enc", export.file.name)  # nothing guessable
    assert build.build_export(export.pk).status == ExportStatus.READY  # a rerun: no-op


def test_the_checksum_is_that_of_the_downloaded_bytes_and_downloads_are_audited(
    people, hangzhou_request, export_of
):
    export = export_of(hangzhou_request, people.staff, "jsonl")
    completed = AuditEvent.objects.get(event_type=EventType.EXPORT_COMPLETED)
    assert completed.details["sha256"] == export.sha256
    assert completed.target_id == str(hangzhou_request.pk)

    response = api_for(people.manager).get(f"/api/v1/exports/{export.pk}/download/")

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.sha256 == response["X-Content-SHA256"]
    assert len(body) == export.size
    assert response["Content-Disposition"].startswith("attachment;")
    assert f"request-{hangzhou_request.pk}" in response["Content-Disposition"]
    downloaded = AuditEvent.objects.get(event_type=EventType.EXPORT_DOWNLOADED)
    assert downloaded.actor_id == people.manager.pk
    assert downloaded.details["export"] == export.pk
    assert downloaded.details["sha256"] == export.sha256


def test_the_api_queues_an_export_and_reports_it(people, hangzhou_request):
    client = api_for(people.staff)
    response = client.post(
        f"/api/v1/requests/{hangzhou_request.pk}/export/", {"format": "html"}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["request"], body["conversation"]) == (hangzhou_request.pk, None)
    assert (body["format"], body["status"], body["download"]) == ("html", "queued", None)
    requested = AuditEvent.objects.get(event_type=EventType.EXPORT_REQUESTED)
    assert requested.actor_id == people.staff.pk
    assert requested.details == {"export": body["id"], "format": "html"}

    build.build_export(body["id"])
    ready = client.get(f"/api/v1/exports/{body['id']}/").json()
    assert ready["status"] == "ready"
    assert ready["messages"] == hangzhou_request.preview["messages"]
    assert len(ready["sha256"]) == 64 and ready["size"] > 0
    assert ready["download"].endswith(f"/api/v1/exports/{body['id']}/download/")


@pytest.mark.parametrize(
    "body",
    [{"format": "xml"}, {}, {"format": ""}, {"format": ["jsonl"]}],
)
def test_a_bad_format_is_a_400_naming_the_field(people, store, hangzhou_request, body):
    for url in (
        f"/api/v1/requests/{hangzhou_request.pk}/export/",
        f"/api/v1/conversations/{store['customer'].pk}/export/",
    ):
        response = api_for(people.staff).post(url, body, format="json")
        assert response.status_code == 400
        assert "format" in response.json()
    assert not Export.objects.exists()


def test_a_download_before_the_file_is_ready_is_a_conflict(people, hangzhou_request):
    export = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    response = api_for(people.staff).get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 409
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_DOWNLOADED).exists()


def test_a_failed_export_says_why_and_leaves_no_file(
    people, hangzhou_request, monkeypatch, tmp_path
):
    def broken(export, sink):
        sink.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setitem(writers.WRITERS, "jsonl", broken)
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)

    assert build.build_export(export.pk).status == ExportStatus.FAILED
    export.refresh_from_db()
    assert "disk full" in export.error and not export.file
    assert not default_storage.exists("exports") or not default_storage.listdir("exports")[1]
    failed = AuditEvent.objects.get(event_type=EventType.EXPORT_FAILED)
    assert "disk full" in failed.details["error"]
    assert not has_evidence_export(hangzhou_request)


def test_evidence_exists_once_an_export_of_the_request_is_ready(
    people, hangzhou_request, export_of
):
    assert not has_evidence_export(hangzhou_request)
    queued = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    assert not has_evidence_export(hangzhou_request)
    build.build_export(queued.pk)
    assert has_evidence_export(hangzhou_request)


# --- who may ------------------------------------------------------------------------------


def post_export(member, url: str) -> int:
    return api_for(member).post(url, {"format": "jsonl"}, format="json").status_code


def test_who_may_export_a_request(people, org, store, hangzhou_request):
    url = f"/api/v1/requests/{hangzhou_request.pk}/export/"
    # Requester, approver, auditor, admin.
    for member in (people.staff, people.manager, people.auditor, people.admin):
        assert post_export(member, url) == 202, member
    # Another region's manager, and staff of the same store who did not file it: unseen.
    colleague = make_member("colleague", org.hangzhou, Role.STAFF)
    for member in (people.manager2, colleague, people.warehouse_staff):
        assert post_export(member, url) == 404, member
    # Security and the director see the request (oversight, subtree) but took no part.
    for member in (people.security, people.director):
        assert post_export(member, url) == 403, member
    assert Export.objects.count() == 4


def test_those_who_may_decide_a_pending_request_may_export_it(people, org, store):
    pending = filed(people.staff, departments=[org.hangzhou.pk])
    assert pending.status == RequestStatus.PENDING
    url = f"/api/v1/requests/{pending.pk}/export/"
    for member in (people.manager, people.director):  # both may decide its manager step
        assert post_export(member, url) == 202, member
    assert post_export(people.security, url) == 403
    assert post_export(people.manager2, url) == 404


def test_who_may_export_a_conversation(people, org, store):
    url = f"/api/v1/conversations/{store['customer'].pk}/export/"
    # A participant and the store's managers: those who may read its bodies.
    for member in (people.staff, people.manager, people.director):
        assert post_export(member, url) == 202, member
    colleague = make_member("colleague", org.hangzhou, Role.STAFF)
    for member in (people.manager2, colleague, people.staff2):
        assert post_export(member, url) == 404, member
    # Company-wide roles see its metadata but not its bodies (auditors too, unless the
    # setting QINGLI_AUDITOR_READS_BODIES lets them).
    for member in (people.admin, people.security, people.auditor):
        assert post_export(member, url) == 403, member


def test_who_may_see_and_download_an_export(people, hangzhou_request, export_of):
    export = export_of(hangzhou_request, people.staff)
    detail = f"/api/v1/exports/{export.pk}/"
    download = f"/api/v1/exports/{export.pk}/download/"
    for member in (people.staff, people.manager, people.auditor, people.admin):
        client = api_for(member)
        assert client.get(detail).status_code == 200, member
        assert client.get(download).status_code == 200, member
    for member, code in (
        (people.manager2, 404),
        (people.warehouse_staff, 404),
        (people.security, 403),
    ):
        client = api_for(member)
        assert client.get(detail).status_code == code, member
        assert client.get(download).status_code == code, member
    downloads = AuditEvent.objects.filter(event_type=EventType.EXPORT_DOWNLOADED)
    assert sorted(downloads.values_list("actor_name", flat=True)) == [
        "admin",
        "auditor",
        "manager",
        "staff",
    ]
    assert api_for().get(download).status_code in (401, 403)


# --- pages --------------------------------------------------------------------------------


def test_the_request_page_exports_lists_and_downloads(client, people, hangzhou_request):
    client.force_login(people.staff)
    page_url = reverse("request", args=[hangzhou_request.pk])
    page = client.get(page_url).content.decode()
    assert 'data-testid="exports"' in page and 'name="format"' in page

    response = client.post(
        reverse("request-exports", args=[hangzhou_request.pk]), {"format": "csv"}
    )
    assert response.status_code == 302
    export = Export.objects.get()
    card = client.get(reverse("request-exports", args=[hangzhou_request.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in card  # polls while the file is being written

    build.build_export(export.pk)
    export.refresh_from_db()
    page = client.get(page_url).content.decode()
    assert export.sha256[:32] in page and export.sha256[32:] in page
    assert reverse("export-download", args=[export.pk]) in page
    assert 'hx-trigger="every' not in page.split('data-testid="exports"')[1].split("</section>")[0]

    download = client.get(reverse("export-download", args=[export.pk]))
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert AuditEvent.objects.filter(
        event_type=EventType.EXPORT_DOWNLOADED, actor_id=people.staff.pk
    ).exists()


def test_the_card_is_only_for_those_who_may(client, people, store, hangzhou_request):
    client.force_login(people.security)
    page = client.get(reverse("request", args=[hangzhou_request.pk])).content.decode()
    assert 'data-testid="exports"' not in page
    assert (
        client.post(
            reverse("request-exports", args=[hangzhou_request.pk]), {"format": "csv"}
        ).status_code
        == 403
    )
    client.force_login(people.admin)
    page = client.get(reverse("conversation", args=[store["customer"].pk])).content.decode()
    assert 'data-testid="exports"' not in page
    client.force_login(people.manager2)
    assert (
        client.get(reverse("conversation-exports", args=[store["customer"].pk])).status_code == 404
    )
    assert not Export.objects.exists()


def test_the_conversation_page_exports_and_refuses_a_bad_format(client, people, store):
    client.force_login(people.staff)
    client.cookies["django_language"] = "en"
    page = client.get(reverse("conversation", args=[store["customer"].pk])).content.decode()
    assert 'data-testid="exports"' in page
    url = reverse("conversation-exports", args=[store["customer"].pk])

    refused = client.post(url, {"format": "xml"}, follow=True)
    assert "Choose one of: jsonl, csv, html." in refused.content.decode()
    assert not Export.objects.exists()

    client.post(url, {"format": "html"})
    assert Export.objects.get().conversation_id == store["customer"].pk


def test_a_request_with_high_sensitivity_records_asks_for_evidence(
    client, people, org, store, export_of
):
    say(store["customer"], "我的手机号是13812345678")
    request = approved(
        people.staff,
        [people.manager, people.security],
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
    )
    assert request.preview["high_sensitivity"] > 0
    client.force_login(people.staff)
    page_url = reverse("request", args=[request.pk])
    assert 'data-testid="evidence-needed"' in client.get(page_url).content.decode()
    export_of(request, people.security)  # an approver of its security step
    assert has_evidence_export(request)
    assert 'data-testid="evidence-needed"' not in client.get(page_url).content.decode()


# --- encryption at rest -------------------------------------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    # Chunks of 64 bytes: even a small export is many chunks.
    monkeypatch.setattr(export_files, "CHUNK_BYTES", 64)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_stored_file_is_encrypted_under_a_key_of_its_own(
    people, store, hangzhou_request, export_of, fmt
):
    export = export_of(hangzhou_request, people.staff, fmt)
    other = export_of(hangzhou_request, people.staff, fmt)

    stored = stored_bytes(export)
    assert stored.startswith(export_files.MAGIC)
    for text in ("客户消息0", "店内群1", "盘点2", "客户"):
        assert text.encode() not in stored
    plaintext = file_bytes(export)
    assert "客户消息0".encode() in plaintext
    # The checksum and size are those of what a download gives back, not of the ciphertext.
    assert hashlib.sha256(plaintext).hexdigest() == export.sha256
    assert len(plaintext) == export.size
    assert hashlib.sha256(stored).hexdigest() != export.sha256
    # Each export has its own key, wrapped by the master key and bound to its export.
    wrapped = bytes(export.wrapped_key)
    assert wrapped.startswith(crypto.WRAP_FORMAT)
    assert crypto.wrapped_with(wrapped) == crypto.current_master_key_id()
    assert crypto.export_key(export.pk, wrapped) != crypto.export_key(other.pk, other.wrapped_key)
    with pytest.raises(DecryptionError):
        crypto.export_key(other.pk, wrapped)
    with pytest.raises(DecryptionError):  # nor does a conversation's unwrapping open it
        crypto.rewrapped(export.pk, wrapped)


def test_a_large_export_is_sealed_in_chunks_and_downloads_whole(
    people, store, hangzhou_request, export_of, small_chunks, small_reads
):
    export = export_of(hangzhou_request, people.manager, "html")
    assert len(stored_bytes(export)) > 20 * 64  # many chunks

    response = api_for(people.manager).get(f"/api/v1/exports/{export.pk}/download/")

    assert response.status_code == 200
    assert response.streaming  # decrypted as it streams, never whole in memory
    pieces = list(response.streaming_content)
    assert len(pieces) > 20 and all(len(piece) <= 64 for piece in pieces)
    body = b"".join(pieces)
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert int(response["Content-Length"]) == export.size == len(body)
    assert "客户消息6" in body.decode()


def overwrite_byte(export: Export, offset: int) -> None:
    data = bytearray(stored_bytes(export))
    data[offset] ^= 0x01
    default_storage.delete(export.file.name)
    default_storage.save(export.file.name, io.BytesIO(bytes(data)))


def test_a_download_stops_at_a_chunk_that_does_not_authenticate(
    people, hangzhou_request, export_of, small_chunks
):
    export = export_of(hangzhou_request, people.staff, "jsonl")
    plaintext = file_bytes(export)
    sealed = export_files.NONCE_BYTES + 64 + export_files.TAG_BYTES
    overwrite_byte(export, export_files.HEADER.size + 3 * sealed + 20)  # the fourth chunk

    response = api_for(people.staff).get(f"/api/v1/exports/{export.pk}/download/")

    assert response.status_code == 200  # the first chunks are sound
    received = b""
    with pytest.raises(DecryptionError, match="chunk 3"):
        for piece in response.streaming_content:
            received += piece
    assert received == plaintext[: 3 * 64]  # the sound part, then nothing: never garbage
    response.close()


def test_a_file_that_fails_at_once_is_an_error_and_no_download(
    people, client, hangzhou_request, export_of, small_chunks
):
    export = export_of(hangzhou_request, people.staff, "csv")
    overwrite_byte(export, export_files.HEADER.size + 30)  # the first chunk

    response = api_for(people.staff).get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 409
    assert "cannot be decrypted" in response.json()["detail"]

    Export.objects.filter(pk=export.pk).update(wrapped_key=crypto.new_wrapped_key(export.pk))
    assert api_for(people.staff).get(f"/api/v1/exports/{export.pk}/download/").status_code == 409
    client.force_login(people.staff)
    page = client.get(reverse("export-download", args=[export.pk]), follow=True)
    assert page.redirect_chain and "#exports" in page.redirect_chain[-1][0]
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_DOWNLOADED).exists()


def test_rotation_rewraps_export_keys_and_downloads_survive_the_old_master_key(
    request, people, hangzhou_request, export_of, settings
):
    export = export_of(hangzhou_request, people.staff, "jsonl")
    expected = file_bytes(export)
    # A new master key comes in; the one the export's key is under is being retired.
    settings.QINGLI_RETIRED_MASTER_KEYS = [settings.QINGLI_MASTER_KEY]
    settings.QINGLI_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    crypto.forget_keys()
    request.addfinalizer(crypto.forget_keys)
    assert crypto.wrapped_with(bytes(export.wrapped_key)) != crypto.current_master_key_id()
    assert file_bytes(export) == expected  # still readable through the retiring key

    outcome = do_rotate_master_key(actor=people.admin)

    conversations = DataKey.objects.filter(wrapped_key__isnull=False).count()
    assert outcome == {"rewrapped": conversations + 1, "already_current": 0}
    current = crypto.current_master_key_id()
    assert set(data_keys_by_master_key()) == {current.hex()}
    assert all(
        crypto.wrapped_with(bytes(w)) == current
        for w in Export.objects.exclude(wrapped_key=None).values_list("wrapped_key", flat=True)
    )
    settings.QINGLI_RETIRED_MASTER_KEYS = []  # the old master key is destroyed
    crypto.forget_keys()
    response = api_for(people.staff).get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == expected
    assert do_rotate_master_key(actor=None)["rewrapped"] == 0


# --- expiry -------------------------------------------------------------------------------


def written_days_ago(export: Export, days: int) -> Export:
    Export.objects.filter(pk=export.pk).update(
        finished_at=timezone.now() - timedelta(days=days, minutes=1)
    )
    export.refresh_from_db()
    return export


def test_exports_older_than_the_policy_expire(people, hangzhou_request, export_of):
    old = written_days_ago(export_of(hangzhou_request, people.staff, "csv"), 30)
    recent = written_days_ago(export_of(hangzhou_request, people.staff, "jsonl"), 29)
    old_file = old.file.name

    assert exports.expire_exports() == [old.pk]

    old.refresh_from_db()
    assert old.status == ExportStatus.EXPIRED and old.expired_at is not None
    assert old.wrapped_key is None and not old.file
    assert not default_storage.exists(old_file)
    assert len(old.sha256) == 64 and old.messages  # what it held stays on record
    event = AuditEvent.objects.get(event_type=EventType.EXPORT_EXPIRED)
    assert event.actor_id is None and event.target_id == str(hangzhou_request.pk)
    assert event.details["export"] == old.pk
    assert (event.details["sha256"], event.details["keep_days"]) == (old.sha256, 30)
    recent.refresh_from_db()
    assert recent.status == ExportStatus.READY and default_storage.exists(recent.file.name)
    assert exports.expire_exports() == []  # a second run changes nothing
    assert AuditEvent.objects.filter(event_type=EventType.EXPORT_EXPIRED).count() == 1


def test_the_keep_days_policy_is_validated_and_drives_expiry(people, hangzhou_request, export_of):
    for bad in (0, 3651, -1, True, "30", 2.5):
        with pytest.raises(ValidationError) as raised:
            do_update_policies(
                actor=people.admin, changes={"export_keep_days": bad}, verified_second_factor=True
            )
        assert "export_keep_days" in raised.value.message_dict
    response = api_for(people.admin).patch(
        "/api/v1/policies/", {"export_keep_days": 0}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["export_keep_days"] == ["Must be a whole number from 1 to 3650."]
    assert get_policy("export_keep_days") == 30

    do_update_policies(
        actor=people.admin, changes={"export_keep_days": 2}, verified_second_factor=True
    )
    export = written_days_ago(export_of(hangzhou_request, people.staff), 2)
    assert exports.expire_exports() == [export.pk]
    assert not has_evidence_export(hangzhou_request)  # evidence must be made again


def test_an_expired_export_is_gone_on_the_pages_and_in_the_api(
    client, people, hangzhou_request, export_of
):
    export = written_days_ago(export_of(hangzhou_request, people.staff, "csv"), 31)
    exports.expire_exports()
    api = api_for(people.staff)

    detail = api.get(f"/api/v1/exports/{export.pk}/").json()
    assert (detail["status"], detail["download"]) == ("expired", None)
    assert detail["expired_at"] and len(detail["sha256"]) == 64
    response = api.get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 410
    assert "This export expired on" in response.json()["detail"]
    assert "Ask for a new export" in response.json()["detail"]

    client.force_login(people.staff)
    client.cookies["django_language"] = "en"
    page = client.get(reverse("request", args=[hangzhou_request.pk])).content.decode()
    card = page.split('data-testid="exports"')[1].split("</section>")[0]
    assert f'data-testid="expired-{export.pk}"' in card and "Expired" in card
    assert reverse("export-download", args=[export.pk]) not in card
    followed = client.get(reverse("export-download", args=[export.pk]), follow=True)
    assert "This export expired on" in followed.content.decode()
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_DOWNLOADED).exists()


def test_a_plaintext_file_from_before_encryption_expires_at_once(
    people, hangzhou_request, export_of
):
    export = export_of(hangzhou_request, people.staff, "jsonl")
    plain = default_storage.save("exports/legacy.jsonl", io.BytesIO(b'{"body": "\\u5ba2"}\n'))
    Export.objects.filter(pk=export.pk).update(file=plain, wrapped_key=None)

    assert exports.expire_exports() == [export.pk]
    assert not default_storage.exists(plain)
    event = AuditEvent.objects.get(event_type=EventType.EXPORT_EXPIRED)
    assert event.details["encrypted"] is False


# --- a worker that dies -------------------------------------------------------------------


class WorkerKilled(BaseException):
    """What a killed worker looks like to the code: it stops, nothing is caught."""


def stale(export: Export, minutes: int = 11) -> None:
    Export.objects.filter(pk=export.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_the_heartbeat_is_touched_every_batch(people, hangzhou_request, small_reads, monkeypatch):
    monkeypatch.setattr(build, "BEAT_SECONDS", 0)  # a beat is due after every batch
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)
    beats = []
    decrypt = writers._decrypt

    def watched(*args):
        beats.append(Export.objects.get(pk=export.pk).heartbeat_at)
        return decrypt(*args)

    monkeypatch.setattr(writers, "_decrypt", watched)
    assert build.build_export(export.pk).status == ExportStatus.READY

    assert len(beats) >= 6  # 13 messages in three conversations, two per read
    assert beats == sorted(beats) and len(set(beats)) == len(beats)


def test_the_heartbeat_is_touched_only_once_a_beat_is_due(
    people, hangzhou_request, small_reads, monkeypatch
):
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)
    beats, decrypts = [], []
    beat, decrypt = build._beat, writers._decrypt
    monkeypatch.setattr(build, "_beat", lambda export: beats.append(1) or beat(export))
    monkeypatch.setattr(writers, "_decrypt", lambda *args: decrypts.append(1) or decrypt(*args))

    assert build.build_export(export.pk).status == ExportStatus.READY

    assert len(decrypts) >= 6  # many batches in well under BEAT_SECONDS...
    assert len(beats) == 1  # ...and one write: the last beat, before the file is saved


def test_a_stalled_export_is_queued_again_and_rebuilt_from_scratch(
    people, hangzhou_request, monkeypatch, django_capture_on_commit_callbacks
):
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)

    def killed(*args, **kwargs):
        raise WorkerKilled  # after the file is in storage, before the row says ready

    with monkeypatch.context() as patch:
        patch.setattr(build, "_finish", killed)
        with pytest.raises(WorkerKilled):
            build.build_export(export.pk)
    export.refresh_from_db()
    partial, first_key = export.file.name, bytes(export.wrapped_key)
    assert export.status == ExportStatus.RUNNING and default_storage.exists(partial)

    stale(export, minutes=9)
    assert exports.requeue_stalled_exports() == []  # its heartbeat is recent enough
    stale(export, minutes=11)
    with django_capture_on_commit_callbacks() as callbacks:
        assert exports.requeue_stalled_exports() == [export.pk]
    assert len(callbacks) == 1  # build_export enqueued once the change is committed
    assert Export.objects.get(pk=export.pk).status == ExportStatus.QUEUED
    restarted = AuditEvent.objects.get(event_type=EventType.EXPORT_RESTARTED)
    assert restarted.details["export"] == export.pk and restarted.details["attempts"] == 1

    rebuilt = build.build_export(export.pk)

    assert rebuilt.status == ExportStatus.READY and rebuilt.attempts == 2
    assert not default_storage.exists(partial)  # the dead run's file is gone
    assert rebuilt.file.name != partial and bytes(rebuilt.wrapped_key) != first_key
    assert default_storage.listdir("exports")[1] == [rebuilt.file.name.split("/")[1]]
    rows = rows_of(rebuilt)
    assert len(rows) == len({r["id"] for r in rows}) == hangzhou_request.preview["messages"]
    assert hashlib.sha256(file_bytes(rebuilt)).hexdigest() == rebuilt.sha256


def test_a_queued_export_whose_job_was_lost_is_enqueued_again(
    people, hangzhou_request, default_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        export = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    Export.objects.filter(pk=export.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    # Its job still waits its turn behind others: left alone.
    assert exports.requeue_stalled_exports() == []
    default_queue.connection.flushdb()  # Redis lost it

    with django_capture_on_commit_callbacks(execute=True):
        assert exports.requeue_stalled_exports() == [export.pk]
    assert default_queue.job_ids == [f"export-{export.pk}"]
    lost = AuditEvent.objects.get(event_type=EventType.EXPORT_RESTARTED)
    assert lost.details["export"] == export.pk and lost.details["job"] == "lost"
    assert exports.requeue_stalled_exports() == []  # queued once, not at every look

    SimpleWorker([default_queue], connection=default_queue.connection).work(burst=True)
    assert Export.objects.get(pk=export.pk).status == ExportStatus.READY


def test_a_queued_export_whose_job_failed_before_it_began_fails_once(
    people, hangzhou_request, default_queue, django_capture_on_commit_callbacks
):
    from rq.job import JobStatus

    with django_capture_on_commit_callbacks(execute=True):
        export = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    Export.objects.filter(pk=export.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    default_queue.fetch_job(f"export-{export.pk}").set_status(JobStatus.FAILED)

    assert exports.requeue_stalled_exports() == []
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and "before the export began" in export.error
    assert AuditEvent.objects.filter(event_type=EventType.EXPORT_FAILED).count() == 1
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_RESTARTED).exists()
    assert exports.requeue_stalled_exports() == []  # and nothing more, later


def test_a_run_taken_for_dead_stops_and_leaves_the_new_one_alone(
    people, hangzhou_request, monkeypatch, small_reads
):
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)
    write = writers.WRITERS["jsonl"]
    paused = []

    def slow_writer(export, sink):
        if not paused:  # the first run stalls here long enough to be taken for dead
            paused.append(export.attempts)
            stale(export)
            assert exports.requeue_stalled_exports() == [export.pk]
            assert build.build_export(export.pk).status == ExportStatus.READY
        write(export, sink)

    monkeypatch.setitem(writers.WRITERS, "jsonl", slow_writer)
    final = build.build_export(export.pk)  # the first run wakes up, and stops

    assert paused == [1]
    assert final.status == ExportStatus.READY and final.attempts == 2
    assert AuditEvent.objects.filter(event_type=EventType.EXPORT_COMPLETED).count() == 1
    assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_FAILED).exists()
    assert default_storage.listdir("exports")[1] == [final.file.name.split("/")[1]]
    assert len(rows_of(final)) == hangzhou_request.preview["messages"]


def test_an_export_that_keeps_killing_its_worker_fails_in_the_end(
    people, hangzhou_request, monkeypatch
):
    export = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    monkeypatch.setattr(build, "_finish", lambda *args: (_ for _ in ()).throw(WorkerKilled))
    for attempt in range(1, build.MAX_ATTEMPTS + 1):
        with pytest.raises(WorkerKilled):
            build.build_export(export.pk)
        stale(export)
        requeued = exports.requeue_stalled_exports()
        assert requeued == ([export.pk] if attempt < build.MAX_ATTEMPTS else [])

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and "stopped 3 times" in export.error
    assert not export.file and export.wrapped_key is None
    assert not default_storage.listdir("exports")[1]
    assert AuditEvent.objects.filter(event_type=EventType.EXPORT_RESTARTED).count() == 2
    failed = AuditEvent.objects.get(event_type=EventType.EXPORT_FAILED)
    assert "stopped 3 times" in failed.details["error"]
