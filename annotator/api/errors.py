"""Django's answers for what no API view handles (a URL under /api/ that no route matches, a request
Django refuses before the view reads it: too many form fields, a body over DATA_UPLOAD_MAX_MEMORY_SIZE)
in JSON under /api/, as every other API error (``{"detail": ...}``); the HTML pages elsewhere.
They are the root URLconf's ``handler400`` and ``handler404``."""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIX = "/api/"
# Refusals whose message says what to change; any other (a bad Host header, say) is only "Bad request."
EXPLAINED = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        detail = str(exception) if isinstance(exception, EXPLAINED) else "Bad request."
        return JsonResponse({"detail": detail}, status=400)
    return defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
