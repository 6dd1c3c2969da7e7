"""Pages of the second factor and API tokens: the sign-in code step, setting up and
removing an authenticator, one's own tokens, and the admins' view of everyone's.

Thin: forms validate; ``retention.access.second_factor`` and ``retention.access.tokens``
act and audit.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import defaults
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from retention.access import second_factor
from retention.access.activity import do_record_sign_in
from retention.access.predicates import may_oversee_authenticators
from retention.access.tokens import do_issue_token, do_revoke_token, tokens_for
from retention.errors import Conflict
from retention.models import ApiToken, Member
from retention.models.roles import APPROVER_ROLES

# A password checked, its code not yet: {"member", "backend", "at", "next"}.
PENDING_SIGN_IN = "qingli_second_factor_pending"
# The secret being set up, until its first code confirms it.
ENROLMENT_SECRET = "qingli_second_factor_secret"
MEMBERS_PER_PAGE = 50


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from your authenticator app"),
        max_length=12,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "class": "code",
                "autofocus": True,
            }
        ),
    )

    def clean_code(self) -> str:
        return second_factor.clean_code(self.cleaned_data["code"])


class TokenForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name (what the token is for)"), max_length=100, required=False
    )


class ResetForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=500)


def safe_next(request: HttpRequest, candidate: str | None, default: str = "dashboard") -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(default)


def start_pending_sign_in(request: HttpRequest, member: Member, next_url: str) -> HttpResponse:
    """After the password: members with an authenticator are signed in only once its code
    is checked (called by the sign-in page)."""
    request.session[PENDING_SIGN_IN] = {
        "member": member.pk,
        "backend": member.backend,
        "at": time.time(),
        "next": next_url,
    }
    return redirect("second-factor-code")


def _pending_member(request: HttpRequest) -> tuple[Member, dict] | None:
    pending = request.session.get(PENDING_SIGN_IN)
    if not isinstance(pending, dict):
        return None
    if time.time() - pending.get("at", 0) > settings.QINGLI_SECOND_FACTOR_PENDING_SECONDS:
        del request.session[PENDING_SIGN_IN]
        return None
    member = Member.objects.filter(pk=pending.get("member"), is_active=True).first()
    return (member, pending) if member is not None else None


@require_http_methods(["GET", "POST"])
def second_factor_code(request: HttpRequest) -> HttpResponse:
    """The code step: completes a sign-in whose password was right, or verifies the
    session of a member who is signed in already (before a sensitive action)."""
    signed_in = request.user.is_authenticated
    if signed_in:
        member, next_url = request.user, safe_next(request, request.GET.get("next"))
        if request.user.is_verified():
            return redirect(next_url)
        if not second_factor.has_device(member):
            return redirect(f"{reverse('second-factor-enrol')}?{urlencode({'next': next_url})}")
    else:
        found = _pending_member(request)
        if found is None:
            messages.error(request, _("Sign in with your password first."))
            return redirect("login")
        member, pending = found
        next_url = safe_next(request, pending.get("next"))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = second_factor.check_code(
                member,
                form.cleaned_data["code"],
                request=request,
                via="session" if signed_in else "sign-in",
            )
        except ValidationError as exc:
            form.add_error("code", exc.messages)
        else:
            if signed_in:
                request.session.cycle_key()  # more rights: a new session key
            else:
                del request.session[PENDING_SIGN_IN]
                auth_login(request, member, backend=pending["backend"])  # cycles the key
                do_record_sign_in(member=member, request=request)
            otp_login(request, device)
            return redirect(next_url)
    return render(
        request,
        "retention/security/code.html",
        {"form": form, "member": member, "signed_in": signed_in},
        status=400 if form.errors else 200,
    )


# --- one's own authenticator and tokens ----------------------------------------------------------


def _security_page(request: HttpRequest, **extra: Any) -> HttpResponse:
    member = request.user
    context = {
        "device": second_factor.confirmed_device(member),
        "must_enrol": second_factor.must_enrol(member),
        "required": second_factor.is_required(),
        "verified": second_factor.verified(request),
        "tokens": tokens_for(member).filter(member=member, revoked_at__isnull=True),
        "token_form": TokenForm(),
        "remove_form": CodeForm(),
        **extra,
    }
    status = 400 if any(f.errors for f in context.values() if isinstance(f, forms.Form)) else 200
    return render(request, "retention/security/index.html", context, status=status)


@require_http_methods(["GET"])
@login_required
def security(request: HttpRequest) -> HttpResponse:
    return _security_page(request)


@require_http_methods(["GET", "POST"])
@login_required
def second_factor_enrol(request: HttpRequest) -> HttpResponse:
    member = request.user
    next_url = safe_next(request, request.GET.get("next"), default="security")
    if second_factor.has_device(member):
        messages.info(request, _("You already have an authenticator."))
        return redirect("security")
    if request.method == "POST" and "restart" in request.POST:
        request.session.pop(ENROLMENT_SECRET, None)
        return redirect(request.get_full_path())
    secret = request.session.get(ENROLMENT_SECRET)
    if not secret:
        secret = request.session[ENROLMENT_SECRET] = second_factor.new_secret()
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = second_factor.do_enrol(
                member, key_hex=secret, code=form.cleaned_data["code"], request=request
            )
        except ValidationError as exc:
            form.add_error("code", exc.messages)
        except Conflict as exc:
            messages.error(request, str(exc))
            return redirect("security")
        else:
            del request.session[ENROLMENT_SECRET]
            request.session.cycle_key()  # more rights: a new session key
            otp_login(request, device)  # the code just given verifies this session too
            messages.success(
                request,
                _("Your authenticator is set up. From now on, signing in asks for its code."),
            )
            return redirect(next_url)
    uri = second_factor.provisioning_uri(member, secret)
    return render(
        request,
        "retention/security/enrol.html",
        {
            "form": form,
            "qr_svg": second_factor.qr_svg(uri),
            "secret": second_factor.secret_for_humans(secret),
            "issuer": settings.OTP_TOTP_ISSUER,
        },
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def second_factor_remove(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            second_factor.do_remove_device(
                request.user, code=form.cleaned_data["code"], request=request
            )
        except ValidationError as exc:
            form.add_error("code", exc.messages)
        else:
            messages.success(
                request,
                _("Your authenticator is removed, with the API tokens it vouched for."),
            )
            return redirect("security")
    return _security_page(request, remove_form=form)


@require_POST
@login_required
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _security_page(request, token_form=form)
    try:
        issued = do_issue_token(
            member=request.user,
            name=form.cleaned_data["name"],
            second_factor_verified=second_factor.verified(request),
            request=request,
            via="web",
        )
    except ValidationError as exc:
        form.add_error("name", exc.messages)
        return _security_page(request, token_form=form)
    # Shown in this answer only: the key is not stored anywhere.
    return _security_page(request, issued=issued)


@require_POST
@login_required
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(tokens_for(request.user), pk=token_id)
    try:
        do_revoke_token(token, acting_user=request.user, request=request)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    if token.member_id != request.user.pk:
        return redirect("member-security")
    return redirect("security")


# --- admins: everyone's authenticators and tokens ------------------------------------------------


def _require_admin(member: Member) -> None:
    if not may_oversee_authenticators(member):
        raise PermissionDenied(_("Only admins see everyone's authenticators and tokens."))


@require_http_methods(["GET"])
@login_required
def member_security(request: HttpRequest) -> HttpResponse:
    _require_admin(request.user)
    query = (request.GET.get("q") or "").strip()[:150]
    members = (
        Member.objects.filter(is_active=True)
        .select_related("department")
        .prefetch_related(
            "groups",
            Prefetch(
                "api_tokens",
                queryset=ApiToken.objects.filter(revoked_at__isnull=True),
                to_attr="live_tokens",
            ),
        )
        .order_by("username")
    )
    if query:
        members = members.filter(Q(username__icontains=query) | Q(display_name__icontains=query))
    page = Paginator(members, MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    enrolled = dict(
        TOTPDevice.objects.filter(user__in=[m.pk for m in page], confirmed=True).values_list(
            "user_id", "created_at"
        )
    )
    rows = [
        {
            "member": m,
            # From the prefetched groups: one query for the page, not one per member.
            "must_enrol": bool({g.name for g in m.groups.all()} & APPROVER_ROLES),
            "enrolled_at": enrolled.get(m.pk),
        }
        for m in page
    ]
    return render(
        request,
        "retention/security/members.html",
        {
            "rows": rows,
            "page": page,
            "query": query,
            "query_string": urlencode({"q": query}) if query else "",
        },
    )


@require_POST
@login_required
def member_reset_device(request: HttpRequest, member_id: int) -> HttpResponse:
    _require_admin(request.user)
    member = get_object_or_404(Member, pk=member_id, is_active=True)
    form = ResetForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("reason", [])))
        return redirect("member-security")
    try:
        revoked = second_factor.do_reset_device(
            member,
            acting_user=request.user,
            verified_second_factor=second_factor.verified(request),
            reason=form.cleaned_data["reason"],
        )
    except (Conflict, ValidationError) as exc:
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
    else:
        messages.success(
            request,
            _(
                "%(member)s's authenticator is reset (%(tokens)d API tokens revoked); they "
                "can set up a new one."
            )
            % {"member": member, "tokens": len(revoked)},
        )
    return redirect("member-security")


# --- refusals -------------------------------------------------------------------------------------


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 403 page; a refusal for want of a second factor says how to give it."""
    if not isinstance(exception, second_factor.SecondFactorRequired):
        return defaults.permission_denied(request, exception)
    back = safe_next(request, request.headers.get("Referer"))
    if back.startswith(("http://", "https://")):  # the same site's page: its path will do
        parts = urlsplit(back)
        back = parts.path + (f"?{parts.query}" if parts.query else "")
    has_device = request.user.is_authenticated and second_factor.has_device(request.user)
    return render(
        request,
        "retention/security/required.html",
        {"exception": str(exception), "has_device": has_device, "back": back},
        status=403,
    )
