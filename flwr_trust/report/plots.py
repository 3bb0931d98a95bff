"""Inline-SVG charts for the HTML report, with no plotting library and no external files.

A `Chart` is one panel: rounds on x, one quantity on y. Marks are recorded in data coordinates
and laid out when `svg()` is called, because the axis range is only known once every mark is
in. The colours are the Okabe-Ito palette, which stays distinguishable under common
colour-vision deficiencies. Marks also differ in shape or dash pattern, so colour never carries
meaning alone. Every chart has a <title> for screen readers.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

BLUE, ORANGE, VERMILION, GREEN = "#0072B2", "#E69F00", "#D55E00", "#009E73"
SKY, PURPLE, GREY, INK = "#56B4E9", "#CC79A7", "#767676", "#222222"
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""

Number = float | None
LIMIT = 1e12  # values beyond this many units are off any sensible scale: drawn clipped, not fitted
_CLIP_IDS = itertools.count()


def nice_step(span: float, target: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about `target` ticks."""
    raw = max(span, 1e-12) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag * (1 + 1e-9))


def tick_label(value: float, step: float) -> str:
    """A tick value with as many decimals as the step needs ("0.25", "1.5", "200")."""
    if abs(value) < step * 1e-6:
        return "0"
    if abs(value) >= 1e5 or step < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step / 10 ** -decimals, 6) % 1:  # 2.5, 0.25: one more digit
        decimals += 1
    return f"{value:.{decimals}f}"


def short_number(value: float) -> str:
    """A value for text: 4 significant digits."""
    return f"{value:.4g}"


@dataclass
class _Mark:
    layer: int  # 0 bands, 1 reference lines, 2 client points, 3 series, 4 flags
    kind: str
    args: dict[str, object] = field(default_factory=dict)


