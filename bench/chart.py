#!/usr/bin/env python3
"""Draw bench/results/w1.svg (W1 jobs/s per system) from raw.jsonl, by hand.

Usage: python3 bench/chart.py [raw.jsonl] [out.svg]
Horizontal bars on a log scale (the systems span three orders of magnitude),
median over rounds, whole-process and in-process jobs/s side by side.
"""
import json
import math
import statistics
import sys
from html import escape
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Quoted in the issue; okanjo-conductor is not on the npm registry.
REFERENCE = ("okanjo-conductor 3.0 (quoted)", 20_400, 21_800)
COLORS = {"whole": "#4e79a7", "inproc": "#f28e2b"}


def w1_medians(raw_path):
    """[(system, median whole-process jobs/s, median in-process jobs/s)], rounds, jobs."""
    per, rounds, jobs = {}, set(), 0
    for line in Path(raw_path).read_text().splitlines():
        r = json.loads(line)
        if r["workload"] != "W1" or r.get("error"):
            continue
        per.setdefault(r["system"], []).append((r["jobs"] / r["wall_secs"], r["jobs_per_sec"]))
        rounds.add(r["round"])
        jobs = r["jobs"]
    rows = [(s, statistics.median(w for w, _ in v), statistics.median(i for _, i in v))
            for s, v in per.items()]
    return rows, len(rounds), jobs


def draw(raw_path=RESULTS / "raw.jsonl", svg_path=RESULTS / "w1.svg"):
    rows, rounds, jobs = w1_medians(raw_path)
    rows.append(REFERENCE)
    lo = 10 ** math.floor(math.log10(min(min(w, i) for _, w, i in rows)))
    hi = 10 ** math.ceil(math.log10(max(max(w, i) for _, w, i in rows) * 1.5))
    left, width, bar, gap, top = 250, 560, 14, 14, 70
    height = top + len(rows) * (2 * bar + gap) + 50
    x = lambda v: left + width * math.log10(v / lo) / math.log10(hi / lo)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 110}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">W1: {jobs:,} trivial jobs, '
           f'2 workers — jobs/s (log scale)</text>',
           f'<text x="{left}" y="40" fill="#555">median of {rounds} round(s); longer is faster; '
           'okanjo figures quoted from the issue, not measured</text>']
    # legend
    for k, (key, label) in enumerate([("whole", "whole process (wall clock)"),
                                      ("inproc", "in-process (run start to report)")]):
        lx = left + k * 260
        svg.append(f'<rect x="{lx}" y="50" width="12" height="12" fill="{COLORS[key]}"/>'
                   f'<text x="{lx + 17}" y="60">{label}</text>')
    # decade grid lines
    axis_y = height - 40
    d = lo
    while d <= hi:
        svg.append(f'<line x1="{x(d):.1f}" y1="{top - 4}" x2="{x(d):.1f}" y2="{axis_y}" stroke="#ddd"/>'
                   f'<text x="{x(d):.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#555">{d:,.0f}</text>')
        d *= 10
    for n, (system, whole, inproc) in enumerate(rows):
        y = top + n * (2 * bar + gap)
        quoted = system == REFERENCE[0]
        italic = ' font-style="italic"' if quoted else ""
        svg.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end"{italic}>'
                   f'{escape(system)}</text>')
        for k, (key, v) in enumerate([("whole", whole), ("inproc", inproc)]):
            by = y + k * bar
            style = ' fill-opacity="0.45" stroke="#333" stroke-dasharray="3,2"' if quoted else ""
            svg.append(f'<rect x="{left}" y="{by}" width="{x(v) - left:.1f}" height="{bar - 2}" '
                       f'fill="{COLORS[key]}"{style}/>'
                       f'<text x="{x(v) + 4:.1f}" y="{by + bar - 4}" font-size="11">{v:,.0f}</text>')
    svg.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" stroke="#333"/>')
    svg.append("</svg>")
    Path(svg_path).write_text("\n".join(svg) + "\n")


if __name__ == "__main__":
    draw(*sys.argv[1:3])
