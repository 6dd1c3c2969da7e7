"""Retention rules: precedence (holds, longest keep), the dry run is what runs, two admins
and a grace period before a rule bites, and job health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone, translation

from audit.events import EventType
from audit.models import AuditEvent, ComplianceReview, ReviewKind
from retention.errors import Conflict
from retention.governance.policy_changes import do_update_policies
from retention.governance.protection import do_place_hold
from retention.models import (
    Conversation,
    ConversationKind,
    DeletionRequest,
    ExecutionStatus,
    HoldKind,
    Message,
    Notification,
    RequestMethod,
    RequestStatus,
    RetentionRule,
    RuleAction,
    RuleStatus,
    Tombstone,
    TombstoneState,
)
from retention.models.roles import Role
from retention.records.store import NewMessage, add_messages
from retention.rules.actions import (
    do_approve_rule,
    do_create_rule,
    do_preview_rule,
    do_propose,
    do_relax_rule,
)
from retention.rules.matching import (
    effective_policy,
    governed_conversations,
    in_force_keep_days,
    measure_rule,
)
from retention.rules.runs import check_rule_health, run_due_rules, unhealthy_rules
from retention.wipes import runner, schedule
from tests.conftest import make_chat, make_member, sign_in_verified
from tests.governance.test_api_requests import api_for

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def aged(conversation, ages_in_days: list[int]):
    """Messages sent ``age`` days ago, oldest first."""
    return add_messages(
        conversation,
        [
            NewMessage(
                sender=None,
                sender_name="客户",
                sent_at=NOW - timedelta(days=age),
                body=f"{age}天前的消息",
            )
            for age in ages_in_days
        ],
    )


@pytest.fixture
def admins(cast, org):
    cast.admin_b = make_member("admin_b", org.company, Role.ADMIN)
    # Runs keep to the execution window like any deletion; these tests run at any hour.
    do_update_policies(
        actor=cast.admin, changes={"execution_window": None}, verified_second_factor=True
    )
    return cast


@pytest.fixture
def chats(admins, org):
    customer = make_chat(org.hangzhou, [admins.staff], [], kind=ConversationKind.CUSTOMER)
    group = make_chat(org.hangzhou, [admins.staff], [], kind=ConversationKind.GROUP)
    south = make_chat(org.shenzhen, [admins.staff2], [], kind=ConversationKind.CUSTOMER)
    for chat in (customer, group, south):
        aged(chat, [400, 200, 100, 40, 5])
    return {"customer": customer, "group": group, "south": south}


def enabled(rule: RetentionRule, admins, *, now=None) -> RetentionRule:
    """Dry run, propose (first admin), approve (second admin), grace over."""
    do_preview_rule(rule, acting_user=admins.admin)
    do_propose(rule, acting_user=admins.admin)
    rule = do_approve_rule(rule, acting_user=admins.admin_b, verified_second_factor=True)
    RetentionRule.objects.filter(pk=rule.pk).update(effective_from=now or NOW)
    rule.refresh_from_db()
    return rule


def new_rule(admins, **fields) -> RetentionRule:
    defaults = {"name": "客服聊天保留", "keep_days": 90, "action": RuleAction.BIN}
    return do_create_rule(acting_user=admins.admin, **{**defaults, **fields})


def ages_left(conversation) -> list[int]:
    return sorted(
        round((NOW - sent).total_seconds() / 86400)
        for sent in Message.objects.filter(conversation=conversation).values_list(
            "sent_at", flat=True
        )
    )


def run_rules(now=None) -> list[DeletionRequest]:
    requests = [DeletionRequest.objects.get(pk=pk) for pk in run_due_rules(now=now or NOW)]
    for request in requests:
        started = schedule.start_request(request.pk, now=request.scheduled_for)
        runner.run_execution(started.pk)
    return requests


def test_only_admins_manage_rules_and_bad_input_is_refused(admins, org):
    with pytest.raises(PermissionDenied):
        do_create_rule(acting_user=admins.manager, name="x", keep_days=30, action=RuleAction.BIN)
    for keep_days in (0, -3, "30", 40000):
        with pytest.raises(ValidationError) as error:
            new_rule(admins, keep_days=keep_days)
        assert "keep_days" in error.value.message_dict
    with pytest.raises(ValidationError):
        new_rule(admins, action="shred")
    assert not RetentionRule.objects.exists()


def test_a_draft_rule_does_nothing(admins, org, chats):
    new_rule(admins, department=org.hangzhou)
    assert run_rules() == []
    assert ages_left(chats["customer"]) == [5, 40, 100, 200, 400]


def test_the_run_takes_exactly_what_its_dry_run_shows(admins, org, chats):
    rule = enabled(new_rule(admins, department=org.hangzhou, keep_days=90), admins)
    preview = measure_rule(rule, now=NOW).preview
    assert preview["messages"] == 6  # 400, 200 and 100 days old, in two Hangzhou chats
    assert preview["by_department"][0]["name"] == "Hangzhou store"

    (request,) = run_rules()

    assert request.method == RequestMethod.RETENTION
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    assert request.executions.get().done_messages == preview["messages"]
    assert ages_left(chats["customer"]) == ages_left(chats["group"]) == [5, 40]
    assert ages_left(chats["south"]) == [5, 40, 100, 200, 400]  # outside the subtree
    # Moved to the recycle bin, restorable for the policy's days.
    assert set(Tombstone.objects.values_list("state", flat=True)) == {TombstoneState.BINNED}
    ran = AuditEvent.objects.get(event_type=EventType.RULE_RUN)
    assert ran.details["messages"] == 6 and ran.details["request"] == request.pk
    # A doubled cron tick on the same day does nothing more.
    assert run_rules(NOW + timedelta(hours=1)) == []


def test_a_hold_beats_every_rule(admins, org, chats):
    rule = enabled(new_rule(admins, department=org.hangzhou), admins)
    do_place_hold(
        acting_user=admins.security,
        kind=HoldKind.LEGAL,
        reason="诉讼保全",
        conversations=[],
        departments=[org.hangzhou],
        verified_second_factor=True,
    )
    assert measure_rule(rule, now=NOW).preview["excluded"]["held"]["messages"] == 6
    run_rules()
    assert ages_left(chats["customer"]) == [5, 40, 100, 200, 400]
    effective = effective_policy(chats["customer"])
    assert effective.held and effective.rule is None


def test_a_rule_leaves_protected_conversations_and_its_dry_run_says_so(client, admins, org, chats):
    Conversation.objects.filter(pk=chats["group"].pk).update(is_protected=True)
    rule = enabled(new_rule(admins, department=org.hangzhou, keep_days=90), admins)
    preview = measure_rule(rule, now=NOW).preview
    assert preview["messages"] == 3  # the customer chat's 400, 200 and 100 days
    assert preview["excluded"]["protected"] == {"conversations": 1, "messages": 3}

    run_rules()
    assert ages_left(chats["group"]) == [5, 40, 100, 200, 400]
    assert ages_left(chats["customer"]) == [5, 40]
    chats["group"].refresh_from_db()
    with translation.override("en"):
        effective = effective_policy(chats["group"])
    assert effective.rule is None and effective.matching == [rule]
    assert "Protected" in effective.why
    do_preview_rule(rule, acting_user=admins.admin)
    client.force_login(admins.admin)
    page = client.get(reverse("rule", args=[rule.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert 'data-testid="rule-leaves-protected"' in page.content.decode()


def test_the_longest_keep_wins_where_rules_overlap(admins, org, chats):
    short = enabled(new_rule(admins, name="公司 30 天", keep_days=30), admins)
    enabled(
        new_rule(
            admins,
            name="客服 1 年",
            keep_days=365,
            kind=ConversationKind.CUSTOMER,
            action=RuleAction.PURGE,
        ),
        admins,
    )
    effective = effective_policy(chats["customer"])
    assert effective.rule.name == "客服 1 年" and effective.keep_days == 365
    assert len(effective.matching) == 2
    assert effective_policy(chats["group"]).rule == short

    run_rules()
    assert ages_left(chats["group"]) == [5]  # governed by the 30-day rule
    assert ages_left(chats["customer"]) == [5, 40, 100, 200]  # only the 400-day one goes
    assert ages_left(chats["south"]) == [5, 40, 100, 200]


def test_a_company_wide_rule_that_keeps_longer_beats_a_narrow_one(admins, org, chats):
    enabled(new_rule(admins, name="公司 1 年", keep_days=365), admins)
    narrow = enabled(
        new_rule(admins, name="杭州 30 天", department=org.hangzhou, keep_days=30), admins
    )
    assert effective_policy(chats["customer"]).rule.name == "公司 1 年"
    assert not governed_conversations(narrow).exists()
    run_rules()
    assert ages_left(chats["customer"]) == [5, 40, 100, 200]  # only the 400-day one goes
    assert ages_left(chats["group"]) == [5, 40, 100, 200]


def test_a_shortening_in_force_hands_the_overlap_to_the_longer_keep(admins, org, chats):
    """After its grace a shortened rule ranks by its new keep, in every comparison: the
    overlap goes to the rule that now keeps longer, never to neither."""
    hangzhou = enabled(new_rule(admins, department=org.hangzhou, keep_days=300), admins)
    do_preview_rule(hangzhou, acting_user=admins.admin)
    do_propose(hangzhou, acting_user=admins.admin, keep_days=30)
    do_approve_rule(hangzhou, acting_user=admins.admin_b, verified_second_factor=True)
    company = enabled(new_rule(admins, name="公司 100 天", keep_days=100), admins)
    later = NOW + timedelta(days=9)  # the shortening's grace is over
    hangzhou.refresh_from_db()
    assert in_force_keep_days(hangzhou, later) == 30

    assert not governed_conversations(hangzhou, now=later).exists()
    assert set(governed_conversations(company, now=later)) == set(chats.values())
    effective = effective_policy(chats["customer"], now=later)
    assert effective.rule == company and effective.keep_days == 100
    # Still in grace, the longer keep it had holds the overlap.
    assert effective_policy(chats["customer"], now=NOW).rule == hangzhou


def test_the_effective_policy_costs_the_same_few_queries_for_any_number_of_rules(
    admins, org, chats, django_assert_max_num_queries
):
    for days in range(30, 130, 10):
        enabled(
            new_rule(admins, name=f"杭州 {days} 天", department=org.hangzhou, keep_days=days),
            admins,
        )
    with django_assert_max_num_queries(4):
        effective = effective_policy(chats["customer"])
    assert effective.keep_days == 120 and len(effective.matching) == 10


def test_exclusions_leave_a_conversation_to_nobody(admins, org, chats):
    rule = do_create_rule(
        acting_user=admins.admin,
        name="杭州 90 天",
        keep_days=90,
        action=RuleAction.BIN,
        department=org.hangzhou,
        excluded=[chats["group"]],
    )
    enabled(rule, admins)
    run_rules()
    assert ages_left(chats["group"]) == [5, 40, 100, 200, 400]
    assert ages_left(chats["customer"]) == [5, 40]
    assert effective_policy(chats["group"]).rule is None


def test_enabling_needs_a_dry_run_and_a_second_admin(admins, org, chats):
    rule = new_rule(admins, department=org.hangzhou)
    with pytest.raises(Conflict):
        do_propose(rule, acting_user=admins.admin)  # no dry run yet
    do_preview_rule(rule, acting_user=admins.admin)
    do_propose(rule, acting_user=admins.admin)
    assert Notification.objects.filter(recipient=admins.admin_b, verb="rule_needs_approval")
    with pytest.raises(PermissionDenied):
        do_approve_rule(rule, acting_user=admins.admin, verified_second_factor=True)  # the proposer
    with pytest.raises(PermissionDenied):
        do_approve_rule(rule, acting_user=admins.manager, verified_second_factor=True)
    approved = do_approve_rule(rule, acting_user=admins.admin_b, verified_second_factor=True)
    assert approved.status == RuleStatus.SCHEDULED
    assert approved.effective_from >= NOW + timedelta(days=7)  # the grace period
    # Members of the affected conversations are told when it bites.
    told = Notification.objects.filter(verb="rule_scheduled").values_list(
        "recipient__username", flat=True
    )
    assert set(told) == {"staff"}

    assert run_rules(NOW + timedelta(days=6)) == []  # still in grace
    assert ages_left(chats["customer"]) == [5, 40, 100, 200, 400]
    run_rules(NOW + timedelta(days=8))
    rule.refresh_from_db()
    assert rule.status == RuleStatus.ACTIVE
    assert len(ages_left(chats["customer"])) == 2


def test_shortening_needs_approval_and_bites_after_grace_but_lengthening_is_immediate(
    admins, org, chats
):
    rule = enabled(new_rule(admins, department=org.hangzhou, keep_days=300), admins)
    do_preview_rule(rule, acting_user=admins.admin)
    with pytest.raises(ValidationError):
        do_propose(rule, acting_user=admins.admin, keep_days=400)  # not shorter
    do_propose(rule, acting_user=admins.admin, keep_days=30)
    assert in_force_keep_days(RetentionRule.objects.get(pk=rule.pk), NOW) == 300
    do_approve_rule(rule, acting_user=admins.admin_b, verified_second_factor=True)
    rule.refresh_from_db()
    assert rule.next_keep_days == 30 and in_force_keep_days(rule, NOW) == 300

    run_rules(NOW + timedelta(days=1))  # in grace: the longer keep still applies
    assert ages_left(chats["customer"]) == [5, 40, 100, 200]
    run_rules(NOW + timedelta(days=9))
    assert ages_left(chats["customer"]) == [5]

    relaxed = do_relax_rule(
        rule, acting_user=admins.admin, keep_days=500, verified_second_factor=True
    )
    assert relaxed.keep_days == 500 and relaxed.status == RuleStatus.ACTIVE
    with pytest.raises(ValidationError):
        do_relax_rule(rule, acting_user=admins.admin, keep_days=10, verified_second_factor=True)
    disabled = do_relax_rule(
        rule, acting_user=admins.admin, disable=True, verified_second_factor=True
    )
    assert disabled.status == RuleStatus.DISABLED
    assert AuditEvent.objects.filter(event_type=EventType.RULE_RELAXED).count() == 2


def test_a_purging_rule_removes_rows_for_real(admins, org, chats):
    enabled(new_rule(admins, department=org.shenzhen, action=RuleAction.PURGE), admins)
    run_rules()
    assert ages_left(chats["south"]) == [5, 40]
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(minutes=1))
    assert runner.run_execution(purge_id).status == ExecutionStatus.COMPLETED
    assert Message.all_rows.filter(conversation=chats["south"]).count() == 2
    # A retention purge opens a compliance review of its own kind.
    review = ComplianceReview.objects.get()
    assert review.kind == ReviewKind.RETENTION_PURGE and review.summary["deleted_messages"] == 3


def test_failed_and_missing_runs_show_as_unhealthy(admins, org, chats, monkeypatch):
    rule = enabled(new_rule(admins, department=org.hangzhou), admins, now=NOW - timedelta(days=3))
    assert [p["rule"] for p in unhealthy_rules(now=NOW)] == [rule]  # never ran

    def broken(*args, **kwargs):
        raise RuntimeError("statement timeout")

    monkeypatch.setattr("retention.rules.runs.measure_rule", broken)
    assert run_due_rules(now=NOW) == []
    (problem,) = unhealthy_rules(now=NOW)
    assert "statement timeout" in problem["problem"]
    assert check_rule_health(now=NOW) == 1
    assert Notification.objects.filter(recipient=admins.admin, verb="rules_unhealthy").exists()
    assert AuditEvent.objects.filter(event_type=EventType.RULE_RUN_FAILED).count() == 1


# --- the API ---------------------------------------------------------------------------------


def test_rules_over_the_api_from_draft_to_scheduled(admins, org, chats):
    first, second = api_for(admins.admin), api_for(admins.admin_b)
    created = first.post(
        "/api/v1/retention-rules/",
        {"name": "杭州 90 天", "keep_days": 90, "action": "bin", "department": org.hangzhou.pk},
        format="json",
    )
    assert created.status_code == 201, created.json()
    rule_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    refused = first.post(f"/api/v1/retention-rules/{rule_id}/propose/", {}, format="json")
    assert refused.status_code == 409  # no dry run yet
    preview = first.post(f"/api/v1/retention-rules/{rule_id}/preview/").json()
    assert preview["last_preview"]["messages"] == 6
    assert (
        first.post(f"/api/v1/retention-rules/{rule_id}/propose/", {}, format="json").json()[
            "status"
        ]
        == "pending"
    )
    assert first.post(f"/api/v1/retention-rules/{rule_id}/approve/").status_code == 403
    approved = second.post(f"/api/v1/retention-rules/{rule_id}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "scheduled"
    policy = api_for(admins.staff).get(
        f"/api/v1/conversations/{chats['customer'].pk}/effective-policy/"
    )
    assert policy.json()["rule"] == rule_id and policy.json()["keep_days"] == 90


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "keep_days": 0, "action": "bin"}, "keep_days"),
        ({"name": "x", "keep_days": "ninety", "action": "bin"}, "keep_days"),
        ({"name": "x", "keep_days": 30, "action": "shred"}, "action"),
        ({"name": "x", "keep_days": 30, "action": "bin", "department": 999999}, "department"),
        ({"name": "x", "keep_days": 30, "action": "bin", "kind": "sms"}, "kind"),
        ({"keep_days": 30, "action": "bin"}, "name"),
    ],
)
def test_bad_rule_input_is_a_400_and_creates_nothing(admins, body, field):
    response = api_for(admins.admin).post("/api/v1/retention-rules/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not RetentionRule.objects.exists()


def test_who_may_see_and_manage_rules(admins, org, chats):
    rule = new_rule(admins, department=org.hangzhou)
    body = {"name": "x", "keep_days": 30, "action": "bin"}
    for member in (admins.auditor, admins.security):
        client = api_for(member)
        assert client.get("/api/v1/retention-rules/").status_code == 200
        assert client.post("/api/v1/retention-rules/", body, format="json").status_code == 403
        assert client.post(f"/api/v1/retention-rules/{rule.pk}/preview/").status_code == 403
    for member in (admins.manager, admins.staff):
        client = api_for(member)
        assert client.get("/api/v1/retention-rules/").status_code == 403
        # Refused before the body is read: no 400 that would tell which ids exist.
        probe = {**body, "department": 999999}
        assert client.post("/api/v1/retention-rules/", probe, format="json").status_code == 403
        assert client.get(f"/api/v1/retention-rules/{rule.pk}/").status_code == 403
    assert api_for().get("/api/v1/retention-rules/").status_code in (401, 403)
    outsider = api_for(admins.manager2)
    path = f"/api/v1/conversations/{chats['customer'].pk}/effective-policy/"
    assert outsider.get(path).status_code == 404


# --- the pages -------------------------------------------------------------------------------


def test_two_admins_enable_a_rule_on_its_pages(client, admins, org, chats):
    sign_in_verified(client, admins.admin)
    bad = client.post(
        reverse("rule-create"),
        {"name": "杭州", "keep_days": "0", "action": "bin", "excluded": "12, abc"},
    )
    assert bad.status_code == 400
    page = bad.content.decode()
    assert "form-error" in page and not RetentionRule.objects.exists()

    created = client.post(
        reverse("rule-create"),
        {
            "name": "杭州 90 天",
            "keep_days": "90",
            "action": "bin",
            "department": org.hangzhou.pk,
            "excluded": str(chats["group"].pk),
        },
    )
    rule = RetentionRule.objects.get()
    assert created.url == reverse("rule", args=[rule.pk])
    assert list(rule.excluded_conversations.all()) == [chats["group"]]
    client.post(reverse("rule-action", args=[rule.pk, "preview"]))
    page = client.get(reverse("rule", args=[rule.pk])).content.decode()
    assert 'data-testid="rule-preview-messages">3<' in page  # the customer chat only
    client.post(reverse("rule-action", args=[rule.pk, "propose"]))
    page = client.get(reverse("rule", args=[rule.pk])).content.decode()
    assert 'data-testid="rule-approve"' not in page  # not for the proposer

    sign_in_verified(client, admins.admin_b)  # approving needs the second factor
    client.post(reverse("rule-action", args=[rule.pk, "approve"]))
    rule.refresh_from_db()
    assert rule.status == RuleStatus.SCHEDULED and rule.approved_by == admins.admin_b


def test_readers_read_rules_and_others_are_refused(client, admins, org, chats):
    rule = new_rule(admins, department=org.hangzhou)
    client.force_login(admins.auditor)
    page = client.get(reverse("rules"))
    assert page.status_code == 200 and 'data-testid="rule-form"' not in page.content.decode()
    assert client.get(reverse("rule", args=[rule.pk])).status_code == 200
    assert client.post(reverse("rule-action", args=[rule.pk, "preview"])).status_code == 403
    assert client.post(reverse("rule-create"), {"name": "x"}).status_code == 403
    client.force_login(admins.manager)
    assert client.get(reverse("rules")).status_code == 403
    assert client.get(reverse("rule", args=[rule.pk])).status_code == 403


def test_a_conversation_page_shows_its_effective_policy(client, admins, org, chats):
    enabled(new_rule(admins, name="杭州 90 天", department=org.hangzhou), admins)
    client.force_login(admins.staff)
    page = client.get(reverse("conversation", args=[chats["customer"].pk])).content.decode()
    assert 'data-testid="effective-policy"' in page and "杭州 90 天" in page
    page = client.get(reverse("conversation", args=[chats["south"].pk]))
    assert page.status_code == 404  # not theirs to see


def test_the_admin_dashboard_warns_of_a_rule_that_stopped(client, admins, org, chats):
    rule = enabled(new_rule(admins, department=org.hangzhou), admins, now=NOW - timedelta(days=3))
    client.force_login(admins.admin)
    page = client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="dashboard-unhealthy-rules"' in page and rule.name in page
    client.force_login(admins.manager)
    assert "dashboard-unhealthy-rules" not in client.get(reverse("dashboard")).content.decode()


def test_an_archiving_rule_exports_first_then_purges(admins, org, chats):
    from retention.exports.build import build_export
    from retention.models import Export, ExportStatus

    enabled(new_rule(admins, department=org.shenzhen, action=RuleAction.ARCHIVE), admins)
    (request_id,) = run_due_rules(now=NOW)
    request = DeletionRequest.objects.get(pk=request_id)
    assert schedule.start_request(request.pk, now=NOW) is None  # waits for its evidence
    export = Export.objects.get(request=request)
    assert export.status == ExportStatus.QUEUED
    assert ages_left(chats["south"]) == [5, 40, 100, 200, 400]

    assert build_export(export.pk).messages == 3
    started = schedule.start_request(request.pk, now=NOW)
    runner.run_execution(started.pk)
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(minutes=1))
    runner.run_execution(purge_id)
    assert Message.all_rows.filter(conversation=chats["south"]).count() == 2


def test_a_rule_run_has_a_request_page_and_api_view(client, admins, org, chats):
    enabled(new_rule(admins, name="杭州 90 天", department=org.hangzhou), admins)
    (request,) = run_rules()
    client.force_login(admins.admin)
    page = client.get(reverse("request", args=[request.pk]))
    assert page.status_code == 200
    assert "杭州 90 天" in page.content.decode()
    detail = api_for(admins.admin).get(f"/api/v1/requests/{request.pk}/")
    assert detail.status_code == 200
    assert detail.json()["method"] == "retention"
    assert detail.json()["progress"]["done_messages"] == 6
    listed = client.get(reverse("requests") + "?method=retention")
    assert listed.status_code == 200 and f"#{request.pk}" in listed.content.decode()


def test_unknown_rule_actions_are_not_found(client, admins, org):
    rule = new_rule(admins, department=org.hangzhou)
    client.force_login(admins.admin)
    assert client.post(f"/rules/{rule.pk}/frobnicate/").status_code == 404
    assert client.get(f"/rules/{rule.pk}/approve/").status_code == 405


def test_a_rule_in_its_grace_period_says_when_it_bites(client, admins, org, chats):
    rule = new_rule(admins, department=org.hangzhou)
    do_preview_rule(rule, acting_user=admins.admin)
    do_propose(rule, acting_user=admins.admin)
    do_approve_rule(rule, acting_user=admins.admin_b, verified_second_factor=True)
    client.force_login(admins.staff)
    page = client.get(reverse("conversation", args=[chats["customer"].pk])).content.decode()
    assert 'data-testid="effective-from"' in page


def test_a_proposed_rule_waits_in_the_other_admins_inbox(client, admins, org, chats):
    rule = new_rule(admins, name="杭州 90 天", department=org.hangzhou)
    do_preview_rule(rule, acting_user=admins.admin)
    do_propose(rule, acting_user=admins.admin)
    client.force_login(admins.admin_b)
    page = client.get(reverse("approvals")).content.decode()
    assert 'data-testid="rules-inbox"' in page and "杭州 90 天" in page
    client.force_login(admins.admin)  # the proposer has nothing to decide
    assert 'data-testid="rules-inbox"' not in client.get(reverse("approvals")).content.decode()


def test_approvers_see_the_dry_run_of_the_keep_that_was_proposed(admins, org, chats):
    rule = enabled(new_rule(admins, department=org.hangzhou, keep_days=300), admins)
    do_preview_rule(rule, acting_user=admins.admin)
    assert RetentionRule.objects.get(pk=rule.pk).last_preview["messages"] == 2  # 400 days
    do_propose(rule, acting_user=admins.admin, keep_days=30)
    preview = RetentionRule.objects.get(pk=rule.pk).last_preview
    assert (preview["keep_days"], preview["messages"]) == (30, 8)
    draft = new_rule(admins, name="深圳", department=org.shenzhen, keep_days=1000)
    do_preview_rule(draft, acting_user=admins.admin)
    do_propose(draft, acting_user=admins.admin, keep_days=1)
    assert RetentionRule.objects.get(pk=draft.pk).last_preview["messages"] == 5


def test_disabling_a_rule_cancels_its_run_not_yet_started(admins, org, chats):
    rule = enabled(new_rule(admins, department=org.hangzhou), admins)
    (request_id,) = run_due_rules(now=NOW)
    # Its run is filed; the next night files no second one while it waits.
    assert run_due_rules(now=NOW + timedelta(days=1)) == []
    do_relax_rule(rule, acting_user=admins.admin, disable=True, verified_second_factor=True)
    request = DeletionRequest.objects.get(pk=request_id)
    assert request.status == RequestStatus.CANCELLED
    assert schedule.start_request(request.pk, now=NOW) is None
    assert ages_left(chats["customer"]) == [5, 40, 100, 200, 400]
