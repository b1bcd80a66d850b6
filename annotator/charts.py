"""Server-rendered charts (matplotlib, SVG): no script to load, nothing fetched from elsewhere."""
from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported anywhere
from matplotlib.figure import Figure  # noqa: E402

from annotator.selectors import ConfirmRateRow  # noqa: E402


def confirm_rate_chart(rows: Sequence[ConfirmRateRow], *, title: str) -> bytes:
    """Confirm rate per period, one line per group (rows from ``confirm_rate_by(..., over=...)``)."""
    lines: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        if row.period is not None and row.confirm_rate is not None:
            lines[row.group or "(none)"].append((row.period, row.confirm_rate))
    figure = Figure(figsize=(8, 3.2), dpi=100)
    axes = figure.add_subplot()
    for group, points in sorted(lines.items()):
        periods, rates = zip(*sorted(points))
        axes.plot(periods, rates, marker="o", label=group)
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("confirm rate")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if lines:
        axes.legend(fontsize=8, loc="lower right")
    else:
        axes.text(0.5, 0.5, "no suggestions decided in this range", ha="center", va="center",
                  transform=axes.transAxes)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="svg")
    return out.getvalue()
