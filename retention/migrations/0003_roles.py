"""The five roles as Django groups; admins may ingest records and open the queue dashboard."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ["staff", "manager", "security", "auditor", "admin"]


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; ingest's is needed now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    admin = Group.objects.get(name="admin")
    admin.permissions.add(
        Permission.objects.get(content_type__app_label="retention", codename="ingest_messages"),
        # The operators' queue dashboard, inside the admin site.
        Permission.objects.get(content_type__app_label="django_rq", codename="admin"),
    )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0002_ingest_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_rq", "0003_alter_dashboard_permission_names"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
