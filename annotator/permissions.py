"""Who may do what. Roles are Django groups (``annotator.services.users.ROLES``); a superuser may do
everything. Annotators label; QA leads label and review; managers read reports but relabel nothing."""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

REPORT_READERS = ("manager", "qa_lead", "admin")


def has_role(user, *roles: str) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=roles).exists()


def can_read_reports(user) -> bool:
    return has_role(user, *REPORT_READERS)


class ReadsReports(BasePermission):
    message = "Reports are for managers and QA leads."

    def has_permission(self, request, view) -> bool:
        return can_read_reports(request.user)


LABELLERS = ("annotator", "qa_lead", "admin")


def can_label(user) -> bool:
    return has_role(user, *LABELLERS)


class LabelsFrames(BasePermission):
    """Leasing and submitting frames: annotators and QA leads; managers read, they do not label."""

    message = "Labelling is for annotators and QA leads."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or can_label(request.user)


MODEL_VIEWERS = ("qa_lead", "admin")


def can_see_models(user) -> bool:
    """The Models page (learning rounds, gate figures, re-index progress): QA leads and admins."""
    return has_role(user, *MODEL_VIEWERS)


def can_manage_models(user) -> bool:
    """Promoting a set by hand and rolling back: admins."""
    return has_role(user, "admin")
