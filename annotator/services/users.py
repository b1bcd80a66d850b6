"""Roles are Django groups; what each may do is checked in ``annotator.permissions``."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from annotator.models import Company, Membership

ROLES = ("annotator", "qa_lead", "manager", "admin")


def ensure_roles() -> dict[str, Group]:
    return {role: Group.objects.get_or_create(name=role)[0] for role in ROLES}


@transaction.atomic
def create_user(*, username: str, password: str, role: str, company: Company) -> object:
    """Create or reset a user with one role, belonging to ``company``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    groups = ensure_roles()
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = role == "admin"
    user.is_superuser = role == "admin"
    user.save()
    user.groups.set([groups[role]])
    Membership.objects.get_or_create(user=user, company=company)
    return user


def create_demo_users(*, company: Company) -> dict[str, str]:
    """One user per role with a fresh random password; returns {username: password}."""
    passwords = {}
    for role in ROLES:
        password = secrets.token_urlsafe(9)
        create_user(username=role, password=password, role=role, company=company)
        passwords[role] = password
    return passwords
