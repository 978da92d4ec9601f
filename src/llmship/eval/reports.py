"""Reports that CI systems and people read: JUnit XML, Markdown, HTML and JSON.

The JUnit writer is generic (test suites of test cases with failure messages);
it lives in :mod:`llmship.junit`, which ``llmship loadtest`` uses without loading
the eval package, and is re-exported here. :func:`markdown_table`,
:func:`html_page` and :func:`write_json` are generic too. The ``eval_*`` functions
render an eval report — the :class:`~llmship.eval.report_model.EvalReport`
:func:`llmship.eval.runner.run_eval` builds, or one read back from the registry
with ``EvalReport.from_json`` — so a stored run renders exactly like a fresh one.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmship.eval.metric_table import precision
from llmship.eval.report_model import CaseRow, CaseSide, EvalReport, MetricRow
from llmship.junit import JUnitCase, JUnitSuite, junit_xml, xml_text

__all__ = [
    "JUnitCase",
    "JUnitSuite",
    "eval_html",
    "eval_junit_suites",
    "eval_markdown",
    "fmt_ci",
    "fmt_delta",
    "fmt_metric",
    "fmt_p",
    "html_page",
    "inline_diff",
    "junit_xml",
    "markdown_table",
    "write_json",
    "write_junit",
    "write_text",
]

# -- generic: JUnit files, Markdown, HTML, JSON ------------------------------------------


def write_junit(path: str | Path, suites: Sequence[JUnitSuite], *, name: str = "llmship") -> None:
    """Write :func:`junit_xml` to ``path`` (its directory is created)."""
    write_text(path, junit_xml(suites, name=name))


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path``, creating its directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Strict JSON (NaN and infinities as null), indented, UTF-8 unescaped."""
    text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False, default=str)
    write_text(path, text + "\n")


def _md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.replace("|", "\\|").split())


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; ``|`` and newlines in cells are escaped."""
    lines = [
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", "PingFang SC",
  "Microsoft YaHei", sans-serif; margin: 0 auto; max-width: 1100px; padding: 24px;
  color: #1f2328; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); } .badge { display: inline-block; padding: 2px 10px;
  border-radius: 12px; color: #fff; font-weight: 600; }
.badge.pass { background: var(--ok); color: #fff; } .badge.fail { background: var(--bad);
  color: #fff; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; padding: 4px 10px; }
summary { cursor: pointer; } pre { white-space: pre-wrap; word-break: break-word;
  background: var(--bg); padding: 8px; border-radius: 6px; margin: 4px 0; }
.diff del { background: #ffebe9; color: #82071e; text-decoration: line-through; }
.diff ins { background: #dafbe1; color: #116329; text-decoration: none; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
ul.reasons { margin: 4px 0; padding-left: 20px; }
"""


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (inline CSS, no scripts, no external assets)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


_DIFF_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]"
    r"|[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+|\s+|[^\w\s]"
)


def inline_diff(before: str, after: str) -> str:
    """HTML of ``after`` with what changed from ``before`` marked ``<del>``/``<ins>``.

    Words are compared (each CJK character is a word); everything is escaped, and
    control characters HTML cannot show become U+FFFD.
    """
    a, b = _DIFF_TOKEN.findall(xml_text(before)), _DIFF_TOKEN.findall(xml_text(after))
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


# -- number formats -----------------------------------------------------------------------


def _scale(metric: str) -> int:
    return precision(metric)


def fmt_metric(metric: str, value: float | None) -> str:
    """A metric value: BLEU with 2 decimals (0..100), the others with 3 (0..1)."""
    if value is None:
        return "–"
    return f"{value:.{_scale(metric)}f}"


def fmt_delta(metric: str, value: float | None) -> str:
    """A signed difference, e.g. ``+0.012`` or ``-1.35``."""
    if value is None:
        return "–"
    return f"{value:+.{_scale(metric)}f}"


def fmt_ci(metric: str, low: float | None, high: float | None) -> str:
    """A 95% interval, e.g. ``[-0.050, +0.010]``."""
    if low is None or high is None:
        return "–"
    return f"[{fmt_delta(metric, low)}, {fmt_delta(metric, high)}]"


