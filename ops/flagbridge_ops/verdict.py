"""The oracle's verdicts for people and CI: read them, print a table, write JUnit XML and a self-contained HTML report.

Verdicts are read from the verdicts table (``ORACLE_VERDICTS_TABLE``, or the stack output
``OracleVerdictsTableName``) for the tests of the ``oracle`` section of the configuration. :func:`exit_status`
is the CI gate: 0 when every verdict is PASS, 1 when any is FAIL, 2 otherwise (INCONCLUSIVE, NO_DATA, ERROR,
INVALID, or a test never evaluated).

The HTML report has no external resources (no CDN, no web fonts): inline CSS, inline SVG and a few lines of
script. Per test and treatment it draws each rate metric's interval (lower to upper bound) and observed rate
against the pass line (green) and the fail line (red), each percentile metric's estimate against its lines, and
the verdict timeline of the recent evaluations, one square per evaluation coloured by state.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flagbridge.oracle.config import OracleConfig
from flagbridge.oracle.kinds import kind_of
from flagbridge.oracle.service import detail_document, overall_exit_code
from flagbridge.oracle.store import VerdictStore

COLOURS = {
    "PASS": "#2ca02c",
    "FAIL": "#d62728",
    "INCONCLUSIVE": "#ff9f1c",
    "NO_DATA": "#9e9e9e",
    "ERROR": "#6a3d9a",
    "INVALID": "#8c564b",
    "PENDING": "#cfcfcf",
}


def load_documents(config: OracleConfig, store: VerdictStore, name: str | None) -> list[dict[str, Any]]:
    """``GET /tests/{name}`` documents of the chosen test (or all), from the verdict store."""
    tests = [t for t in config.tests if name is None or t.name == name]
    return [detail_document(test, store) for test in tests]


def verdict_rows(documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (test, treatment, metric) of the current reports; a test never evaluated is one PENDING row."""
    rows = []
    for document in documents:
        report = document.get("report") or {}
        verdicts = report.get("verdicts") or []
        if not verdicts:
            pending = document["state"] == "PENDING"
            explain = "not evaluated yet" if pending else report.get("error", "")
            rows.append({"test": document["name"], "treatment": "-", "metric": "-", "state": document["state"],
                         "explain": explain})  # fmt: skip
        for verdict in verdicts:
            rows.append({"test": document["name"], **verdict})
    return rows


def kill_lines(documents: Iterable[Mapping[str, Any]]) -> list[str]:
    """Per test with a kill: its status and confirmation, then t0 / t1 / t2 with the latencies."""
    from flagbridge.oracle.kills import headline, timeline_lines

    lines = []
    for document in documents:
        kill = (document.get("report") or {}).get("kill")
        if kill:
            lines.append(f"{document['name']}: {headline(kill)}")
            lines += ["  " + line for line in timeline_lines(kill)]
    return lines


def exit_status(rows: Sequence[Mapping[str, Any]]) -> int:
    """0 all PASS, 1 any FAIL, 2 otherwise."""
    return overall_exit_code(row["state"] for row in rows)


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        value, interval = kind_of(row).cells(row)
        out.append((row["test"], row["treatment"], row["metric"], row["state"], row.get("n", "-"), value, interval))
    return out


# ---- JUnit XML -------------------------------------------------------------------------------------------


