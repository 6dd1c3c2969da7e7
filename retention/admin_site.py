"""The admin site: configuration for members with the admin role, nobody else."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from retention.roles import Role


class QingliAdminSite(admin.AdminSite):
    site_header = _("Qingli configuration")
    site_title = _("Qingli")

    def has_permission(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_role(Role.ADMIN))

    def login(self, request, extra_context=None):
        # One sign-in page for the whole product; signed-in non-admins see nothing here.
        if request.user.is_authenticated:
            raise Http404
        return redirect_to_login(request.get_full_path(), reverse("login"))
