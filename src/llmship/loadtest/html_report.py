"""A self-contained HTML load-test report: tables and latency-over-time plots as
inline SVG drawn here (no JavaScript, no CDN, no external file)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from llmship.loadtest.report import headline_rows, latency_cells, load_line, outcome_line
from llmship.loadtest.report_model import LoadTestReport
from llmship.loadtest.slo import fmt
from llmship.loadtest.stats import METRIC_NAMES, METRICS, STATS, TimelineBin

Point = tuple[float, float | None]
Series = tuple[str, str, Sequence[Point]]
"""(name, colour, points); a None y leaves a gap."""

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:820px;
color:#1f2328;padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .6rem}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.dim{color:#656d76}
svg text{font:11px system-ui,sans-serif;fill:#57606a}.legend span{margin-right:1rem}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
"""


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) for ``span`` over ``ticks``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power: float = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _fmt_tick(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


def line_chart(
    series: Sequence[Series],
    *,
    x_max: float,
    x_label: str,
    y_label: str,
    bar_width: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An SVG chart of ``series`` over ``[0, x_max]``: lines, or (with ``bar_width``,
    in x units) side-by-side bars that start at each point's x."""
    ys = [y for _, _, points in series for _, y in points if y is not None]
    x_max = x_max if x_max > 0 else 1.0
    y_step = nice_step(max(ys, default=1.0) or 1.0)
    y_max = y_step * max(1, math.ceil(max(ys, default=1.0) / y_step))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(y_label)}">'
    ]
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = py(tick)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" stroke="#eaeef2"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(tick)}</text>'
        )
        tick += y_step
    x_step = nice_step(x_max, 8)
    tick = 0.0
    while tick <= x_max + 1e-9:
        x = px(tick)
        out.append(
            f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">'
            f"{_fmt_tick(tick)}</text>"
        )
        tick += x_step
    base = TOP + plot_h
    out.append(f'<line x1="{LEFT}" y1="{base}" x2="{width - RIGHT}" y2="{base}" stroke="#8c959f"/>')
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    if bar_width is not None:
        out += _bars(series, px, py, base, bar_width)
    else:
        for name, colour, points in series:
            out += _line(name, colour, points, px, py)
    out.append("</svg>")
    return "".join(out)


def _line(name: str, colour: str, points: Sequence[Point], px: Any, py: Any) -> list[str]:
    parts: list[str] = []
    run: list[tuple[float, float]] = []
    for x, y in [*points, (0.0, None)]:
        if y is None:
            if len(run) > 1:
                path = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}">'
                    f"<title>{escape(name)}</title></polyline>"
                )
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{colour}"/>' for a, b in run]
            run = []
        else:
            run.append((px(x), py(y)))
    return parts


def _bars(series: Sequence[Series], px: Any, py: Any, base: float, bar_width: float) -> list[str]:
    parts = []
    slot = px(bar_width) - px(0)
    width = max(1.0, slot * 0.8 / max(len(series), 1))
    for index, (name, colour, points) in enumerate(series):
        for x, y in points:
            if not y:
                continue
            left = px(x) + slot * 0.1 + index * width
            top = py(y)
            parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" '
                f'height="{base - top:.1f}" fill="{colour}"><title>{escape(name)}: '
                f"{y:g}</title></rect>"
            )
    return parts


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{escape(n)}</span>'
        for n, c, _ in series
    )
    return f'<div class="legend">{items}</div>'


def latency_series(timeline: Sequence[TimelineBin]) -> list[Series]:
    """TTFT and E2E p50/p95 per time bin, in milliseconds."""
    specs: list[tuple[str, str, Callable[[TimelineBin], float | None]]] = [
        ("TTFT p50", "#0969da", lambda r: r.ttft_p50),
        ("TTFT p95", "#54aeff", lambda r: r.ttft_p95),
        ("E2E p50", "#bf3989", lambda r: r.e2e_p50),
        ("E2E p95", "#ff80c8", lambda r: r.e2e_p95),
    ]
    return [
        (name, colour, [(r.t + r.width / 2, _scaled(value(r), 1000)) for r in timeline])
        for name, colour, value in specs
    ]


def rate_series(timeline: Sequence[TimelineBin]) -> list[Series]:
    """Completed and failed requests per second, per time bin."""
    return [
        ("requests/s", "#2da44e", [(r.t, r.requests / r.width) for r in timeline]),
        ("errors/s", "#cf222e", [(r.t, r.errors / r.width) for r in timeline]),
    ]


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def render_html(report: LoadTestReport) -> str:
    """The whole report as one HTML page."""
    outcome = "pass" if report.passed else "fail"
    body = [
        f'<h1>{escape(outcome_line(report))} <span class="{outcome}">'
        f"{'PASS' if report.passed else 'FAIL'}</span></h1>",
        f'<p class="dim">{escape(load_line(report))}; started {escape(report.started_at)}, '
        f"llmship {escape(report.llmship_version)}, "
        f"Locust {escape(report.generator.locust_version)}</p>",
    ]
    rows = report.gates
    if rows:
        body.append("<h2>Gates</h2><table><tr><th>check</th><th>result</th><th>why</th></tr>")
        for row in rows:
            cls = "pass" if row.passed else "fail"
            body.append(
                f"<tr><td><code>{escape(row.key)}</code></td>"
                f'<td class="{cls}">{"pass" if row.passed else "FAIL"}</td>'
                f"<td>{escape(row.reason)}</td></tr>"
            )
        body.append("</table>")
    body.append("<h2>Latency (ms)</h2><table><tr><th>metric</th>")
    body.append("".join(f"<th>{s}</th>" for s in STATS) + "<th>n</th></tr>")
    for metric in METRICS:
        dist = report.results.distribution(metric)
        cells = "".join(f'<td class="n">{cell}</td>' for cell in latency_cells(dist))
        count = dist.count if dist else 0
        body.append(
            f"<tr><td>{metric.upper()} <span class='dim'>{METRIC_NAMES[metric]}</span></td>"
            f'{cells}<td class="n">{count}</td></tr>'
        )
    body.append("</table><h2>Throughput</h2><table>")
    body += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in headline_rows(report)]
    body.append("</table>")
    timeline = report.timeline
    if timeline:
        width = timeline[0].width
        span = max(report.results.duration, timeline[-1].t + width)
        x_label = f"seconds into the measured window (bins of {width:g} s, by send time)"
        latency = latency_series(timeline)
        rates = rate_series(timeline)
        body += [
            "<h2>Latency over time</h2>",
            _legend(latency),
            line_chart(
                latency,
                x_max=span,
                x_label=x_label,
                y_label="milliseconds (p50, p95 per bin)",
            ),
            "<h2>Requests over time</h2>",
            _legend(rates),
            line_chart(
                rates,
                x_max=span,
                x_label=x_label,
                y_label="requests per second",
                bar_width=width,
            ),
        ]
    slos = report.slo
    if slos:
        body.append("<h2>SLOs</h2><table><tr><th>key</th><th>bound</th></tr>")
        body += [
            f"<tr><td><code>{escape(k)}</code></td><td>{fmt(k, v)}</td></tr>"
            for k, v in slos.items()
        ]
        body.append("</table>")
    title = escape(outcome_line(report))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
