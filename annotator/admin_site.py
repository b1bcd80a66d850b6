"""The admin site Django serves at /admin/ (``PlatformAdminConfig.default_site``).

It lives apart from ``annotator.admin``: Django builds the default site by importing this class,
and a module that also registers models would register them while the site is being built, on an
instance Django then throws away (the served admin showed no model of the app)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest


class PlatformAdminSite(admin.AdminSite):
    """The admin lists every company's rows, so only superusers (platform operators) enter it; a
    company's ``admin`` role works in the app, where everything is scoped to its company."""

    site_header = "Shelf annotator: platform administration"

    def has_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser
