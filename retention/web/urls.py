from django.urls import path, register_converter

from retention.web import exports, recycle, reports, requests, rules, runs, views

register_converter(rules.RuleActionConverter, "rule_action")
register_converter(reports.ReportFormatConverter, "report_format")

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signin/", views.SignInView.as_view(), name="login"),
    path("signout/", views.SignOutView.as_view(), name="logout"),
    path("conversations/", views.conversation_list, name="conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.conversation_detail,
        name="conversation",
    ),
    # A participant's own side of a conversation.
    path(
        "conversations/<int:conversation_id>/mine/",
        requests.conversation_controls,
        name="conversation-controls",
    ),
    path(
        "conversations/<int:conversation_id>/hide/",
        requests.conversation_hide,
        name="conversation-hide",
    ),
    path(
        "conversations/<int:conversation_id>/unhide/",
        requests.conversation_unhide,
        name="conversation-unhide",
    ),
    path(
        "conversations/<int:conversation_id>/delete-mine/",
        requests.conversation_delete_mine,
        name="conversation-delete-mine",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:message_id>/delete-mine/",
        requests.message_delete_mine,
        name="message-delete-mine",
    ),
    # Deletion requests and their approval.
    path("requests/", requests.request_list, name="requests"),
    path("requests/new/", requests.request_new, name="request-new"),
    path("requests/preview/", requests.request_preview, name="request-preview"),
    path("requests/<int:request_id>/", requests.request_detail, name="request"),
    path(
        "requests/<int:request_id>/progress/",
        runs.request_progress_fragment,
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
    path("holds/", requests.hold_list, name="holds"),
    path("holds/place/", requests.hold_place, name="hold-place"),
    path("holds/<int:hold_id>/release/", requests.hold_release, name="hold-release"),
    path("policies/", requests.policies, name="policies"),
    path("notifications/", requests.notification_list, name="notifications"),
    path("notifications/read/", requests.notifications_mark_read, name="notifications-mark-read"),
    path("nav/counts/", requests.nav_counts, name="nav-counts"),
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
