"""The oracle's HTML report as a reviewer reads it (issue 19, item 6), on data shaped like the oracle's documents and
the kill block of docs/oracle.md: one shared, labelled axis per metric; failing treatments first, each with its
badge; n and k per treatment; units; the SRM line; the kill as a block (time, state, confirmed or not, the
comment sent to Split), tolerating absent fields; a timeline with a time axis, a legend and version boundaries.
Then the same page in headless Chromium: the script runs, and the screenshot is a full-width page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flagbridge.oracle.report_html import html_report, kill_block
from tests.browser import png_size, render_in_chromium

T0 = 1_796_600_000_000  # epoch ms
V1, V2 = T0 - 3_600_000, T0 + 60_000  # two flag versions; the second starts during the history


def verdict(treatment: str, metric: str, state: str, **fields: Any) -> dict[str, Any]:
    kind = "percentile" if "latency" in metric else "rate"
    lines = {"pass_below": 500.0, "fail_at": 1000.0} if kind == "percentile" else {"pass_below": 0.01, "fail_at": 0.05}
    return {
        "flag": "new_checkout",
        "treatment": treatment,
        "metric": metric,
        "kind": kind,
        "state": state,
        "explain": f"{state} new_checkout={treatment} {metric}",
        **lines,
        **fields,
    }


def document(kill: dict[str, Any] | None) -> dict[str, Any]:
    verdicts = [
        verdict("off", "5xx rate", "PASS", n=702, k=0, rate=0.0, lower=0.0, upper=0.0077),
        verdict("off", "latency p95", "PASS", n=702, k=0, value=7.7),
        verdict("on", "5xx rate", "FAIL", n=698, k=76, rate=0.109, lower=0.084, upper=0.14),
        verdict("on", "latency p95", "PASS", n=698, k=0, value=8.2),
    ]
    history = [
        {
            "evaluated_at": T0 + 120_000 - 5_000 * i,
            "state": "FAIL",
            "version": V2 if i < 10 else V1,
            "verdicts": [
                {**v, "state": "FAIL" if i < 5 and v["state"] == "FAIL" else "INCONCLUSIVE"} for v in verdicts
            ],
        }
        for i in range(20)
    ]
    report = {
        "verdicts": verdicts,
        "version": V2,
        "window": {"start": V2, "end": None, "final": False},
        "evaluated_at": T0 + 120_000,
        "unattributed": {"5xx rate": {"n": 3, "k": 0, "invalid": 0}},
        "invalid": 0,
        "srm": {"intended": {"on": 50, "off": 50}, "users": {"on": 4, "off": 4}, "p_value": 1.0, "mismatch": False},
        "kill": kill,
    }
    config = {
        "metrics": [
            {"name": "5xx rate", "type": "rate"},
            {"name": "latency p95", "type": "percentile", "attribute": "latency_ms"},
        ]
    }
    return {
        "name": "new-checkout-health",
        "flag": "new_checkout",
        "environment": "Production",
        "state": "FAIL",
        "report": report,
        "config": config,
        "history": history,
    }


FULL_KILL = {
    "status": "killed",
    "requested_at": T0 + 1_000,
    "reason": "FAIL new_checkout=on 5xx rate",
    "attempts": [{"status": 200}],
    "version": V2,
    "confirmed": True,
    "comment": "flagbridge oracle: FAIL verdict of new-checkout-health",
    "timeline": {
        "failed_at": T0,
        "claimed_at": T0 + 1_000,
        "accepted_at": T0 + 1_250,
        "confirmed_at": T0 + 9_250,
        "claim_ms": 1_000,
        "accept_ms": 1_250,
        "confirm_ms": 8_000,
    },
    "confirmation": "confirmed",
    "confirm_within_ms": 600_000,
}


def test_failing_treatments_come_first_with_their_badge_and_counts() -> None:
    page = html_report([document(FULL_KILL)])
    cards = re.findall(r'<div class="treatment" data-treatment="(\w+)" data-state="(\w+)">', page)
    assert cards == [("on", "FAIL"), ("off", "PASS")]
    on_card = page[page.index('data-treatment="on"') : page.index('data-treatment="off"')]
    assert "<h3>new_checkout=on</h3>" in on_card and 'class="badge" style="background:#d62728">FAIL' in on_card
    assert "n=698 events, k=76 bad" in on_card and "n=698 events, k=0 at/above the line" in on_card


def test_each_metric_has_one_labelled_axis_across_treatments_in_its_unit() -> None:
    page = html_report([document(FULL_KILL)])
    axes = re.findall(r'data-axis-top="([\d.e+-]+)" data-unit="([^"]*)"', page)
    assert len(axes) == 4
    rate_axes = {axis for axis in axes if axis[1] == "%"}
    latency_axes = {axis for axis in axes if axis[1] == "ms"}
    assert rate_axes == {("0.2", "%")} and latency_axes == {("2000", "ms")}  # one scale per metric
    assert ">0%</text>" in page and ">20%</text>" in page and ">2000 ms</text>" in page
    assert "pass &lt; 1%" in page and "fail ≥ 5%" in page and "fail ≥ 1000 ms" in page


def test_the_kill_is_a_block_with_its_time_state_confirmation_and_comment() -> None:
    block = kill_block(FULL_KILL)
    assert 'data-confirmation="confirmed"' in block
    expected = (
        "killed",
        "confirmed",
        "2026-12-06 23:33:21 UTC",
        FULL_KILL["comment"],
        "t1 accepted by Split",
        "(+1.2 s)",
        "t2 first killed impression",
        "(+8.0 s)",
        "600 s",
    )
    for text in expected:
        assert text in block, text
    not_confirmed = kill_block({**FULL_KILL, "confirmation": "not_confirmed"})
    assert "NOT confirmed" in not_confirmed and "#d62728" in not_confirmed


def test_the_kill_block_tolerates_absent_fields() -> None:
    older = kill_block({"status": "killed", "requested_at": T0, "confirmed": False})  # before the kill timeline
    assert 'data-confirmation="pending"' in older and "killed" in older and "t1" not in older
    assert "comment sent to Split</th><td>-" in older
    assert kill_block(None) == "" and kill_block({}) == ""
    assert 'class="kill"' not in html_report([document(None)])


def test_srm_line_timeline_legend_and_version_boundaries() -> None:
    page = html_report([document(FULL_KILL)])
    assert "sample ratio: users on 4 / off 4 vs intended 50/50 (p=1): no mismatch" in page
    assert page.count('class="version-boundary"><title>flag version') == 4  # one per timeline: V1 -> V2
    assert 'class="legend"' in page and "new flag version" in page
    assert re.search(r">\d\d:\d\d:\d\d UTC</text>", page)  # the time axis
    assert f"version {V2} (2026-12-06 23:34:20 UTC)" in page
    no_split = document(FULL_KILL)
    no_split["report"]["srm"] = None
    assert "sample ratio: not checked" in html_report([no_split])


def test_the_live_page_reloads_itself() -> None:
    assert '<meta http-equiv="refresh" content="5">' in html_report([document(None)], refresh_seconds=5)
    assert "http-equiv" not in html_report([document(None)])


def test_the_report_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html_report([document(FULL_KILL)]), encoding="utf-8")
    dom = render_in_chromium(page.as_uri(), tmp_path, screenshot=tmp_path / "report.png")
    assert 'data-rendered="1 tests, 2 treatments"' in dom  # the script ran
    assert dom.index('data-treatment="on"') < dom.index('data-treatment="off"')
    assert dom.count('class="badge"') >= 7  # the page, the test, two cards, four metrics
    assert dom.count('class="axis"') >= 8 and 'class="legend"' in dom and 'class="kill"' in dom
    assert png_size(tmp_path / "report.png") == (1280, 1600)


def test_docs_show_the_report_and_the_live_page() -> None:
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "oracle.md").read_text(encoding="utf-8")
    for image in ("images/oracle-report.png", "images/oracle-live.png"):
        assert f"]({image})" in page
        width, height = png_size(ROOT / "docs" / image)
        assert width >= 1000 and height >= 600, image


def test_the_runs_that_fed_the_verdicts_link_their_manifest_and_failing_curls(tmp_path: Path) -> None:
    manifest = tmp_path / "demo-1.ndjson"
    runs = [
        {
            "run_id": "demo-1",
            "manifest": str(manifest),
            "failures": [{"case": "c7", "curl": "curl -sS --path-as-is -X POST 'http://127.0.0.1:1/checkout?q=<x>'"}],
        }
    ]
    page = html_report([document(FULL_KILL)], runs=runs)
    assert f'<a href="{manifest.as_uri()}">{manifest}</a>' in page
    assert "c7: curl -sS --path-as-is -X POST &#x27;http://127.0.0.1:1/checkout?q=&lt;x&gt;&#x27;" in page
    assert 'class="runs"' not in html_report([document(FULL_KILL)])
