"""Output serializers of the deletion-governance API: they shape data, they decide nothing.

Stored JSON (a request's scope and preview, the policies) is passed through as stored;
the serializers named in ``extend_schema_field`` only describe it for the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from retention.access.predicates import may_decide_request
from retention.governance.personal import held_notice
from retention.governance.selectors import request_progress, request_timeline
from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Hold,
    Notification,
    QuotaGrant,
    RequestMethod,
)
from retention.notifications.notify import text_of

# --- the preview, as computed by scope.compute_preview (schema only) ---------------------


class PreviewDepartmentSerializer(serializers.Serializer):
    department = serializers.IntegerField()
    name = serializers.CharField()
    messages = serializers.IntegerField()
    conversations = serializers.IntegerField()
    high_sensitivity = serializers.IntegerField()
    attachments = serializers.IntegerField()
    bytes = serializers.IntegerField()


class PreviewHeldItemSerializer(serializers.Serializer):
    conversation = serializers.IntegerField()
    messages = serializers.IntegerField()


class PreviewHeldSerializer(serializers.Serializer):
    conversations = serializers.IntegerField()
    messages = serializers.IntegerField()
    items = PreviewHeldItemSerializer(many=True, help_text="The first 50; totals count all.")


class PreviewProtectedSerializer(serializers.Serializer):
    conversation = serializers.IntegerField()
    title = serializers.CharField()
    messages = serializers.IntegerField()


class PreviewSubdepartmentSerializer(serializers.Serializer):
    department = serializers.IntegerField()
    name = serializers.CharField()
    parent = serializers.IntegerField()
    messages = serializers.IntegerField()
    conversations = serializers.IntegerField()


class PreviewExcludedSerializer(serializers.Serializer):
    held = PreviewHeldSerializer(help_text="Conversations on hold: never deleted.")
    protected_unconfirmed = PreviewProtectedSerializer(
        many=True, help_text="Protected conversations left out until listed in confirm_protected."
    )
    subdepartments = PreviewSubdepartmentSerializer(
        many=True, help_text='Left out because "include_subdepartments" is off.'
    )


class PreviewSerializer(serializers.Serializer):
    """Exactly what the request deletes, per department, and what it leaves out."""

    messages = serializers.IntegerField()
    conversations = serializers.IntegerField()
    attachments = serializers.IntegerField()
    bytes = serializers.IntegerField()
    high_sensitivity = serializers.IntegerField()
    by_department = PreviewDepartmentSerializer(many=True)
    excluded = PreviewExcludedSerializer()
    protected_confirmed = serializers.ListField(child=serializers.IntegerField())
    max_message_id = serializers.IntegerField(
        help_text="The newest message counted; later ones are never in scope."
    )
    computed_at = serializers.DateTimeField()


class StoredScopeSerializer(serializers.Serializer):
    """The scope as filed; keys that were not given are absent."""

    messages = serializers.ListField(child=serializers.IntegerField(), required=False)
    conversations = serializers.ListField(child=serializers.IntegerField(), required=False)
    departments = serializers.ListField(child=serializers.IntegerField(), required=False)
    include_subdepartments = serializers.BooleanField(required=False)
    whole_company = serializers.BooleanField(required=False)
    sent_after = serializers.DateField(required=False)
    sent_before = serializers.DateField(required=False)


@extend_schema_field(PreviewSerializer)
class PreviewField(serializers.JSONField):
    """The preview as stored when the request was filed."""


@extend_schema_field(StoredScopeSerializer)
class ScopeField(serializers.JSONField):
    """The scope as stored when the request was filed."""


# --- requests ----------------------------------------------------------------------------


class StepSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="waiting, pending, approved, rejected or cancelled")
    approver = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null until decided."
    )
    because = serializers.CharField(help_text="Why this step exists, if it is not the default.")

    class Meta:
        model = ApprovalStep
        fields = ["order", "role", "status", "approver", "decided_at", "comment", "because"]


class TimelineEventSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")
    actor = serializers.CharField(source="actor_name", help_text="Empty for the system.")
    action = serializers.CharField(source="get_event_type_display")
    action_code = serializers.IntegerField(source="event_type")
    details = serializers.JSONField()

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "action_code", "details"]


class RequestSerializer(serializers.ModelSerializer):
    """A deletion request as listed (the detail adds its timeline)."""

    method = serializers.ChoiceField(choices=RequestMethod.choices)
    status = serializers.CharField(
        help_text="draft, pending, approved, running, completed, rejected, cancelled, "
        "expired or failed"
    )
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    scope = ScopeField()
    preview = PreviewField()
    steps = StepSerializer(many=True, read_only=True)
    can_decide = serializers.SerializerMethodField(
        help_text="Whether the caller may approve or reject the current step now."
    )

    class Meta:
        model = DeletionRequest
        fields = [
            "id",
            "method",
            "status",
            "reason",
            "requester",
            "scope",
            "preview",
            "steps",
            "scheduled_for",
            "cost_estimate_cny",
            "filed_at",
            "decided_at",
            "can_decide",
        ]

    def get_can_decide(self, request: DeletionRequest) -> bool:
        return may_decide_request(request, self.context["viewer"])


class ProgressSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="move, purge or wipe")
    phase = serializers.CharField(help_text="For wipes: shred (keys), then purge (rows).")
    status = serializers.CharField(help_text="queued, running, completed, failed")
    total_messages = serializers.IntegerField(help_text="The frozen scope's count.")
    done_messages = serializers.IntegerField()
    held_messages = serializers.IntegerField(help_text="Skipped: on hold at run time.")
    held_conversations = serializers.IntegerField()
    protected_messages = serializers.IntegerField(
        help_text="Skipped: marked protected after filing, and not confirmed by the request."
    )
    protected_conversations = serializers.IntegerField()
    gone_before_run = serializers.IntegerField(help_text="Deleted by another request first.")
    percent = serializers.IntegerField()
    rate_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    unreadable_at = serializers.DateTimeField(allow_null=True)
    resumes = serializers.IntegerField(help_text="Times another worker took the run over.")
    last_error = serializers.CharField()


class RequestDetailSerializer(RequestSerializer):
    timeline = serializers.SerializerMethodField(help_text="Every audited event, oldest first.")
    progress = serializers.SerializerMethodField(
        help_text="The run once the request has started: counts, rate and time left."
    )
    notice = serializers.SerializerMethodField(
        help_text="Why a personal deletion is not carried out yet: it awaits the member's "
        "manager because they delete often. Empty otherwise."
    )

    class Meta(RequestSerializer.Meta):
        fields = [*RequestSerializer.Meta.fields, "progress", "timeline", "notice"]

    def get_notice(self, request: DeletionRequest) -> str:
        return held_notice(request)

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, request: DeletionRequest) -> dict[str, Any] | None:
        progress = request_progress(request)
        return None if progress is None else ProgressSerializer(progress).data

    @extend_schema_field(TimelineEventSerializer(many=True))
    def get_timeline(self, request: DeletionRequest) -> list[dict[str, Any]]:
        return TimelineEventSerializer(request_timeline(request), many=True).data


# --- holds, hides, notifications, quota ---------------------------------------------------


class HoldSerializer(serializers.ModelSerializer):
    # A plain string in the schema: a second "kind" enum would collide with the
    # conversation kinds' (until ENUM_NAME_OVERRIDES names retention.models.HoldKind).
    kind = serializers.CharField(help_text="legal or sensitive")
    conversations = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    departments = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    placed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    released_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null while active."
    )
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = Hold
        fields = [
            "id",
            "kind",
            "reason",
            "conversations",
            "departments",
            "placed_by",
            "placed_at",
            "is_active",
            "released_by",
            "released_at",
            "release_reason",
        ]


class HideResultSerializer(serializers.Serializer):
    conversation = serializers.IntegerField()
    hidden = serializers.BooleanField(help_text="Whether it is hidden for the caller now.")
    changed = serializers.BooleanField(help_text="False when it already was so.")


class NotificationSerializer(serializers.ModelSerializer):
    text = serializers.SerializerMethodField()
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "verb", "text", "request", "created_at", "read"]

    def get_text(self, notification: Notification) -> str:
        return text_of(notification)

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class MarkedReadSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many notifications were unread before.")


class QuotaGrantSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="member.username")
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = QuotaGrant
        fields = ["id", "username", "month", "extra", "reason", "granted_by", "created_at"]


# --- policies (schema only: the values are passed through as stored) ----------------------


# The bounds below are those ``policies.VALIDATORS`` enforce, so the schema states them.


class ExecutionWindowSerializer(serializers.Serializer):
    start = serializers.RegexField(
        r"^([01][0-9]|2[0-3]):[0-5][0-9]$", help_text="HH:MM, local time"
    )
    end = serializers.RegexField(
        r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        help_text="HH:MM, not the start; before start: the window crosses midnight",
    )


class CostTierSerializer(serializers.Serializer):
    up_to_messages = serializers.IntegerField(
        min_value=1,
        max_value=10**12,
        allow_null=True,
        help_text="Ascending; null for the last tier, and only for it (no upper bound).",
    )
    cny = serializers.IntegerField(min_value=0, max_value=10_000_000)


def _chain(**kwargs) -> serializers.ListField:
    roles = serializers.ChoiceField(choices=["manager", "security", "admin"])
    return serializers.ListField(child=roles, **kwargs)


class ApprovalChainsSerializer(serializers.Serializer):
    batch = _chain(min_length=1)
    server = _chain(min_length=2)


def _days(maximum: int, minimum: int = 0) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=minimum, max_value=maximum)


class PoliciesSerializer(serializers.Serializer):
    """Every policy with its current value. A PATCH sends only the keys to change."""

    personal_monthly_quota = _days(1000)
    batch_min_consecutive_signin_days = _days(365)
    batch_delay_hours = _days(24 * 90)
    server_delay_hours = _days(24 * 90)
    execution_window = ExecutionWindowSerializer(allow_null=True, help_text="null: any time")
    recycle_bin_days = _days(365)
    server_cost_tiers = CostTierSerializer(many=True, min_length=1)
    approval_chains = ApprovalChainsSerializer()
    retention_grace_days = _days(365)
    approval_expiry_days = _days(365)
    export_keep_days = _days(3650, minimum=1)
    review_due_days = _days(365, minimum=1)
    require_second_factor = serializers.BooleanField(
        help_text="Approving, holds, policy changes and restores need a TOTP second factor."
    )
    session_idle_minutes = _days(24 * 60, minimum=1)
    frequent_deletion_threshold = serializers.IntegerField(
        min_value=0,
        max_value=1000,
        help_text="Personal deletions within the window after which further ones need the "
        "member's manager's approval; 0 switches the check off.",
    )
    frequent_deletion_window_hours = _days(24 * 90, minimum=1)
    report_person_deletions_threshold = _days(100_000)
    report_fast_approval_seconds = _days(24 * 3600)
    report_near_purge_hours = _days(24 * 365)


# --- inputs the shared ``retention.api.inputs`` does not have yet ---------------------


# --- errors (schema only) ----------------------------------------------------------------


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
