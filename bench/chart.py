"""From one results JSON: the markdown table of docs/performance.md and an SVG chart.

    .venv/bin/python -m bench.chart bench/results/<stamp>.json docs/performance.svg

The chart shows, per scenario headline, how many times better ressonance is than Soketi
(ratio ours/soketi, inverted where lower is better), on a log scale, with the issue's target.
"""

from __future__ import annotations

import json
import math
import sys
from html import escape
from pathlib import Path
from typing import Any

from bench.run import fmt
from bench.scenarios import SCENARIOS

LOWER_IS_BETTER = {"kib_per_conn", "p50_ms", "p95_ms", "p99_ms", "rss_growth_pct"}


def markdown(result: dict[str, Any]) -> str:
    servers = list(result["medians"])
    head = ["scenario", "figure", *servers]
    if "soketi" in servers:
        head.append("ratio ours/soketi")
    head += ["target", "met", "client CPU (" + " / ".join(servers) + ")"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["scenario"], f"`{row['figure']}`", *(fmt(row.get(s)) for s in servers)]
        if "soketi" in servers:
            cells.append(fmt(row.get("ratio")))
        met = {True: "yes", False: "**no**"}.get(row.get("met"), "")  # type: ignore[arg-type]
        cpu = " / ".join(fmt(row.get(f"{s}_client_cpu")) for s in servers)
        cells += [row.get("target", ""), met, cpu if "client_cpu" in str(row) else ""]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def advantage(row: dict[str, Any]) -> float | None:
    r = row.get("ratio")
    if not isinstance(r, int | float) or r <= 0:
        return None
    return 1 / r if row["figure"] in LOWER_IS_BETTER else r


def target_advantage(row: dict[str, Any]) -> float | None:
    t = row.get("target", "")
    if not t.startswith("ratio"):
        return None
    value = float(t.split()[-1])
    return 1 / value if "<=" in t else value


def svg(result: dict[str, Any]) -> str:
    mains = {(s.name, s.main) for s in SCENARIOS}
    rows = [r for r in result["rows"] if advantage(r) and (r["scenario"], r["figure"]) in mains]
    lo, hi = 0.1, 30.0
    left, width, bar, gap, top = 250, 520, 18, 8, 50
    height = top + len(rows) * (bar + gap) + 50

    def x(v: float) -> float:
        v = min(max(v, lo), hi)
        return left + width * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">ressonance vs Soketi '
        "1.6.1: times better (log scale; right of 1 = ressonance better)</text>",
        f'<text x="{left}" y="36" fill="#555">bars: medians of {result["args"]["runs"]} '
        "interleaved runs; black ticks: the issue's targets</text>",
    ]
    for tick in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20):
        tx = x(tick)
        stroke = "#000" if tick == 1 else "#ddd"
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 40}" '
                   f'stroke="{stroke}"/>')  # fmt: skip
        out.append(
            f'<text x="{tx:.1f}" y="{height - 25}" text-anchor="middle">{tick:g}&#215;</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * (bar + gap)
        a = advantage(row) or 1.0
        x0, x1 = sorted((x(1), x(a)))
        color = "#2a7ab9" if a >= 1 else "#d0632a"
        label = escape(f"{row['scenario']} ({row['figure']})")
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{bar}" '
                   f'fill="{color}"/>')  # fmt: skip
        out.append(f'<text x="{max(x(a), x(1)) + 4:.1f}" y="{y + 13}">{a:.2f}&#215;</text>')
        t = target_advantage(row)
        if t:
            out.append(f'<line x1="{x(t):.1f}" y1="{y - 2}" x2="{x(t):.1f}" y2="{y + bar + 2}" '
                       'stroke="black" stroke-width="3"/>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    result = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(svg(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