class Chart:
    """One panel of a figure: a quantity over server rounds."""

    PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT = 40, 30, 54

    def __init__(self, title: str, rounds: Sequence[int], *, subtitle: str = "",
                 width: int = 360, height: int = 230, right: int = 14) -> None:
        self.title, self.subtitle = title, subtitle
        self.width, self.height, self.right = width, height, right
        self.x0 = min(rounds, default=1) - 0.5
        self.x1 = max(rounds, default=1) + 0.5
        self.marks: list[_Mark] = []
        self.ys: list[float] = []
        self.categories: list[str] | None = None
        self.note = ""

    # ----------------------------------------------------------------------- marks

    def _fit(self, *values: Number) -> None:
        self.ys.extend(v for v in values if v is not None and abs(v) <= LIMIT)

    def band(self, xs: Sequence[int], lows: Sequence[float], highs: Sequence[float],
             color: str, opacity: float = 0.18) -> None:
        """A shaded band between two curves (a confidence band)."""
        self._fit(*lows, *highs)
        self.marks.append(_Mark(0, "band", {"xs": xs, "lo": lows, "hi": highs, "color": color,
                                            "opacity": opacity}))

    def hband(self, y0: float, y1: float, color: str, opacity: float = 0.12) -> None:
        """A shaded horizontal strip across the plot (the tolerance band)."""
        self._fit(y0, y1)
        self.marks.append(_Mark(0, "hband", {"y0": y0, "y1": y1, "color": color,
                                             "opacity": opacity}))

    def hline(self, y: float, color: str, *, dash: str = "", width: float = 1.5) -> None:
        """A horizontal line across the plot (reference, tolerance limit)."""
        self._fit(y)
        self.marks.append(_Mark(1, "hline", {"y": y, "color": color, "dash": dash,
                                             "width": width}))

    def line(self, xs: Sequence[int], ys: Sequence[Number], color: str, *, dash: str = "",
             width: float = 2.0, marker: str = "circle") -> None:
        """A series; a None value breaks the line."""
        self._fit(*ys)
        self.marks.append(_Mark(3, "line", {"xs": xs, "ys": ys, "color": color, "dash": dash,
                                            "width": width, "marker": marker}))

    def points(self, xs: Sequence[float], ys: Sequence[float], color: str, *,
               shape: str = "circle", size: float = 3.2, filled: bool = False) -> None:
        """Unconnected points (one client each)."""
        self._fit(*ys)
        self.marks.append(_Mark(2, "points", {"xs": xs, "ys": ys, "color": color,
                                              "shape": shape, "size": size, "filled": filled}))

    def vline(self, x: int, label: str, color: str = INK) -> None:
        """A vertical line at a round with a one-letter label at its foot (a gate action)."""
        self.marks.append(_Mark(1, "vline", {"x": x, "label": label, "color": color}))

    def label(self, x: float, y: float, text: str, color: str = INK) -> None:
        """A short text right of a data point (e.g. a client id at the end of its line)."""
        self.marks.append(_Mark(4, "label", {"x": x, "y": y, "text": text, "color": color}))

    def flag(self, x: int, severity: str) -> None:
        """A triangle above the plot at a round: filled for an alarm, hollow for a warning."""
        self.marks.append(_Mark(4, "flag", {"x": x, "severity": severity}))

    def set_categories(self, labels: Sequence[str]) -> None:
        """Use a categorical y axis: value i is drawn at row `labels[i]`."""
        self.categories = list(labels)
        self._fit(-0.5, len(labels) - 0.5)

    # ----------------------------------------------------------------------- layout

    def _y_axis(self) -> tuple[float, float, list[float], float]:
        if self.categories is not None:
            n = len(self.categories)
            return -0.5, n - 0.5, [float(i) for i in range(n)], 1.0
        lo, hi = (min(self.ys), max(self.ys)) if self.ys else (0.0, 1.0)
        if hi - lo < 1e-12:
            pad = max(abs(hi) * 0.1, 0.05)
            lo, hi = lo - pad, hi + pad
        step = nice_step(hi - lo, 4)
        lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
        ticks = [lo + i * step for i in range(int(round((hi - lo) / step)) + 1)]
        return lo, hi, ticks, step

    def svg(self, description: str = "") -> str:
        """The chart as an inline <svg> element."""
        w, h = self.width, self.height
        left, right = self.PLOT_LEFT, w - self.right
        top, bottom = self.PLOT_TOP, h - self.PLOT_BOTTOM
        lo, hi, yticks, ystep = self._y_axis()

        def sx(x: float) -> float:
            return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

        def sy(y: float) -> float:  # clamped: an off-scale value stays a short number
            return min(max(bottom - (y - lo) / (hi - lo) * (bottom - top), -h), 2 * h)

        label = escape(f"{self.title}. {description}".strip(), quote=True)
        out = [f'<svg class="chart" role="img" aria-label="{label}" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}" {FONT}>',
               f"<title>{escape(self.title)}</title>",
               f'<text x="4" y="14" font-size="13" font-weight="600" fill="{INK}">'
               f"{escape(self.title)}</text>"]
        if self.subtitle:
            out.append(f'<text x="4" y="28" font-size="11" fill="#444">'
                       f"{escape(self.subtitle)}</text>")
        out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
                   'fill="#fff" stroke="#bbb"/>')
        for i, y in enumerate(yticks):
            py = sy(y)
            text = self.categories[i] if self.categories is not None else tick_label(y, ystep)
            out.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" '
                       'stroke="#e6e6e6"/>')
            out.append(f'<text x="{left - 5}" y="{py + 3.5:.1f}" font-size="10.5" '
                       f'text-anchor="end" fill="#333">{escape(text)}</text>')
        for x in _round_ticks(self.x0, self.x1, right - left):
            px = sx(x)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" '
                       'stroke="#888"/>')
            out.append(f'<text x="{px:.1f}" y="{bottom + 15}" font-size="10.5" '
                       f'text-anchor="middle" fill="#333">{x}</text>')
        out.append(f'<text x="{(left + right) / 2:.1f}" y="{h - 3}" font-size="10.5" '
                   'text-anchor="middle" fill="#555">round</text>')
        if not self.marks and self.note:  # why the panel is empty, wrapped to its width
            lines = textwrap.wrap(self.note, max(16, int((right - left - 16) / 6.2)),
                                  break_on_hyphens=False)
            y0 = (top + bottom) / 2 - 7.5 * (len(lines) - 1)
            out.extend(f'<text class="note" x="{(left + right) / 2:.1f}" y="{y0 + 15 * i:.1f}" '
                       f'font-size="12" text-anchor="middle" fill="#555">{escape(line)}</text>'
                       for i, line in enumerate(lines))
        per_round = (right - left) / max(self.x1 - self.x0, 1)
        clip = f"plot-area-{next(_CLIP_IDS)}"
        out.append(f'<clipPath id="{clip}"><rect x="{left - 6}" y="{top - 14}" '
                   f'width="{right - left + 12}" height="{bottom - top + 20}"/></clipPath>'
                   f'<g clip-path="url(#{clip})">')
        for mark in sorted(self.marks, key=lambda m: m.layer):
            if mark.kind != "label":
                out.extend(_draw(mark, sx, sy, (left, right, top, bottom), per_round))
        out.append("</g>")
        out.extend(_labels([m.args for m in self.marks if m.kind == "label"], sx, sy,
                           (top, bottom)))
        out.append("</svg>")
        return "".join(out)


