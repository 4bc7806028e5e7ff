#!/usr/bin/env python3
"""Draws the side-by-side chart of a benchmark run from its JSON figures
(`outrigger-bench --json PATH`): output msgs/s per concurrency and payload,
and CPU per message, for the direct client, outrigger and daprd.
Writes an SVG with no dependencies beyond Python's standard library.

Usage: scripts/bench-chart.py BENCH.json [OUT.svg]   (default bench/side-by-side.svg)
"""
import json
import math
import os
import sys
from html import escape

COLORS = {
    ("direct", "kafka"): "#7f7f7f",
    ("outrigger", "gRPC"): "#1f77b4",
    ("outrigger", "HTTP"): "#6baed6",
    ("daprd", "gRPC"): "#d62728",
    ("daprd", "HTTP"): "#f28e8c",
}
LABELS = {
    ("direct", "kafka"): "direct rdkafka client (outrigger's settings)",
    ("outrigger", "gRPC"): "outrigger gRPC",
    ("outrigger", "HTTP"): "outrigger HTTP",
    ("daprd", "gRPC"): "daprd gRPC",
    ("daprd", "HTTP"): "daprd HTTP",
}
SERIES = list(COLORS)


def payload_label(p):
    return f"{p // 1024} KB" if p >= 1024 and p % 1024 == 0 else f"{p} B"


def fmt_rate(v):
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.items = w, h, []

    def rect(self, x, y, w, h, fill, title=None):
        t = f"<title>{escape(title)}</title>" if title else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}">{t}</rect>')

    def line(self, x1, y1, x2, y2, stroke="#ccc", width=1):
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"/>')

    def text(self, x, y, s, size=11, anchor="start", weight="normal", rotate=None, fill="#222"):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" fill="{fill}"{tr}>{escape(s)}</text>')

    def write(self, path):
        with open(path, "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                    f'viewBox="0 0 {self.w} {self.h}" font-family="Helvetica, Arial, sans-serif">\n')
            f.write(f'<rect width="{self.w}" height="{self.h}" fill="white"/>\n')
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")


def bars(svg, x0, y0, w, h, groups, series, value, log, ytitle, title, label):
    """Grouped bars: groups = [(group label, key)], value(series, key) -> float | None."""
    svg.text(x0 + w / 2, y0 - 16, title, size=14, anchor="middle", weight="bold")
    vals = [value(s, k) for _, k in groups for s in series]
    vals = [v for v in vals if v]
    if not vals:
        svg.text(x0 + w / 2, y0 + h / 2, "no data", anchor="middle")
        return
    top = max(vals)
    if log:
        lo = 10 ** math.floor(math.log10(min(vals)))
        hi = 10 ** math.ceil(math.log10(top))
        def ypos(v):
            return y0 + h - h * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        ticks, t = [], lo
        while t <= hi * 1.001:
            ticks.append(t)
            t *= 10
    else:
        step = 10 ** math.floor(math.log10(top))
        for m in (1, 2, 5, 10):
            if top / (step * m) <= 6:
                step *= m
                break
        hi = step * math.ceil(top / step)
        def ypos(v):
            return y0 + h - h * v / hi
        ticks = [i * step for i in range(int(round(hi / step)) + 1)]
    for t in ticks:
        y = ypos(t)
        svg.line(x0, y, x0 + w, y)
        svg.text(x0 - 6, y + 4, fmt_rate(t) if log else f"{t:g}", size=10, anchor="end")
    svg.line(x0, y0 + h, x0 + w, y0 + h, stroke="#444")
    svg.text(x0 - 48, y0 + h / 2, ytitle, size=11, anchor="middle", rotate=-90)
    gw = w / len(groups)
    bw = gw * 0.8 / len(series)
    for gi, (glabel, key) in enumerate(groups):
        gx = x0 + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = value(s, key)
            if not v:
                continue
            x = gx + si * bw
            y = ypos(v)
            svg.rect(x, y, bw - 1, y0 + h - y, COLORS[s], f"{LABELS[s]} {glabel}: {label(v)}")
            svg.text(x + bw / 2, y - 3, label(v), size=8, anchor="middle", fill="#444")
        for li, part in enumerate(glabel.split("\n")):
            svg.text(x0 + gi * gw + gw / 2, y0 + h + 14 + 12 * li, part, size=10, anchor="middle")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    src = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "bench", "side-by-side.svg")
    doc = json.load(open(src))
    # The direct series: the direct producer with outrigger's settings.
    linger = doc.get("outrigger_linger_ms")
    rows = [r for r in doc["output"] if r["contender"] != "direct" or r.get("linger_ms") in (None, linger)]
    present = {(r["contender"], r["transport"]) for r in rows}
    series = [s for s in SERIES if s in present]
    payloads = sorted({r["payload_bytes"] for r in rows})
    concs = sorted({r["concurrency"] for r in rows})

    def row(s, payload, conc):
        for r in rows:
            if (r["contender"], r["transport"]) == s and r["payload_bytes"] == payload and r["concurrency"] == conc:
                return r
        return None

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    def cpu(s, payload, conc):
        # The sidecar's CPU per message; for the direct client, its own (the
        # bench process's) CPU per message.
        field = "generator_cpu_us_per_msg" if s[0] == "direct" else "sidecar_cpu_us_per_msg"
        return (row(s, payload, conc) or {}).get(field)

    W, H = 1300, 500
    svg = Svg(W, H)
    head = doc.get("header", {})
    svg.text(W / 2, 22, "outrigger vs daprd vs a direct Kafka client, same run, same broker", size=16,
             anchor="middle", weight="bold")
    sub = f'{head.get("broker", "").split(" at ")[0]}; {head.get("date", "")}; {head.get("machine", "").split(";")[0]}'
    svg.text(W / 2, 40, sub, size=11, anchor="middle", fill="#555")
    groups = [(f"c={c}\n{payload_label(p)}", (p, c)) for p in payloads for c in concs]
    bars(svg, 80, 115, 560, 280, groups, series,
         lambda s, k: (row(s, k[0], k[1]) or {}).get("msgs_per_s"), True, "msgs/s (log scale)",
         "Output throughput (higher is better)", fmt_rate)
    cgroups = list(groups)
    # Input delivery CPU per message as a group of its own.
    inputs = {(r["contender"], "gRPC" if r["app"] == "grpc" else "HTTP"): r.get("sidecar_cpu_s_per_100k")
              for r in doc.get("input", []) if r["contender"] != "direct"}
    cgroups.append(("input\n(to the app)", "input"))

    def cpu_value(s, k):
        if k == "input":
            v = inputs.get(s)
            return v * 10 if v is not None else None  # s per 100k -> µs per msg
        return cpu(s, k[0], k[1])

    bars(svg, 730, 115, 540, 280, cgroups, series, cpu_value, False, "CPU µs per message",
         "CPU per message (lower is better)", lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}")
    # Legend.
    lx = 80
    for s in series:
        svg.rect(lx, 56, 12, 12, COLORS[s])
        svg.text(lx + 16, 66, LABELS[s], size=11)
        lx += 36 + 6 * len(LABELS[s])
    svg.text(80, H - 24, "Throughput: each caller sends one request after the other; direct = rdkafka producer "
             f"with outrigger's settings (acks=all, linger {linger if linger is not None else 1} ms).", size=10, fill="#555")
    svg.text(80, H - 10, "CPU: utime+stime of the sidecar process per message; "
             "direct = the client process's own CPU per message.", size=10, fill="#555")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    svg.write(out)
    print(out)


if __name__ == "__main__":
    main()
