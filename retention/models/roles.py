"""The five roles. Each is a Django group of the same name, created by a migration."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    STAFF = "staff", _("staff")
    MANAGER = "manager", _("manager")
    SECURITY = "security", _("security officer")
    AUDITOR = "auditor", _("auditor")
    ADMIN = "admin", _("admin")


# Who reads the audit log (the explorer, its exports, chain verification and digests).
AUDIT_LOG_READERS = (Role.AUDITOR, Role.ADMIN)

# What the admin role holds beyond the role checks in code.
ADMIN_PERMISSIONS = [("retention", "ingest_messages"), ("django_rq", "admin")]


def ensure_role_groups() -> None:
    """Create the role groups (and the admin role's permissions) if they are missing.

    Migration 0003 does this for real databases; tests that flush tables call it again.
    """
    from django.contrib.auth.models import Group, Permission

    for role in Role:
        Group.objects.get_or_create(name=role.value)
    admin = Group.objects.get(name=Role.ADMIN)
    for app_label, codename in ADMIN_PERMISSIONS:
        admin.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


APPROVER_ROLES = {Role.MANAGER.value, Role.SECURITY.value, Role.ADMIN.value}
