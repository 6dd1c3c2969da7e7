"""Forms of the deletion-request, hold, policy and personal-deletion pages.

They validate the shape of the input and limit every choice to what the viewer may see;
``scope.resolve_scope``, the actions and ``policies.validate_changes`` decide the rest.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from retention.access.predicates import filing_methods
from retention.api.inputs import MAX_IDS
from retention.dates import DAY_INPUT_ATTRS, validate_day
from retention.models import (
    Conversation,
    ConversationKind,
    Department,
    HoldKind,
    Member,
    RequestMethod,
    RequestStatus,
)
from retention.policies import DEFAULTS
from retention.records.selectors import conversations_for, departments_for

# The group conversations the wizard lists; larger scopes are named by department.
GROUP_CHOICES_LIMIT = 200


class IdListField(forms.Field):
    """A list of positive whole-number ids (repeated form fields)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        try:
            ids = sorted({int(v) for v in value})
        except (TypeError, ValueError) as exc:
            raise ValidationError(_("Give whole-number ids.")) from exc
        if ids[0] < 1:
            raise ValidationError(_("Give whole-number ids."))
        if len(ids) > MAX_IDS:
            raise ValidationError(_("At most %(n)d ids.") % {"n": MAX_IDS})
        return ids


class IdTextField(IdListField):
    """Ids typed into one box, separated by commas or spaces."""

    widget = forms.TextInput

    def to_python(self, value: Any) -> list[int]:
        parts = [p for p in re.split(r"[\s,，、]+", value or "") if p]
        return super().to_python(parts)


def errors_of(exc: ValidationError) -> dict[str | None, list[str]]:
    """A ValidationError from a service as {field or None: messages}."""
    if hasattr(exc, "error_dict"):
        return {key: list(messages) for key, messages in exc.message_dict.items()}
    return {None: exc.messages}


def add_service_errors(form: forms.Form, exc: ValidationError, *, aliases: dict | None = None):
    """Show a service's field errors on the form's fields (unknown keys: on the form)."""
    aliases = aliases or {}
    for key, messages in errors_of(exc).items():
        field = aliases.get(key, key)
        form.add_error(field if field in form.fields else None, messages)


# --- the request wizard -------------------------------------------------------------------


