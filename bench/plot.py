#!/usr/bin/env python3
# bench/plot.py: turns benchmark results into standalone SVG charts for docs/performance.md.
# Python 3 standard library only; the same input always gives the same bytes.
#
#   python3 bench/plot.py latency IN.tsv OUT.svg --title "..." [--unit ms]
#       IN.tsv lines: series<TAB>percentile<TAB>value, percentile in 0..100 (50, 99.9, 100 ...),
#       value > 0 in the unit. X is the percentile on the "nines" scale, x = -log10(1 - p/100),
#       ticks 0%, 90%, 99%, 99.9% ...; p = 100 is drawn at an extra last tick labelled "max".
#       Y is logarithmic with decade ticks and minor gridlines.
#   python3 bench/plot.py xy IN.tsv OUT.svg --title "..." --xlabel "..." --ylabel "..."
#                        [--logx] [--logy]
#       IN.tsv lines: series<TAB>x<TAB>y; one line per series, points sorted by x. Linear axes
#       get 1-2-5 ticks, log axes decade ticks; values on a log axis must be > 0.
#
# Blank lines and lines starting with '#' are ignored; IN.tsv may be '-' for stdin. Series keep
# the order in which they first appear. Malformed input is reported on stderr with exit status 2.
#
# SPDX-License-Identifier: MIT
"""Render latency-percentile and x/y benchmark charts as standalone SVG files."""

import argparse
import math
import sys

WIDTH, HEIGHT = 720, 420
# Okabe-Ito, reordered so neighbouring series contrast; the pale yellow comes last.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442"]
MARKERS = ["circle", "square", "triangle", "diamond"]
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE = 17, 13, 12, 13


class InputError(Exception):
    """Malformed input; main() prints it and exits with status 2."""


class Axis:
    """An axis in transformed space: lo..hi, labelled ticks and unlabelled minor gridlines."""

    def __init__(self, lo, hi, ticks, minors=(), transform=lambda v: v):
        self.lo, self.hi = lo, hi
        self.ticks = ticks            # [(position, label)] in transformed units
        self.minors = list(minors)    # [position]
        self.transform = transform    # data value -> transformed units

    def scale(self, v, a, b):
        """Map a data value onto the pixel range a..b."""
        t = self.transform(v)
        return a + (t - self.lo) / (self.hi - self.lo) * (b - a)


def read_tsv(path, names, log_x=False, log_y=False, x_range=None):
    """Read series<TAB>x<TAB>y lines into {series: [(x, y)]}, in order of first appearance.

    names are the two column names for messages; log_x/log_y require values > 0; x_range is an
    optional inclusive (lo, hi) bound on x. Raises InputError naming the file and line."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    data = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{path}:{n}"
        if len(fields) != 3 or not fields[0].strip():
            raise InputError(f"{where}: expected 3 tab-separated fields "
                             f"(series, {names[0]}, {names[1]}), got {line!r}")
        values = []
        for name, field, log in ((names[0], fields[1], log_x), (names[1], fields[2], log_y)):
            try:
                v = float(field)
            except ValueError:
                raise InputError(f"{where}: {name} {field.strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise InputError(f"{where}: {name} {field.strip()!r} is not a finite number")
            if log and v <= 0:
                raise InputError(f"{where}: {name} {field.strip()} must be > 0 on a log axis")
            if x_range and not values and not x_range[0] <= v <= x_range[1]:
                raise InputError(f"{where}: {name} {field.strip()} is outside "
                                 f"{x_range[0]:g}..{x_range[1]:g}")
            values.append(v)
        data.setdefault(fields[0].strip(), []).append(tuple(values))
    if not data:
        raise InputError(f"{path}: no data lines")
    return data


def esc(text):
    """Escape text for SVG character data and double-quoted attributes."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def fmt_num(v, suffix=False):
    """Format a tick value: 1,000 or 0.25, or 10k / 1.5M / 2G when suffix is set."""
    if suffix:
        for div, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return fmt_num(round(v / div, 3)) + s
    if v == round(v) and abs(v) < 1e15:
        return f"{int(round(v)):,}"
    return f"{v:,.12f}".rstrip("0").rstrip(".")


def text_width(text, size):
    """Rough width of sans-serif text in pixels (no font metrics in the standard library)."""
    return len(text) * size * 0.56


def linear_axis(values, target=6, include_zero=False):
    """An axis covering values with 1-2-5 steps and about `target` ticks."""
    lo, hi = min(values), max(values)
    if include_zero and 0 <= lo <= hi / 2:     # a zero baseline, unless it flattens the data
        lo = 0.0
    if hi == lo:
        pad = abs(hi) * 0.5 or 1.0
        lo, hi = (lo if include_zero and lo == 0 else lo - pad), hi + pad
    e = math.floor(math.log10((hi - lo) / (target - 1)))

    def intervals(step):
        return math.ceil(hi / step - 1e-9) - math.floor(lo / step + 1e-9)
    # The 1-2-5 step whose tick count comes closest to the target; ties go to the larger step.
    step = min((m * 10.0 ** k for k in (e - 1, e, e + 1) for m in (1, 2, 5)),
               key=lambda st: (abs(intervals(st) - (target - 1)), -st))
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    vals = [round(i * step, digits) for i in range(first, last + 1)]
    if max(abs(v) for v in vals) >= 10000:
        labels = [fmt_num(v, True) for v in vals]
    else:                               # same number of decimals on every tick: 0.0, 0.5, 1.0
        labels = [f"{v:,.{digits}f}" for v in vals]
    return Axis(vals[0], vals[-1], list(zip(vals, labels)))