def fmt_p(value: float | None) -> str:
    """A p-value: ``<0.001`` or three decimals."""
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _verdict_word(row: MetricRow) -> str:
    if not row.gated:
        return "–"
    return "pass" if row.passed else "FAIL"


# -- eval: JUnit ---------------------------------------------------------------------------


def eval_junit_suites(report: EvalReport) -> list[JUnitSuite]:
    """Two suites: one test case per dataset case (the candidate's checks) and one per gate.

    The failures are what the gate decided, so CI is red exactly when the gate failed:
    a failed gate condition, and, when the gate failed, each case that fails on the
    candidate but passed on the baseline (a regression). A case that fails on both
    releases is a known failure, not a regression: it passes, with a note in its
    ``system-out``; so does a regression the gate allowed (the gate passed).
    """
    dataset = report.dataset.path
    stem = Path(dataset).stem or "dataset"
    baseline_ref = report.baseline.ref
    gate_passed = report.verdict.passed
    cases = []
    shared = regressions = 0
    for row in report.cases:
        side = row.candidate
        problem = side.failure
        lines = [f"output: {side.output}"]
        lines += [f"{'ok  ' if a.passed else 'FAIL'} {a.type}: {a.reason}" for a in side.assertions]
        base_passed = row.baseline.passed
        if base_passed != side.passed:
            lines.append(f"baseline: {'passed' if base_passed else 'failed'}")
        failure = None
        if problem is not None and not base_passed:
            shared += 1
            lines.insert(
                0,
                f"known failure, not a regression: it fails on the baseline {baseline_ref} "
                f"too ({problem})",
            )
        elif problem is not None:
            regressions += 1
            if gate_passed:
                lines.insert(0, f"regression allowed by the gate: the gate passed ({problem})")
            else:
                failure = problem
                lines.insert(0, f"regression: passed on the baseline {baseline_ref}")
        cases.append(
            JUnitCase(
                name=str(row.id),
                classname=f"llmship.eval.{stem}",
                time_s=float(side.latency_s or 0.0),
                failure=failure,
                details="\n".join(lines),
            )
        )
    properties = {
        "candidate": report.candidate.ref,
        "baseline": baseline_ref,
        "dataset": dataset,
        "dataset_sha256": report.dataset.digest,
        "seed": str(report.generation.seed),
        "temperature": str(report.generation.temperature),
        "bootstrap_seed": str(report.stats.seed),
        "bootstrap_resamples": str(report.stats.resamples),
        "gate": "passed" if gate_passed else "failed",
        "regressions": str(regressions),
        "shared_failures": str(shared),
    }
    gates = []
    for metric in report.metrics:
        if not metric.gated:
            continue
        reasons = "; ".join(metric.reasons)
        gates.append(
            JUnitCase(
                name=f"gate {metric.metric}",
                classname="llmship.eval.gate",
                failure=(reasons or f"{metric.metric} failed") if not metric.passed else None,
                details=reasons or None,
            )
        )
    timestamp = report.created_at or None
    return [
        JUnitSuite(f"eval cases: {dataset}", cases, properties, timestamp),
        JUnitSuite(
            f"eval gate: {report.candidate.ref} vs {report.baseline.ref}",
            gates,
            properties,
            timestamp,
        ),
    ]


# -- eval: Markdown ----------------------------------------------------------------------------

_MAX_MD_CASES = 20
_MAX_MD_OUTPUT = 160


