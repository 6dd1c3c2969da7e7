"""Browser pages. Thin: forms validate, selectors read, actions write."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.selectors import recent_events
from retention.access import signin
from retention.access.activity import (
    do_record_failed_sign_in,
    do_record_sign_in,
    do_record_sign_out,
)
from retention.access.predicates import (
    may_decide_reviews,
    may_read_audit_log,
    may_see_frequent_deleters,
)
from retention.access.second_factor import has_device
from retention.governance.personal import frequent_deleters
from retention.models.roles import Role
from retention.policies import get_policy
from retention.records import selectors
from retention.records.crypto import KeyDestroyedError
from retention.records.filters import ConversationFilterForm
from retention.reports import reviews
from retention.rules.matching import effective_policy
from retention.rules.runs import unhealthy_rules
from retention.web.security import start_pending_sign_in

CONVERSATIONS_PER_PAGE = 25
MESSAGES_PER_PAGE = 50


class SignInView(auth_views.LoginView):
    """Failed sign-ins are audited and counted (retention/access/signin.py): past the limit, the
    django-axes middleware answers with the lockout page instead of the form."""

    redirect_authenticated_user = True
    # Django's form views take PUT as POST: a sign-in is a form post, nothing else.
    http_method_names = ["get", "post", "head", "options"]

    def form_valid(self, form):
        member = form.get_user()
        if has_device(member):
            # The password is right; the sign-in completes with the authenticator's code.
            return start_pending_sign_in(self.request, member, self.get_success_url())
        response = super().form_valid(form)
        do_record_sign_in(member=member, request=self.request)
        return response

    def form_invalid(self, form):
        username = form.data.get("username", "")
        if username:
            do_record_failed_sign_in(username=username, request=self.request)
        return super().form_invalid(form)


class SignOutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            do_record_sign_out(member=request.user, request=request)
        return super().post(request, *args, **kwargs)


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    viewer = request.user
    context = {"summary": selectors.dashboard_summary(viewer)}
    if viewer.has_role(Role.MANAGER):
        context["department_stats"] = selectors.department_stats(viewer)
    if may_read_audit_log(viewer):
        context["recent_events"] = recent_events(limit=10)
    if may_decide_reviews(viewer):
        overdue = reviews.overdue_reviews(viewer).order_by("opened_at")
        context["overdue_count"] = overdue.count()
        context["overdue_reviews"] = list(overdue[:10])
    if may_see_frequent_deleters(viewer):
        context["frequent_deleters"] = frequent_deleters()
        context["frequent_window_hours"] = get_policy("frequent_deletion_window_hours")
    if viewer.has_role(Role.ADMIN):
        context["unhealthy_rules"] = unhealthy_rules()
        context["lockouts"] = signin.active_lockouts()
    return render(request, "retention/dashboard.html", context)


@require_GET
@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    form = ConversationFilterForm(request.GET or None, viewer=request.user)
    if form.is_bound and not form.is_valid():
        conversations = selectors.conversation_list(request.user).none()
    elif form.is_bound:
        conversations = selectors.conversation_list(request.user, **form.selector_kwargs())
    else:
        conversations = selectors.conversation_list(request.user)
    page = Paginator(conversations, CONVERSATIONS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "retention/conversation_list.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


@require_GET
@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(
        selectors.conversations_for(request.user).select_related("department"),
        pk=conversation_id,
    )
    page = Paginator(selectors.messages_of(conversation, request.user), MESSAGES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    can_read = selectors.can_read_bodies(request.user, conversation)
    key_destroyed = False
    bodies: dict[int, str] = {}
    if can_read:
        try:
            bodies = selectors.readable_bodies(conversation, page)
        except KeyDestroyedError:
            key_destroyed = True
    rows = [(message, bodies.get(message.pk)) for message in page]
    return render(
        request,
        "retention/conversation_detail.html",
        {
            "conversation": conversation,
            "participants": conversation.participants.order_by("username"),
            "page": page,
            "rows": rows,
            "can_read": can_read,
            "key_destroyed": key_destroyed,
            "effective": effective_policy(conversation),
            "now": timezone.now(),
        },
    )
