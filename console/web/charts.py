"""Server-rendered SVG geometry: stacked bars of runs per day by status.

Pure functions from the stats' buckets to rectangles; the template draws them, and
CSS colours them by status class (no inline styles, so the CSP holds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from console.domain.validation import STATUSES
from console.web.formatting import as_datetime

WIDTH = 600
# Labels are in viewBox units; CSS sets their size.
HEIGHT = 130
LEFT = 34  # room for the y-axis label
BOTTOM = 20  # room for the date labels
TOP = 6
GAP = 2


@dataclass
class Bar:
    x: float
    width: float
    day: date
    total: int
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        parts = [f"{self.segments_by_status[s]} {s}" for s in STATUSES if self.segments_by_status.get(s)]
        return f"{self.day.isoformat()}: " + (", ".join(parts) if parts else "no runs")

    @property
    def segments_by_status(self) -> dict[str, int]:
        return {seg["status"]: seg["count"] for seg in self.segments}


@dataclass
class DailyChart:
    bars: list[Bar]
    max_total: int
    total: int
    labels: list[dict[str, Any]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM
    top: int = TOP

    def bars_svg(self) -> Markup:
        """The bars as SVG markup, built here: a Jinja loop over 20 agents × 30 days ×
        6 statuses cost about 30 ms a page at 1,000,000 runs, this about 3 ms."""
        parts = []
        for bar in self.bars:
            parts.append(f"<g><title>{escape(bar.title)}</title>")
            for seg in bar.segments:
                parts.append(f'<rect class="s-{seg["status"]}" x="{bar.x}" y="{seg["y"]}" '
                             f'width="{bar.width}" height="{seg["height"]}"/>')
            if not bar.segments:
                parts.append(f'<rect class="empty-day" x="{bar.x}" y="{self.baseline - 1}" '
                             f'width="{bar.width}" height="1"/>')
            parts.append("</g>")
        return Markup("".join(parts))


def daily_counts(buckets: Iterable[Mapping[str, Any]]) -> dict[date, dict[str, int]]:
    """The stats' buckets ({"start", "counts"}) as day → status → runs."""
    out: dict[date, dict[str, int]] = {}
    for bucket in buckets:
        moment = as_datetime(bucket.get("start"))
        if moment is None:
            continue
        day = out.setdefault(moment.date(), {})
        for status, count in (bucket.get("counts") or {}).items():
            day[status] = day.get(status, 0) + int(count)
    return out


def daily_chart(buckets: Iterable[Mapping[str, Any]], *, days: int, today: datetime) -> DailyChart:
    """Stacked bars for the `days` days up to `today` (UTC), one segment per status."""
    per_day = daily_counts(buckets)
    first = today.date() - timedelta(days=days - 1)
    span = WIDTH - LEFT
    slot = span / days
    baseline = HEIGHT - BOTTOM
    usable = baseline - TOP
    totals = [sum(per_day.get(first + timedelta(days=i), {}).values()) for i in range(days)]
    max_total = max(totals) if totals else 0
    bars: list[Bar] = []
    for i in range(days):
        day = first + timedelta(days=i)
        counts = per_day.get(day, {})
        bar = Bar(x=round(LEFT + i * slot + GAP / 2, 2), width=round(max(slot - GAP, 1), 2), day=day, total=totals[i])
        y = baseline
        for status in STATUSES:
            count = counts.get(status, 0)
            if not count or not max_total:
                continue
            height = usable * count / max_total
            y -= height
            bar.segments.append({"status": status, "count": count, "y": round(y, 2), "height": round(height, 2)})
        bars.append(bar)
    labels = [{"x": round(LEFT + i * slot + slot / 2, 2), "text": (first + timedelta(days=i)).strftime("%b %d")}
              for i in range(0, days, 7)]
    return DailyChart(bars=bars, max_total=max_total, total=sum(totals), labels=labels)
