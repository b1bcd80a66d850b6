"""Forms of the pages (the API validates with its serializers)."""
from __future__ import annotations

from django import forms

from annotator.selectors import REPORT_GROUPS

REPORT_COLUMNS = {  # the dashboard table's columns (attributes of ConfirmRateRow) and their headers
    "group": "Group", "boxes": "Boxes", "suggested": "Suggested", "confirm_rate": "Confirm rate",
    "confirmed": "Confirmed", "corrected": "Corrected", "added": "Added", "deleted": "Deleted",
    "changed_later_rate": "Changed by QA", "seconds_per_box": "Seconds a box", "boxes_per_hour": "Boxes an hour",
}


class ReportFilterForm(forms.Form):
    by = forms.ChoiceField(choices=[(name, name) for name in REPORT_GROUPS if name not in ("day", "week")],
                           initial="pipeline", required=False)
    over = forms.ChoiceField(choices=[("week", "week"), ("day", "day")], initial="week", required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(choices=[(c, c) for c in REPORT_COLUMNS] + [(f"-{c}", c) for c in REPORT_COLUMNS],
                             required=False)

    def clean(self) -> dict:
        data = super().clean()
        data["by"] = data.get("by") or "pipeline"
        data["over"] = data.get("over") or "week"
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError(f"The start ({data['start']}) is after the end ({data['end']}).")
        return data
