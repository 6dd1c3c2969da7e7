"""Managing retention rules: an admin creates a rule and runs its dry run, proposes it
(or a shorter keep), a second admin approves it; keeping longer or switching a rule off
applies at once. Each action checks the actor, changes the rule under a row lock and
records its audit event in one transaction."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from retention.access.predicates import may_manage_rules, require
from retention.access.second_factor import enforce
from retention.errors import Conflict
from retention.governance.decisions import do_cancel_request
from retention.models import Conversation, Department, Member, Participant, RequestStatus
from retention.models.roles import Role
from retention.models.rules import APPROVED_STATUSES, RetentionRule, RuleAction, RuleStatus
from retention.notifications import notify
from retention.policies import get_policy
from retention.rules.matching import governed_conversations, in_force_keep_days, measure_rule
from retention.rules.runs import open_runs


def require_admin(member: Member) -> None:
    require(may_manage_rules(member), _("Only admins manage retention rules."))


def _validate(keep_days, action) -> None:
    errors = {}
    if not isinstance(keep_days, int) or isinstance(keep_days, bool) or not 1 <= keep_days <= 36500:
        errors["keep_days"] = [_("Keep for a whole number of days, from 1 to 36500.")]
    if action not in RuleAction.values:
        errors["action"] = [_("Choose bin, archive or purge.")]
    if errors:
        raise ValidationError(errors)


def do_create_rule(
    *,
    acting_user: Member,
    name: str,
    keep_days: int,
    action: str,
    department: Department | None = None,
    kind: str = "",
    excluded: list[Conversation] = (),
) -> RetentionRule:
    """A new rule starts as a draft: it does nothing until enabled and approved."""
    require_admin(acting_user)
    _validate(keep_days, action)
    if not (name or "").strip():
        raise ValidationError({"name": [_("Give the rule a name.")]})
    with transaction.atomic():
        rule = RetentionRule.objects.create(
            name=name.strip(),
            department=department,
            kind=kind,
            keep_days=keep_days,
            action=action,
            created_by=acting_user,
        )
        rule.excluded_conversations.set(excluded)
        audit.record(
            EventType.RULE_CREATED,
            actor=acting_user,
            target=rule,
            department_id=rule.department_id,
            details=_describe(rule),
        )
    return rule


def _describe(rule: RetentionRule) -> dict:
    return {
        "name": rule.name,
        "department": rule.department_id,
        "kind": rule.kind,
        "keep_days": rule.keep_days,
        "action": rule.action,
        "excluded": sorted(rule.excluded_conversations.values_list("pk", flat=True)),
    }


def do_preview_rule(rule: RetentionRule, *, acting_user: Member) -> dict:
    """The dry run, stored on the rule: enabling needs one no older than a day."""
    require_admin(acting_user)
    measured = measure_rule(rule, keep_days=rule.proposed_keep_days)
    RetentionRule.objects.filter(pk=rule.pk).update(
        last_preview=measured.preview, last_preview_at=timezone.now()
    )
    rule.last_preview, rule.last_preview_at = measured.preview, timezone.now()
    return measured.preview


def do_propose(
    rule: RetentionRule, *, acting_user: Member, keep_days: int | None = None
) -> RetentionRule:
    """Ask for a rule to be enabled, or an active rule to keep less: a second admin must
    approve, after a fresh dry run."""
    require_admin(acting_user)
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        if keep_days is not None:
            _validate(keep_days, locked.action)
        if locked.status in (RuleStatus.DRAFT, RuleStatus.DISABLED):
            if keep_days is not None:
                locked.keep_days = keep_days
            locked.status = RuleStatus.PENDING
        elif locked.status in APPROVED_STATUSES:
            if keep_days is None or keep_days >= in_force_keep_days(locked):
                raise ValidationError(
                    {"keep_days": [_("Propose a shorter keep; keeping longer needs no approval.")]}
                )
            locked.proposed_keep_days = keep_days
        else:
            raise Conflict(_("This rule already awaits a second admin."))
        fresh = locked.last_preview_at and locked.last_preview_at > timezone.now() - timedelta(
            days=1
        )
        if not fresh:
            raise Conflict(_("Run the dry run first: approvers must see what the rule would take."))
        # Approvers see the dry run of exactly what is proposed (the keep may have changed
        # with the proposal), measured now.
        locked.last_preview = measure_rule(locked, keep_days=locked.proposed_keep_days).preview
        locked.last_preview_at = timezone.now()
        locked.proposed_by, locked.proposed_at = acting_user, timezone.now()
        locked.save()
        audit.record(
            EventType.RULE_PROPOSED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={
                **_describe(locked),
                "proposed_keep_days": locked.proposed_keep_days,
                "preview_messages": locked.last_preview.get("messages"),
            },
        )
        admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN).exclude(
            pk=acting_user.pk
        )
        notify.rule_needs_approval(locked, admins)
    return locked


def do_approve_rule(
    rule: RetentionRule, *, acting_user: Member, verified_second_factor: bool
) -> RetentionRule:
    """A second admin approves; the change bites after the grace period, and the members
    of every affected conversation are told when."""
    require_admin(acting_user)
    enforce(acting_user, verified_second_factor=verified_second_factor, action="approve-rule")
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        waiting = locked.status == RuleStatus.PENDING or locked.proposed_keep_days is not None
        if not waiting:
            raise Conflict(_("Nothing about this rule awaits approval."))
        if locked.proposed_by_id == acting_user.pk:
            raise PermissionDenied(_("A second admin must approve: not the one who proposed it."))
        now = timezone.now()
        effective_from = now + timedelta(days=get_policy("retention_grace_days"))
        if locked.status == RuleStatus.PENDING:
            locked.status = RuleStatus.SCHEDULED
            locked.effective_from = effective_from
        else:
            locked.next_keep_days, locked.next_keep_from = locked.proposed_keep_days, effective_from
            locked.proposed_keep_days = None
        locked.approved_by, locked.approved_at = acting_user, now
        locked.save()
        audit.record(
            EventType.RULE_APPROVED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={
                **_describe(locked),
                "next_keep_days": locked.next_keep_days,
                "effective_from": effective_from.isoformat(),
            },
        )
        affected = Member.objects.filter(
            pk__in=Participant.objects.filter(
                conversation__in=governed_conversations(locked).values("pk")
            ).values("member")
        )
        notify.rule_scheduled(locked, affected)
    return locked


def do_relax_rule(
    rule: RetentionRule,
    *,
    acting_user: Member,
    verified_second_factor: bool,
    keep_days: int | None = None,
    disable: bool = False,
) -> RetentionRule:
    """Keep longer, or switch the rule off: both delete less, so they apply at once."""
    require_admin(acting_user)
    enforce(acting_user, verified_second_factor=verified_second_factor, action="relax-rule")
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        before = _describe(locked)
        if disable:
            if locked.status == RuleStatus.DISABLED:
                raise Conflict(_("This rule is already disabled."))
            locked.status = RuleStatus.DISABLED
            locked.proposed_keep_days = locked.next_keep_days = locked.next_keep_from = None
            # "At once" includes a run filed but not started yet.
            for waiting in open_runs(locked).filter(status=RequestStatus.APPROVED):
                do_cancel_request(waiting, acting_user=acting_user)
        else:
            _validate(keep_days, locked.action)
            if keep_days <= max(locked.keep_days, in_force_keep_days(locked)):
                raise ValidationError(
                    {"keep_days": [_("To keep less, propose the change for approval.")]}
                )
            locked.keep_days, locked.next_keep_days, locked.proposed_keep_days = (
                keep_days,
                None,
                None,
            )
        locked.save()
        audit.record(
            EventType.RULE_RELAXED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={"before": before, "after": _describe(locked), "disabled": disable},
        )
    return locked
