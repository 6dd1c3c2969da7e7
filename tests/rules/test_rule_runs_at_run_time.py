"""A rule's run re-checks holds and protection when it runs, not when it was filed, and
says what it left and why; the dry run counts attachments and their bytes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from audit.events import EventType
from audit.models import AuditEvent
from retention.exports.build import build_export
from retention.governance.decisions import do_approve_step
from retention.governance.protection import do_place_hold, do_set_protected
from retention.models import (
    DeletionRequest,
    Export,
    HoldKind,
    Message,
    RequestMethod,
    RuleAction,
)
from retention.records.store import NewAttachment, NewMessage, add_messages
from retention.rules.actions import do_preview_rule
from retention.rules.matching import measure_rule
from retention.rules.runs import run_due_rules
from retention.wipes import runner, schedule
from tests.conftest import file_request, sign_in_streak
from tests.governance.test_api_requests import api_for
from tests.rules.test_retention_rules import (
    NOW,
    admins,
    ages_left,
    chats,
    enabled,
    new_rule,
)

pytestmark = pytest.mark.django_db

__all__ = ["admins", "chats"]  # fixtures shared with the rule tests


def timeline(request: DeletionRequest, event_type: EventType):
    return AuditEvent.objects.filter(
        event_type=event_type, target_type="retention.deletionrequest", target_id=str(request.pk)
    )


def test_an_archiving_run_leaves_a_conversation_protected_while_it_waited(
    client, admins, org, chats
):
    rule = enabled(
        new_rule(admins, department=org.hangzhou, keep_days=90, action=RuleAction.ARCHIVE), admins
    )
    (request_id,) = run_due_rules(now=NOW)
    request = DeletionRequest.objects.get(pk=request_id)
    approved = request.preview["messages"]
    assert approved == 6  # 400, 200 and 100 days old, in both Hangzhou chats
    assert schedule.start_request(request.pk, now=NOW) is None  # waits for its evidence
    assert build_export(Export.objects.get(request=request).pk).messages == approved

    # While the run waited, an admin marked the group chat protected.
    do_set_protected(
        chats["group"], acting_user=admins.admin, protected=True, verified_second_factor=True
    )
    (said,) = timeline(request, EventType.CONVERSATION_PROTECTED)
    assert said.details["conversation"] == chats["group"].pk

    run = runner.run_execution(schedule.start_request(request.pk, now=NOW).pk)
    assert ages_left(chats["group"]) == [5, 40, 100, 200, 400]
    assert ages_left(chats["customer"]) == [5, 40]
    # Exact: what was approved = what went + what was left, and why.
    assert (run.done_messages, run.protected_messages, run.held_messages) == (3, 3, 0)
    assert run.vanished_messages == 0
    assert run.protected_conversation_ids == [chats["group"].pk]
    (skipped,) = timeline(request, EventType.PROTECTED_RECORDS_SKIPPED)
    assert skipped.details == {
        "messages": 3,
        "conversations": 1,
        "conversation_ids": [chats["group"].pk],
    }
    executed = timeline(request, EventType.REQUEST_EXECUTED).get().details
    assert executed["approved_messages"] == approved
    assert executed["deleted_messages"] + executed["protected_messages"] == approved
    detail = api_for(admins.admin).get(f"/api/v1/requests/{request.pk}/").json()
    assert detail["progress"]["protected_messages"] == 3
    assert detail["progress"]["protected_conversations"] == 1
    assert detail["progress"]["percent"] == 100
    client.force_login(admins.admin)
    page = client.get(reverse("request", args=[request.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    body = page.content.decode()
    assert 'data-testid="progress-protected"' in body
    assert "申请提交后它们被标记为受保护" in body  # the reason, in the reader's language

    # The purge that follows the archive takes what the move took, nothing more.
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(minutes=1))
    runner.run_execution(purge_id)
    assert Message.all_rows.filter(conversation=chats["group"]).count() == 5
    assert Message.all_rows.filter(conversation=chats["customer"]).count() == 2
    page = client.get(reverse("request", args=[request.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "已保留记录：申请提交后被标记为受保护" in page.content.decode()  # on the timeline
    assert rule.pk == request.scope["rule"]


def test_a_rule_run_leaves_a_conversation_held_after_it_was_filed(admins, org, chats):
    # Holds were already re-checked in every batch of every run (the rule's included):
    # this pins it for a rule's run that waits for its evidence.
    enabled(
        new_rule(admins, department=org.hangzhou, keep_days=90, action=RuleAction.ARCHIVE), admins
    )
    (request_id,) = run_due_rules(now=NOW)
    request = DeletionRequest.objects.get(pk=request_id)
    assert schedule.start_request(request.pk, now=NOW) is None
    build_export(Export.objects.get(request=request).pk)
    do_place_hold(
        acting_user=admins.security,
        kind=HoldKind.LEGAL,
        reason="诉讼保全",
        conversations=[chats["customer"]],
        departments=[],
        verified_second_factor=True,
    )
    assert timeline(request, EventType.HOLD_PLACED).exists()

    run = runner.run_execution(schedule.start_request(request.pk, now=NOW).pk)
    assert ages_left(chats["customer"]) == [5, 40, 100, 200, 400]
    assert ages_left(chats["group"]) == [5, 40]
    assert (run.done_messages, run.held_messages, run.protected_messages) == (3, 3, 0)
    assert run.done_messages + run.held_messages == request.preview["messages"]
    assert timeline(request, EventType.HELD_RECORDS_SKIPPED).get().details["messages"] == 3


def test_a_batch_request_takes_what_it_confirmed_and_leaves_what_was_protected_later(
    admins, org, chats
):
    do_set_protected(
        chats["customer"], acting_user=admins.admin, protected=True, verified_second_factor=True
    )
    sign_in_streak([admins.manager])
    request = file_request(
        admins.manager,
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
        confirm_protected=[chats["customer"].pk],
    )
    do_set_protected(
        chats["group"], acting_user=admins.admin, protected=True, verified_second_factor=True
    )
    assert timeline(request, EventType.CONVERSATION_PROTECTED).count() == 1  # the later one
    request = do_approve_step(request, acting_user=admins.director, verified_second_factor=True)
    run = runner.run_execution(schedule.start_request(request.pk, now=request.scheduled_for).pk)
    assert ages_left(chats["customer"]) == []  # confirmed by name when filed: taken
    assert ages_left(chats["group"]) == [5, 40, 100, 200, 400]  # protected later: left
    assert (run.done_messages, run.protected_messages) == (5, 5)


def test_the_dry_run_counts_attachments_and_their_bytes(client, admins, org, chats):
    def with_file(conversation, age: int, content: bytes):
        add_messages(
            conversation,
            [
                NewMessage(
                    sender_name="客户",
                    sent_at=NOW - timedelta(days=age),
                    body="发票",
                    attachments=(NewAttachment("发票.pdf", content, "application/pdf"),),
                )
            ],
        )

    rule = new_rule(admins, department=org.hangzhou, keep_days=90)
    before = measure_rule(rule, now=NOW).preview
    assert before["attachments"] == 0
    with_file(chats["customer"], 120, b"%PDF" + b"x" * 996)  # old enough: taken
    with_file(chats["group"], 10, b"%PDF" + b"y" * 4996)  # too recent: kept
    preview = measure_rule(rule, now=NOW).preview
    assert preview["attachments"] == 1
    body_bytes = len("发票".encode())
    assert preview["bytes"] == before["bytes"] + body_bytes + 1000
    (hangzhou,) = preview["by_department"]
    assert (hangzhou["attachments"], hangzhou["bytes"]) == (1, preview["bytes"])

    answer = api_for(admins.admin).post(f"/api/v1/retention-rules/{rule.pk}/preview/").json()
    assert answer["last_preview"]["attachments"] == 1
    assert answer["last_preview"]["bytes"] == preview["bytes"]
    do_preview_rule(rule, acting_user=admins.admin)
    client.force_login(admins.admin)
    with translation.override("zh-hans"):
        page = client.get(reverse("rule", args=[rule.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    html = page.content.decode()
    assert 'data-testid="rule-preview-attachments">1</strong>' in html
    assert "含附件" in html
