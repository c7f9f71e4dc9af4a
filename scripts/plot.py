#!/usr/bin/env python3
"""Draws the charts of scripts/bench-scale.sh and scripts/bench-sweep.sh runs.

    scripts/plot.py [--out DIR] [--doc FILE] RUN_DIR...
                                              SVG charts and tables.md in DIR
                                              (default docs/performance); with
                                              --doc, tables.md also replaces
                                              what FILE has between the lines
                                              <!-- tables:begin --> and
                                              <!-- tables:end -->
    scripts/plot.py --selftest                renders sample data to a
                                              temporary directory and checks it

Each RUN_DIR is an output directory of either script (TARGET=apus or
swift); runs of both targets go on the same axes, apus in blue, Swift in
orange. Charts are drawn only for the data given:

    scale-put.svg          PUT ops/s of each step against objects in the container
    scale-put-latency.svg  each step's PUT p50 and p99 latency
    scale-rss.svg          resident memory after each step (sum over the
                           processes; dashed: the peak, VmHWM)
    scale-rss-time.svg     resident memory sampled through the whole run
    scale-listing.svg      median listing latency of each request kind at
                           each checkpoint (log-log)
    sweep-mibps.svg        PUT and GET MiB/s against object size (log x)
    sweep-ops.svg          PUT and GET ops/s against object size (log-log)
    tables.md              the same figures as Markdown tables, with the
                           replication passes

Only the Python 3 standard library is used; the output depends only on the
input (no dates, fixed number formatting), so charts can be committed and
diffed.
"""

import argparse
import csv
import math
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 440
LEFT, RIGHT, TOP, BOTTOM = 78, 250, 62, 58
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""

