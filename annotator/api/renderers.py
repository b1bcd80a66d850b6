"""CSV for the report endpoints: ``?format=csv`` on any of them (DRF's format negotiation)."""
from __future__ import annotations

import csv
import io

from rest_framework.renderers import BaseRenderer

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """The value, with a text that a spreadsheet would run as a formula (a product named
    ``=HYPERLINK(...)``) prefixed with a single quote, which makes it plain text there."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CSVRenderer(BaseRenderer):
    """A list of flat objects as CSV, columns in the order of the first object's keys."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if not isinstance(data, list):  # an error: {"detail": ...} or field errors, one row
            data = [{key: _messages(value) for key, value in data.items()}] if isinstance(data, dict) else []
        # No rows: still the header row, from the serializer the rows would have come from, so that
        # the export is a CSV (an empty body would go out without its Content-Type).
        columns = list(data[0]) if data else _serializer_columns(data)
        out = io.StringIO()
        if columns:
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in data)
        return out.getvalue().encode(self.charset)


def _serializer_columns(data: list) -> list[str]:
    serializer = getattr(data, "serializer", None)  # DRF's ReturnList of a many=True serializer
    child = getattr(serializer, "child", None)
    return list(child.fields) if child is not None else []


def _messages(value: object) -> object:
    """A field's errors (a list of messages) as one cell."""
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return value
