"""The reports chart's time axis spans the data: one point is one period wide, not four years."""
import datetime as dt

import matplotlib.dates as mdates
import pytest

from annotator.charts import confirm_rate_chart, confirm_rate_figure, time_axis_limits
from annotator.selectors import ConfirmRateRow


def row(period, group="v1", confirmed=3, corrected=1):
    return ConfirmRateRow(group=group, confirmed=confirmed, corrected=corrected, added=0, deleted=0,
                          changed_later=0, seconds=1.0, period=period)


def axis(figure):
    axes = figure.axes[0]
    start, end = (mdates.num2date(x).replace(tzinfo=None) for x in axes.get_xlim())
    ticks = [mdates.num2date(x).replace(tzinfo=None) for x in axes.get_xticks()]
    return start, end, [t for t in ticks if start <= t <= end]


def test_one_point_spans_one_period():
    day = dt.date(2026, 3, 4)
    assert time_axis_limits([day], over="day") == (dt.datetime(2026, 3, 3, 12), dt.datetime(2026, 3, 4, 12))
    assert time_axis_limits([day], over="week") == (dt.datetime(2026, 2, 28, 12), dt.datetime(2026, 3, 7, 12))
    start, end, ticks = axis(confirm_rate_figure([row(day)], title="t", over="day"))
    assert end - start == dt.timedelta(days=1)
    assert ticks == [dt.datetime(2026, 3, 4)]  # one tick, on the day, none in other years or hours
    start, end, ticks = axis(confirm_rate_figure([row(day)], title="t", over="week"))
    assert end - start == dt.timedelta(days=7) and all(start <= t <= end for t in ticks)


def test_the_axis_covers_every_group_and_ticks_on_whole_days():
    rows = [row(dt.date(2026, 3, d), group=g) for d, g in ((2, "v1"), (5, "v1"), (9, "v2"), (30, "v2"))]
    start, end, ticks = axis(confirm_rate_figure(rows, title="t", over="day"))
    assert (start, end) == (dt.datetime(2026, 3, 1, 12), dt.datetime(2026, 3, 30, 12))
    assert 2 <= len(ticks) <= 10 and all(t.hour == 0 and t.minute == 0 for t in ticks)


def test_no_periods_has_no_axis_to_fit_and_an_empty_chart_still_renders():
    with pytest.raises(ValueError):
        time_axis_limits([])
    assert confirm_rate_chart([], title="t").lstrip().startswith(b"<?xml")
