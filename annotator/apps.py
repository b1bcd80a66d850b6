from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AnnotatorConfig(AppConfig):
    default = True  # this module also holds the admin's config
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotator"
    verbose_name = "Shelf annotator"


class PlatformAdminConfig(admin_apps.AdminConfig):
    """Django's admin, for platform operators only (see ``annotator.admin_site.PlatformAdminSite``)."""

    default = False
    default_site = "annotator.admin_site.PlatformAdminSite"
