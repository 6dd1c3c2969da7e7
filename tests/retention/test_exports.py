"""Exports: exactly the frozen scope in every format (recycle-bin records included, purged
and later ones not), Chinese text intact, everything escaped, destroyed keys marked,
checksums that match the bytes, who may export and download, and the audit trail."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import timedelta

import django_rq
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from audit.events import EventType
from audit.models import AuditEvent
from retention import exports, jobs
from retention.deletion import execution as runs
from retention.deletion.actions import do_approve_step, do_file_request
from retention.deletion.scope import resolve_scope
from retention.models import (
    DataKey,
    DeletionRequest,
    Export,
    ExportStatus,
    Message,
    RequestMethod,
    RequestStatus,
)
from retention.roles import Role
from retention.store import NewMessage, add_messages
from tests.conftest import make_chat, make_member
from tests.retention.test_api_requests import api_for
from tests.retention.test_execution import approved, people, run, store

pytestmark = pytest.mark.django_db

__all__ = ["people", "store"]  # fixtures shared with the run tests

FORMATS = ["jsonl", "csv", "html"]


@pytest.fixture
def small_reads(monkeypatch):
    # Tiny batches: even a handful of messages takes several reads per conversation.
    monkeypatch.setattr(exports, "BATCH_MESSAGES", 2)
    monkeypatch.setattr(exports, "CONVERSATIONS_PER_QUERY", 1)


@pytest.fixture
def hangzhou_request(people, org, store):
    """A batch request over the Hangzhou store (customer, group, warehouse), approved."""
    return approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )


def filed(requester, **scope) -> DeletionRequest:
    """A batch request, filed and pending."""
    data = {"include_subdepartments": True, **scope}
    request, _created = do_file_request(
        requester=requester,
        scope=resolve_scope(RequestMethod.BATCH, data, requester),
        reason="清理旧记录",
    )
    return request


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
        assert jobs.build_export(export.pk) == ExportStatus.READY
        export.refresh_from_db()
        return export

    return make


def file_bytes(export: Export) -> bytes:
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

    export = export_of(hangzhou_request, people.staff, fmt)

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
    (purge_id,) = runs.start_due_purges(now=timezone.now() + timedelta(days=8))
    runs.run_execution(purge_id)
    run(do_approve_step(DeletionRequest.objects.get(pk=wide.pk), acting_user=people.manager))
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
    export = export_of(hangzhou_request, people.staff, fmt)

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
    assert re.fullmatch(r"exports/[0-9a-f]{32}\.csv", export.file.name)  # nothing guessable
    assert exports.build_export(export.pk).status == ExportStatus.READY  # a rerun: no-op


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

    exports.build_export(body["id"])
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

    monkeypatch.setitem(exports.WRITERS, "jsonl", broken)
    export = exports.do_request_export(hangzhou_request, fmt="jsonl", acting_user=people.staff)

    assert exports.build_export(export.pk).status == ExportStatus.FAILED
    export.refresh_from_db()
    assert "disk full" in export.error and not export.file
    assert not default_storage.exists("exports") or not default_storage.listdir("exports")[1]
    failed = AuditEvent.objects.get(event_type=EventType.EXPORT_FAILED)
    assert "disk full" in failed.details["error"]
    assert not exports.has_evidence_export(hangzhou_request)


def test_evidence_exists_once_an_export_of_the_request_is_ready(
    people, hangzhou_request, export_of
):
    assert not exports.has_evidence_export(hangzhou_request)
    queued = exports.do_request_export(hangzhou_request, fmt="csv", acting_user=people.staff)
    assert not exports.has_evidence_export(hangzhou_request)
    exports.build_export(queued.pk)
    assert exports.has_evidence_export(hangzhou_request)


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
    # A participant, the store's managers, an auditor.
    for member in (people.staff, people.manager, people.director, people.auditor):
        assert post_export(member, url) == 202, member
    colleague = make_member("colleague", org.hangzhou, Role.STAFF)
    for member in (people.manager2, colleague, people.staff2):
        assert post_export(member, url) == 404, member
    # Company-wide roles see its metadata but not its bodies.
    for member in (people.admin, people.security):
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

    exports.build_export(export.pk)
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
    assert exports.has_evidence_export(request)
    assert 'data-testid="evidence-needed"' not in client.get(page_url).content.decode()