class RequestWizardForm(forms.Form):
    method = forms.ChoiceField(label=_("Method"), widget=forms.RadioSelect)
    departments = forms.ModelMultipleChoiceField(
        queryset=Department.objects.none(),
        required=False,
        label=_("Departments"),
        widget=forms.CheckboxSelectMultiple,
    )
    include_subdepartments = forms.BooleanField(
        required=False, initial=True, label=_("Include sub-departments")
    )
    whole_company = forms.BooleanField(required=False, label=_("The whole company"))
    conversations = forms.ModelMultipleChoiceField(
        queryset=Conversation.objects.none(),
        required=False,
        label=_("Group conversations"),
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    sent_after = forms.DateField(
        required=False,
        label=_("Sent on or after"),
        validators=[validate_day],
        widget=forms.DateInput(attrs=DAY_INPUT_ATTRS),
    )
    sent_before = forms.DateField(
        required=False,
        label=_("Sent before"),
        validators=[validate_day],
        widget=forms.DateInput(attrs=DAY_INPUT_ATTRS),
    )
    confirm_protected = IdListField(required=False, label=_("Protected conversations confirmed"))
    reason = forms.CharField(
        required=False,
        max_length=2000,
        strip=True,
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    idempotency_key = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args: Any, viewer: Member, require_reason: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        methods = filing_methods(viewer)
        self.fields["method"].choices = [
            (m, label) for m, label in RequestMethod.choices if m in methods
        ]
        self.fields["method"].initial = methods[0] if methods else None
        self.fields["departments"].queryset = departments_for(viewer).order_by("path")
        self.fields["conversations"].queryset = (
            conversations_for(viewer)
            .filter(kind=ConversationKind.GROUP)
            .select_related("department")
            .order_by("department__path", "title", "pk")
        )
        self.fields["reason"].required = require_reason
        self.fields["idempotency_key"].initial = uuid.uuid4().hex

    # What the template draws: the tree and the groups, with what is ticked.
    def department_tree(self) -> QuerySet[Department]:
        return self.fields["departments"].queryset

    def group_choices(self) -> list[Conversation]:
        return list(self.fields["conversations"].queryset[:GROUP_CHOICES_LIMIT])

    def _chosen(self, name: str) -> set[int]:
        if not self.is_bound:
            return set()
        chosen = set()
        for value in self.data.getlist(name) if hasattr(self.data, "getlist") else []:
            if str(value).isdigit():
                chosen.add(int(value))
        return chosen

    def chosen_departments(self) -> set[int]:
        return self._chosen("departments")

    def chosen_conversations(self) -> set[int]:
        return self._chosen("conversations")

    def chosen_method(self) -> str:
        if self.is_bound:
            return self.data.get("method") or ""
        return self.fields["method"].initial or ""

    def includes_subdepartments(self) -> bool:
        if self.is_bound:
            return bool(self.data.get("include_subdepartments"))
        return True

    def is_empty_scope(self) -> bool:
        data = self.cleaned_data
        return not (data.get("departments") or data.get("conversations") or data["whole_company"])

    def scope_data(self) -> dict:
        """The cleaned scope as ``resolve_scope`` takes it."""
        data = self.cleaned_data
        return {
            "departments": [d.pk for d in data["departments"]],
            "conversations": [c.pk for c in data["conversations"]],
            "include_subdepartments": data["include_subdepartments"],
            "whole_company": data["whole_company"],
            "sent_after": data["sent_after"],
            "sent_before": data["sent_before"],
            "confirm_protected": data["confirm_protected"],
        }


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", _("Any status")), *RequestStatus.choices], required=False, label=_("Status")
    )
    method = forms.ChoiceField(
        choices=[("", _("Any method")), *RequestMethod.choices], required=False, label=_("Method")
    )


def step_field(form_id: str) -> forms.IntegerField:
    """The order of the step a decision is for: the page's decision forms always send it,
    so a stale page or a second click cannot decide the step after it."""
    return forms.IntegerField(
        min_value=1,
        widget=forms.HiddenInput(attrs={"id": form_id}),
        error_messages={
            "required": _("The form did not say which step it decides. Reload the page."),
            "invalid": _("The form did not say which step it decides. Reload the page."),
        },
    )


class ApproveForm(forms.Form):
    comment = forms.CharField(
        required=False, max_length=2000, label=_("Comment"), widget=forms.TextInput
    )
    step = step_field("id_approve_step")


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=2000, label=_("Reason for rejecting"), widget=forms.Textarea(attrs={"rows": 2})
    )
    step = step_field("id_reject_step")


class PersonalDeletionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, label=_("Reason (optional)"))


# --- holds --------------------------------------------------------------------------------


class HoldForm(forms.Form):
    kind = forms.ChoiceField(choices=HoldKind.choices, label=_("Kind"))
    reason = forms.CharField(
        max_length=2000, label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2})
    )
    departments = forms.ModelMultipleChoiceField(
        queryset=Department.objects.none(),
        required=False,
        label=_("Departments (with everything below them)"),
        widget=forms.CheckboxSelectMultiple,
    )
    conversations = IdTextField(
        required=False,
        label=_("Conversation ids"),
        help_text=_("Separated by commas or spaces."),
    )

    def __init__(self, *args: Any, viewer: Member, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.viewer = viewer
        self.fields["departments"].queryset = departments_for(viewer).order_by("path")

    def department_tree(self) -> QuerySet[Department]:
        return self.fields["departments"].queryset

    def chosen_departments(self) -> set[int]:
        if not self.is_bound:
            return set()
        return {int(v) for v in self.data.getlist("departments") if str(v).isdigit()}

    def clean_conversations(self) -> list[Conversation]:
        ids = self.cleaned_data["conversations"]
        found = list(conversations_for(self.viewer).filter(pk__in=ids))
        missing = sorted(set(ids) - {c.pk for c in found})
        if missing:
            raise ValidationError(
                _("No conversation you may see has the id %(ids)s.")
                % {"ids": ", ".join(map(str, missing))}
            )
        return found


class ReleaseHoldForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000, label=_("Why release it"))


# --- policies -----------------------------------------------------------------------------

