"""The batch page's charts laid out for an SVG the template draws: bars, axes and labels in the
units of a viewBox (the page scales it to its width). Counts arrive aggregated (a few dozen
buckets, whatever the rows), so nothing here grows with a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from veobatch.store.activity import Histogram, Series

HEIGHT: Final = 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 26  # room for the y labels, the x labels
WIDEST: Final = 40  # a bar's widest: a few buckets are bars, not blocks
CHAR: Final = 7  # about the width of a 12-unit digit: a count is written on its bar if it fits
UNITS: Final = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


@dataclass(frozen=True)
class Bar:
    css: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Column:
    """One bucket: its area (hovered, it shows `title`), its bars, maybe its count above."""

    x: float
    width: float
    title: str
    bars: list[Bar]
    label: str = ""
    label_y: float = 0.0


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str  # start, middle or end: the first and last labels stay inside


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # the plot's box: y of the baseline
    grid: list[tuple[float, str]]  # (y, the count there): the top and the middle
    columns: list[Column]
    ticks: list[Tick]


def _count(n: int) -> str:
    return f"{n:,}"


def _ceiling(value: int) -> int:
    """The round number at or above `value` (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a
    power of ten, a whole number): the chart's top, close to its highest bar."""
    if value <= 1:
        return 1
    power: int = 10 ** int(math.log10(value))
    return next(
        step * power // 10
        for step in (10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
        if step * power % 10 == 0 and step * power // 10 >= value
    )


def _grid(top: int, y_of: float, plot: float) -> list[tuple[float, str]]:
    lines = [(y_of, _count(top))]
    if top % 2 == 0:
        lines.append((y_of + plot / 2, _count(top // 2)))
    return lines


def _ticks(count: int, left: float, step: float, label: Callable[[int], str]) -> list[Tick]:
    """Labels at bucket edges, at most about six: the first, every few, the last."""
    every = max(1, math.ceil(count / 5))
    edges = [i for i in range(0, count, every) if count - i > every / 2 or i == 0]
    if edges[-1] != count:
        edges.append(count)
    last = len(edges) - 1
    return [
        Tick(
            round(left + edge * step, 2),
            label(edge),
            "start" if n == 0 else "end" if n == last else "middle",
        )
        for n, edge in enumerate(edges)
    ]


def _clock(width: int) -> str:
    """How a bucket's start is written for buckets of `width` seconds (UTC)."""
    if width < 60:
        return "%H:%M:%S"
    if width < 3600:
        return "%H:%M"
    if width < 86400:
        return "%b %d %H:%M"
    return "%b %d"


def _unit(seconds: int) -> tuple[int, str]:
    """The largest of days, hours, minutes and seconds that counts `seconds` whole."""
    return next((size, name) for size, name in UNITS if seconds and seconds % size == 0)


def duration(seconds: int) -> str:
    """A bucket's width, in its largest whole unit: 10 s, 1 min, 6 h, 7 d."""
    size, name = _unit(seconds) if seconds else (1, "s")
    return f"{seconds // size:,} {name}"


def _layout(
    values: Sequence[Sequence[int]],
    css: Sequence[str],
    width: int,
    titles: Sequence[str],
    labelled: bool,
) -> tuple[list[Column], list[tuple[float, str]], float]:
    """Columns of bars side by side (one per series) over a shared y scale."""
    count = len(titles)
    top = _ceiling(max((max(series, default=0) for series in values), default=0))
    plot_width = width - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    step = plot_width / count
    gap = min(2.0, step * 0.2)
    bar = min((step - gap) / len(values), WIDEST)
    margin = (step - bar * len(values)) / 2  # the bars in the middle of their bucket
    columns = []
    for index, title in enumerate(titles):
        x = LEFT + index * step
        bars = []
        for n, series in enumerate(values):
            height = round(plot_height * series[index] / top, 2)
            left = round(x + margin + n * bar, 2)
            bars.append(
                Bar(css[n], left, round(HEIGHT - BOTTOM - height, 2), round(bar, 2), height)
            )
        label = ""
        if labelled and values[0][index] and len(_count(values[0][index])) * CHAR <= step:
            label = _count(values[0][index])
        top_of = min(b.y for b in bars)
        columns.append(Column(round(x, 2), round(step, 2), title, bars, label, top_of - 3))
    return columns, _grid(top, TOP, plot_height), step


def activity_chart(series: Series, width: int = 720) -> Chart | None:
    """Rows sent and rows finished per time bucket, side by side; the x axis in UTC clock
    times."""
    if series.start is None or not series.sent:
        return None
    start = series.start
    span = timedelta(seconds=series.width)
    shape = _clock(series.width)
    exact = "%H:%M:%S" if series.width < 60 else "%H:%M" if series.width < 3600 else "%b %d %H:%M"
    titles = [
        f"{(start + i * span).strftime(exact)}–{(start + (i + 1) * span).strftime(exact)} UTC: "
        f"{_count(sent)} sent, {_count(done)} finished"
        for i, (sent, done) in enumerate(zip(series.sent, series.finished, strict=True))
    ]
    columns, grid, step = _layout(
        [series.sent, series.finished], ("sent", "done"), width, titles, labelled=False
    )

    def at(edge: int) -> str:
        moment: datetime = start + edge * span
        return moment.strftime(shape)

    ticks = _ticks(len(titles), LEFT, step, at)
    return Chart(width, HEIGHT, LEFT, width - RIGHT, TOP, HEIGHT - BOTTOM, grid, columns, ticks)


def generation_chart(found: Histogram, width: int = 480) -> Chart | None:
    """Videos by the time they took, per bucket, each bucket's count on its bar where it
    fits; the x axis in seconds (minutes, hours) from submission to video."""
    if not found.counts:
        return None
    size, unit = _unit(found.width)  # one unit along the axis: the buckets' own

    def at(edge: int) -> str:
        return f"{(found.start + edge * found.width) // size:,}"

    titles = [
        f"{at(i)}–{at(i + 1)} {unit}: {_count(n)} video{'s' if n != 1 else ''}"
        for i, n in enumerate(found.counts)
    ]
    columns, grid, step = _layout([found.counts], ("gen",), width, titles, labelled=True)
    ticks = _ticks(len(titles), LEFT, step, lambda edge: f"{at(edge)} {unit}")
    return Chart(width, HEIGHT, LEFT, width - RIGHT, TOP, HEIGHT - BOTTOM, grid, columns, ticks)
