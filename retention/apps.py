from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext_lazy as _


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = _("Chat records")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # import here: this module is loaded while the app registry is being filled, before
        # the models that the session and export code import can be.
        from retention.exports.service import do_request_export
        from retention.web.sessions import on_sign_in
        from retention.wipes.evidence import ask_for_exports_with

        user_logged_in.connect(on_sign_in, dispatch_uid="qingli-session-clock")
        # A run that waits for an archiving rule's evidence asks for the export; exports sit
        # above wipes, so the function that asks is named to wipes here.
        ask_for_exports_with(do_request_export)


class QingliAdminConfig(AdminConfig):
    default_site = "retention.admin_site.QingliAdminSite"