POLICY_LABELS = {
    "personal_monthly_quota": _("Personal deletions per member per month"),
    "batch_min_consecutive_signin_days": _(
        "Consecutive sign-in days before a member may file batch deletions"
    ),
    "batch_delay_hours": _("Cooling-off delay of batch deletions (hours)"),
    "server_delay_hours": _("Cooling-off delay of server-side wipes (hours)"),
    "execution_window": _("Execution window"),
    "recycle_bin_days": _("Days in the recycle bin"),
    "server_cost_tiers": _("Cost tiers of server-side wipes (CNY)"),
    "approval_chains": _("Approval chains"),
    "retention_grace_days": _("Grace days before a retention rule deletes"),
    "approval_expiry_days": _("Days before an undecided request expires"),
    "export_keep_days": _("Days an export is kept before it expires"),
    "review_due_days": _("Days an auditor has to decide a compliance review"),
    "require_second_factor": _(
        "Approving, holds, policy changes and restores need a second factor (TOTP)"
    ),
    "session_idle_minutes": _("Minutes without activity before a browser session ends"),
    "frequent_deletion_threshold": _(
        "Personal deletions within the window after which a member's further personal "
        "deletions need their manager's approval (0: never)"
    ),
    "frequent_deletion_window_hours": _("Window for counting frequent personal deletions (hours)"),
    "report_person_deletions_threshold": _(
        "Quarterly report: deletions by one person above which they are listed as an anomaly"
    ),
    "report_fast_approval_seconds": _(
        "Quarterly report: an approval decided within this many seconds is an anomaly"
    ),
    "report_near_purge_hours": _(
        "Quarterly report: a restore this many hours or fewer before the purge is an anomaly"
    ),
}
INT_POLICIES = [
    key for key, value in DEFAULTS.items() if isinstance(value, int) and not isinstance(value, bool)
]
BOOL_POLICIES = [key for key, value in DEFAULTS.items() if isinstance(value, bool)]
JSON_POLICIES = ["approval_chains", "server_cost_tiers"]


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)


class PolicyForm(forms.Form):
    """Every policy at once; ``changes()`` is what ``do_update_policies`` takes."""

    window_start = forms.CharField(
        required=False,
        max_length=5,
        label=_("Window starts"),
        widget=forms.TimeInput(attrs={"type": "time"}),
    )
    window_end = forms.CharField(
        required=False,
        max_length=5,
        label=_("Window ends"),
        widget=forms.TimeInput(attrs={"type": "time"}),
    )

    def __init__(self, *args: Any, current: dict[str, Any], **kwargs: Any):
        window = current["execution_window"]
        initial = {key: current[key] for key in INT_POLICIES + JSON_POLICIES + BOOL_POLICIES}
        initial.update(
            window_start=window["start"] if window else "",
            window_end=window["end"] if window else "",
        )
        super().__init__(*args, initial=initial, **kwargs)
        for key in INT_POLICIES:
            self.fields[key] = forms.IntegerField(label=POLICY_LABELS[key])
        for key in BOOL_POLICIES:
            self.fields[key] = forms.BooleanField(label=POLICY_LABELS[key], required=False)
        for key in JSON_POLICIES:
            self.fields[key] = PrettyJSONField(
                label=POLICY_LABELS[key], widget=forms.Textarea(attrs={"rows": 10})
            )

    def number_fields(self) -> list[forms.BoundField]:
        return [self[key] for key in INT_POLICIES]

    def bool_fields(self) -> list[forms.BoundField]:
        return [self[key] for key in BOOL_POLICIES]

    def json_fields(self) -> list[forms.BoundField]:
        return [self[key] for key in JSON_POLICIES]

    def window_fields(self) -> list[forms.BoundField]:
        return [self["window_start"], self["window_end"]]

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        changes = {key: data[key] for key in INT_POLICIES + JSON_POLICIES + BOOL_POLICIES}
        # Both times empty: deletions may run at any time (stored as null).
        if not data["window_start"] and not data["window_end"]:
            changes["execution_window"] = None
        else:
            changes["execution_window"] = {
                "start": data["window_start"],
                "end": data["window_end"],
            }
        return changes


# Where a policy's error shows on the form.
POLICY_ERROR_FIELDS = {"execution_window": "window_start", "policies": None}
