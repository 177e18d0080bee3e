"""The oracle's HTML report, for a reviewer who signs off a release: ``GET /tests/{name}/report`` of the oracle
API, ``flagbridge verdict --html``, the demo's report and ``make run``'s live page at ``/`` (the same renderer,
with ``refresh_seconds``). Pure: documents in, a page out; imported only when a page is asked for.

Self-contained (inline CSS and SVG, a few lines of script, nothing fetched). Per test: the flag, its version as
a date, the window, the sample-ratio check and the kill as a block of its own (time, state, confirmed or not, the
comment sent to Split, its timeline: ``report["kill"]`` as docs/oracle.md describes it, any field may be absent).
Then one card per treatment, failing treatments first, each with its badge and, per metric, its count (n, k)
and a chart on an axis **shared by every treatment of that metric**, labelled in the metric's unit, so bars can
be compared across cards; then its timeline: one mark per evaluation on a time axis, flag versions separated.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flagbridge.oracle.kinds import kind_of

COLOURS = {
    "PASS": "#2ca02c",
    "FAIL": "#d62728",
    "INCONCLUSIVE": "#ff9f1c",
    "NO_DATA": "#9e9e9e",
    "ERROR": "#6a3d9a",
    "INVALID": "#8c564b",
    "PENDING": "#cfcfcf",
}
# Failing treatments first, passing ones last: what a reviewer must look at comes first.
STATE_ORDER = {"FAIL": 0, "ERROR": 1, "INVALID": 2, "INCONCLUSIVE": 3, "NO_DATA": 4, "PENDING": 5, "PASS": 6}
CONFIRMATION = {
    "confirmed": ("confirmed", "#2ca02c"),
    "pending": ("waiting for confirmation", "#ff9f1c"),
    "not_confirmed": ("NOT confirmed", "#d62728"),
    "dry_run": ("dry run: recorded, not sent", "#6a3d9a"),
    "failed": ("failed", "#d62728"),
}
W, LEFT, RIGHT = 600.0, 12.0, 12.0  # chart viewBox width and margins (the SVG scales to the card's width)
TICKS = 5


def _e(value: Any) -> str:
    return html.escape(str(value))


def _when(epoch_ms: Any) -> str:
    if not isinstance(epoch_ms, int | float) or epoch_ms <= 0:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _badge(state: str) -> str:
    return f'<span class="badge" style="background:{COLOURS.get(state, "#555")}">{_e(state)}</span>'


UNIT_SUFFIXES = (("_ms", "ms"), ("_seconds", "s"), ("_s", "s"), ("_bytes", "bytes"))


def attribute_unit(attribute: str | None) -> str:
    """The unit a percentile metric's attribute is in, by its name's suffix (``latency_ms`` → ``ms``), or ""."""
    for suffix, unit in UNIT_SUFFIXES:
        if (attribute or "").endswith(suffix):
            return unit
    return ""


def _units(document: Mapping[str, Any]) -> dict[str, str]:
    """Each metric's unit: ``%`` for a rate, its attribute's unit (``ms`` for ``latency_ms``) for a percentile."""
    units = {}
    for metric in (document.get("config") or {}).get("metrics") or []:
        if metric.get("type") == "percentile":
            units[str(metric.get("name"))] = attribute_unit(str(metric.get("attribute") or ""))
        else:
            units[str(metric.get("name"))] = "%"
    return units


def _scale(verdicts: Sequence[Mapping[str, Any]]) -> float:
    """The axis end shared by every treatment of one metric: past its fail line and every value and bound."""
    top = 0.0
    for verdict in verdicts:
        values = [float(verdict.get("fail_at") or 0) * 1.25, float(verdict.get("pass_below") or 0) * 1.5]
        row = kind_of(verdict).chart_row(verdict)
        if row.interval is not None and verdict.get("n"):
            values += [row.interval[1] * 1.05]
        values += [(row.value or 0.0) * 1.1]
        top = max(top, *values)
    return _nice(top or 1.0)


def _nice(top: float) -> float:
    """``top`` rounded up to 1, 2, 2.5 or 5 times a power of ten, so the ticks are round numbers."""
    power = 10.0 ** _floor_log10(top)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if top <= step * power:
            return step * power
    return 10.0 * power


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value, exponent = value / 10, exponent + 1
    while value < 1:
        value, exponent = value * 10, exponent - 1
    return exponent


def _x(value: float, top: float) -> float:
    return LEFT + (W - LEFT - RIGHT) * min(max(value, 0.0), top) / top


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * value:.3g}%"
    return f"{value:.4g} {unit}".strip()


def _axis(top: float, unit: str) -> list[str]:
    parts = [f'<line x1="{LEFT}" y1="40" x2="{W - RIGHT}" y2="40" class="axis"/>']
    for index in range(TICKS + 1):
        value = top * index / TICKS
        x = _x(value, top)
        anchor = "start" if index == 0 else "end" if index == TICKS else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="40" x2="{x:.1f}" y2="44" class="axis"/>')
        parts.append(f'<text x="{x:.1f}" y="56" text-anchor="{anchor}" class="tick">{_e(_fmt(value, unit))}</text>')
    return parts


def _lines(verdict: Mapping[str, Any], top: float, unit: str) -> list[str]:
    parts = []
    for key, state, label in (("pass_below", "PASS", "pass <"), ("fail_at", "FAIL", "fail ≥")):
        if verdict.get(key) is None:
            continue
        x = _x(float(verdict[key]), top)
        text = f"{label} {_fmt(float(verdict[key]), unit)}"
        parts.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="40" stroke="{COLOURS[state]}" stroke-dasharray="4 2" '
            f'class="line-{state.lower()}"><title>{_e(text)}</title></line>'
        )
        parts.append(f'<text x="{x + 3:.1f}" y="12" class="tick" fill="{COLOURS[state]}">{_e(text)}</text>')
    return parts


def chart(verdict: Mapping[str, Any], top: float, unit: str) -> str:
    """One metric of one treatment on the metric's shared axis: interval (rates), observed value, the lines."""
    colour = COLOURS.get(str(verdict.get("state")), "#555")
    parts = [
        f'<svg class="metric" role="img" width="100%" viewBox="0 0 {W:.0f} 60" preserveAspectRatio="none" '
        f'data-axis-top="{top:g}" data-unit="{_e(unit)}">',
        f"<title>{_e(verdict.get('explain', ''))}</title>",
        *_axis(top, unit),
        *_lines(verdict, top, unit),
    ]
    row = kind_of(verdict).chart_row(verdict)  # the metric kind says what its point and interval are
    value = row.value
    if row.interval is not None and verdict.get("n"):
        lower, upper = row.interval
        parts.append(
            f'<line x1="{_x(lower, top):.1f}" y1="26" x2="{_x(upper, top):.1f}" y2="26" stroke="{colour}" '
            f'stroke-width="6" stroke-linecap="round" class="interval" opacity="0.6"><title>interval '
            f"{_e(_fmt(lower, unit))} .. {_e(_fmt(upper, unit))}</title></line>"
        )
    if value is not None:
        parts.append(
            f'<circle cx="{_x(float(value), top):.1f}" cy="26" r="5" fill="{colour}" class="value">'
            f"<title>observed {_e(_fmt(float(value), unit))}</title></circle>"
        )
    else:
        parts.append(f'<text x="{W / 2:.0f}" y="30" text-anchor="middle" class="tick">no events counted</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline(history: Sequence[Mapping[str, Any]], treatment: str, metric: str) -> str:
    """This verdict at each evaluation, on a time axis (oldest left), with the flag's version boundaries."""
    points = []
    for evaluation in reversed(history):  # the history is newest first
        at = evaluation.get("evaluated_at")
        if not isinstance(at, int | float):
            continue
        states = [v.get("state") for v in evaluation.get("verdicts") or [] if (v.get("treatment"), v.get("metric"))
                  == (treatment, metric)]  # fmt: skip
        points.append((float(at), str(states[0] if states else evaluation.get("state") or "PENDING"),
                       evaluation.get("version")))  # fmt: skip
    if not points:
        return '<p class="meta">no evaluation yet</p>'
    start, end = points[0][0], points[-1][0]
    span = max(end - start, 1.0)

    def x(at: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * ((at - start) / span if end > start else 0.5)

    parts = [f'<svg class="timeline" role="img" width="100%" viewBox="0 0 {W:.0f} 44" preserveAspectRatio="none">',
             f"<title>{_e(metric)} of {_e(treatment)} at each evaluation, oldest left</title>",
             f'<line x1="{LEFT}" y1="22" x2="{W - RIGHT}" y2="22" class="axis"/>']  # fmt: skip
    previous = points[0][2]
    for at, _state, version in points:
        if version is not None and previous is not None and version != previous:
            parts.append(
                f'<line x1="{x(at) - 4:.1f}" y1="2" x2="{x(at) - 4:.1f}" y2="30" class="version-boundary">'
                f"<title>flag version {_e(version)} from here ({_e(_when(version))})</title></line>"
            )
        previous = version if version is not None else previous
    for at, state, _version in points:
        parts.append(
            f'<rect x="{x(at) - 4:.1f}" y="12" width="8" height="20" rx="2" fill="{COLOURS.get(state, "#555")}" '
            f'class="mark-{_e(state)}"><title>{_e(_when(at))}: {_e(state)}</title></rect>'
        )
    for at, anchor in ((start, "start"), (end, "end")) if end > start else ((start, "middle"),):
        label = datetime.fromtimestamp(at / 1000, UTC).strftime("%H:%M:%S UTC")
        parts.append(f'<text x="{x(at):.1f}" y="42" text-anchor="{anchor}" class="tick">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def kill_block(kill: Mapping[str, Any] | None) -> str:
    """The kill, as a block a reviewer cannot miss: when, its state, confirmed or not, the comment sent to Split."""
    if not kill:
        return ""
    confirmation = str(kill.get("confirmation") or ("confirmed" if kill.get("confirmed") else "pending"))
    label, colour = CONFIRMATION.get(confirmation, (confirmation, "#555"))
    timeline_ = kill.get("timeline") or {}
    rows = [
        ("state", _e(kill.get("status") or "-")),
        ("confirmation", f'<span class="badge" style="background:{colour}">{_e(label)}</span>'),
        ("requested", _e(_when(kill.get("requested_at") or timeline_.get("claimed_at")))),
        ("flag version", _e(f"{kill.get('version')} ({_when(kill.get('version'))})" if kill.get("version") else "-")),
        ("comment sent to Split", _e(kill.get("comment") or "-")),
        ("reason", _e(kill.get("reason") or "-")),
    ]
    steps = (
        ("t0 first FAIL", "failed_at", None),
        ("claimed", "claimed_at", "claim_ms"),
        ("t1 accepted by Split", "accepted_at", "accept_ms"),
        ("t2 first killed impression", "confirmed_at", "confirm_ms"),
    )
    for name, at_key, ms_key in steps:
        if at_key in timeline_:
            after = timeline_.get(ms_key) if ms_key else None
            suffix = f" (+{after / 1000:.1f} s)" if isinstance(after, int | float) else ""
            rows.append((name, _e(_when(timeline_.get(at_key))) + _e(suffix)))
    if kill.get("confirm_within_ms") is not None:
        rows.append(("alert if not confirmed within", _e(f"{float(kill['confirm_within_ms']) / 1000:g} s")))
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return (
        f'<div class="kill" data-confirmation="{_e(confirmation)}" style="border-color:{colour}">'
        f"<h3>Kill</h3><table>{cells}</table></div>"
    )


def srm_line(report: Mapping[str, Any]) -> str:
    srm = report.get("srm")
    if not srm:
        return '<p class="meta srm">sample ratio: not checked (the test has no intended <code>split</code>)</p>'
    users = " / ".join(f"{_e(name)} {int(count):,}" for name, count in (srm.get("users") or {}).items())
    intended = "/".join(f"{share:g}" for share in (srm.get("intended") or {}).values())
    p_value = srm.get("p_value")
    verdict = "MISMATCH: every verdict is INVALID" if srm.get("mismatch") else "no mismatch"
    p_text = f"p={p_value:.2g}" if isinstance(p_value, int | float) else "p not computed"
    return f'<p class="meta srm">sample ratio: users {users} vs intended {intended} ({p_text}): {verdict}</p>'


def _count_line(verdict: Mapping[str, Any]) -> str:
    n, k = int(verdict.get("n") or 0), int(verdict.get("k") or 0)
    what = "bad" if verdict.get("kind") == "rate" else "at/above the line"
    return f"n={n:,} events, k={k:,} {what}"


def _overall(verdicts: Sequence[Mapping[str, Any]]) -> str:
    states = [str(v.get("state")) for v in verdicts]
    return min(states, key=lambda state: STATE_ORDER.get(state, 5)) if states else "PENDING"


def _treatment_cards(document: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    flag = str(document.get("flag"))
    units = _units(document)
    by_treatment: dict[str, list[Mapping[str, Any]]] = {}
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for verdict in report.get("verdicts") or []:
        by_treatment.setdefault(str(verdict["treatment"]), []).append(verdict)
        by_metric.setdefault(str(verdict["metric"]), []).append(verdict)
    tops = {metric: _scale(verdicts) for metric, verdicts in by_metric.items()}
    ordered = sorted(by_treatment.items(), key=lambda item: (STATE_ORDER.get(_overall(item[1]), 5), item[0]))
    cards = ['<div class="cards">']
    for treatment, verdicts in ordered:
        state = _overall(verdicts)
        cards.append(
            f'<div class="treatment" data-treatment="{_e(treatment)}" data-state="{_e(state)}">'
            f"<h3>{_e(flag)}={_e(treatment)}</h3> {_badge(state)}"
        )
        for verdict in verdicts:
            metric = str(verdict["metric"])
            unit = units.get(metric) or ("%" if verdict.get("kind") == "rate" else str(verdict.get("unit") or ""))
            cards.append(
                f'<div class="verdict" data-state="{_e(verdict.get("state"))}" data-metric="{_e(metric)}">'
                f'<h4>{_e(metric)} {_badge(str(verdict.get("state")))} <span class="meta">{_count_line(verdict)}'
                f"</span></h4>{chart(verdict, tops[metric], unit)}"
                f'<p class="explain">{_e(verdict.get("explain", ""))}</p>'
                f"{timeline(document.get('history') or [], treatment, metric)}</div>"
            )
        cards.append("</div>")
    cards.append("</div>")
    return cards


def _legend() -> str:
    states = "".join(
        f'<span class="key"><svg width="10" height="10"><rect width="10" height="10" rx="2" fill="{colour}"/></svg>'
        f" {state}</span>"
        for state, colour in COLOURS.items()
    )
    return (
        '<div class="legend"><span class="key"><svg width="22" height="10"><line x1="0" y1="5" x2="22" y2="5" '
        f'stroke="{COLOURS["PASS"]}" stroke-dasharray="4 2"/></svg> pass line</span><span class="key"><svg width="22"'
        f' height="10"><line x1="0" y1="5" x2="22" y2="5" stroke="{COLOURS["FAIL"]}" stroke-dasharray="4 2"/></svg>'
        ' fail line</span><span class="key"><svg width="22" height="10"><line x1="2" y1="5" x2="20" y2="5" '
        'stroke="#555" stroke-width="6" stroke-linecap="round" opacity="0.6"/></svg> interval (rates)</span>'
        '<span class="key"><svg width="10" height="10"><circle cx="5" cy="5" r="5" fill="#555"/></svg> observed'
        '</span><span class="key"><svg width="10" height="12"><line x1="5" y1="0" x2="5" y2="12" '
        f'class="version-boundary"/></svg> new flag version</span>{states}</div>'
    )


def _test_section(document: Mapping[str, Any]) -> list[str]:
    report = document.get("report") or {}
    state = str(document.get("state", "PENDING"))
    name = _e(document["name"])
    window = report.get("window") or {}
    unattributed = sum(int(u.get("n", 0)) for u in (report.get("unattributed") or {}).values())
    version = report.get("version")
    parts = [
        f'<section class="test" data-test="{name}"><h2>{name} {_badge(state)}</h2>',
        f'<p class="meta">flag {_e(document.get("flag"))} in {_e(document.get("environment"))}; version '
        f"{_e(version)} ({_e(_when(version))}); window from {_e(_when(window.get('start')))}, "
        f"{'final' if window.get('final') else 'interim'}; evaluated {_e(_when(report.get('evaluated_at')))}; "
        f"unattributed events: {unattributed:,}; invalid events: {int(report.get('invalid') or 0):,}</p>",
        srm_line(report),
        kill_block(report.get("kill")),
    ]
    if not report.get("verdicts"):
        parts.append('<p class="explain">not evaluated yet</p>')
    else:
        parts += _treatment_cards(document, report)
    parts.append("</section>")
    return parts


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:20px 28px;color:#222;background:#fafafa}
h1{font-size:21px;margin:0 0 4px}h2{font-size:18px;margin:26px 0 4px}h3{font-size:15px;margin:0 8px 6px 0;
display:inline-block}h4{font-size:13px;margin:10px 0 2px;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px;margin-top:10px}
.treatment{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px}
.treatment[data-state=FAIL]{border:2px solid #d62728}
.kill{background:#fff;border:2px solid;border-radius:6px;padding:8px 14px;margin:10px 0;max-width:900px}
.kill th{text-align:left;font-weight:600;padding:1px 14px 1px 0;white-space:nowrap}.kill td{padding:1px 0}
.explain{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#444;margin:2px 0 4px}
svg .tick{font-size:11px;fill:#444}svg .axis{stroke:#999}svg .version-boundary{stroke:#333;stroke-dasharray:2 2}
.meta{color:#555;font-size:12px}.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:#444;margin:8px 0}
.key svg{vertical-align:middle}.runs{margin-top:18px}
.curl{font-size:11px;white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #eee;padding:4px}
.version-boundary{stroke:#333;stroke-dasharray:2 2}
"""


def runs_block(runs: Sequence[Mapping[str, Any]]) -> str:
    """The traffic runs that fed the verdicts: each run's manifest and the curl of each failing case shown."""
    if not runs:
        return ""
    parts = ['<div class="runs"><h3>Traffic runs</h3>']
    for run in runs:
        manifest = str(run.get("manifest") or "")
        link = (
            f'<a href="{_e(Path(manifest).as_uri())}">{_e(manifest)}</a>' if manifest.startswith("/") else _e(manifest)
        )
        failures = run.get("failures") or []
        parts.append(f"<p>run {_e(run.get('run_id'))}: manifest {link}; {len(failures)} failing case(s) shown</p>")
        parts += [
            f'<pre class="curl">{_e(failure.get("case"))}: {_e(failure.get("curl"))}</pre>' for failure in failures
        ]
    parts.append("</div>")
    return "".join(parts)


def html_report(
    documents: Sequence[Mapping[str, Any]],
    generated: datetime | None = None,
    refresh_seconds: int | None = None,
    runs: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The self-contained HTML report of the documents (``GET /tests/{name}`` shape); with ``refresh_seconds``,
    a page that reloads itself (``make run``'s live page); ``runs``: the traffic runs that fed it (``run_id``,
    ``manifest``, ``failures`` with each case's ``curl``), linked under the tests."""
    from flagbridge.oracle.verdicts import exit_status, verdict_rows

    stamp = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    status = exit_status(row["state"] for row in verdict_rows(documents))
    overall = {0: "PASS", 1: "FAIL"}.get(status, "UNDECIDED")
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    live = f"; this page reloads every {int(refresh_seconds)} s" if refresh_seconds else ""
    body = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{refresh}',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>flagbridge oracle verdicts</title>",
        f"<style>{CSS}</style></head><body>",
        f'<h1>flagbridge oracle verdicts <span class="badge" style="background:{COLOURS.get(overall, "#ff9f1c")}">'
        f"{overall}</span></h1>",
        f'<p class="meta">Generated {stamp}{live}. Each metric has one axis for all its treatments, in its unit; '
        "failing treatments come first.</p>",
        _legend(),
    ]
    for document in documents:
        body += _test_section(document)
    body.append(runs_block(runs))
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