TARGET_COLORS = {"apus": "#1f77b4", "swift": "#ff7f0e"}
EXTRA_COLORS = ["#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
KIND_COLORS = {
    "head": "#1f77b4",
    "first_page": "#ff7f0e",
    "deep_marker": "#2ca02c",
    "prefix_delim": "#d62728",
    "top_delim": "#9467bd",
}
KIND_LABELS = {
    "head": "HEAD",
    "first_page": "GET first page",
    "deep_marker": "GET marker=d900/",
    "prefix_delim": "GET prefix=d500/&delimiter=/",
    "top_delim": "GET delimiter=/",
}
DASHES = ["", "7 4", "2 3", "9 3 2 3"]


# ---------------------------------------------------------------- numbers


def fmt_num(v):
    """A short label: 0.05, 3, 250, 12k, 1.5M."""
    if v == 0:
        return "0"
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return _trim(v / div) + suffix
    return _trim(v)


def _trim(v):
    if abs(v) >= 100 or v == int(v):
        return "%d" % round(v)
    s = ("%.2f" if abs(v) < 1 else "%.1f") % v
    return s.rstrip("0").rstrip(".")


def fmt_bytes(n):
    """1 KiB, 256 KiB, 16 MiB."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, unit)
    return "%d B" % n


def nice_step(span, count):
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


class Axis:
    """A linear or logarithmic axis over [lo, hi] with labelled ticks."""

    def __init__(self, label, values, log=False, zero=True, ticks=None, fmt=fmt_num):
        self.label, self.log, self.fmt = label, log, fmt
        values = [v for v in values if v is not None and (v > 0 or not log)]
        if not values:
            values = [1.0]
        lo, hi = min(values), max(values)
        if log:
            self.lo = 10 ** math.floor(math.log10(lo))
            self.hi = 10 ** math.ceil(math.log10(hi))
            if self.hi <= self.lo:
                self.hi = self.lo * 10
        else:
            lo = min(lo, 0.0) if zero else lo
            if hi <= lo:
                hi = lo + 1.0
            step = nice_step(hi - lo, 5)
            self.lo = math.floor(lo / step) * step
            self.hi = math.ceil(hi / step) * step
            self.step = step
        if ticks is not None:
            # The given values are the ticks: the axis spans them, with a
            # margin so no point sits on the frame.
            self.ticks = [(t, fmt(t)) for t in ticks]
            if log:
                self.lo, self.hi = min(ticks) / 1.4, max(ticks) * 1.4
        elif log:
            self.ticks = []
            decades = round(math.log10(self.hi / self.lo))
            # Few decades: 2 and 5 between the powers of ten as well.
            steps = (1, 2, 5) if decades <= 2 else (1,)
            decade = self.lo
            while decade <= self.hi * 1.0001:
                for m in steps:
                    if decade * m <= self.hi * 1.0001:
                        self.ticks.append((decade * m, fmt(decade * m)))
                decade *= 10
        else:
            self.ticks = []
            t = self.lo
            while t <= self.hi + self.step / 1000:
                self.ticks.append((round(t, 10), fmt(round(t, 10))))
                t += self.step

    def frac(self, v):
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)


# ---------------------------------------------------------------- SVG


def f2(v):
    return ("%.2f" % v).rstrip("0").rstrip(".")


class Svg:
    def __init__(self, title, subtitle):
        self.parts = [
            '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">'
            % (WIDTH, HEIGHT, WIDTH, HEIGHT, FONT),
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            '<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>' % (LEFT, escape(title)),
        ]
        if subtitle:
            self.parts.append('<text x="%d" y="43" font-size="11" fill="#555555">%s</text>' % (LEFT, escape(subtitle)))
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM

    def x(self, axis, v):
        return LEFT + axis.frac(v) * self.plot_w

    def y(self, axis, v):
        return TOP + (1 - axis.frac(v)) * self.plot_h

    def axes(self, xa, ya):
        p = self.parts
        p.append('<g class="grid" stroke="#e5e5e5" stroke-width="1">')
        for v, _ in ya.ticks:
            y = self.y(ya, v)
            p.append('<line x1="%s" y1="%s" x2="%s" y2="%s"/>' % (LEFT, f2(y), LEFT + self.plot_w, f2(y)))
        for v, _ in xa.ticks:
            x = self.x(xa, v)
            p.append('<line x1="%s" y1="%s" x2="%s" y2="%s"/>' % (f2(x), TOP, f2(x), TOP + self.plot_h))
        p.append("</g>")
        p.append(
            '<rect class="frame" x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333333"/>'
            % (LEFT, TOP, self.plot_w, self.plot_h)
        )
        p.append('<g class="xticks" text-anchor="middle" fill="#333333">')
        for v, label in xa.ticks:
            x = self.x(xa, v)
            p.append('<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333333"/>' % (f2(x), TOP + self.plot_h, f2(x), TOP + self.plot_h + 5))
            p.append('<text x="%s" y="%d">%s</text>' % (f2(x), TOP + self.plot_h + 19, escape(label)))
        p.append("</g>")
        p.append('<g class="yticks" text-anchor="end" fill="#333333">')
        for v, label in ya.ticks:
            y = self.y(ya, v)
            p.append('<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#333333"/>' % (LEFT - 5, f2(y), LEFT, f2(y)))
            p.append('<text x="%d" y="%s">%s</text>' % (LEFT - 8, f2(y + 4), escape(label)))
        p.append("</g>")
        p.append(
            '<text class="xlabel" x="%s" y="%d" text-anchor="middle">%s</text>'
            % (f2(LEFT + self.plot_w / 2), HEIGHT - 14, escape(xa.label))
        )
        cy = TOP + self.plot_h / 2
        p.append(
            '<text class="ylabel" x="18" y="%s" text-anchor="middle" transform="rotate(-90 18 %s)">%s</text>'
            % (f2(cy), f2(cy), escape(ya.label))
        )

    def series(self, xa, ya, s):
        pts = [(x, y) for x, y in s["points"] if y is not None and (y > 0 or not ya.log) and (x > 0 or not xa.log)]
        if not pts:
            return
        coords = " ".join("%s,%s" % (f2(self.x(xa, x)), f2(self.y(ya, y))) for x, y in pts)
        dash = ' stroke-dasharray="%s"' % s["dash"] if s.get("dash") else ""
        p = self.parts
        p.append('<g class="series" data-name="%s">' % escape(s["name"], {'"': "&quot;"}))
        if len(pts) > 1:
            p.append(
                '<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (coords, s["color"], dash)
            )
        for x, y in pts:
            p.append(
                '<circle cx="%s" cy="%s" r="3" fill="%s"><title>%s: %s, %s</title></circle>'
                % (f2(self.x(xa, x)), f2(self.y(ya, y)), s["color"], escape(s["name"]), fmt_num(x), _trim(y))
            )
        p.append("</g>")

    def legend(self, series):
        p = self.parts
        x0, y = LEFT + self.plot_w + 16, TOP + 8
        p.append('<g class="legend">')
        for s in series:
            dash = ' stroke-dasharray="%s"' % s["dash"] if s.get("dash") else ""
            p.append(
                '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                % (x0, y, x0 + 26, y, s["color"], dash)
            )
            p.append('<circle cx="%d" cy="%d" r="3" fill="%s"/>' % (x0 + 13, y, s["color"]))
            lines = wrap(s["name"], 25)
            for i, line in enumerate(lines):
                p.append('<text x="%d" y="%d">%s</text>' % (x0 + 32, y + 4 + 14 * i, escape(line)))
            y += 14 * len(lines) + 8
        p.append("</g>")

    def text(self):
        return "\n".join(self.parts + ["</svg>"]) + "\n"


def wrap(text, width):
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = (line + " " + word).strip()
    return lines + [line] if line else lines


def line_chart(path, title, subtitle, xa, ya, series):
    svg = Svg(title, subtitle)
    svg.axes(xa, ya)
    for s in series:
        svg.series(xa, ya, s)
    svg.legend(series)
    with open(path, "w") as f:
        f.write(svg.text())
    return path


# ---------------------------------------------------------------- data


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Run:
    """One output directory of bench-scale.sh or bench-sweep.sh."""

    def __init__(self, path):
        self.path = path
        self.info = {}
        run_txt = os.path.join(path, "run.txt")
        if os.path.exists(run_txt):
            for line in open(run_txt):
                key, _, value = line.rstrip("\n").partition(" ")
                self.info.setdefault(key, value)
        self.steps = read_csv(os.path.join(path, "steps.csv"))
        self.listing = read_csv(os.path.join(path, "listing.csv"))
        self.replication = read_csv(os.path.join(path, "replication.csv"))
        self.rss = read_csv(os.path.join(path, "rss.csv"))
        self.sweep = read_csv(os.path.join(path, "sweep.csv"))
        rows = self.steps or self.sweep or self.listing
        self.target = self.info.get("target") or (rows[0]["target"] if rows else os.path.basename(path))
        self.label = self.target

    def describe(self):
        commit = self.info.get("commit", "").split(" ")[0]
        cpus = self.info.get("cpus", "").split(" ")[0]
        bits = [self.label]
        if self.steps or self.sweep:
            bits.append("scale" if self.steps else "sweep")
        if self.target == "apus" and commit:
            bits.append(commit)
        if self.info.get("date"):
            bits.append(self.info["date"][:8])
        if cpus:
            bits.append("%s CPUs" % cpus)
        return " ".join(bits)


def kind_of(run):
    return "scale" if run.steps else "sweep" if run.sweep else "other"


def label_runs(runs):
    """Targets name the series; a second run of one target and kind (scale
    or sweep) gets a number."""
    seen = {}
    for r in runs:
        key = (r.target, kind_of(r))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            r.label = "%s #%d" % (r.target, seen[key])


def color_of(run, runs):
    same = [r for r in runs if r.target == run.target and kind_of(r) == kind_of(run)]
    if same.index(run) == 0 and run.target in TARGET_COLORS:
        return TARGET_COLORS[run.target]
    return EXTRA_COLORS[runs.index(run) % len(EXTRA_COLORS)]


def subtitle(runs):
    return "; ".join(r.describe() for r in runs)


# ---------------------------------------------------------------- charts


def memory_axis(label, series):
    """Linear, unless one system uses over 20 times the memory of another
    (one process against seventy): then logarithmic, so both show."""
    peaks = [max(y for _, y in s["points"]) for s in series if s["points"]]
    log = bool(peaks) and min(peaks) > 0 and max(peaks) > 20 * min(peaks)
    values = [y for s in series for _, y in s["points"]]
    return Axis(label + (", log)" if log else ")"), values, log=log)


def scale_charts(runs, out):
    runs = [r for r in runs if r.steps]
    if not runs:
        return []
    written = []
    words = runs[0].info.get("objects", "").split(" ")
    size = words[words.index("size") + 1] if "size" in words else "4KiB"
    size = size.replace("KiB", " KiB").replace("MiB", " MiB")
    objects_axis_values = [num(s["objects"]) for r in runs for s in r.steps]
    xa = Axis("objects in the container", objects_axis_values)
    sub = subtitle(runs)

    series = []
    for r in runs:
        series.append(
            {
                "name": "%s PUT" % r.label,
                "color": color_of(r, runs),
                "points": [(num(s["objects"]), num(s["put_ops_per_s"])) for s in r.steps],
            }
        )
    ya = Axis("PUT ops/s (each step)", [y for s in series for _, y in s["points"]])
    written.append(
        line_chart(
            os.path.join(out, "scale-put.svg"),
            "%s PUTs into one container as it grows" % size,
            sub,
            xa,
            ya,
            series,
        )
    )

    series = []
    for r in runs:
        for i, (col, what) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"))):
            series.append(
                {
                    "name": "%s PUT %s" % (r.label, what),
                    "color": color_of(r, runs),
                    "dash": DASHES[i],
                    "points": [(num(s["objects"]), num(s[col])) for s in r.steps],
                }
            )
    ya = Axis("latency (ms, log)", [y for s in series for _, y in s["points"]], log=True)
    written.append(
        line_chart(
            os.path.join(out, "scale-put-latency.svg"),
            "%s PUT latency as the container grows" % size,
            sub,
            xa,
            ya,
            series,
        )
    )

    series = []
    for r in runs:
        procs = max(int(num(s["procs"]) or 0) for s in r.steps)
        many = " (sum of %d processes)" % procs if procs > 1 else ""
        series.append(
            {
                "name": "%s RSS%s" % (r.label, many),
                "color": color_of(r, runs),
                "points": [(num(s["objects"]), num(s["rss_sum_kib"]) / 1024) for s in r.steps],
            }
        )
        series.append(
            {
                "name": "%s peak, VmHWM%s" % (r.label, many),
                "color": color_of(r, runs),
                "dash": DASHES[1],
                "points": [(num(s["objects"]), num(s["hwm_sum_kib"]) / 1024) for s in r.steps],
            }
        )
        if procs > 1 and "servers_rss_kib" in r.steps[0]:
            series.append(
                {
                    "name": "%s RSS, servers only" % r.label,
                    "color": color_of(r, runs),
                    "dash": DASHES[2],
                    "points": [(num(s["objects"]), num(s["servers_rss_kib"]) / 1024) for s in r.steps],
                }
            )
    ya = memory_axis("resident memory (MiB", series)
    written.append(
        line_chart(
            os.path.join(out, "scale-rss.svg"),
            "Memory of the system under test as the container grows",
            sub,
            xa,
            ya,
            series,
        )
    )

    timed = [r for r in runs if r.rss]
    if timed:
        series = []
        for r in timed:
            by_t = {}
            for row in r.rss:
                t = num(row["t_s"])
                by_t[t] = by_t.get(t, 0.0) + (num(row["rss_kib"]) or 0) / 1024
            series.append(
                {
                    "name": "%s RSS" % r.label,
                    "color": color_of(r, runs),
                    "points": sorted(by_t.items()),
                }
            )
        xt = Axis("seconds since the start (fill, listings, replication)", [x for s in series for x, _ in s["points"]])
        ya = memory_axis("resident memory (MiB, sum", series)
        written.append(
            line_chart(
                os.path.join(out, "scale-rss-time.svg"),
                "Memory of the system under test through the run",
                sub,
                xt,
                ya,
                series,
            )
        )

    listed = [r for r in runs if r.listing]
    if listed:
        series = []
        kinds = [k for k in KIND_COLORS if any(row["kind"] == k for r in listed for row in r.listing)]
        for ri, r in enumerate(listed):
            for k in kinds:
                pts = [(num(row["objects"]), num(row["median_ms"])) for row in r.listing if row["kind"] == k]
                series.append(
                    {
                        "name": "%s %s" % (r.label, KIND_LABELS[k]),
                        "color": KIND_COLORS[k],
                        "dash": DASHES[ri % len(DASHES)],
                        "points": sorted(pts),
                    }
                )
        xs = sorted({x for s in series for x, _ in s["points"]})
        xl = Axis("objects in the container (log)", xs, log=True, ticks=xs if len(xs) > 1 else None)
        ya = Axis("median latency (ms, log)", [y for s in series for _, y in s["points"]], log=True)
        written.append(
            line_chart(
                os.path.join(out, "scale-listing.svg"),
                "Container HEAD and listing latency by container size",
                sub + (" (solid %s, dashed %s)" % (listed[0].label, listed[1].label) if len(listed) > 1 else ""),
                xl,
                ya,
                series,
            )
        )
    return written


def sweep_charts(runs, out):
    runs = [r for r in runs if r.sweep]
    if not runs:
        return []
    sizes = sorted({int(num(row["size_bytes"])) for r in runs for row in r.sweep})
    xa = Axis("object size (log)", sizes, log=True, ticks=sizes, fmt=lambda v: fmt_bytes(int(v)).replace(" ", "\u00a0"))
    sub = subtitle(runs)
    written = []
    for metric, col, log, name, title in (
        ("mibps", "mib_per_s", False, "MiB/s", "Throughput by object size"),
        ("ops", "ops_per_s", True, "ops/s (log)", "Requests per second by object size"),
    ):
        series = []
        for r in runs:
            for i, op in enumerate(("put", "get")):
                pts = sorted((num(row["size_bytes"]), num(row[col])) for row in r.sweep if row["op"] == op)
                if pts:
                    series.append(
                        {
                            "name": "%s %s" % (r.label, op.upper()),
                            "color": color_of(r, runs),
                            "dash": DASHES[i],
                            "points": pts,
                        }
                    )
        ya = Axis(name, [y for s in series for _, y in s["points"]], log=log)
        written.append(line_chart(os.path.join(out, "sweep-%s.svg" % metric), title, sub, xa, ya, series))
    return written


def tables(runs, out):
    lines = ["<!-- written by scripts/plot.py from: %s -->" % ", ".join(r.describe() for r in runs), ""]
    steps = [r for r in runs if r.steps]
    if steps:
        lines += ["| run | objects | PUT ops/s | p50 ms | p99 ms | errors | processes | RSS MiB | peak MiB | servers' RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in steps:
            for s in r.steps:
                servers = num(s.get("servers_rss_kib"))
                lines.append(
                    "| %s | %s | %.1f | %.2f | %.2f | %s | %s | %.1f | %.1f | %s |"
                    % (r.label, s["objects"], num(s["put_ops_per_s"]), num(s["p50_ms"]), num(s["p99_ms"]), s["errors"],
                       s["procs"], num(s["rss_sum_kib"]) / 1024, num(s["hwm_sum_kib"]) / 1024,
                       "%.1f" % (servers / 1024) if servers is not None else "-")
                )
        lines.append("")
    listed = [r for r in runs if r.listing]
    if listed:
        lines += ["| run | objects | request | median ms | p90 ms | entries | bytes |", "|---|---:|---|---:|---:|---:|---:|"]
        for r in listed:
            for row in r.listing:
                lines.append(
                    "| %s | %s | %s | %.2f | %.2f | %s | %s |"
                    % (r.label, row["objects"], KIND_LABELS.get(row["kind"], row["kind"]), num(row["median_ms"]),
                       num(row["p90_ms"]), row["entries"], row["bytes"])
                )
        lines.append("")
    repl = [r for r in runs if r.replication]
    if repl:
        lines += ["| run | objects | pass (Swift: node) | devices | seconds | partitions | hash matches | suffixes synced | failures |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in repl:
            for row in r.replication:
                lines.append(
                    "| %s | %s | %s | %s | %.2f | %s | %s | %s | %s |"
                    % (r.label, row["objects"], row["pass"], row["devices"], num(row["elapsed_s"]), row["partitions"] or "-",
                       row["hashmatch"] or "-", row["suffixes_synced"] or "-", row["failures"] or "-")
                )
        lines.append("")
    swept = [r for r in runs if r.sweep]
    if swept:
        lines += ["| run | size | op | in flight | requests | ops/s | MiB/s | p50 ms | p99 ms | errors |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in swept:
            for row in r.sweep:
                lines.append(
                    "| %s | %s | %s | %s | %s | %.1f | %.1f | %.2f | %.2f | %s |"
                    % (r.label, fmt_bytes(int(num(row["size_bytes"]))), row["op"].upper(), row["concurrency"],
                       row["requests"], num(row["ops_per_s"]), num(row["mib_per_s"]), num(row["p50_ms"]),
                       num(row["p99_ms"]), row["errors"])
                )
        lines.append("")
    path = os.path.join(out, "tables.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def replace_block(text, tables_md):
    """`text` with what lies between the BEGIN and END lines replaced."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("no %s ... %s block" % (BEGIN, END))
    return text[: start + len(BEGIN)] + "\n" + tables_md.rstrip("\n") + "\n" + text[end:]


def render(run_dirs, out):
    runs = [Run(d) for d in run_dirs]
    # apus first, then Swift, each in the order given: stable colors and legends.
    runs.sort(key=lambda r: (0 if r.target == "apus" else 1 if r.target == "swift" else 2))
    label_runs(runs)
    os.makedirs(out, exist_ok=True)
    written = scale_charts(runs, out) + sweep_charts(runs, out)
    written.append(tables(runs, out))
    return written


# ---------------------------------------------------------------- self test


def write_sample(path, target, fast, parts=("scale", "sweep")):
    """Sample output of bench-scale.sh ("scale") and bench-sweep.sh ("sweep")."""
    os.makedirs(path)
    with open(os.path.join(path, "run.txt"), "w") as f:
        f.write("date 20260101T000000Z\ntarget %s\ncommit abc1234\ncpus 2 Sample CPU\n" % target)
        f.write("objects 30000 step 10000 size 4KiB concurrency 32 dirs 1000\n")
    procs = 1 if target == "apus" else 20
    if "sweep" in parts:
        write_sample_sweep(path, target, fast)
    if "scale" not in parts:
        return
    with open(os.path.join(path, "steps.csv"), "w") as f:
        f.write("target,objects,step_objects,elapsed_s,step_s,put_ops_per_s,put_mib_per_s,p50_ms,p90_ms,p99_ms,max_ms,"
                "errors,procs,rss_sum_kib,rss_max_kib,hwm_sum_kib,hwm_max_kib,servers_rss_kib,servers_hwm_kib\n")
        for i, n in enumerate((10000, 20000, 30000)):
            f.write("%s,%d,10000,%d,10,%.1f,1.0,%.2f,3,%.2f,20,0,%d,%d,%d,%d,%d,%d,%d\n"
                    % (target, n, 10 * (i + 1), fast / (1 + i / 10), 30 / fast * 100, 90 / fast * 100, procs,
                       50000 + 1000 * i, 50000, 60000 + 1000 * i, 60000, 40000 + 1000 * i, 45000))
    with open(os.path.join(path, "rss.csv"), "w") as f:
        f.write("t_s,phase,objects,pid,name,rss_kib,hwm_kib\n")
        for t in range(0, 30, 5):
            for p in range(procs):
                f.write("%d.0,fill,0,%d,proc%d,%d,%d\n" % (t, 100 + p, p, 40000 + 100 * t, 50000))
    with open(os.path.join(path, "listing.csv"), "w") as f:
        f.write("target,objects,kind,method,query,requests,median_ms,p90_ms,min_ms,max_ms,status,bytes,entries\n")
        for n in (10000, 100000):
            for k in KIND_COLORS:
                f.write('%s,%d,%s,GET,"?format=json",20,%.3f,%.3f,1,9,200,100,10\n' % (target, n, k, n / fast, n / fast * 1.2))
    with open(os.path.join(path, "replication.csv"), "w") as f:
        f.write("target,objects,pass,devices,elapsed_s,completed,partitions,suffixes_checked,hashmatch,suffixes_synced,"
                "failures,rss_kib,hwm_kib\n%s,30000,1,4,%.2f,1,3072,9000,6144,0,0,1,1\n" % (target, 1000 / fast))


def write_sample_sweep(path, target, fast):
    with open(os.path.join(path, "sweep.csv"), "w") as f:
        f.write("target,size_bytes,size,op,concurrency,requests,prefill,count,errors,elapsed_s,ops_per_s,mib_per_s,"
                "p50_ms,p90_ms,p99_ms,max_ms,rss_sum_kib,hwm_sum_kib\n")
        for size in (1024, 4096, 1 << 20, 256 << 20):
            for op in ("put", "get"):
                ops = fast * 10 / (1 + size / 65536.0)
                f.write("%s,%d,x,%s,16,100,0,100,0,1,%.3f,%.3f,1,2,3,4,1,1\n" % (target, size, op, ops, ops * size / (1 << 20)))


def selftest():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        # apus's scale and sweep runs apart, Swift's in one directory.
        apus_scale, apus_sweep = os.path.join(tmp, "apus-scale"), os.path.join(tmp, "apus-sweep")
        swift_dir = os.path.join(tmp, "swift-run")
        write_sample(apus_scale, "apus", 1000.0, parts=("scale",))
        write_sample(apus_sweep, "apus", 1000.0, parts=("sweep",))
        write_sample(swift_dir, "swift", 100.0)
        dirs = [swift_dir, apus_sweep, apus_scale]
        first, second = os.path.join(tmp, "out1"), os.path.join(tmp, "out2")
        written = render(dirs, first)
        render(dirs, second)
        expected = {
            "scale-put.svg": ["apus PUT", "swift PUT"],
            "scale-put-latency.svg": ["apus PUT p50", "apus PUT p99", "swift PUT p50", "swift PUT p99"],
            "scale-rss.svg": ["apus RSS", "apus peak, VmHWM", "swift RSS (sum of 20 processes)",
                              "swift peak, VmHWM (sum of 20 processes)", "swift RSS, servers only"],
            "scale-rss-time.svg": ["apus RSS", "swift RSS"],
            "scale-listing.svg": ["%s %s" % (t, KIND_LABELS[k]) for t in ("apus", "swift") for k in KIND_COLORS],
            "sweep-mibps.svg": ["apus PUT", "apus GET", "swift PUT", "swift GET"],
            "sweep-ops.svg": ["apus PUT", "apus GET", "swift PUT", "swift GET"],
        }
        names = sorted(os.path.basename(p) for p in written)
        if names != sorted(list(expected) + ["tables.md"]):
            failures.append("written: %s" % names)
        ns = "{http://www.w3.org/2000/svg}"
        for name, want in expected.items():
            path = os.path.join(first, name)
            try:
                tree = ET.parse(path)
            except (ET.ParseError, OSError) as e:
                failures.append("%s: %s" % (name, e))
                continue
            root = tree.getroot()
            if root.tag != ns + "svg":
                failures.append("%s: root is %s" % (name, root.tag))
            got = [g.get("data-name") for g in root.iter(ns + "g") if g.get("class") == "series"]
            if got != want:
                failures.append("%s: series %s, want %s" % (name, got, want))
            for g in root.iter(ns + "g"):
                if g.get("class") != "series":
                    continue
                points = len(list(g.iter(ns + "circle")))
                if points < 2:
                    failures.append("%s: series %s has %d points" % (name, g.get("data-name"), points))
                for c in g.iter(ns + "circle"):
                    cx, cy = float(c.get("cx")), float(c.get("cy"))
                    if not (LEFT - 0.01 <= cx <= WIDTH - RIGHT + 0.01 and TOP - 0.01 <= cy <= HEIGHT - BOTTOM + 0.01):
                        failures.append("%s: point (%s, %s) of %s is outside the plot" % (name, cx, cy, g.get("data-name")))
            legend = [g for g in root.iter(ns + "g") if g.get("class") == "legend"]
            legend_text = " ".join(t.text or "" for g in legend for t in g.iter(ns + "text"))
            for label in want:
                if label not in legend_text:
                    failures.append("%s: no legend for %s" % (name, label))
            ticks = [t for g in root.iter(ns + "g") if g.get("class") in ("xticks", "yticks") for t in g.iter(ns + "text")]
            if len(ticks) < 4:
                failures.append("%s: %d tick labels" % (name, len(ticks)))
            if open(path).read() != open(os.path.join(second, name)).read():
                failures.append("%s: two renderings differ" % name)
        table = open(os.path.join(first, "tables.md")).read()
        for needle in ("| apus | 30000 |", "| swift | 100000 | GET first page |", "| 256 MiB | GET |", "| 3072 |"):
            if needle not in table:
                failures.append("tables.md lacks %r" % needle)
        doc = replace_block("# x\n%s\nold\n%s\nrest\n" % (BEGIN, END), "| a |\n")
        if doc != "# x\n%s\n| a |\n%s\nrest\n" % (BEGIN, END):
            failures.append("replace_block: %r" % doc)
        if fmt_bytes(256 << 20) != "256 MiB" or fmt_num(1500000) != "1.5M" or fmt_num(0.25) != "0.25":
            failures.append("number formats")
    for f in failures:
        print("selftest: FAIL %s" % f, file=sys.stderr)
    print("selftest: %s (%d charts checked)" % ("ok" if not failures else "%d failures" % len(failures), len(expected)))
    return 0 if not failures else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "performance"))
    parser.add_argument("--doc", metavar="FILE", help="a Markdown file whose tables block to replace")
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    if args.selftest:
        return selftest()
    if not args.runs:
        parser.error("give at least one RUN_DIR (an OUT of bench-scale.sh or bench-sweep.sh)")
    for d in args.runs:
        if not os.path.isdir(d):
            parser.error("%s: not a directory" % d)
    written = render(args.runs, os.path.normpath(args.out))
    for path in written:
        print(path)
    if args.doc:
        with open(args.doc) as f:
            text = f.read()
        try:
            text = replace_block(text, open(written[-1]).read())
        except ValueError as e:
            parser.error("%s: %s" % (args.doc, e))
        with open(args.doc, "w") as f:
            f.write(text)
        print(args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
