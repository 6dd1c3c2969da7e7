"""Compliance review pages: the auditors' queue of permanent deletions to sign off or
flag. Auditors decide; admins read."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from audit.models import ReviewStatus
from retention.access.predicates import may_decide_reviews, may_read_reviews
from retention.errors import Conflict
from retention.reports import reviews
from retention.reports.periods import Quarter

REVIEWS_PER_PAGE = 50
# Quarters offered for a recycle-bin review: this one and the ones before it.
BIN_QUARTERS = 4
# The list's tabs: what each shows.
SHOWN = {
    "open": {"status": ReviewStatus.OPEN},
    "flagged": {"status": ReviewStatus.FLAGGED},
    "signed_off": {"status": ReviewStatus.SIGNED_OFF},
    "all": {},
}
TABS = [
    ("open", gettext_lazy("Awaiting review")),
    ("overdue", gettext_lazy("Overdue")),
    ("flagged", gettext_lazy("Flagged")),
    ("signed_off", gettext_lazy("Signed off")),
    ("all", gettext_lazy("All")),
]


class BinReviewForm(forms.Form):
    quarter = forms.ChoiceField(label=gettext_lazy("Quarter"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = Quarter.of(timezone.now())
        self.fields["quarter"].choices = [
            (str(q), str(q)) for q in (current.previous(n) for n in range(BIN_QUARTERS))
        ]


class DecisionForm(forms.Form):
    finding = forms.CharField(
        label=gettext_lazy("Finding or note"),
        required=False,
        max_length=reviews.FINDING_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


def _readable(request: HttpRequest):
    # Checked before any lookup: a refused member learns nothing of which reviews exist.
    if not may_read_reviews(request.user):
        raise PermissionDenied(_("Only auditors and admins read compliance reviews."))
    return reviews.reviews_for(request.user)


@require_GET
@login_required
def review_list(request: HttpRequest) -> HttpResponse:
    readable = _readable(request)
    shown = request.GET.get("show", "open")
    if shown == "overdue":
        chosen = reviews.overdue_reviews(request.user)
    elif shown in SHOWN:
        chosen = readable.filter(**SHOWN[shown])
    else:
        raise Http404
    page = Paginator(chosen.order_by("opened_at", "pk"), REVIEWS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "retention/reviews/list.html",
        {
            "page": page,
            "shown": shown,
            "tabs": TABS,
            "query": f"show={shown}",
            "overdue": reviews.overdue_reviews(request.user).count(),
            "due_before": reviews.due_before(),
            "bin_form": BinReviewForm() if may_decide_reviews(request.user) else None,
        },
    )


@require_POST
@login_required
def recycle_bin_review(request: HttpRequest) -> HttpResponse:
    """An auditor starts (or returns to) the review of a quarter's recycle bin."""
    _readable(request)
    form = BinReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(form.errors.get("quarter", [])))
        return redirect("reviews")
    review = reviews.do_open_recycle_bin_review(
        acting_user=request.user, quarter=form.cleaned_data["quarter"]
    )
    return redirect("review", review_id=review.pk)


def _detail(request: HttpRequest, review, form: DecisionForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "retention/reviews/detail.html",
        {
            "review": review,
            "summary": review.summary,
            "bin_rows": [
                (key, label, review.summary.get(key, {})) for key, label in reviews.BIN_FIGURES
            ],
            "form": form,
            "may_decide": may_decide_reviews(request.user) and review.status == ReviewStatus.OPEN,
            "overdue": reviews.is_overdue(review, reviews.due_before()),
        },
        status=status,
    )


@require_GET
@login_required
def review_detail(request: HttpRequest, review_id: int) -> HttpResponse:
    review = get_object_or_404(_readable(request), pk=review_id)
    return _detail(request, review, DecisionForm())


@require_POST
@login_required
def review_decide(request: HttpRequest, review_id: int, decision: str) -> HttpResponse:
    review = get_object_or_404(_readable(request), pk=review_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _detail(request, review, form, status=400)
    decided = ReviewStatus.SIGNED_OFF if decision == "sign-off" else ReviewStatus.FLAGGED
    try:
        reviews.do_decide_review(
            review, acting_user=request.user, decision=decided, finding=form.cleaned_data["finding"]
        )
        if decided == ReviewStatus.FLAGGED:
            messages.success(request, _("Review flagged; the admins have been told."))
        else:
            messages.success(request, _("Review signed off."))
    except ValidationError as exc:
        for error in exc.message_dict.get("finding", exc.messages):
            form.add_error("finding", error)
        return _detail(request, review, form, status=400)
    except Conflict as exc:
        messages.error(request, str(exc))
    return redirect("review", review_id=review.pk)
