from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = _("Chat records")
    default_auto_field = "django.db.models.BigAutoField"


class QingliAdminConfig(AdminConfig):
    default_site = "retention.admin_site.QingliAdminSite"