def junit_xml(rows: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """JUnit XML: one testsuite per test, one testcase per (treatment, metric); FAIL is a failure, PASS passes,
    every other state is ``skipped`` with its explain line (CI shows it undecided, not green)."""
    suites = ET.Element("testsuites", name="flagbridge oracle")
    by_test: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_test.setdefault(str(row["test"]), []).append(row)
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for test, cases in by_test.items():
        failures = sum(1 for c in cases if c["state"] == "FAIL")
        skipped = sum(1 for c in cases if c["state"] not in ("PASS", "FAIL"))
        suite = ET.SubElement(suites, "testsuite", name=test, tests=str(len(cases)), failures=str(failures),
                              errors="0", skipped=str(skipped), timestamp=stamp)  # fmt: skip
        for case in cases:
            element = ET.SubElement(
                suite, "testcase", classname=f"oracle.{test}", name=f"{case['treatment']} {case['metric']}", time="0"
            )
            explain = str(case.get("explain") or case["state"])
            if case["state"] == "FAIL":
                ET.SubElement(element, "failure", message=explain, type="FAIL").text = explain
            elif case["state"] != "PASS":
                ET.SubElement(element, "skipped", message=explain)
            ET.SubElement(element, "system-out").text = explain
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("errors", "0")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# ---- HTML ------------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT, _LEFT, _RIGHT = 560, 46, 150, 20


def _x(value: float, top: float) -> float:
    return _LEFT + (_WIDTH - _LEFT - _RIGHT) * min(max(value, 0.0), top) / top


def _chart_svg(verdict: Mapping[str, Any]) -> str:
    """The verdict's chart as its metric kind draws it: its value (and interval) against the pass and fail lines."""
    row = kind_of(verdict).chart_row(verdict)
    top = row.top
    colour = COLOURS.get(str(verdict["state"]), "#555")
    titles = ("", "") if row.line_titles is None else tuple(f"<title>{t}</title>" for t in row.line_titles)
    closing = ("/>", "/>") if row.line_titles is None else tuple(f">{t}</line>" for t in titles)
    parts = [
        f'<svg class="metric" role="img" width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}">',
        f"<title>{html.escape(str(verdict.get('explain', '')))}</title>",
        f'<text x="0" y="20" class="label">{html.escape(str(verdict["metric"]))}</text>',
        f'<line x1="{_LEFT}" y1="30" x2="{_WIDTH - _RIGHT}" y2="30" class="axis"/>',
        f'<line x1="{_x(row.pass_line, top):.1f}" y1="6" x2="{_x(row.pass_line, top):.1f}" y2="38" '
        f'stroke="{COLOURS["PASS"]}" stroke-dasharray="4 2"{closing[0]}',
        f'<line x1="{_x(row.fail_line, top):.1f}" y1="6" x2="{_x(row.fail_line, top):.1f}" y2="38" '
        f'stroke="{COLOURS["FAIL"]}" stroke-dasharray="4 2"{closing[1]}',
        f'<text x="{_x(row.pass_line, top):.1f}" y="46" class="tick" fill="{COLOURS["PASS"]}">{row.pass_tick}</text>',
        f'<text x="{_x(row.fail_line, top):.1f}" y="46" class="tick" fill="{COLOURS["FAIL"]}">{row.fail_tick}</text>',
    ]
    if row.value is None:
        parts.append(f'<text x="{_LEFT}" y="22" class="tick">no events counted</text>')
    else:
        if row.interval is not None:
            lower, upper = row.interval
            parts.append(
                f'<line x1="{_x(lower, top):.1f}" y1="20" x2="{_x(upper, top):.1f}" y2="20" stroke="{colour}"'
                ' stroke-width="4" stroke-linecap="round" class="interval"/>'
            )
        parts.append(f'<circle cx="{_x(row.value, top):.1f}" cy="20" r="5" fill="{colour}" class="rate"/>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(history: Sequence[Mapping[str, Any]], treatment: str, metric: str) -> str:
    """One square per evaluation, oldest first, coloured by this verdict's state."""
    points = []
    for evaluation in reversed(history):
        matching = (
            v["state"] for v in evaluation.get("verdicts", []) if (v["treatment"], v["metric"]) == (treatment, metric)
        )
        state = next(matching, evaluation.get("state", "PENDING"))
        points.append((evaluation.get("evaluated_at"), state))
    size, gap = 12, 3
    width = max(1, len(points)) * (size + gap)
    squares = []
    for index, (at, state) in enumerate(points):
        when = datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "?"
        squares.append(
            f'<rect x="{index * (size + gap)}" y="2" width="{size}" height="{size}" rx="2" '
            f'fill="{COLOURS.get(state, "#555")}" class="tick-{state}"><title>{when}: {state}</title></rect>'
        )
    return (
        f'<svg class="timeline" role="img" width="{width}" height="{size + 4}" viewBox="0 0 {width} {size + 4}">'
        f"<title>{html.escape(metric)} verdicts, oldest first</title>{''.join(squares)}</svg>"
    )


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:17px;margin:28px 0 6px}h3{font-size:15px;margin:14px 0 4px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.treatment{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:8px 0}
.explain{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#444;margin:2px 0 8px}
svg .label{font-size:13px}svg .tick{font-size:10px}svg .axis{stroke:#999}
.meta{color:#666;font-size:12px}
"""


def html_report(documents: Sequence[Mapping[str, Any]], generated: datetime | None = None) -> str:
    """The self-contained HTML report of the documents (``GET /tests/{name}`` shape)."""
    stamp = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows = verdict_rows(documents)
    status = exit_status(rows)
    overall = {0: "PASS", 1: "FAIL"}.get(status, "UNDECIDED")
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>flagbridge oracle verdicts</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1>flagbridge oracle verdicts <span class="badge" style="background:{COLOURS.get(overall, "#ff9f1c")}">'
        f"{overall}</span></h1>",
        f'<p class="meta">Generated {stamp}. Lines: pass (green, dashed) and fail (red, dashed); bar: the '
        "Wilson interval of the rate; dot: the observed rate (percentile metrics: the estimate).</p>",
    ]
    for document in documents:
        report = document.get("report") or {}
        state = str(document.get("state", "PENDING"))
        name = html.escape(str(document["name"]))
        body.append(
            f'<section class="test" data-test="{name}"><h2>{name}'
            f' <span class="badge" style="background:{COLOURS.get(state, "#555")}">{state}</span></h2>'
        )
        window = report.get("window") or {}
        body.append(
            f'<p class="meta">flag {html.escape(str(document["flag"]))} in {html.escape(str(document["environment"]))}'
            f"; version {report.get('version')}; window "
            f"{'final' if window.get('final') else 'interim'}; unattributed events: "
            f"{sum(int(u.get('n', 0)) for u in (report.get('unattributed') or {}).values())}; invalid events: "
            f"{report.get('invalid', 0)}"
            + (f"; kill: {html.escape(str(report['kill'].get('status')))}"
               f"{' (confirmed)' if report['kill'].get('confirmed') else ''}" if report.get("kill") else "")
            + "</p>"
        )  # fmt: skip
        by_treatment: dict[str, list[Mapping[str, Any]]] = {}
        for verdict in report.get("verdicts") or []:
            by_treatment.setdefault(str(verdict["treatment"]), []).append(verdict)
        if not by_treatment:
            body.append('<p class="explain">not evaluated yet</p>')
        for treatment, verdicts in by_treatment.items():
            body.append(
                f'<div class="treatment" data-treatment="{html.escape(treatment)}">'
                f"<h3>{html.escape(str(document['flag']))}={html.escape(treatment)}</h3>"
            )
            for verdict in verdicts:
                chart = _chart_svg(verdict)
                timeline = _timeline_svg(document.get("history") or [], treatment, str(verdict["metric"]))
                body.append(
                    f'<div class="verdict" data-state="{verdict["state"]}">{chart}<div>{timeline}</div>'
                    f'<p class="explain">{html.escape(str(verdict.get("explain", "")))}</p></div>'
                )
            body.append("</div>")
        body.append("</section>")
    treatments = sum(
        len({str(v["treatment"]) for v in (d.get("report") or {}).get("verdicts") or []}) for d in documents
    )
    summary = json.dumps({"tests": len(documents), "treatments": treatments})
    body += [
        f'<script type="application/json" id="summary">{summary}</script>',
        "<script>",
        "(function(){var s=JSON.parse(document.getElementById('summary').textContent);",
        "document.body.setAttribute('data-rendered',s.tests+' tests, '+s.treatments+' treatments');",
        "document.querySelectorAll('.verdict').forEach(function(v){v.title=v.getAttribute('data-state');});})();",
        "</script>",
        "</body></html>",
    ]
    return "\n".join(body) + "\n"
