"""Input shapes of deletion requests and holds, shared by the API and the browser.

They validate shape only; ``scope.resolve_scope`` and the actions decide the rest.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from retention.dates import DAY_PATTERN, EARLIEST_DAY, LATEST_DAY, validate_day
from retention.models import HoldKind, RequestMethod

MAX_IDS = 1000


def json_type_error(field: serializers.Field, value) -> str | None:
    """Why ``value`` is not of the JSON type the field declares (None if it is). DRF would
    quietly turn 12 into "12", "1" into 1 and "yes" into true; the schema promises types."""
    if value is None:
        return None if field.allow_null else str(field.error_messages["null"])
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else str(_("Must be true or false."))
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else str(_("Must be a whole number."))
    if isinstance(field, serializers.CharField | serializers.DateField):
        return None if isinstance(value, str) else str(_("Must be a string."))
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        for item in value:
            error = json_type_error(field.child, item)
            if error:
                return error
    return None


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a typo is an error, not a silent no-op, and values
    of another JSON type than the field's (see ``json_type_error``)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {key: [_("Unknown field.")] for key in sorted(set(data) - set(self.fields))}
            for name, field in self.fields.items():
                error = None if name not in data else json_type_error(field, data[name])
                if error:
                    errors[name] = [error]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def id_list(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=MAX_IDS,
        **kwargs,
    )


@extend_schema_field(
    {
        "type": "string",
        "format": "date",
        "pattern": DAY_PATTERN,
        "description": f"A day from {EARLIEST_DAY} to {LATEST_DAY}.",
    }
)
class DayField(serializers.DateField):
    """A date (YYYY-MM-DD) inside the range Qingli accepts (``retention.dates``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validators", [validate_day])
        super().__init__(**kwargs)


class ScopeSerializer(StrictSerializer):
    messages = id_list()
    conversations = id_list()
    departments = id_list()
    include_subdepartments = serializers.BooleanField(required=False, default=True)
    whole_company = serializers.BooleanField(required=False, default=False)
    sent_after = DayField(required=False, allow_null=True)
    sent_before = DayField(required=False, allow_null=True)


class RequestInputSerializer(StrictSerializer):
    # Retention runs are filed by their rules, never by hand.
    method = serializers.ChoiceField(
        choices=[c for c in RequestMethod.choices if c[0] != RequestMethod.RETENTION]
    )
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")
    scope = ScopeSerializer()
    confirm_protected = id_list()


class HoldInputSerializer(StrictSerializer):
    conversations = id_list()
    departments = id_list()
    kind = serializers.ChoiceField(choices=HoldKind.choices)
    reason = serializers.CharField(max_length=2000)


def step_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text=_(
            "The order of the step this decision is for, as last read (the pending step's "
            "order). If the request waits for another step by now, the decision is refused "
            "with 409 and nothing changes. Left out: whichever step is pending."
        ),
    )


class DecisionSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    step = step_field()


class RejectionSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000)
    step = step_field()


class QuotaGrantInputSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    extra = serializers.IntegerField(min_value=1, max_value=1000)
    reason = serializers.CharField(max_length=2000)


def scope_data(validated: dict) -> dict:
    """The validated body flattened for ``resolve_scope``."""
    return {**validated["scope"], "confirm_protected": validated.get("confirm_protected", [])}


class HoldReleaseInputSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class NotificationsReadInputSerializer(StrictSerializer):
    ids = id_list(help_text=_("Mark only these; all of the caller's when left out."))
