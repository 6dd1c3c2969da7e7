"""Filters over conversations and the audit log, read from query parameters by the pages
and the API alike. They validate and nothing else; their department choices are limited
to the viewer's part of the tree."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.events import EventType
from audit.selectors import EventFilter
from retention.dates import DAY_INPUT_ATTRS, validate_day, validate_moment
from retention.models import ConversationKind, Member, Sensitivity
from retention.records.selectors import departments_for

IDEOGRAPHIC_SPACE = "\u3000"


class DepartmentChoiceField(forms.ModelChoiceField):
    """Departments indented by level, so the tree reads as a tree in a select."""

    def label_from_instance(self, obj) -> str:
        return IDEOGRAPHIC_SPACE * obj.depth + obj.name


class DepartmentFilterForm(forms.Form):
    """A department of the viewer's part of the tree, with or without what is below it."""

    department = DepartmentChoiceField(
        queryset=None, required=False, label=_("Department"), empty_label=_("All departments")
    )
    # A select, not a checkbox: an absent value means "yes", so "no" must be sayable.
    include_subdepartments = forms.NullBooleanField(
        required=False,
        label=_("Include sub-departments"),
        widget=forms.Select(choices=[("true", _("Yes")), ("false", _("No"))]),
    )

    def __init__(self, *args, viewer: Member, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = departments_for(viewer)


class ConversationFilterForm(DepartmentFilterForm):
    kind = forms.ChoiceField(
        choices=[("", _("All kinds")), *ConversationKind.choices], required=False, label=_("Kind")
    )
    since = forms.DateField(
        required=False,
        label=_("Active since"),
        validators=[validate_day],
        widget=forms.DateInput(attrs=DAY_INPUT_ATTRS),
    )
    until = forms.DateField(
        required=False,
        label=_("Active before"),
        validators=[validate_day],
        widget=forms.DateInput(attrs=DAY_INPUT_ATTRS),
    )
    sensitivity = forms.TypedChoiceField(
        choices=[("", _("Any sensitivity")), *Sensitivity.choices],
        coerce=int,
        empty_value=None,
        required=False,
        label=_("Sensitivity at least"),
    )
    q = forms.CharField(
        required=False,
        max_length=100,
        label=_("Search"),
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": _("Title, customer or participant")}),
    )

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError(_("“Active since” must not be after “Active before”."))
        return data

    def selector_kwargs(self) -> dict:
        """The cleaned filters as keyword arguments of selectors.conversation_list."""
        data = self.cleaned_data
        tz = timezone.get_current_timezone()

        def start_of(day):
            return timezone.make_aware(datetime.combine(day, time.min), tz) if day else None

        return {
            "department": data.get("department"),
            "include_subdepartments": data.get("include_subdepartments") is not False,
            "kind": data.get("kind") or "",
            "since": start_of(data.get("since")),
            "until": start_of(data["until"] + timedelta(days=1)) if data.get("until") else None,
            "sensitivity": data.get("sensitivity"),
            "text": data.get("q") or "",
        }


class AuditFilterForm(DepartmentFilterForm):
    """The audit log explorer's filters (page, CSV export and API alike)."""

    field_order = ["since", "until", "actor", "action", "department"]

    since = forms.DateTimeField(
        required=False,
        label=_("From"),
        validators=[validate_moment],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("A date, or a date and time."),
    )
    until = forms.DateTimeField(
        required=False,
        label=_("Before"),
        validators=[validate_moment],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    actor = forms.CharField(required=False, max_length=150, label=_("Actor (user name)"))
    action = forms.TypedChoiceField(
        choices=(),
        coerce=int,
        empty_value=None,
        required=False,
        label=_("Action"),
    )
    request = forms.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, label=_("Deletion request no.")
    )
    object_type = forms.RegexField(
        regex=r"^[a-z_]+\.[a-z_]+$",
        required=False,
        max_length=64,
        label=_("Object type"),
        help_text=_("For example retention.conversation"),
        error_messages={"invalid": _("An object type looks like retention.conversation.")},
    )
    object_id = forms.CharField(required=False, max_length=64, label=_("Object id"))
    q = forms.CharField(
        required=False,
        min_length=2,
        max_length=100,
        label=_("Search the details"),
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": _("Any text in the details")}),
    )

    def __init__(self, *args, viewer: Member, **kwargs) -> None:
        super().__init__(*args, viewer=viewer, **kwargs)
        choices = sorted(EventType.choices, key=lambda choice: choice[0])
        self.fields["action"].choices = [("", _("Every action")), *choices]

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            raise forms.ValidationError(_("“From” must be before “Before”."))
        if data.get("object_id") and not data.get("object_type"):
            self.add_error("object_type", _("Give the object type with the object id."))
        if data.get("request") and (data.get("object_type") or data.get("object_id")):
            self.add_error("request", _("Filter by a request or by an object, not both."))
        return data

    def event_filter(self) -> EventFilter:
        """The cleaned filters as the audit app's :class:`~audit.selectors.EventFilter`."""
        data = self.cleaned_data
        department = data.get("department")
        department_ids = None
        if department is not None:
            if data.get("include_subdepartments") is False:
                department_ids = (department.pk,)
            else:
                department_ids = tuple(department.subtree().values_list("pk", flat=True))
        target_type, target_id = data.get("object_type") or "", data.get("object_id") or ""
        if data.get("request"):
            target_type, target_id = "retention.deletionrequest", str(data["request"])
        return EventFilter(
            since=data.get("since"),
            until=data.get("until"),
            actor=data.get("actor") or "",
            event_types=(data["action"],) if data.get("action") is not None else (),
            department_ids=department_ids,
            target_type=target_type,
            target_id=target_id,
            text=data.get("q") or "",
        )
