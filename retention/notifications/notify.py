"""In-app notifications and e-mail about deletion requests, and marking them read.

Called inside the transaction of the action that caused them; the e-mails go out from a
queue job after that transaction commits, so a rolled-back action sends nothing.
"""

from __future__ import annotations

from datetime import datetime

import django_rq
from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from retention.access.predicates import eligible_approvers
from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Member,
    Notification,
    Participant,
    RequestStatus,
)
from retention.models.roles import Role

STEP_AWAITS = "step_awaits"
STEP_APPROVED = "step_approved"
APPROVED = "approved"
REJECTED = "rejected"
SCHEDULED = "scheduled"
EXECUTED = "executed"
FAILED = "failed"
RESTORED = "restored"
AWAITS_EVIDENCE = "awaits_evidence"
RULE_NEEDS_APPROVAL = "rule_needs_approval"
RULE_SCHEDULED = "rule_scheduled"
RULES_UNHEALTHY = "rules_unhealthy"
REVIEW_FLAGGED = "review_flagged"


def _send(
    recipients, verb: str, request: DeletionRequest | None, params: dict | None = None
) -> None:
    rows = Notification.objects.bulk_create(
        [
            Notification(recipient=m, verb=verb, request=request, params=params or {})
            for m in {m.pk: m for m in recipients}.values()
        ],
        batch_size=1000,
    )
    ids = [n.pk for n in rows if n.pk is not None]
    if ids:
        transaction.on_commit(
            lambda: django_rq.get_queue("default").enqueue(send_notification_emails, ids)
        )


def step_awaits(request: DeletionRequest, step: ApprovalStep | None) -> None:
    """Everyone who may decide the request's current ``step`` hears that it waits."""
    if step is not None:
        params = {"step": step.order, "role": step.role}
        _send(eligible_approvers(step), STEP_AWAITS, request, params)


def decided(
    request: DeletionRequest,
    *,
    approved_step: ApprovalStep | None = None,
    rejected_step: ApprovalStep | None = None,
) -> None:
    if rejected_step is not None:
        _send([request.requester], REJECTED, request, {"reason": rejected_step.comment})
    elif request.status == RequestStatus.APPROVED:
        _send([request.requester], APPROVED, request, {})
    elif approved_step is not None:
        _send([request.requester], STEP_APPROVED, request, {"step": approved_step.order})


def scheduled(request: DeletionRequest) -> None:
    """Everyone taking part in an affected conversation hears when it will run."""
    members = Member.objects.filter(
        pk__in=Participant.objects.filter(
            conversation__in=request.targets.values("conversation")
        ).values("member")
    )
    _send(
        members,
        SCHEDULED,
        request,
        {"scheduled_for": request.scheduled_for.isoformat() if request.scheduled_for else None},
    )


def executed(request: DeletionRequest, execution) -> None:
    _send(
        [request.requester],
        EXECUTED,
        request,
        {"deleted": execution.done_messages, "held": execution.held_messages},
    )


def failed(request: DeletionRequest, reason: str) -> None:
    """The requester and every admin hear that a run gave up (or was refused), and why."""
    admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN)
    _send([request.requester, *admins], FAILED, request, {"reason": reason[:300]})


def awaits_evidence(request: DeletionRequest) -> None:
    _send([request.requester], AWAITS_EVIDENCE, request, {})


def rule_needs_approval(rule, admins) -> None:
    _send(admins, RULE_NEEDS_APPROVAL, None, {"rule": rule.pk, "name": rule.name})


def rule_scheduled(rule, members) -> None:
    """Members of conversations a rule will govern hear what it keeps and from when."""
    _send(
        members,
        RULE_SCHEDULED,
        None,
        {
            "rule": rule.pk,
            "name": rule.name,
            "keep_days": rule.next_keep_days or rule.keep_days,
            "from": (rule.next_keep_from or rule.effective_from).isoformat(),
        },
    )


def rules_unhealthy(rules, admins) -> None:
    _send(admins, RULES_UNHEALTHY, None, {"rules": [r.name for r in rules]})


def review_flagged(review, admins) -> None:
    _send(
        admins,
        REVIEW_FLAGGED,
        review.request,
        {
            "review": review.pk,
            "auditor": review.reviewer.username,
            "finding": review.finding,
            "period": review.period,
        },
    )


