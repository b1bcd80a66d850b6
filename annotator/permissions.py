"""Who may do what. A role belongs to a membership: a user is an annotator, QA lead, manager or admin
of one company (``annotator.models.Membership.role``) and may be something else in another; a
superuser may do everything. Annotators label; QA leads label and review; managers read reports but
label and relabel nothing; admins do all of it for their company.

A check about one company's object (retrying a frame, submitting it, relabelling a box) asks for the
role in that company (``company=``); what a page offers (its links, its buttons) asks whether any of
the user's memberships has the role."""
from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.permissions import SAFE_METHODS, BasePermission

from annotator.models import Company, Membership

REPORT_READERS = ("manager", "qa_lead", "admin")
LABELLERS = ("annotator", "qa_lead", "admin")
REVIEWERS = ("qa_lead", "admin")
MODEL_VIEWERS = ("qa_lead", "admin")
MODEL_ADMINS = ("admin",)


def has_role(user, *roles: str, company: Company | int | None = None) -> bool:
    """Whether one of the user's memberships holds one of ``roles``: the membership of ``company``
    (a company or its id) when given, any of them otherwise."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    memberships = Membership.objects.filter(user=user, role__in=roles)
    if company is not None:
        memberships = memberships.filter(company=company)
    return memberships.exists()


def companies_with_role(user, *roles: str) -> QuerySet[Company]:
    """The companies in which the user holds one of ``roles`` (every company for a superuser)."""
    if not user.is_authenticated:
        return Company.objects.none()
    if user.is_superuser:
        return Company.objects.all()
    return Company.objects.filter(memberships__user=user, memberships__role__in=roles)


def can_read_reports(user, *, company: Company | int | None = None) -> bool:
    return has_role(user, *REPORT_READERS, company=company)


def can_label(user, *, company: Company | int | None = None) -> bool:
    return has_role(user, *LABELLERS, company=company)


def can_review(user, *, company: Company | int | None = None) -> bool:
    return has_role(user, *REVIEWERS, company=company)


def can_see_models(user, *, company: Company | int | None = None) -> bool:
    """The Models page (learning rounds, gate figures, re-index progress): QA leads and admins."""
    return has_role(user, *MODEL_VIEWERS, company=company)


def can_manage_models(user, *, company: Company | int | None = None) -> bool:
    """Promoting a set by hand and rolling back: admins."""
    return has_role(user, *MODEL_ADMINS, company=company)


class ReadsReports(BasePermission):
    message = "Reports are for managers and QA leads."

    def has_permission(self, request, view) -> bool:
        return can_read_reports(request.user)


class ReviewsLabels(BasePermission):
    """The label-noise report and the review: QA leads and admins."""

    message = "Reviewing labels is for QA leads."

    def has_permission(self, request, view) -> bool:
        return can_review(request.user)


class LabelsFrames(BasePermission):
    """Uploading, leasing and submitting frames: annotators and QA leads; managers read, they do not
    label. The object checked is anything with a ``company_id`` (a frame, a store): the user must
    label for that company."""

    message = "Labelling is for annotators and QA leads."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or can_label(request.user)

    def has_object_permission(self, request, view, obj) -> bool:
        return request.method in SAFE_METHODS or can_label(request.user, company=obj.company_id)
