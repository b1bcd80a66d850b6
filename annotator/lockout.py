"""django-axes' answer to a login attempt while the username is locked out on that address
(``AXES_LOCKOUT_CALLABLE``): the API's token endpoint answers as the API does, in JSON, and pages
with the app's lockout page; both with ``Retry-After``, so that a script knows how long to wait."""
from __future__ import annotations

from datetime import timedelta

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

API_PREFIX = "/api/"


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict | None = None) -> HttpResponse:
    cool_off = get_cool_off(request)
    if request.path_info.startswith(API_PREFIX):
        wait = f"try again in {_minutes(cool_off)}" if cool_off else "ask an administrator to unlock it"
        response: HttpResponse = JsonResponse(
            {"detail": f"Too many failed logins for this username from this address; {wait}."}, status=429)
    else:
        response = render(request, settings.AXES_LOCKOUT_TEMPLATE, {
            "failure_limit": get_failure_limit(request, credentials),
            "username": get_client_username(request, credentials) or "",
            "cooloff_timedelta": cool_off,
        }, status=429)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


def _minutes(cool_off: timedelta) -> str:
    minutes = max(1, round(cool_off.total_seconds() / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
