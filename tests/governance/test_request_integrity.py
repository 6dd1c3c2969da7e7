"""The frozen scope and the quota hold under concurrency (PostgreSQL, real threads)."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import resolve_scope
from retention.models import DeletionRequest, Message, RequestMethod
from retention.records.store import NewMessage, add_messages
from tests.conftest import make_chat, on_postgres, sign_in_streak

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only():
    if not on_postgres():
        pytest.skip("row locks and concurrent commits are only meaningful on PostgreSQL")


def in_thread(target, results: list, index: int, *args) -> threading.Thread:
    def run():
        try:
            results[index] = target(*args)
        except Exception as exc:  # the outcome is what the test inspects
            results[index] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_concurrent_personal_deletions_cannot_exceed_the_quota(cast, chats):
    do_update_policies(
        actor=cast.admin, changes={"personal_monthly_quota": 1}, verified_second_factor=True
    )
    conversation_id = chats["hangzhou"].pk
    barrier = threading.Barrier(6)

    def delete_mine():
        scope = resolve_scope(
            RequestMethod.PERSONAL, {"conversations": [conversation_id]}, cast.staff
        )
        barrier.wait()
        return do_file_request(requester=cast.staff, scope=scope, reason="清理")

    results: list = [None] * 6
    for t in [in_thread(delete_mine, results, i) for i in range(6)]:
        t.join(30)
    assert DeletionRequest.objects.filter(method=RequestMethod.PERSONAL).count() == 1
    assert sum(isinstance(r, PermissionDenied) for r in results) == 5


def test_a_message_committing_late_is_counted_or_out_of_scope_never_silently_in(cast, org, chats):
    sign_in_streak([cast.manager])
    conversation = chats["hangzhou"]
    inserted, release = threading.Event(), threading.Event()

    def slow_ingest():
        # Takes an id now, commits only later: the classic hole under a high-water mark.
        with transaction.atomic():
            add_messages(
                conversation,
                [NewMessage(sender_name="买家", sent_at=timezone.now(), body="晚到的消息")],
            )
            inserted.set()
            release.wait(20)

    results: list = [None, None]
    ingest = in_thread(slow_ingest, results, 0)
    assert inserted.wait(20)
    # A later message commits first, so the newest committed id is above the slow one.
    make_chat(org.hangzhou, [cast.staff], ["后到先提交"])

    def file_region():
        scope = resolve_scope(RequestMethod.BATCH, {"departments": [org.east.pk]}, cast.manager)
        return do_file_request(requester=cast.manager, scope=scope, reason="清理")[0]

    filing = in_thread(file_region, results, 1)
    time.sleep(0.5)  # filing now waits for the slow insert instead of reading past it
    release.set()
    ingest.join(30)
    filing.join(30)
    request = results[1]
    assert isinstance(request, DeletionRequest), request
    frozen = Message.objects.filter(
        conversation__in=request.targets.values("conversation"), id__lte=request.max_message_id
    ).count()
    assert frozen == request.preview["messages"]
    assert sum(request.targets.values_list("messages", flat=True)) == frozen