def _short(text: str | None, limit: int = _MAX_MD_OUTPUT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _title(report: EvalReport) -> str:
    verdict = "passed" if report.verdict.passed else "failed"
    if report.verdict.error is not None:
        verdict = "checked nothing"
    return f"llmship eval {verdict}: {report.candidate.ref} vs {report.baseline.ref}"


def eval_markdown(report: EvalReport) -> str:
    """A summary for a pull-request comment: verdict, metrics, reasons, changed cases."""
    icon = "✅" if report.verdict.passed else "❌"
    run = f" (run {report.run})" if report.run is not None else ""
    gen = report.generation
    aa = " — A/A run (the same release on both sides)" if report.aa else ""
    lines = [
        f"### {icon} {_title(report)}{run}",
        "",
        f"**{report.candidate.ref}** (candidate) against "
        f"**{report.baseline.ref}** (baseline, {report.baseline.source}){aa}, "
        f"on `{report.dataset.path}` ({report.dataset.cases} cases) "
        f"in `{report.env}`.",
        "",
        markdown_table(
            ["metric", "baseline", "candidate", "delta", "95% CI", "p", "verdict"],
            [
                [
                    row.metric,
                    fmt_metric(row.metric, row.baseline),
                    fmt_metric(row.metric, row.candidate),
                    fmt_delta(row.metric, row.delta),
                    fmt_ci(row.metric, row.ci_low, row.ci_high),
                    fmt_p(row.p_value),
                    _verdict_word(row),
                ]
                for row in report.metrics
            ],
        ),
        "",
    ]
    failures = report.verdict.failures
    if report.verdict.error is not None:
        lines += [f"**Error**: {report.verdict.error}", ""]
    if failures:
        lines += ["**Why it failed**", ""] + [f"- {r}" for r in failures] + [""]
    elif not report.gated:
        lines += ["No metric is gated: configure `gates: eval:` in `llmship.yaml`.", ""]
    changed = [row for row in report.cases if row.change != "same"]
    if changed:
        broken = sum(1 for row in changed if row.change == "broken")
        lines += [
            f"<details><summary>{len(changed)} case(s) changed: {broken} broken, "
            f"{len(changed) - broken} fixed</summary>",
            "",
            markdown_table(
                ["case", "change", "baseline output", "candidate output", "why"],
                [
                    [
                        row.id,
                        row.change,
                        _short(row.baseline.output),
                        _short(row.candidate.output),
                        _short(row.candidate.failure or row.baseline.failure or "", 120),
                    ]
                    for row in changed[:_MAX_MD_CASES]
                ],
            ),
            "",
        ]
        if len(changed) > _MAX_MD_CASES:
            lines += [f"…and {len(changed) - _MAX_MD_CASES} more (see the HTML report).", ""]
        lines += ["</details>", ""]
    lines.append(
        f"<sub>temperature {gen.temperature:g}, seed {gen.seed}; "
        f"paired bootstrap {report.stats.resamples} resamples, seed "
        f"{report.stats.seed}; alpha {report.gate.alpha:g}; gate from "
        f"{report.gate.source}; {gen.generated} generated, {gen.cached} cached; dataset sha256 "
        f"{report.dataset.digest[:12]}</sub>"
    )
    return "\n".join(lines) + "\n"


# -- eval: HTML --------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(xml_text("" if value is None else str(value)))


def _side_html(label: str, side: CaseSide) -> str:
    state = "pass" if side.passed else "fail"
    latency = side.latency_s
    timing = f"{latency:.2f}s" if isinstance(latency, (int, float)) else "–"
    cached = ", cached" if side.cached else ""
    items = "".join(
        f'<li class="{"pass" if a.passed else "fail"}">{_e(a.type)}: '
        f'<span class="muted">{_e(a.reason)}</span></li>'
        for a in side.assertions
    )
    error = f'<p class="fail">{_e(side.error)}</p>' if side.error else ""
    return (
        f'<div><b>{_e(label)}</b> <span class="{state}">{state}</span> '
        f'<span class="muted">({timing}{cached}, score {side.score:.2f})</span>'
        f'{error}<pre>{_e(side.output)}</pre><ul class="reasons">{items}</ul></div>'
    )


def _case_html(row: CaseRow) -> str:
    change = row.change
    marker = {"broken": "fail", "fixed": "pass"}.get(change, "muted")
    prompt = row.prompt
    refs = "".join(f"<pre>{_e(r)}</pre>" for r in row.references)
    base, cand = row.baseline, row.candidate
    diff = (
        '<p class="muted">identical outputs</p>'
        if base.output == cand.output
        else f'<pre class="diff">{inline_diff(base.output, cand.output)}</pre>'
    )
    opened = " open" if change == "broken" else ""
    tags = f' <span class="muted">[{_e(", ".join(row.tags))}]</span>' if row.tags else ""
    return (
        f"<details{opened}><summary><b>{_e(row.id)}</b>{tags} "
        f'<span class="{marker}">{_e(change)}</span> '
        f'<span class="muted">{_e(_short(prompt, 90))}</span></summary>'
        f"<p><b>input</b></p><pre>{_e(prompt)}</pre>"
        + (f"<p><b>references</b></p>{refs}" if refs else "")
        + f"<p><b>baseline → candidate</b></p>{diff}"
        f'<div class="sides">{_side_html("baseline", base)}{_side_html("candidate", cand)}</div>'
        "</details>"
    )


def _metric_html(row: MetricRow) -> str:
    state = "pass" if row.passed else "fail" if row.gated else "muted"
    return (
        "<tr>"
        f"<td>{_e(row.metric)}</td>"
        f'<td class="num">{fmt_metric(row.metric, row.baseline)}</td>'
        f'<td class="num">{fmt_metric(row.metric, row.candidate)}</td>'
        f'<td class="num">{fmt_delta(row.metric, row.delta)}</td>'
        f'<td class="num">{fmt_ci(row.metric, row.ci_low, row.ci_high)}</td>'
        f'<td class="num">{fmt_p(row.p_value)}</td>'
        f"<td>{_e(row.test or '–')}</td>"
        f'<td class="{state}">{_verdict_word(row)}</td></tr>'
    )


def eval_html(report: EvalReport) -> str:
    """A self-contained page: verdict, metrics, reasons and every case with its diff."""
    passed = report.verdict.passed
    state = "pass" if passed else "fail"
    badge = "ERROR" if report.verdict.error is not None else "PASS" if passed else "FAIL"
    run = f" · run {report.run}" if report.run is not None else ""
    failures, notes = report.verdict.failures, report.verdict.notes
    reasons = ""
    if report.verdict.error is not None:
        reasons += f'<h2>Error</h2><p class="fail">{_e(report.verdict.error)}</p>'
    if failures:
        reasons += (
            '<h2>Why it failed</h2><ul class="reasons">'
            + "".join(f'<li class="fail">{_e(r)}</li>' for r in failures)
            + "</ul>"
        )
    if notes:
        reasons += (
            '<h2>Checked</h2><ul class="reasons">'
            + "".join(f'<li class="muted">{_e(r)}</li>' for r in notes)
            + "</ul>"
        )
    ordered = sorted(report.cases, key=lambda r: {"broken": 0, "fixed": 1}.get(r.change, 2))
    gen = report.generation
    facts = (
        f"dataset <code>{_e(report.dataset.path)}</code> "
        f"({report.dataset.cases} cases, sha256 {_e(report.dataset.digest[:12])}) · "
        f"env {_e(report.env)} · temperature {gen.temperature:g}, seed {gen.seed} · "
        f"paired bootstrap {report.stats.resamples} resamples, seed "
        f"{report.stats.seed} · alpha {report.gate.alpha:g} · gate from "
        f"{_e(report.gate.source)} · {_e(report.created_at)}{run}"
    )
    body = (
        f'<h1><span class="badge {state}">{badge}</span> '
        f"{_e(report.candidate.ref)} vs {_e(report.baseline.ref)}</h1>"
        f'<p class="muted">{facts}</p>'
        "<h2>Metrics</h2><table><tr><th>metric</th><th>baseline</th><th>candidate</th>"
        "<th>delta</th><th>95% CI</th><th>p</th><th>test</th><th>verdict</th></tr>"
        f"{''.join(_metric_html(row) for row in report.metrics)}</table>{reasons}"
        f"<h2>Cases ({len(ordered)})</h2>" + "".join(_case_html(row) for row in ordered)
    )
    return html_page(_title(report), body)