def do_mark_notifications_read(viewer: Member, ids: list[int] | None = None) -> int:
    """Mark the viewer's unread notifications (or only ``ids`` of them) read. Not audited:
    it changes nothing but the viewer's own inbox."""
    unread = Notification.objects.filter(recipient=viewer, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())


def text_of(notification: Notification) -> str:
    """The notice in the current language."""
    request_id = notification.request_id
    params = notification.params
    if notification.verb == STEP_AWAITS:
        return _("Deletion request #%(id)s awaits your decision.") % {"id": request_id}
    if notification.verb == STEP_APPROVED:
        return _("Step %(step)s of your deletion request #%(id)s was approved.") % {
            "step": params.get("step"),
            "id": request_id,
        }
    if notification.verb == APPROVED:
        return _("Your deletion request #%(id)s was approved.") % {"id": request_id}
    if notification.verb == REJECTED:
        return _("Your deletion request #%(id)s was rejected: %(reason)s") % {
            "id": request_id,
            "reason": params.get("reason", ""),
        }
    if notification.verb == SCHEDULED:
        when = params.get("scheduled_for")
        if when:
            when = timezone.localtime(datetime.fromisoformat(when)).strftime("%Y-%m-%d %H:%M")
        return _(
            "Records of a conversation you take part in will be deleted by request "
            "#%(id)s at %(when)s."
        ) % {"id": request_id, "when": when}
    if notification.verb == EXECUTED:
        return _(
            "Deletion request #%(id)s has run: %(deleted)s messages deleted, %(held)s kept "
            "because of a hold."
        ) % {"id": request_id, "deleted": params.get("deleted"), "held": params.get("held")}
    if notification.verb == FAILED:
        return _("Deletion request #%(id)s failed and was stopped: %(reason)s") % {
            "id": request_id,
            "reason": params.get("reason", ""),
        }
    if notification.verb == AWAITS_EVIDENCE:
        return _(
            "Deletion request #%(id)s has high-sensitivity records in scope: it runs only "
            "once an evidence export of it is ready. Export it from the request page."
        ) % {"id": request_id}
    if notification.verb == RULE_NEEDS_APPROVAL:
        return _("Retention rule “%(name)s” awaits a second admin's approval.") % {
            "name": params.get("name")
        }
    if notification.verb == RULE_SCHEDULED:
        when = params.get("from")
        if when:
            when = timezone.localtime(datetime.fromisoformat(when)).strftime("%Y-%m-%d")
        return _(
            "From %(when)s, retention rule “%(name)s” deletes records older than %(days)s "
            "days in conversations you take part in."
        ) % {"when": when, "name": params.get("name"), "days": params.get("keep_days")}
    if notification.verb == REVIEW_FLAGGED:
        if request_id is None:
            return _(
                "Auditor %(auditor)s flagged the recycle-bin review of %(period)s: %(finding)s"
            ) % {
                "auditor": params.get("auditor"),
                "period": params.get("period", ""),
                "finding": params.get("finding", ""),
            }
        return _(
            "Auditor %(auditor)s flagged the compliance review of deletion #%(id)s: %(finding)s"
        ) % {
            "auditor": params.get("auditor"),
            "id": request_id,
            "finding": params.get("finding", ""),
        }
    if notification.verb == RULES_UNHEALTHY:
        return _("Retention rules need attention: %(names)s") % {
            "names": ", ".join(params.get("rules", []))
        }
    return notification.verb


def send_notification_emails(notification_ids: list[int]) -> int:
    """Queue job: e-mail each notification to its recipient (members without an address
    get the in-app notice only)."""
    messages = []
    with translation.override(settings.LANGUAGE_CODE):
        for n in Notification.objects.filter(pk__in=notification_ids).select_related("recipient"):
            if not n.recipient.email:
                continue
            body = text_of(n)
            subject = f"[{_('Qingli')}] {body[:60]}"
            messages.append((subject, body, settings.DEFAULT_FROM_EMAIL, [n.recipient.email]))
    return send_mass_mail(messages, fail_silently=False) if messages else 0
