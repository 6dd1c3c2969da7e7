"""The daily runs of retention rules: every approved rule past its grace period files,
once a day, a system deletion request whose frozen scope is the dry run of that moment,
carried out by the same checkpointed engine as any approved request; and the check that
tells the admins when a rule's runs fail or stop."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from retention.models import (
    DeletionRequest,
    Member,
    RequestConversation,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.models.rules import APPROVED_STATUSES, RetentionRule, RuleStatus
from retention.notifications import notify
from retention.rules.matching import measure_rule
from retention.wipes.schedule import enqueue_start

# Frozen-scope rows a retention run writes per transaction.
TARGETS_PER_TRANSACTION = 2000


def open_runs(rule: RetentionRule) -> QuerySet[DeletionRequest]:
    """The rule's runs still to start or running."""
    return DeletionRequest.objects.filter(
        method=RequestMethod.RETENTION,
        scope__rule=rule.pk,
        status__in=[RequestStatus.APPROVED, RequestStatus.RUNNING],
    )


def run_due_rules(*, now: datetime | None = None) -> list[int]:
    """Every approved rule past its grace period runs once per day: its dry run of this
    moment becomes a system request that the engine carries out."""
    now = now or timezone.now()
    started = []
    for rule in RetentionRule.objects.filter(
        status__in=APPROVED_STATUSES, effective_from__lte=now
    ).select_related("department"):
        if open_runs(rule).exists():
            continue  # the last run has not finished (or waits for its evidence)
        # Claimed with a compare-and-swap: two cron ticks at once file one run.
        claimed = (
            RetentionRule.objects.filter(pk=rule.pk)
            .filter(Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - timedelta(hours=20)))
            .update(last_run_at=now)
        )
        if not claimed:
            continue  # already ran today
        try:
            request = start_rule_run(rule, now=now)
        except Exception as exc:  # one broken rule must not stop the others
            RetentionRule.objects.filter(pk=rule.pk).update(
                last_run_at=now,
                last_run_ok=False,
                last_run_error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            audit.record(
                EventType.RULE_RUN_FAILED,
                target=rule,
                department_id=rule.department_id,
                details={"error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            continue
        if request is not None:
            started.append(request.pk)
    return started


def start_rule_run(rule: RetentionRule, *, now: datetime) -> DeletionRequest | None:
    if rule.next_keep_days is not None and rule.next_keep_from <= now:
        # The approved shorter keep is in force from now on.
        RetentionRule.objects.filter(pk=rule.pk).update(
            keep_days=rule.next_keep_days, next_keep_days=None, next_keep_from=None
        )
        rule.keep_days, rule.next_keep_days, rule.next_keep_from = rule.next_keep_days, None, None
    if rule.status == RuleStatus.SCHEDULED:
        RetentionRule.objects.filter(pk=rule.pk).update(status=RuleStatus.ACTIVE)
        rule.status = RuleStatus.ACTIVE
    measured = measure_rule(rule, now=now)
    # A draft until its frozen scope is written, in short transactions: a run cut short
    # leaves a draft that never runs, and the rule runs again the next night.
    request = DeletionRequest.objects.create(
        requester=rule.approved_by or rule.created_by,
        method=RequestMethod.RETENTION,
        status=RequestStatus.DRAFT,
        reason=_("Retention rule “%(name)s”: keep %(days)s days, then %(action)s.")
        % {"name": rule.name, "days": rule.keep_days, "action": rule.get_action_display()},
        scope={"rule": rule.pk, "keep_days": rule.keep_days, "action": rule.action},
        scope_root=rule.department,
        sent_before=measured.cutoff,
        max_message_id=measured.max_message_id,
        preview=measured.preview,
        decided_at=now,
        scheduled_for=now,
    )
    for first in range(0, len(measured.targets), TARGETS_PER_TRANSACTION):
        RequestConversation.objects.bulk_create(
            [
                RequestConversation(request=request, conversation_id=c, department_id=d, messages=n)
                for c, d, n in measured.targets[first : first + TARGETS_PER_TRANSACTION]
            ]
        )
    with transaction.atomic():
        DeletionRequest.objects.filter(pk=request.pk).update(status=RequestStatus.APPROVED)
        request.status = RequestStatus.APPROVED
        RetentionRule.objects.filter(pk=rule.pk).update(
            last_run_at=now, last_run_ok=True, last_run_error=""
        )
        audit.record(
            EventType.RULE_RUN,
            target=rule,
            department_id=rule.department_id,
            details={
                "request": request.pk,
                "messages": measured.preview["messages"],
                "conversations": measured.preview["conversations"],
                "held_messages": measured.preview["excluded"]["held"]["messages"],
                "keep_days": rule.keep_days,
                "cutoff": measured.cutoff.isoformat(),
            },
        )
        request_id = request.pk
        transaction.on_commit(lambda: enqueue_start(request_id))
    return request


def unhealthy_rules(*, now: datetime | None = None) -> list[dict]:
    """Rules in force whose daily run failed or did not happen (for the admin dashboard)."""
    now = now or timezone.now()
    problems = []
    for rule in RetentionRule.objects.filter(status__in=APPROVED_STATUSES, effective_from__lte=now):
        if rule.last_run_ok is False:
            problems.append(
                {
                    "rule": rule,
                    "problem": _("its last run failed: %(error)s") % {"error": rule.last_run_error},
                }
            )
        elif rule.effective_from < now - timedelta(hours=26) and (
            rule.last_run_at is None or rule.last_run_at < now - timedelta(hours=26)
        ):
            problems.append({"rule": rule, "problem": _("it has not run for more than a day")})
    return problems


def check_rule_health(*, now: datetime | None = None) -> int:
    """Daily: tell the admins about rules whose runs failed or stopped."""
    problems = unhealthy_rules(now=now)
    if problems:
        admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN)
        notify.rules_unhealthy([p["rule"] for p in problems], admins)
    return len(problems)
