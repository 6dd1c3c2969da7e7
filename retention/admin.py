"""Django admin for configuration, open to members with the admin role only.

Every change made here is written to the audit log as well as Django's own admin log.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import log as audit
from audit.events import EventType
from retention.access.passwords import do_change_password
from retention.access.second_factor import verified
from retention.access.tokens import do_revoke_tokens_of_deactivated
from retention.governance.protection import do_set_protected
from retention.models import Conversation, Department, Member
from retention.models.roles import Role


class AuditedAdmin(admin.ModelAdmin):
    """Configuration is the admin role's job: the role, not per-model permissions, opens it."""

    def has_module_permission(self, request) -> bool:
        return request.user.has_role(Role.ADMIN)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_role(Role.ADMIN)

    def has_add_permission(self, request) -> bool:
        return request.user.has_role(Role.ADMIN)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_role(Role.ADMIN)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.has_role(Role.ADMIN)

    def log_addition(self, request, obj, message):
        self._audit(request, EventType.CONFIG_ADDED, obj, message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit(request, EventType.CONFIG_CHANGED, obj, message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit(request, EventType.CONFIG_DELETED, obj, [])
        return super().log_deletions(request, queryset)

    def _audit(self, request, event_type, obj, message) -> None:
        audit.record(
            event_type,
            actor=request.user,
            target=obj,
            department_id=getattr(obj, "department_id", None),
            ip_address=audit.client_ip(request),
            details={"object": str(obj), "change": message},
        )


@admin.register(Department)
class DepartmentAdmin(AuditedAdmin):
    list_display = ["indented_name", "parent", "depth"]
    search_fields = ["name"]
    ordering = ["path"]

    @admin.display(description=_("name"), ordering="path")
    def indented_name(self, obj: Department) -> str:
        return f"{'— ' * obj.depth}{obj.name}"


@admin.register(Member)
class MemberAdmin(AuditedAdmin, UserAdmin):
    list_display = ["username", "display_name", "department", "role_list", "is_active"]
    list_filter = ["groups", "is_active", "department"]
    search_fields = ["username", "display_name", "email"]
    fieldsets = [
        *UserAdmin.fieldsets,
        (_("Department and display name"), {"fields": ["display_name", "department"]}),
    ]
    add_fieldsets = [
        *UserAdmin.add_fieldsets,
        (
            _("Department, display name and roles"),
            {"fields": ["display_name", "department", "groups"]},
        ),
    ]

    @admin.display(description=_("roles"))
    def role_list(self, obj: Member) -> str:
        return ", ".join(sorted(obj.roles))

    def save_model(self, request, obj: Member, form, change: bool) -> None:
        # The change form runs in one transaction: deactivation and revocation go together.
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            revoked = do_revoke_tokens_of_deactivated(
                obj, acting_user=request.user, request=request
            )
            _say_tokens_revoked(request, revoked)

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        """Django's page, except that a valid new password (or turning password sign-in
        off) is set through do_change_password, which revokes the member's API tokens.
        Everything else (the form, its errors, refusals) is Django's own."""
        member = self.get_object(request, unquote(id))
        if (
            request.method != "POST"
            or member is None
            or not self.has_change_permission(request, member)
        ):
            return super().user_change_password(request, id, form_url)
        form = self.change_password_form(member, request.POST)
        if not form.is_valid():
            return super().user_change_password(request, id, form_url)
        usable = form.cleaned_data["set_usable_password"]
        if not usable and "unset-password" not in request.POST:
            return super().user_change_password(request, id, form_url)  # conflicting buttons
        with transaction.atomic():
            revoked = do_change_password(
                member,
                password=form.cleaned_data["password1"] if usable else None,
                acting_user=request.user,
                request=request,
            )
            self.log_change(request, member, self.construct_change_message(request, form, None))
        messages.success(
            request,
            gettext("Password changed successfully.")
            if usable
            else gettext("Password-based authentication was disabled."),
        )
        _say_tokens_revoked(request, revoked)
        update_session_auth_hash(request, member)
        return redirect(f"{self.admin_site.name}:retention_member_change", member.pk)


def _say_tokens_revoked(request: HttpRequest, revoked: list[int]) -> None:
    if revoked:
        messages.info(
            request,
            ngettext(
                "%(count)d API token of this member was revoked.",
                "%(count)d API tokens of this member were revoked.",
                len(revoked),
            )
            % {"count": len(revoked)},
        )


@admin.register(Conversation)
class ConversationAdmin(AuditedAdmin):
    """Metadata only: bodies are encrypted and never shown here."""

    list_display = [
        "title",
        "kind",
        "department",
        "external_party",
        "is_protected",
        "last_message_at",
    ]
    list_filter = ["kind", "is_protected"]
    search_fields = ["title", "external_party"]
    fields = ["title", "kind", "department", "external_party", "is_protected"]
    # Protection changes go through the audited actions below, never through the form.
    readonly_fields = ["kind", "is_protected"]
    actions = ["mark_protected", "remove_protection"]

    @admin.action(description=_("Mark protected (deletions need explicit confirmation)"))
    def mark_protected(self, request, queryset) -> None:
        for conversation in queryset:
            do_set_protected(
                conversation,
                acting_user=request.user,
                protected=True,
                verified_second_factor=verified(request),
            )

    @admin.action(description=_("Remove protection"))
    def remove_protection(self, request, queryset) -> None:
        for conversation in queryset:
            do_set_protected(
                conversation,
                acting_user=request.user,
                protected=False,
                verified_second_factor=verified(request),
            )

    def has_add_permission(self, request) -> bool:
        return False  # conversations come in through ingest and import

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deletion goes through requests and approvals, never through here


# Roles are fixed groups; they are granted on the member page, not edited as groups.
admin.site.unregister(Group)
# Authenticators are set up, removed and reset on the security pages, through audited
# actions; never edited (or their secrets shown) here.
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
