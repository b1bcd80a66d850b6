"""What the OpenAPI schema says about the API's errors, so that a client (and the fuzz test,
``tests/annotator/test_api_fuzz.py``) can rely on every status and body it gets.

An operation names the errors it can answer with ``errors(...)`` in its ``extend_schema``; those
DRF gives any view are added to every operation that can answer them by ``add_common_errors`` (a
postprocessing hook, ``SPECTACULAR_SETTINGS``): 401 where credentials are required, 415 where a body
is read, and 404 where DRF's ``format`` query parameter is taken. An error comes in the format the
request negotiated (JSON, or CSV for a report asked ``?format=csv``), so each is described in every
media type of the operation's success."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse

from annotator.api.serializers import ErrorSerializer, ValidationErrorSerializer

DESCRIPTIONS = {
    400: "The request is not valid: what is wrong with each field, or {\"detail\": ...} for the request "
         "as a whole (a body that does not parse, answers that do not fit the frame).",
    401: "No credentials, or a token or session that is not valid (WWW-Authenticate names the scheme).",
    403: "The user's role does not allow it, or (signed in with a session) the CSRF token is missing.",
    404: "Nothing of the kind among the user's companies' (another company's reads as missing); for a "
         "list, a page past the last.",
    409: "The frame is not in a state that allows it now (see the operation).",
    413: "The upload is over the size limit.",
    415: "The body is in a media type the operation does not take (see its Content-Type).",
    429: "Too many failed attempts; Retry-After, when there is one, says how many seconds to wait.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The ``responses`` entries for these error statuses, for an operation's ``extend_schema``."""
    return {code: OpenApiResponse(ValidationErrorSerializer if code == 400 else ErrorSerializer,
                                  description=DESCRIPTIONS[code]) for code in codes}


class ValidationErrorSchema(OpenApiSerializerExtension):
    """DRF's field errors: an object keyed by field name, which a serializer cannot describe."""

    target_class = ValidationErrorSerializer

    def map_serializer(self, auto_schema, direction):
        messages = {"type": "array", "items": {"type": "string"}}
        # A list's items (a list of objects: one object of problems per item) or a nested object's fields.
        nested = [{"type": "array", "items": {"type": "object", "additionalProperties": {}}},
                  {"type": "object", "additionalProperties": {}}]
        return {
            "oneOf": [
                auto_schema.resolve_serializer(ErrorSerializer, direction).ref,
                {"type": "object", "properties": {"non_field_errors": messages},
                 "additionalProperties": {"anyOf": [messages, *nested]}},
            ],
        }


def add_common_errors(result: dict, generator, request, public) -> dict:
    """The 401 of every operation that requires credentials (with the WWW-Authenticate DRF sends, as
    TokenAuthentication comes first), the 415 of every one that reads a body, and the 404 DRF answers
    for a ``?format=`` it has no renderer for."""
    error = {"$ref": "#/components/schemas/Error"}
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", {"type": "object", "properties": {"detail": {"type": "string"}},
                                 "required": ["detail"]})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            media_types = _success_media_types(operation)
            responses = operation.setdefault("responses", {})
            if operation.get("security") and {} not in operation["security"]:
                responses.setdefault("401", {
                    "description": DESCRIPTIONS[401],
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True,
                                                     "description": "the scheme to authenticate with"}},
                    "content": {media_type: {"schema": error} for media_type in media_types},
                })
            if "requestBody" in operation:
                responses.setdefault("415", {
                    "description": DESCRIPTIONS[415],
                    "content": {media_type: {"schema": error} for media_type in media_types},
                })
            if any(p.get("in") == "query" and p.get("name") == "format" for p in operation.get("parameters", [])):
                responses.setdefault("404", {
                    "description": "No renderer for the format asked for.",
                    "content": {media_type: {"schema": error} for media_type in media_types},
                })
    return result


def _success_media_types(operation: dict) -> list[str]:
    for status, response in sorted(operation.get("responses", {}).items()):
        if status.startswith("2") and response.get("content"):
            return list(response["content"])
    return ["application/json"]
