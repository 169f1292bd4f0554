"""Server-rendered SVG geometry: stacked bars of runs per day by status.

Pure functions from runs per day and status to rectangles; the template places them,
and CSS colours them by status class (no inline styles, so the CSP holds).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from markupsafe import Markup

from console.domain.validation import STATUSES

WIDTH = 600
# Labels are in viewBox units; CSS sets their size.
HEIGHT = 130
LEFT = 34  # room for the y-axis label
BOTTOM = 20  # room for the date labels
TOP = 6
GAP = 2
BASELINE = HEIGHT - BOTTOM
USABLE = BASELINE - TOP


@dataclass
class DailyChart:
    svg: Markup  # the axis, its labels and the bars
    max_total: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def daily_chart(per_day: Mapping[date, Mapping[str, int]], *, days: int, today: datetime) -> DailyChart:
    """Stacked bars for the `days` days up to `today` (UTC) from runs per day and status, one
    segment per status. The SVG is built here in one pass: the agents page draws one chart
    per agent (200 agents × 30 days), where a Jinja loop or an object per bar cost more than
    the page's reads."""
    slots, x_labels = _slots(today.date() - timedelta(days=days - 1), days)
    totals = [sum(per_day[day].values()) if day in per_day else 0 for day, *_ in slots]
    max_total = max(totals, default=0)
    parts = [f'<line class="axis" x1="{LEFT}" y1="{BASELINE}" x2="{WIDTH}" y2="{BASELINE}"/>'
             f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{max_total}</text>'
             f'<text x="{LEFT - 4}" y="{BASELINE}" text-anchor="end">0</text>']
    for (day, x, empty), total in zip(slots, totals, strict=True):
        if not total:
            parts.append(empty)
            continue
        counts = per_day[day]
        present = [(s, counts[s]) for s in STATUSES if counts.get(s)]
        # The title holds a date, status names of our own and numbers: nothing to escape.
        parts.append(f"<g><title>{day.isoformat()}: {', '.join(f'{n} {s}' for s, n in present)}</title>")
        y = BASELINE
        for status, count in present:
            height = USABLE * count / max_total
            y -= height
            parts.append(f'<rect class="s-{status}" x="{x}" y="{round(y, 2)}" width="{BAR_WIDTH[days]}" '
                         f'height="{round(height, 2)}"/>')
        parts.append("</g>")
    parts.append(x_labels)
    return DailyChart(svg=Markup("".join(parts)), max_total=max_total, total=sum(totals))


class _BarWidths(dict):
    def __missing__(self, days: int) -> float:
        self[days] = round(max((WIDTH - LEFT) / days - GAP, 1), 2)
        return self[days]


BAR_WIDTH = _BarWidths()


@functools.lru_cache(maxsize=4)
def _slots(first: date, days: int) -> tuple[list[tuple[date, float, str]], str]:
    """What every chart of these days shares: each day's date, bar x and the SVG of its bar
    when it has no runs; the SVG of the date labels."""
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        x = round(LEFT + i * (WIDTH - LEFT) / days + GAP / 2, 2)
        empty = (f'<g><title>{day.isoformat()}: no runs</title><rect class="empty-day" x="{x}" y="{BASELINE - 1}" '
                 f'width="{BAR_WIDTH[days]}" height="1"/></g>')
        out.append((day, x, empty))
    slot = (WIDTH - LEFT) / days
    labels = "".join(
        f'<text x="{round(LEFT + i * slot + slot / 2, 2)}" y="{HEIGHT - 3}" text-anchor="middle">'
        f'{(first + timedelta(days=i)).strftime("%b %d")}</text>'
        for i in range(0, days, 7)
    )
    return out, labels
