"""People and their access: roles are Django groups (what each may do is checked in
``annotator.permissions``), companies are memberships, API tokens are DRF's."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotator.models import Company, Membership

ROLES = ("annotator", "qa_lead", "manager", "admin")


def ensure_roles() -> dict[str, Group]:
    return {role: Group.objects.get_or_create(name=role)[0] for role in ROLES}


@transaction.atomic
def create_user(*, username: str, password: str, role: str, company: Company) -> object:
    """Create or reset a user with one role, belonging to ``company``. The password must pass the
    configured validators (``django.core.exceptions.ValidationError`` lists what is wrong).

    The ``admin`` role administers its company inside the app; it is not a Django superuser, who
    sees every company (platform operators, made with ``createsuperuser``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    groups = ensure_roles()
    user, _ = get_user_model().objects.get_or_create(username=username)
    validate_password(password, user)
    user.set_password(password)
    user.save()
    user.groups.set([groups[role]])
    Membership.objects.get_or_create(user=user, company=company)
    return user


def create_demo_users(*, company: Company) -> dict[str, str]:
    """One user per role with a fresh random password; returns {username: password}."""
    passwords = {}
    for role in ROLES:
        password = secrets.token_urlsafe(12)
        create_user(username=role, password=password, role=role, company=company)
        passwords[role] = password
    return passwords


def issue_api_token(*, user) -> str:
    """The user's API token (created on first request; one per user, until revoked)."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def revoke_api_token(*, user) -> bool:
    """Delete the user's API token; returns whether there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
