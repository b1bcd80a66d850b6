"""People and their access: a user works for companies through memberships, each with one role
(what each role may do is checked in ``annotator.permissions``); API tokens are DRF's."""
from __future__ import annotations

import secrets

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotator.models import Company, Membership

ROLES = tuple(Membership.Role.values)


class MembershipRefused(Exception):
    """A change of a user's companies the service refuses; the message says why."""


@transaction.atomic
def create_user(*, username: str, password: str, role: str, company: Company, add_company: bool = False) -> object:
    """Create a user who is a ``role`` of ``company``, or reset an existing one's password. The
    password must pass the configured validators (``django.core.exceptions.ValidationError`` lists
    what is wrong).

    For an existing user the reset ends whatever the old password opened: their API token and their
    sessions. ``role`` becomes their role in ``company`` only; their other companies keep theirs. A
    company they do not belong to yet is refused (``MembershipRefused``) unless ``add_company``: a
    second company is a deliberate act, as its role then holds there too.

    The ``admin`` role administers its company inside the app; it is not a Django superuser, who
    sees every company (platform operators, made with ``createsuperuser``)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    user, created = get_user_model().objects.get_or_create(username=username)
    if not created and not add_company and not Membership.objects.filter(user=user, company=company).exists():
        companies = ", ".join(Company.objects.filter(memberships__user=user).values_list("name", flat=True))
        raise MembershipRefused(f"{username} exists and belongs to {companies or 'no company'}, not {company}")
    validate_password(password, user)
    user.set_password(password)
    user.save()
    Membership.objects.update_or_create(user=user, company=company, defaults={"role": role})
    if not created:
        revoke_api_token(user=user)
        end_sessions(user=user)
    return user


def create_demo_users(*, company: Company) -> dict[str, str]:
    """One user per role with a fresh random password; returns {username: password}. Demo users of
    another company are refused, not moved (``MembershipRefused``)."""
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


def end_sessions(*, user) -> int:
    """Log the user out everywhere: delete their stored sessions; returns how many there were.

    A new password already makes Django refuse the old sessions (each carries a hash of the password
    it was opened with); deleting them as well leaves nothing that a later change could revive."""
    mine = [session.pk for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
            if session.get_decoded().get(SESSION_KEY) == str(user.pk)]
    deleted, _ = Session.objects.filter(pk__in=mine).delete()
    return deleted
