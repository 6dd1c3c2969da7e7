from django.urls import path, register_converter

from retention.web import (
    audit_log,
    exports,
    hold_pages,
    lockouts,
    notification_pages,
    participant,
    policy_pages,
    progress,
    recycle,
    reports,
    request_wizard,
    requests,
    reviews,
    rules,
    security,
    views,
)


class _Words:
    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def words(*allowed: str) -> type:
    """A path converter for a page's buttons: any other word in the URL is a 404."""
    return type("Words", (_Words,), {"regex": "|".join(allowed)})


register_converter(words("preview", "propose", "approve", "relax", "disable"), "rule_action")
register_converter(words("sign-off", "flag"), "review_decision")
register_converter(words("csv", "xlsx", "pdf"), "report_format")

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signin/", views.SignInView.as_view(), name="login"),
    path("signout/", views.SignOutView.as_view(), name="logout"),
    # The second factor and API tokens.
    path("signin/code/", security.second_factor_code, name="second-factor-code"),
    path("security/", security.security, name="security"),
    path("security/authenticator/", security.second_factor_enrol, name="second-factor-enrol"),
    path(
        "security/authenticator/remove/",
        security.second_factor_remove,
        name="second-factor-remove",
    ),
    path("security/tokens/", security.token_create, name="token-create"),
    path("security/tokens/<int:token_id>/revoke/", security.token_revoke, name="token-revoke"),
    path("security/members/", security.member_security, name="member-security"),
    path(
        "security/members/<int:member_id>/reset/",
        security.member_reset_device,
        name="member-reset-device",
    ),
    path("conversations/", views.conversation_list, name="conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.conversation_detail,
        name="conversation",
    ),
    # A participant's own side of a conversation.
    path(
        "conversations/<int:conversation_id>/mine/",
        participant.conversation_controls,
        name="conversation-controls",
    ),
    path(
        "conversations/<int:conversation_id>/hide/",
        participant.conversation_hide,
        name="conversation-hide",
    ),
    path(
        "conversations/<int:conversation_id>/unhide/",
        participant.conversation_unhide,
        name="conversation-unhide",
    ),
    path(
        "conversations/<int:conversation_id>/delete-mine/",
        participant.conversation_delete_mine,
        name="conversation-delete-mine",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:message_id>/delete-mine/",
        participant.message_delete_mine,
        name="message-delete-mine",
    ),
    # Deletion requests and their approval.
    path("requests/", requests.request_list, name="requests"),
    path("requests/new/", request_wizard.request_new, name="request-new"),
    path("requests/preview/", request_wizard.request_preview, name="request-preview"),
    path("requests/<int:request_id>/", requests.request_detail, name="request"),
    path(
        "requests/<int:request_id>/progress/",
        progress.request_progress_fragment,
        name="request-progress",
    ),
    path("requests/<int:request_id>/approve/", requests.request_approve, name="request-approve"),
    path("requests/<int:request_id>/reject/", requests.request_reject, name="request-reject"),
    path("requests/<int:request_id>/cancel/", requests.request_cancel, name="request-cancel"),
    path("requests/<int:request_id>/restore/", requests.request_restore, name="request-restore"),
    path("approvals/", requests.approvals_inbox, name="approvals"),
    # Exports.
    path("requests/<int:request_id>/exports/", exports.request_exports, name="request-exports"),
    path(
        "conversations/<int:conversation_id>/exports/",
        exports.conversation_exports,
        name="conversation-exports",
    ),
    path("exports/<int:export_id>/download/", exports.export_download, name="export-download"),
    # Retention rules.
    path("rules/", rules.rule_list, name="rules"),
    path("rules/new/", rules.rule_create, name="rule-create"),
    path("rules/<int:rule_id>/", rules.rule_detail, name="rule"),
    path(
        "rules/<int:rule_id>/<rule_action:action>/",
        rules.rule_action,
        name="rule-action",
    ),
    # The recycle bin.
    path("recycle-bin/", recycle.recycle_bin, name="recycle-bin"),
    path("recycle-bin/<int:request_id>/", recycle.recycle_bin_request, name="recycle-bin-request"),
    path(
        "recycle-bin/<int:request_id>/restore/",
        recycle.recycle_bin_restore,
        name="recycle-bin-restore",
    ),
    # Holds, policies, notifications.
    path("reviews/", reviews.review_list, name="reviews"),
    path("reviews/<int:review_id>/", reviews.review_detail, name="review"),
    path("reviews/recycle-bin/", reviews.recycle_bin_review, name="review-recycle-bin"),
    path(
        "reviews/<int:review_id>/<review_decision:decision>/",
        reviews.review_decide,
        name="review-decide",
    ),
    path("holds/", hold_pages.hold_list, name="holds"),
    path("holds/place/", hold_pages.hold_place, name="hold-place"),
    path("holds/<int:hold_id>/release/", hold_pages.hold_release, name="hold-release"),
    path("policies/", policy_pages.policies, name="policies"),
    path("notifications/", notification_pages.notification_list, name="notifications"),
    path(
        "notifications/read/",
        notification_pages.notifications_mark_read,
        name="notifications-mark-read",
    ),
    path("nav/counts/", notification_pages.nav_counts, name="nav-counts"),
    # The auditor's workspace: the audit log explorer and chain verification.
    path("audit/", audit_log.audit_log, name="audit-log"),
    path("audit/export/", audit_log.audit_export, name="audit-export"),
    path("audit/exports/", audit_log.audit_exports_fragment, name="audit-exports"),
    path(
        "audit/exports/<int:export_id>/download/",
        audit_log.audit_export_download,
        name="audit-export-download",
    ),
    path("audit/verify/", audit_log.audit_verify, name="audit-verify"),
    path("audit/verify/status/", audit_log.audit_verify_status, name="audit-verify-status"),
    path("audit/verify/run/", audit_log.audit_verify_run, name="audit-verify-run"),
    # Sign-in lockouts (admins).
    path("lockouts/", lockouts.lockout_list, name="lockouts"),
    path("lockouts/lift/", lockouts.lockout_lift, name="lockout-lift"),
    # Audit reports (auditors and admins).
    path("reports/", reports.report_index, name="reports"),
    path(
        "reports/annual/<str:period>/<report_format:fmt>/",
        reports.annual_download,
        name="report-annual-download",
    ),
    path("reports/<str:period>/", reports.quarterly, name="report-quarterly"),
    path(
        "reports/<str:period>/<report_format:fmt>/",
        reports.quarterly_download,
        name="report-quarterly-download",
    ),
]