def _round_ticks(x0: float, x1: float, pixels: float) -> list[int]:
    first, last = math.ceil(x0), math.floor(x1)
    step = max(1, math.ceil(nice_step(last - first + 1, max(2, int(pixels // 40)))))
    # the multiples of step in [first, last], stepped to (rounds 1 and 1e9 are two ticks apart)
    return list(range(-(-first // step) * step if step > 1 else first, last + 1, step))


def _labels(labels: list[dict[str, object]], sx, sy,  # noqa: ANN001
            span: tuple[float, float], gap: float = 11.0) -> list[str]:
    """Text labels beside points, pushed apart vertically so that none overlap."""
    placed = sorted(([sx(a["x"]) + 6, sy(a["y"]) + 3.5, a] for a in labels),
                    key=lambda p: (p[0], p[1]))
    for i in range(1, len(placed)):
        prev, cur = placed[i - 1], placed[i]
        if abs(cur[0] - prev[0]) < 30 and cur[1] - prev[1] < gap:
            cur[1] = prev[1] + gap
    top, bottom = span
    overflow = max(0.0, max((p[1] for p in placed), default=0.0) - bottom - 8)
    return [f'<text x="{x:.1f}" y="{max(top + 8, y - overflow):.1f}" font-size="10" '
            f'fill="{a["color"]}">{escape(str(a["text"]))}</text>' for x, y, a in placed]


def _path(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))


def _draw(mark: _Mark, sx, sy, box: tuple[float, float, float, float],  # noqa: ANN001
          per_round: float) -> list[str]:
    a = mark.args
    left, right, top, bottom = box
    if mark.kind == "band":
        upper = [(sx(x), sy(y)) for x, y in zip(a["xs"], a["hi"], strict=True)]
        lower = [(sx(x), sy(y)) for x, y in zip(a["xs"], a["lo"], strict=True)][::-1]
        if len(upper) == 1:  # a single round: a short box instead of a polygon
            (x, y1), (_, y0) = upper[0], lower[0]
            upper, lower = [(x - 6, y1), (x + 6, y1)], [(x + 6, y0), (x - 6, y0)]
        return [f'<path d="{_path(upper + lower)} Z" fill="{a["color"]}" '
                f'fill-opacity="{a["opacity"]}" stroke="none"/>']
    if mark.kind == "hband":
        y0, y1 = sorted((sy(a["y0"]), sy(a["y1"])))
        return [f'<rect x="{left}" y="{y0:.1f}" width="{right - left}" '
                f'height="{max(y1 - y0, 0.5):.1f}" fill="{a["color"]}" '
                f'fill-opacity="{a["opacity"]}"/>']
    if mark.kind == "hline":
        y = sy(a["y"])
        dash = f' stroke-dasharray="{a["dash"]}"' if a["dash"] else ""
        return [f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{a["color"]}" stroke-width="{a["width"]}"{dash}/>']
    if mark.kind == "vline":
        x = sx(a["x"])
        out = [f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{a["color"]}" '
               'stroke-width="1.2" stroke-dasharray="2 3"/>']
        if per_round >= 12:
            out.append(f'<text x="{x + 3:.1f}" y="{bottom - 4}" font-size="10" '
                       f'font-weight="600" fill="{a["color"]}">{escape(str(a["label"]))}</text>')
        return out
    if mark.kind == "flag":
        x, y = sx(a["x"]), top - 4
        alarm = a["severity"] == "alarm"
        fill = VERMILION if alarm else "#fff"
        stroke = VERMILION if alarm else ORANGE
        return [f'<path d="M{x - 5:.1f},{y - 8:.1f} L{x + 5:.1f},{y - 8:.1f} L{x:.1f},{y:.1f} Z" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="1.6">'
                f"<title>{'alarm' if alarm else 'warning'} in round {a['x']}</title></path>"]
    if mark.kind == "points":
        return [marker(a["shape"], sx(x), sy(y), a["color"], a["size"], a["filled"])
                for x, y in zip(a["xs"], a["ys"], strict=True)]
    # a series: segments split at missing values, then markers
    out, segment = [], []
    dash = f' stroke-dasharray="{a["dash"]}"' if a["dash"] else ""
    for x, y in [*zip(a["xs"], a["ys"], strict=True), (None, None)]:
        if y is None:
            if len(segment) > 1:
                out.append(f'<path d="{_path(segment)}" fill="none" stroke="{a["color"]}" '
                           f'stroke-width="{a["width"]}"{dash}/>')
            segment = []
        else:
            segment.append((sx(x), sy(y)))
    if a["marker"] and per_round >= 7:  # dense rounds: the line alone reads better
        out.extend(marker(str(a["marker"]), sx(x), sy(y), str(a["color"]), 3.2, True)
                   for x, y in zip(a["xs"], a["ys"], strict=True) if y is not None)
    return out


def marker(shape: str, x: float, y: float, color: str, size: float, filled: bool) -> str:
    """One point mark: circle, square, diamond or cross."""
    fill = color if filled else "#fff"
    style = f'fill="{fill}" stroke="{color}" stroke-width="1.4"'
    s = size
    if shape == "square":
        return f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" ' \
               f'height="{2 * s:.1f}" {style}/>'
    if shape == "diamond":
        s *= 1.3
        return f'<path d="M{x:.1f},{y - s:.1f} L{x + s:.1f},{y:.1f} L{x:.1f},{y + s:.1f} ' \
               f'L{x - s:.1f},{y:.1f} Z" {style}/>'
    if shape == "cross":
        s *= 1.3
        return f'<path d="M{x - s:.1f},{y - s:.1f} L{x + s:.1f},{y + s:.1f} M{x - s:.1f},' \
               f'{y + s:.1f} L{x + s:.1f},{y - s:.1f}" stroke="{color}" stroke-width="2.2"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s:.1f}" {style}/>'


def swatch(kind: str, color: str, *, dash: str = "", shape: str = "circle",
           filled: bool = True) -> str:
    """A 26x14 legend sample of a mark kind: line, band, points, flag or vline."""
    parts = ['<svg class="swatch" width="26" height="14" viewBox="0 0 26 14" aria-hidden="true">']
    if kind == "band":
        parts.append(f'<rect x="1" y="2" width="24" height="10" fill="{color}" '
                     'fill-opacity="0.25"/>')
    elif kind == "line":
        d = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="1" x2="25" y1="7" y2="7" stroke="{color}" '
                     f'stroke-width="2"{d}/>')
        if shape:
            parts.append(marker(shape, 13, 7, color, 3, filled))
    elif kind == "points":
        parts.append(marker(shape, 13, 7, color, 3.2, filled))
    elif kind == "flag":
        fill = color if filled else "#fff"
        parts.append(f'<path d="M8,2 L18,2 L13,11 Z" fill="{fill}" stroke="{color}" '
                     'stroke-width="1.6"/>')
    elif kind == "vline":
        parts.append(f'<line x1="13" x2="13" y1="0" y2="14" stroke="{color}" '
                     'stroke-width="1.2" stroke-dasharray="2 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def cell_swatch(cell: Cell) -> str:
    """A 26x14 legend sample of a status-grid cell: its fill, outline and letter."""
    outline = f' stroke="{cell.stroke}"' if cell.stroke else ""
    letter = (f'<text x="13" y="11" font-size="10" font-weight="600" text-anchor="middle" '
              f'fill="{cell.color}" {FONT}>{escape(cell.text)}</text>' if cell.text else "")
    return ('<svg class="swatch" width="26" height="14" viewBox="0 0 26 14" aria-hidden="true">'
            f'<rect x="1" y="0.5" width="24" height="13" fill="{cell.fill}"{outline}/>'
            f"{letter}</svg>")


def _steps():  # noqa: ANN202 - 1, 2, 5, 10, 20, 50, ...
    for mag in itertools.count():
        for m in (1, 2, 5):
            yield m * 10**mag


@dataclass(frozen=True)
class Cell:
    """One cell of a status grid: a short text, its colours and a tooltip."""

    text: str
    fill: str
    color: str = INK
    tip: str = ""
    stroke: str = ""  # an outline, for a fill too pale to see on the page


def status_grid(title: str, rounds: Sequence[int], rows: Sequence[tuple[str, Sequence[Cell]]],
                *, width: int = 1000, description: str = "") -> str:
    """A rows x rounds grid of coloured, lettered cells (mode status per round)."""
    label_w, cell_h, top = 86, 22, 24
    n = max(len(rounds), 1)
    cell_w = max(4.0, min(34.0, (width - label_w - 10) / n))
    w = int(max(label_w + cell_w * n + 10, 7.5 * len(title) + 10))
    h = top + cell_h * len(rows) + 22
    aria = escape(f"{title}. {description}".strip(), quote=True)
    out = [f'<svg class="chart grid" role="img" aria-label="{aria}" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" {FONT}>', f"<title>{escape(title)}</title>",
           f'<text x="4" y="14" font-size="13" font-weight="600" fill="{INK}">'
           f"{escape(title)}</text>"]
    for i, (name, cells) in enumerate(rows):
        y = top + i * cell_h
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" font-size="11.5" text-anchor="end" '
                   f'fill="{INK}">{escape(name)}</text>')
        for j, cell in enumerate(cells):
            x = label_w + j * cell_w
            gap = 1.0 if cell_w >= 8 else 0.0
            outline = f' stroke="{cell.stroke}"' if cell.stroke else ""
            out.append(f'<rect x="{x + gap / 2:.1f}" y="{y + 1}" width="{cell_w - gap:.2f}" '
                       f'height="{cell_h - 2}" fill="{cell.fill}"{outline}>'
                       f"<title>{escape(cell.tip)}</title></rect>")
            if cell.text and cell_w >= 12:
                out.append(f'<text x="{x + cell_w / 2:.1f}" y="{y + 15}" font-size="11" '
                           f'font-weight="600" text-anchor="middle" fill="{cell.color}">'
                           f"{escape(cell.text)}</text>")
    y = top + cell_h * len(rows) + 14
    digits = len(str(max(rounds, default=1)))
    step = next(s for s in _steps() if s * cell_w >= 7 * digits + 6)
    for j, r in enumerate(rounds):
        if step == 1 or r % step == 0:
            out.append(f'<text x="{label_w + (j + 0.5) * cell_w:.1f}" y="{y}" font-size="10" '
                       f'text-anchor="middle" fill="#333">{r}</text>')
    out.append("</svg>")
    return "".join(out)
