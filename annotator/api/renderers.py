"""CSV for the report endpoints: ``?format=csv`` on any of them (DRF's format negotiation)."""
from __future__ import annotations

import csv
import io

from rest_framework.renderers import BaseRenderer


class CSVRenderer(BaseRenderer):
    """A list of flat objects as CSV, columns in the order of the first object's keys."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if not isinstance(data, list):  # an error: {"detail": ...} or field errors
            data = [data] if isinstance(data, dict) else []
        out = io.StringIO()
        if data:
            writer = csv.DictWriter(out, fieldnames=list(data[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(data)
        return out.getvalue().encode(self.charset)
