"""A populated company for tests that walk every endpoint: the access matrix, the
mass-assignment and limit tests, and the API fuzzer.

It extends the shared cast (``tests/conftest.py``) with one object of every kind that an
endpoint can address, on both sides of the tree, so that every object route can be tried
by a member who may see the object and by one from another department:

- East (manager; staff in the Hangzhou store): ``pending`` (a batch the staff member
  filed, waiting for the manager), ``personal`` (the staff member's own deletion),
  ``binned`` (a batch that ran: in the recycle bin), ``hold`` (on the warehouse chat),
  ``export`` (a ready export of ``binned``, asked for by the staff member) and
  ``chat_export`` (the staff member's export of the Hangzhou customer chat).
- South (manager2; staff2 in Shenzhen): ``south_pending``, a batch staff2 filed.
- Company-wide: ``server`` (a server-side wipe the director filed), ``rule`` (a draft
  retention rule with its dry run), ``proposed_rule`` (proposed by ``admin_b``, awaiting a
  second admin), ``notification`` (the manager's, about ``pending``).
- Oversight: ``review`` (the auditor's open review of last quarter's recycle bin),
  ``audit_export`` (a ready CSV of the audit log, asked for by the auditor), ``locked_out``
  (a username locked out of signing in, from an address of its own).
- Credentials: ``token`` (an API token of the staff member's; the matrix gives every
  role a token of its own besides), and an authenticator for the staff member, for an
  admin to reset.

Nothing here is enqueued: exports are built and runs worked in the test's own thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from axes.models import AccessAttempt
from django.utils import timezone

from audit.models import AuditEvent, AuditExport, ChainVerification, ComplianceReview
from audit.selectors import EventFilter
from retention.access.signin import failure_limit
from retention.access.tokens import do_issue_token
from retention.exports.build import build_export_job
from retention.exports.service import do_request_export
from retention.governance.decisions import do_approve_step
from retention.governance.protection import do_place_hold
from retention.models import (
    ApiToken,
    Conversation,
    DeletionRequest,
    Export,
    Hold,
    Notification,
    RequestMethod,
    RetentionRule,
)
from retention.models.roles import Role
from retention.reports.audit_log_exports import build_audit_export
from retention.reports.periods import Quarter
from retention.reports.reviews import do_open_recycle_bin_review
from retention.rules.actions import do_create_rule, do_preview_rule, do_propose
from retention.wipes import runner, schedule
from tests.conftest import (
    Cast,
    Org,
    enrol_authenticator,
    file_request,
    make_chat,
    make_member,
    sign_in_streak,
)


@dataclass
class World:
    org: Org
    cast: Cast
    chats: dict[str, Conversation]
    pending: DeletionRequest
    south_pending: DeletionRequest
    personal: DeletionRequest
    binned: DeletionRequest
    server: DeletionRequest
    hold: Hold
    rule: RetentionRule
    proposed_rule: RetentionRule
    export: Export
    chat_export: Export
    notification: Notification
    review: ComplianceReview
    audit_export: AuditExport
    token: ApiToken
    locked_out: str


def warehouse_hold(cast: Cast, chats: dict[str, Conversation]) -> Hold:
    """The security officer's legal hold on the warehouse chat (East)."""
    return do_place_hold(
        acting_user=cast.security,
        kind="legal",
        reason="诉讼保全",
        conversations=[chats["warehouse"]],
        departments=[],
        verified_second_factor=True,
    )


