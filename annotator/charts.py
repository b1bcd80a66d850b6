"""Server-rendered charts (matplotlib, SVG): no script to load, nothing fetched from elsewhere."""
from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported anywhere
import matplotlib.dates as mdates  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from annotator.selectors import ConfirmRateRow  # noqa: E402

PERIOD_DAYS = {"day": 1, "week": 7}


def _as_datetime(period: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(period, dt.datetime):
        return period.replace(tzinfo=None)
    return dt.datetime(period.year, period.month, period.day)


def time_axis_limits(periods: Sequence[dt.date | dt.datetime], *, over: str = "day") -> tuple[dt.datetime, dt.datetime]:
    """The time axis for these periods: from the first to the last, padded by half a period on
    each side, so one point spans one period (a day, a week), not matplotlib's default years."""
    if not periods:
        raise ValueError("no periods to fit an axis to")
    half = dt.timedelta(days=PERIOD_DAYS.get(over, 1) / 2)
    points = [_as_datetime(p) for p in periods]
    return min(points) - half, max(points) + half


def confirm_rate_figure(rows: Sequence[ConfirmRateRow], *, title: str, over: str = "day") -> Figure:
    """The chart as a matplotlib figure (what ``confirm_rate_chart`` renders)."""
    lines: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        if row.period is not None and row.confirm_rate is not None:
            lines[row.group or "(none)"].append((_as_datetime(row.period), row.confirm_rate))
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
        start, end = time_axis_limits([p for points in lines.values() for p, _ in points], over=over)
        axes.set_xlim(start, end)
        # Ticks on whole days (weeks: their Mondays), about eight at most, never between days.
        step = PERIOD_DAYS.get(over, 1)
        every = max(1, round((end - start).days / step / 8))
        locator = (mdates.WeekdayLocator(byweekday=mdates.MO, interval=every) if over == "week"
                   else mdates.DayLocator(interval=every))
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y"))
        axes.legend(fontsize=8, loc="lower right")
    else:
        axes.text(0.5, 0.5, "no suggestions decided in this range", ha="center", va="center",
                  transform=axes.transAxes)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def confirm_rate_chart(rows: Sequence[ConfirmRateRow], *, title: str, over: str = "day") -> bytes:
    """Confirm rate per period, one line per group (rows from ``confirm_rate_by(..., over=...)``);
    the time axis spans the data, padded by half a period."""
    out = io.BytesIO()
    confirm_rate_figure(rows, title=title, over=over).savefig(out, format="svg")
    return out.getvalue()
