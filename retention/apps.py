from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = _("Chat records")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: this module is loaded while the app registry is
        # being filled, before the models that the session code imports can be.
        from django.contrib.auth.signals import user_logged_in

        from retention.web.sessions import on_sign_in

        user_logged_in.connect(on_sign_in, dispatch_uid="qingli-session-clock")


class QingliAdminConfig(AdminConfig):
    default_site = "retention.admin_site.QingliAdminSite"
