from __future__ import annotations

from django.urls import path, re_path

from audit.models import ReviewStatus
from retention.api import (
    audit,
    exports,
    lockouts,
    recycle,
    reports,
    requests,
    reviews,
    rules,
    views,
)
from retention.api.ingest import IngestMessagesView

urlpatterns = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="api-token"),
    path("auth/tokens/", views.TokenListView.as_view(), name="api-tokens"),
    path(
        "auth/tokens/<int:token_id>/revoke/",
        views.TokenRevokeView.as_view(),
        name="api-token-revoke",
    ),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("departments/", views.DepartmentListView.as_view(), name="api-departments"),
    path("conversations/", views.ConversationListView.as_view(), name="api-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.ConversationDetailView.as_view(),
        name="api-conversation",
    ),
    path(
        "conversations/<int:conversation_id>/messages/",
        views.ConversationMessagesView.as_view(),
        name="api-conversation-messages",
    ),
    path(
        "conversations/<int:conversation_id>/hide/",
        requests.ConversationHideView.as_view(),
        name="api-conversation-hide",
    ),
    path(
        "conversations/<int:conversation_id>/unhide/",
        requests.ConversationUnhideView.as_view(),
        name="api-conversation-unhide",
    ),
    path("ingest/messages/", IngestMessagesView.as_view(), name="api-ingest-messages"),
    # Deletion requests
    path("requests/", requests.RequestListView.as_view(), name="api-requests"),
    path("requests/preview/", requests.RequestPreviewView.as_view(), name="api-request-preview"),
    path("requests/<int:request_id>/", requests.RequestDetailView.as_view(), name="api-request"),
    path(
        "requests/<int:request_id>/approve/",
        requests.RequestApproveView.as_view(),
        name="api-request-approve",
    ),
    path(
        "requests/<int:request_id>/reject/",
        requests.RequestRejectView.as_view(),
        name="api-request-reject",
    ),
    path(
        "requests/<int:request_id>/cancel/",
        requests.RequestCancelView.as_view(),
        name="api-request-cancel",
    ),
    path(
        "requests/<int:request_id>/restore/",
        requests.RequestRestoreView.as_view(),
        name="api-request-restore",
    ),
    # Compliance reviews
    path("reviews/", reviews.ReviewListView.as_view(), name="api-reviews"),
    path("reviews/<int:review_id>/", reviews.ReviewDetailView.as_view(), name="api-review"),
    path(
        "reviews/recycle-bin/",
        reviews.RecycleBinReviewView.as_view(),
        name="api-review-recycle-bin",
    ),
    path(
        "reviews/<int:review_id>/sign-off/",
        reviews.ReviewDecisionView.as_view(decision=ReviewStatus.SIGNED_OFF),
        name="api-review-sign-off",
    ),
    path(
        "reviews/<int:review_id>/flag/",
        reviews.ReviewDecisionView.as_view(decision=ReviewStatus.FLAGGED),
        name="api-review-flag",
    ),
    # Exports
    path(
        "requests/<int:request_id>/export/",
        exports.RequestExportView.as_view(),
        name="api-request-export",
    ),
    path(
        "conversations/<int:conversation_id>/export/",
        exports.ConversationExportView.as_view(),
        name="api-conversation-export",
    ),
    path("exports/<int:export_id>/", exports.ExportDetailView.as_view(), name="api-export"),
    path(
        "exports/<int:export_id>/download/",
        exports.ExportDownloadView.as_view(),
        name="api-export-download",
    ),
    # Retention rules
    path("retention-rules/", rules.RuleListView.as_view(), name="api-rules"),
    path("retention-rules/<int:rule_id>/", rules.RuleDetailView.as_view(), name="api-rule"),
    path(
        "retention-rules/<int:rule_id>/preview/",
        rules.RulePreviewView.as_view(),
        name="api-rule-preview",
    ),
    path(
        "retention-rules/<int:rule_id>/propose/",
        rules.RuleProposeView.as_view(),
        name="api-rule-propose",
    ),
    path(
        "retention-rules/<int:rule_id>/approve/",
        rules.RuleApproveView.as_view(),
        name="api-rule-approve",
    ),
    path(
        "retention-rules/<int:rule_id>/relax/", rules.RuleRelaxView.as_view(), name="api-rule-relax"
    ),
    path(
        "conversations/<int:conversation_id>/effective-policy/",
        rules.EffectivePolicyView.as_view(),
        name="api-conversation-effective-policy",
    ),
    # The recycle bin
    path("recycle-bin/", recycle.RecycleBinListView.as_view(), name="api-recycle-bin"),
    path(
        "recycle-bin/<int:request_id>/restore/",
        recycle.RecycleBinRestoreView.as_view(),
        name="api-recycle-bin-restore",
    ),
    # Holds, notifications, policies
    path("holds/", requests.HoldListView.as_view(), name="api-holds"),
    path(
        "holds/<int:hold_id>/release/", requests.HoldReleaseView.as_view(), name="api-hold-release"
    ),
    path("notifications/", requests.NotificationListView.as_view(), name="api-notifications"),
    path(
        "notifications/read/",
        requests.NotificationReadView.as_view(),
        name="api-notifications-read",
    ),
    path("policies/", requests.PolicyView.as_view(), name="api-policies"),
    path("quota-grants/", requests.QuotaGrantView.as_view(), name="api-quota-grants"),
    # The audit log
    path("audit/events/", audit.AuditEventListView.as_view(), name="api-audit-events"),
    path("audit/verify/", audit.AuditVerifyView.as_view(), name="api-audit-verify"),
    path("audit/digests/", audit.ChainDigestListView.as_view(), name="api-audit-digests"),
    # Sign-in lockouts (admins)
    path("lockouts/", lockouts.LockoutListView.as_view(), name="api-lockouts"),
    path("lockouts/lift/", lockouts.LockoutLiftView.as_view(), name="api-lockout-lift"),
    # Audit reports (auditors, admins)
    path(
        "reports/quarterly/<str:quarter>/",
        reports.QuarterlyReportView.as_view(),
        name="api-report-quarterly",
    ),
    path(
        "reports/annual/<str:year>/",
        reports.AnnualAssessmentView.as_view(),
        name="api-report-annual",
    ),
    # Anything else under the API is a JSON 404, like a missing object. Keep it LAST: a
    # route after it is never reached. Any character, a newline too ([\s\S], not ".").
    re_path(r"^[\s\S]*/$", views.NotFoundView.as_view(), name="api-not-found"),
]
