"""Small charts drawn as inline SVG on the server: no chart library, nothing from a CDN, and
nothing our Content-Security-Policy would block (colours come from classes in app.css)."""
from __future__ import annotations

from dataclasses import dataclass

from django.template.defaultfilters import filesizeformat


@dataclass
class LineChart:
    title: str
    summary: str  # what a screen reader hears instead of the picture
    width: int
    height: int
    path: str
    area: str
    dots: list[tuple[float, float, str]]
    y_labels: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]


def line_chart(title: str, points: list[tuple[int, float]], fmt=str, width: int = 400, height: int = 130) -> LineChart | None:
    """points: (generation, value) in order. None when there is nothing to draw."""
    if not points:
        return None
    left, right, top, bottom = 70, 12, 10, 24
    xs = [x for x, _ in points]
    top_value = max(v for _, v in points) or 1
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1

    def px(x: float) -> float:
        return round(left + (x - x0) / span * (width - left - right), 1) if x1 != x0 else (left + width - right) / 2

    def py(v: float) -> float:
        return round(top + (1 - v / top_value) * (height - top - bottom), 1)

    coords = [(px(x), py(v)) for x, v in points]
    path = "M" + " L".join(f"{x},{y}" for x, y in coords)
    base = height - bottom
    area = f"M{coords[0][0]},{base} L" + " L".join(f"{x},{y}" for x, y in coords) + f" L{coords[-1][0]},{base} Z"
    dots = [(x, y, f"generation {g}: {fmt(v)}") for (x, y), (g, v) in zip(coords, points)] if len(points) <= 60 else []
    first, last = points[0], points[-1]
    summary = (f"{title}: {fmt(first[1])} at generation {first[0]}, {fmt(last[1])} at generation {last[0]}, "
               f"highest {fmt(top_value)}.")
    return LineChart(title, summary, width, height, path, area, dots,
                     [(py(top_value), fmt(top_value)), (py(0), fmt(0))],
                     [(px(x0), f"#{x0}"), (px(x1), f"#{x1}")] if x1 != x0 else [(px(x0), f"#{x0}")])


@dataclass
class Bar:
    label: str
    value_text: str
    percent: float  # of the largest value
    url: str


def bar_chart(rows: list[tuple[str, int, str]]) -> dict | None:
    """rows: (label, bytes, url), largest first as horizontal bars. The labels and values are HTML text, so they
    keep the page's type size at any width; only the bars are drawn."""
    rows = sorted(rows, key=lambda r: -r[1])
    if not rows or not any(v for _, v, _ in rows):
        return None
    top_value = rows[0][1]
    bars = [Bar(label, filesizeformat(value), max(0.5, round(value / top_value * 100, 1)), url)
            for label, value, url in rows]
    total = sum(v for _, v, _ in rows)
    return {"bars": bars, "summary": f"Storage per volume, {len(rows)} volumes, {filesizeformat(total)} in all; "
                                     f"largest {rows[0][0]} with {filesizeformat(rows[0][1])}."}
