"""Retention rule pages: the list, a rule with its dry run and its approval, and the
"effective policy" card of a conversation. Admins manage; security officers and
auditors read."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import (
    may_approve_rule,
    may_manage_rules,
    may_read_rules,
    require,
    rule_awaits_approval,
)
from retention.access.second_factor import verified
from retention.errors import Conflict
from retention.models import (
    Conversation,
    ConversationKind,
    Department,
    RetentionRule,
    RuleAction,
)
from retention.models.roles import Role
from retention.rules.actions import (
    do_approve_rule,
    do_create_rule,
    do_preview_rule,
    do_propose,
    do_relax_rule,
)
from retention.rules.runs import unhealthy_rules


class DepartmentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, department: Department) -> str:
        # "杭州西湖店 / 客服组": the many teams of the same name can be told apart.
        return department.label


class RuleForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    department = DepartmentChoiceField(
        label=gettext_lazy("Department (with everything below it)"),
        queryset=Department.objects.select_related("parent").order_by("path"),
        required=False,
        empty_label=gettext_lazy("The whole company"),
    )
    kind = forms.ChoiceField(
        label=gettext_lazy("Conversation kind"),
        choices=[("", gettext_lazy("Every kind")), *ConversationKind.choices],
        required=False,
    )
    keep_days = forms.IntegerField(
        label=gettext_lazy("Keep for (days)"), min_value=1, max_value=36500
    )
    action = forms.ChoiceField(label=gettext_lazy("Then"), choices=RuleAction.choices)
    excluded = forms.CharField(
        label=gettext_lazy("Excluded conversations"),
        required=False,
        help_text=gettext_lazy("Conversation numbers, separated by commas."),
    )

    def clean_excluded(self) -> list[int]:
        text = self.cleaned_data["excluded"].replace("，", ",")
        try:
            ids = sorted({int(part) for part in text.split(",") if part.strip()})
        except ValueError:
            raise ValidationError(_("Give conversation numbers, like 12, 40.")) from None
        found = set(Conversation.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError(
                _("No such conversation: %(ids)s") % {"ids": ", ".join(map(str, missing))}
            )
        return ids


class KeepForm(forms.Form):
    keep_days = forms.IntegerField(
        label=gettext_lazy("Keep for (days)"), min_value=1, max_value=36500
    )


def _list(request: HttpRequest, form: RuleForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "retention/rules/list.html",
        {
            "rules": RetentionRule.objects.select_related("department").order_by("name", "id"),
            "form": form if request.user.has_role(Role.ADMIN) else None,
            "unhealthy": unhealthy_rules(),
        },
        status=status,
    )


@require_GET
@login_required
def rule_list(request: HttpRequest) -> HttpResponse:
    require(may_read_rules(request.user))
    return _list(request, RuleForm())


@require_POST
@login_required
def rule_create(request: HttpRequest) -> HttpResponse:
    require(may_manage_rules(request.user))
    form = RuleForm(request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    data = form.cleaned_data
    rule = do_create_rule(
        acting_user=request.user,
        name=data["name"],
        keep_days=data["keep_days"],
        action=data["action"],
        department=data["department"],
        kind=data["kind"],
        excluded=list(Conversation.objects.filter(pk__in=data["excluded"])),
    )
    messages.success(request, _("Rule created as a draft. Run its dry run, then propose it."))
    return redirect("rule", rule_id=rule.pk)


def _detail(request: HttpRequest, rule: RetentionRule, keep_form=None, status=200) -> HttpResponse:
    viewer = request.user
    is_admin = may_manage_rules(viewer)
    awaiting = rule_awaits_approval(rule)
    return render(
        request,
        "retention/rules/detail.html",
        {
            "rule": rule,
            "preview": rule.last_preview or None,
            "excluded": rule.excluded_conversations.order_by("pk"),
            "is_admin": is_admin,
            "may_approve": may_approve_rule(rule, viewer),
            "awaiting": awaiting,
            "keep_form": keep_form or KeepForm(),
        },
        status=status,
    )


@require_GET
@login_required
def rule_detail(request: HttpRequest, rule_id: int) -> HttpResponse:
    require(may_read_rules(request.user))
    return _detail(request, get_object_or_404(RetentionRule, pk=rule_id))


@require_POST
@login_required
def rule_action(request: HttpRequest, rule_id: int, action: str) -> HttpResponse:
    """The buttons of a rule's page: dry run, propose, approve, keep longer, disable."""
    require(may_manage_rules(request.user))
    rule = get_object_or_404(RetentionRule, pk=rule_id)
    keep_days = None
    if action in ("propose", "relax") and request.POST.get("keep_days", "") != "":
        form = KeepForm(request.POST)
        if not form.is_valid():
            return _detail(request, rule, keep_form=form, status=400)
        keep_days = form.cleaned_data["keep_days"]
    second = verified(request)
    try:
        if action == "preview":
            do_preview_rule(rule, acting_user=request.user)
            done = _("Dry run updated.")
        elif action == "propose":
            do_propose(rule, acting_user=request.user, keep_days=keep_days)
            done = _("Proposed: a second admin must approve it.")
        elif action == "approve":
            do_approve_rule(rule, acting_user=request.user, verified_second_factor=second)
            done = _("Approved: it bites after the grace period.")
        elif action == "relax":
            do_relax_rule(
                rule, acting_user=request.user, verified_second_factor=second, keep_days=keep_days
            )
            done = _("The rule now keeps longer.")
        elif action == "disable":
            do_relax_rule(
                rule, acting_user=request.user, verified_second_factor=second, disable=True
            )
            done = _("The rule is disabled.")
        else:  # the URL converter admits only the actions above
            raise Http404
    except (Conflict, ValidationError) as exc:
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
    else:
        messages.success(request, done)
    return redirect("rule", rule_id=rule.pk)
