"""Small SVG plots for the benchmark commands (matplotlib is not installed and not needed).

Both kinds show ratios against a baseline on a log y axis with a dashed line at 1:
- `ratio_lines`: one line per series over message sizes (log2 x axis), a panel per metric;
- `ratio_bars`: one bar per (group, label), a panel per metric, for single-point figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_W, _H, _PAD, _GAP = 460, 320, 55, 40
_TICKS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)


def human(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


@dataclass
class Series:
    label: str
    colour: str
    #: panel title -> [(x, ratio)]
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


class _Canvas:
    """Panels side by side, each a log-y plot area with ticks and the line at 1."""

    def __init__(self, n_panels: int, legend_rows: int) -> None:
        self.width = n_panels * _W + (n_panels - 1) * _GAP + 20
        self.height = _H + 40 + 16 * legend_rows
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                      f'height="{self.height}" font-family="sans-serif" font-size="11">',
                      f'<rect width="{self.width}" height="{self.height}" fill="white"/>']

    def panel(self, index: int, title: str, values: Sequence[float]) -> tuple[float, float]:
        """Draw the frame of panel `index`; (left x, log10 range) for the caller's py()."""
        ox = 10 + index * (_W + _GAP)
        lo = min([*values, 1.0]) / 1.3
        hi = max([*values, 1.0]) * 1.3
        self._ox, self._y0, self._y1 = ox, math.log10(lo), math.log10(hi)
        self.parts.append(f'<text x="{ox + _W / 2}" y="14" text-anchor="middle" '
                          f'font-weight="bold">{title}</text>')
        self.parts.append(f'<rect x="{ox + _PAD}" y="20" width="{_W - _PAD - 10}" '
                          f'height="{_H - 50}" fill="none" stroke="#444"/>')
        for tick in _TICKS:
            if lo <= tick <= hi:
                self.parts.append(f'<text x="{ox + _PAD - 5}" y="{self.py(tick) + 4:.1f}" '
                                  f'text-anchor="end">{tick:g}</text>')
                self.hline(tick, "#ddd")
        self.hline(1.0, "#000", dashed=True)
        return ox + _PAD, _W - _PAD - 10

    def py(self, value: float) -> float:
        span = max(self._y1 - self._y0, 1e-9)
        return 20 + (1 - (math.log10(value) - self._y0) / span) * (_H - 50)

    def hline(self, value: float, colour: str, dashed: bool = False) -> None:
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        self.parts.append(f'<line x1="{self._ox + _PAD}" x2="{self._ox + _W - 10}" '
                          f'y1="{self.py(value):.1f}" y2="{self.py(value):.1f}" '
                          f'stroke="{colour}"{dash}/>')

    def xlabel(self, x: float, text: str) -> None:
        self.parts.append(f'<text x="{x:.1f}" y="{_H - 15}" text-anchor="middle">{text}</text>')

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        for k, (label, colour) in enumerate(entries):
            x = 20 + (k % 3) * 300
            y = _H + 20 + (k // 3) * 16
            self.parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="10" '
                              f'fill="{colour}"/>')
            self.parts.append(f'<text x="{x + 18}" y="{y}">{label}</text>')

    def write(self, path: Path) -> None:
        path.write_text("\n".join([*self.parts, "</svg>"]) + "\n")


def ratio_lines(path: Path, titles: Sequence[str], series: Sequence[Series],
                sizes: Sequence[int]) -> None:
    """A panel per title; each series a line of (size, ratio) points, log2 sizes on x."""
    sizes = sorted(sizes) or [64, 262144]
    x0, x1 = math.log2(sizes[0]), math.log2(sizes[-1])
    canvas = _Canvas(len(titles), (len(series) + 2) // 3)
    for index, title in enumerate(titles):
        values = [v for s in series for _, v in s.points.get(title, [])]
        left, width = canvas.panel(index, title, values)

        def px(size: float, left: float = left, width: float = width) -> float:
            return left + (math.log2(size) - x0) / max(x1 - x0, 1e-9) * width

        for size in sizes:
            canvas.xlabel(px(size), human(size))
        for s in series:
            points = sorted(s.points.get(title, []))
            if not points:
                continue
            coords = " ".join(f"{px(x):.1f},{canvas.py(v):.1f}" for x, v in points)
            canvas.parts.append(f'<polyline points="{coords}" fill="none" stroke="{s.colour}" '
                                'stroke-width="2"/>')
            canvas.parts += [f'<circle cx="{px(x):.1f}" cy="{canvas.py(v):.1f}" r="3" '
                             f'fill="{s.colour}"/>' for x, v in points]
    canvas.legend([(s.label, s.colour) for s in series])
    canvas.write(path)


def ratio_bars(path: Path, panels: dict[str, dict[str, dict[str, float | None]]],
               labels: Sequence[str]) -> None:
    """A panel per title: {title: {group: {label: ratio or None}}}; bars of one group side
    by side, one colour per label; a missing ratio leaves a gap."""
    colours = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    canvas = _Canvas(len(panels), (len(labels) + 2) // 3)
    for index, (title, groups) in enumerate(panels.items()):
        values = [v for per in groups.values() for v in per.values() if v]
        left, width = canvas.panel(index, title, values)
        slot = width / max(len(groups), 1)
        bar = slot * 0.8 / max(len(labels), 1)
        for g, (group, per) in enumerate(groups.items()):
            gx = left + g * slot + slot * 0.1
            canvas.xlabel(gx + slot * 0.4, group)
            for k, label in enumerate(labels):
                value = per.get(label)
                if not value:
                    continue
                top, base = sorted((canvas.py(value), canvas.py(1.0)))
                canvas.parts.append(f'<rect x="{gx + k * bar:.1f}" y="{top:.1f}" '
                                    f'width="{bar * 0.9:.1f}" height="{base - top:.1f}" '
                                    f'fill="{colours[label]}"><title>{group} {label}: '
                                    f'{value:.2f}</title></rect>')
    canvas.legend([(label, colours[label]) for label in labels])
    canvas.write(path)