def log_axis(values, suffix_ok=True):
    """A log10 axis from the decade below min(values) to the decade above max(values)."""
    lo = math.floor(math.log10(min(values)) + 1e-9)
    hi = math.ceil(math.log10(max(values)) - 1e-9)
    if hi == lo:
        hi += 1
    every = 1 if hi - lo <= 8 else 2 if hi - lo <= 16 else 4   # keep labels apart
    suffix = suffix_ok and 10.0 ** hi >= 10000
    ticks = [(e, fmt_num(10.0 ** e, suffix)) for e in range(lo, hi + 1) if (e - lo) % every == 0]
    minors = [e + math.log10(m) for e in range(lo, hi) for m in range(2, 10)]
    minors += [e for e in range(lo, hi + 1) if (e - lo) % every]
    return Axis(lo, hi, ticks, minors, math.log10)


def nines_axis(percentiles):
    """The percentile axis, x = -log10(1 - p/100); p = 100 goes to an extra tick "max"."""
    finite = [-math.log10(1 - p / 100) for p in percentiles if p < 100]
    top = max(2, math.ceil(max(finite, default=0) - 1e-6))
    has_max = any(p >= 100 for p in percentiles)
    if has_max and finite and max(finite) > top - 0.25:
        top += 1                        # keep "max" clear of the last real percentile
    ticks = []
    for n in range(top + 1):
        label = "0%" if n == 0 else f"{100 - 10.0 ** (2 - n):.{max(0, n - 2)}f}%"
        ticks.append((n, label))
    if has_max:
        ticks[-1] = (top, "max")
    minors = [n + math.log10(2) for n in range(top)]       # 50%, 95%, 99.5% ...

    def transform(p):
        return top if p >= 100 else min(top, -math.log10(1 - p / 100))
    return Axis(0, top, ticks, minors, transform)


def style_of(i):
    """Colour and marker shape of series i; the pair differs for the first 32 series."""
    return PALETTE[i % len(PALETTE)], MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]


def marker(shape, x, y, colour):
    """One data-point marker, white-edged so it stays visible where lines cross."""
    style = f'fill="{colour}" stroke="#fff" stroke-width="1"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.6" {style}/>'
    if shape == "square":
        return f'<rect x="{x - 3.2:.1f}" y="{y - 3.2:.1f}" width="6.4" height="6.4" {style}/>'
    if shape == "triangle":
        pts = [(x, y - 4.4), (x + 4.2, y + 3.0), (x - 4.2, y + 3.0)]
    else:
        pts = [(x, y - 4.6), (x + 4.2, y), (x, y + 4.6), (x - 4.2, y)]
    return f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}" {style}/>'


def legend_rows(names, avail):
    """Split legend entries into rows that fit in `avail` pixels; returns [[(name, width)]]."""
    rows, row, used = [], [], 0.0
    for name in names:
        w = 30 + text_width(name, LEGEND_SIZE) + 20
        if row and used + w > avail:
            rows.append(row)
            row, used = [], 0.0
        row.append((name, w))
        used += w
    return rows + [row]