def build_world(org: Org, cast: Cast, chats: dict[str, Conversation]) -> World:
    cast.admin_b = make_member("admin_b", org.company, Role.ADMIN)  # a second admin
    sign_in_streak(vars(cast).values())
    chats = {
        **chats,
        "hangzhou_group": make_chat(org.hangzhou, [cast.staff], ["店内群消息", "盘点安排"]),
    }

    binned = file_request(
        cast.staff, RequestMethod.BATCH, conversations=[chats["hangzhou_group"].pk]
    )
    binned = do_approve_step(binned, acting_user=cast.manager, verified_second_factor=True)
    started = schedule.start_request(binned.pk, now=binned.scheduled_for)
    runner.run_execution(started.pk)
    binned.refresh_from_db()

    export = do_request_export(binned, fmt="jsonl", acting_user=cast.staff)
    build_export_job(export.pk)
    export.refresh_from_db()
    chat_export = do_request_export(chats["hangzhou"], fmt="csv", acting_user=cast.staff)

    pending = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    south_pending = file_request(cast.staff2, RequestMethod.BATCH, departments=[org.shenzhen.pk])
    personal = file_request(
        cast.staff, RequestMethod.PERSONAL, conversations=[chats["hangzhou"].pk]
    )
    server = file_request(cast.director, RequestMethod.SERVER, departments=[org.south.pk])
    hold = warehouse_hold(cast, chats)
    rule = do_create_rule(
        acting_user=cast.admin,
        name="客服会话保留 30 天",
        keep_days=30,
        action="bin",
        department=org.hangzhou,
        kind="customer",
        excluded=[],
    )
    do_preview_rule(rule, acting_user=cast.admin)  # a dry run: it may now be proposed
    proposed_rule = do_create_rule(
        acting_user=cast.admin_b,
        name="群聊保留一年",
        keep_days=365,
        action="bin",
        kind="group",
        excluded=[],
    )
    do_preview_rule(proposed_rule, acting_user=cast.admin_b)
    do_propose(proposed_rule, acting_user=cast.admin_b)  # awaits a second admin
    notification = Notification.objects.filter(recipient=cast.manager, request=pending).first()
    assert notification is not None
    review = do_open_recycle_bin_review(  # last quarter's: ended, so it can be decided
        acting_user=cast.auditor, quarter=str(Quarter.of(timezone.now()).previous())
    )
    head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    audit_export = AuditExport.objects.create(
        requested_by=cast.auditor, filters=EventFilter(up_to_id=head).to_json(), max_event_id=head
    )
    audit_export = build_audit_export(audit_export.pk)
    token = do_issue_token(
        member=cast.staff, name="nightly", second_factor_verified=False, request=None, via="tests"
    ).token
    enrol_authenticator(cast.staff)  # an authenticator an admin may reset
    AccessAttempt.objects.create(
        username="mallory",
        ip_address="203.0.113.9",
        user_agent="",
        http_accept="",
        path_info="/signin/",
        get_data="",
        post_data="",
        failures_since_start=failure_limit(),
    )
    return World(
        org=org,
        cast=cast,
        chats=chats,
        pending=pending,
        south_pending=south_pending,
        personal=personal,
        binned=binned,
        server=server,
        hold=hold,
        rule=rule,
        proposed_rule=proposed_rule,
        export=export,
        chat_export=chat_export,
        notification=notification,
        review=review,
        audit_export=audit_export,
        token=token,
        locked_out="mallory",
    )


def state() -> dict:
    """What a refused or ignored call must leave as it was: every row a client could try
    to change, and the audit log's length (every action writes to it). Take it after
    making the API clients: issuing their tokens is audited too."""
    from retention.models import (
        ApprovalStep,
        ConversationHide,
        Member,
        Message,
        Policy,
        QuotaGrant,
    )

    return {
        "requests": list(
            DeletionRequest.objects.order_by("pk").values_list(
                "pk", "status", "requester_id", "method", "scope", "reason", "scheduled_for"
            )
        ),
        "steps": list(
            ApprovalStep.objects.order_by("pk").values_list("pk", "status", "approver_id", "role")
        ),
        "members": list(
            Member.objects.order_by("pk").values_list(
                "pk", "department_id", "is_active", "is_staff", "is_superuser"
            )
        ),
        "roles": list(
            Member.groups.through.objects.order_by("pk").values_list("member_id", "group_id")
        ),
        "holds": list(Hold.objects.order_by("pk").values_list("pk", "released_at", "reason")),
        "rules": list(
            RetentionRule.objects.order_by("pk").values_list(
                "pk", "status", "keep_days", "name", "department_id", "kind"
            )
        ),
        "policies": list(Policy.objects.order_by("key").values_list("key", "value")),
        "grants": QuotaGrant.objects.count(),
        "exports": list(Export.objects.order_by("pk").values_list("pk", "status", "format")),
        "hides": ConversationHide.objects.count(),
        "unread": Notification.objects.filter(read_at__isnull=True).count(),
        "conversations": Conversation.objects.count(),
        "messages": Message.all_rows.count(),
        "tokens": [
            (pk, member, revoked is not None, verified)
            for pk, member, revoked, verified in ApiToken.objects.order_by("pk").values_list(
                "pk", "member_id", "revoked_at", "second_factor_verified"
            )
        ],
        "reviews": list(
            ComplianceReview.objects.order_by("pk").values_list(
                "pk", "status", "reviewer_id", "finding"
            )
        ),
        "lockouts": AccessAttempt.objects.count(),
        "verifications": ChainVerification.objects.count(),
        "audit": AuditEvent.objects.count(),
    }
