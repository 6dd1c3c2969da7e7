"""Input forms. They validate and nothing else; the API reuses them for query parameters."""

from __future__ import annotations

from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

from retention.models import ConversationKind, Member, Sensitivity
from retention.selectors import departments_for

IDEOGRAPHIC_SPACE = "\u3000"


class DepartmentChoiceField(forms.ModelChoiceField):
    """Departments indented by level, so the tree reads as a tree in a select."""

    def label_from_instance(self, obj) -> str:
        return IDEOGRAPHIC_SPACE * obj.depth + obj.name


class ConversationFilterForm(forms.Form):
    department = DepartmentChoiceField(
        queryset=None, required=False, label=_("Department"), empty_label=_("All departments")
    )
    # A select, not a checkbox: an absent value means "yes", so "no" must be sayable.
    include_subdepartments = forms.NullBooleanField(
        required=False,
        label=_("Include sub-departments"),
        widget=forms.Select(choices=[("true", _("Yes")), ("false", _("No"))]),
    )
    kind = forms.ChoiceField(
        choices=[("", _("All kinds")), *ConversationKind.choices], required=False, label=_("Kind")
    )
    since = forms.DateField(
        required=False, label=_("Active since"), widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label=_("Active before"), widget=forms.DateInput(attrs={"type": "date"})
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

    def __init__(self, *args, viewer: Member, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = departments_for(viewer)

    def _bounded(self, name: str):
        day = self.cleaned_data.get(name)
        if day is not None and not date(1990, 1, 1) <= day <= date(2999, 12, 31):
            raise forms.ValidationError(_("Choose a date between 1990 and 2999."))
        return day

    def clean_since(self):
        return self._bounded("since")

    def clean_until(self):
        return self._bounded("until")

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError(_("“Active since” must not be after “Active before”."))
        return data

    def selector_kwargs(self) -> dict:
        """The cleaned filters as keyword arguments of selectors.conversation_list."""
        from datetime import datetime, time, timedelta

        from django.utils import timezone

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