def render(title, xaxis, yaxis, xlabel, ylabel, series):
    """Build the SVG document for {series: [(x, y)]} drawn on the given axes."""
    left = 34 + max(text_width(lbl, TICK_SIZE) for _, lbl in yaxis.ticks) + 10
    right = WIDTH - 26 - text_width(xaxis.ticks[-1][1], TICK_SIZE) / 2
    rows = legend_rows(list(series), right - left)
    top, bottom = 48 + 20 * len(rows), HEIGHT - 54
    px = lambda v: xaxis.scale(v, left, right)   # noqa: E731
    py = lambda v: yaxis.scale(v, bottom, top)   # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" role="img">',
           f"<title>{esc(title)}</title>",
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
           f'<text x="{WIDTH / 2:.1f}" y="28" text-anchor="middle" font-size="{TITLE_SIZE}" '
           f'font-weight="bold" fill="#222">{esc(title)}</text>']
    # Grid: minor lines first, major over them, then the frame.
    grid = []
    for axis, major in ((xaxis, False), (yaxis, False), (xaxis, True), (yaxis, True)):
        positions = [p for p, _ in axis.ticks] if major else axis.minors
        colour = "#d4d4d4" if major else "#ededed"
        for p in positions:
            if axis is xaxis:
                x = left + (p - axis.lo) / (axis.hi - axis.lo) * (right - left)
                grid.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" '
                            f'stroke="{colour}"/>')
            else:
                y = bottom + (p - axis.lo) / (axis.hi - axis.lo) * (top - bottom)
                grid.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" '
                            f'y2="{y:.1f}" stroke="{colour}"/>')
    out += ['<g stroke-width="1">'] + grid + ["</g>"]
    out.append(f'<rect x="{left:.1f}" y="{top}" width="{right - left:.1f}" '
               f'height="{bottom - top}" fill="none" stroke="#888"/>')
    # Tick labels and axis titles.
    out.append(f'<g font-size="{TICK_SIZE}" fill="#444">')
    for p, lbl in xaxis.ticks:
        x = left + (p - xaxis.lo) / (xaxis.hi - xaxis.lo) * (right - left)
        out.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{esc(lbl)}</text>')
    for p, lbl in yaxis.ticks:
        y = bottom + (p - yaxis.lo) / (yaxis.hi - yaxis.lo) * (top - bottom)
        out.append(f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">{esc(lbl)}</text>')
    out.append("</g>")
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{HEIGHT - 14}" text-anchor="middle" '
               f'font-size="{LABEL_SIZE}" fill="#222">{esc(xlabel)}</text>')
    ymid = (top + bottom) / 2
    out.append(f'<text x="18" y="{ymid:.1f}" transform="rotate(-90 18 {ymid:.1f})" '
               f'text-anchor="middle" font-size="{LABEL_SIZE}" fill="#222">{esc(ylabel)}</text>')
    # Data: one polyline plus markers per series.
    for i, (name, pts) in enumerate(series.items()):
        colour, shape = style_of(i)
        xy = [(px(x), py(y)) for x, y in pts]
        out.append(f'<g><polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in xy)}" '
                   f'fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" '
                   f'stroke-linecap="round"/>')
        out += [marker(shape, a, b, colour) for a, b in xy] + ["</g>"]
    # Legend: centred rows between the title and the plot.
    index = 0
    for r, row in enumerate(rows):
        x = (left + right) / 2 - (sum(w for _, w in row) - 20) / 2
        y = 50 + 20 * r
        for name, w in row:
            colour, shape = style_of(index)
            out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 24:.1f}" y2="{y - 4}" '
                       f'stroke="{colour}" stroke-width="2"/>')
            out.append(marker(shape, x + 12, y - 4, colour))
            out.append(f'<text x="{x + 30:.1f}" y="{y}" font-size="{LEGEND_SIZE}" '
                       f'fill="#222">{esc(name)}</text>')
            x += w
            index += 1
    out.append("</svg>")
    return "\n".join(out) + "\n"


def parse_args(argv):
    """Command line: a `latency` or an `xy` subcommand."""
    ap = argparse.ArgumentParser(
        prog="plot.py", description="Render benchmark TSV data as a standalone SVG chart.",
        epilog="Input: series<TAB>x<TAB>y per line; '#' lines are comments. Exit status 2 on "
               "malformed input.")
    sub = ap.add_subparsers(dest="kind", required=True, metavar="{latency,xy}")
    lat = sub.add_parser("latency", help="latency by percentile (nines scale, log values)",
                         description="Lines: series<TAB>percentile (0..100)<TAB>value (> 0).")
    xy = sub.add_parser("xy", help="y against x, one line per series",
                        description="Lines: series<TAB>x<TAB>y.")
    for p in (lat, xy):
        p.add_argument("input", metavar="IN.tsv", help="input file, or - for stdin")
        p.add_argument("output", metavar="OUT.svg", help="SVG file to write")
        p.add_argument("--title", default="", help="chart title")
    lat.add_argument("--unit", default="ms", help="unit of the values (default: ms)")
    xy.add_argument("--xlabel", default="", help="x axis title")
    xy.add_argument("--ylabel", default="", help="y axis title")
    xy.add_argument("--logx", action="store_true", help="logarithmic x axis")
    xy.add_argument("--logy", action="store_true", help="logarithmic y axis")
    return ap.parse_args(argv)


def main(argv=None):
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        if args.kind == "latency":
            data = read_tsv(args.input, ("percentile", "value"), log_y=True, x_range=(0, 100))
            series = {k: sorted(v) for k, v in data.items()}
            xaxis = nines_axis([p for pts in series.values() for p, _ in pts])
            yaxis = log_axis([v for pts in series.values() for _, v in pts], suffix_ok=False)
            svg = render(args.title, xaxis, yaxis, "Percentile", f"Latency ({args.unit})",
                         series)
        else:
            data = read_tsv(args.input, ("x", "y"), log_x=args.logx, log_y=args.logy)
            series = {k: sorted(v, key=lambda pt: pt[0]) for k, v in data.items()}
            xs = [x for pts in series.values() for x, _ in pts]
            ys = [y for pts in series.values() for _, y in pts]
            xaxis = log_axis(xs) if args.logx else linear_axis(xs, target=7)
            yaxis = log_axis(ys) if args.logy else linear_axis(ys, include_zero=True)
            svg = render(args.title, xaxis, yaxis, args.xlabel, args.ylabel, series)
    except InputError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 2
    try:
        with open(args.output, "w", encoding="utf-8", newline="\n") as f:
            f.write(svg)
    except OSError as e:
        print(f"plot.py: error: cannot write {args.output}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
