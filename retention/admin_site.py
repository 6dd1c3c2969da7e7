"""The admin site: configuration for members with the admin role, nobody else."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _

from retention.access import second_factor
from retention.access.predicates import may_use_admin_site


class QingliAdminSite(admin.AdminSite):
    site_header = _("Qingli configuration")
    site_title = _("Qingli")

    def has_permission(self, request) -> bool:
        return may_use_admin_site(request.user) and self._second_factor_ok(request)

    @staticmethod
    def _second_factor_ok(request) -> bool:
        """Configuration edits people, roles and conversations: while the policy requires
        it, only a session verified with the second factor reaches it."""
        return second_factor.verified(request) or not second_factor.is_required()

    def login(self, request, extra_context=None):
        # One sign-in page for the whole product; afterwards, back where the admin was going.
        next_url = request.GET.get("next", "")
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            next_url = reverse("admin:index")
        if request.user.is_authenticated:
            if self.has_permission(request):
                return redirect(next_url)
            if may_use_admin_site(request.user):
                # An admin whose session lacks the second factor: verify (or set it up).
                return redirect(f"{reverse('second-factor-code')}?{urlencode({'next': next_url})}")
            raise Http404  # signed-in non-admins see nothing here
        return redirect_to_login(next_url, reverse("login"))
