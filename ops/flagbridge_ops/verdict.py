"""The oracle's verdicts for people and CI: read them, print a table, write JUnit XML and a self-contained HTML report.

Verdicts are read from the verdicts table (``ORACLE_VERDICTS_TABLE``, or the stack output
``OracleVerdictsTableName``) for the tests of the ``oracle`` section of the configuration. The rows and the CI
gate are :func:`flagbridge.oracle.verdicts.verdict_rows` and :func:`flagbridge.oracle.verdicts.exit_status`: 0 when
every verdict is PASS, 1 when any is FAIL, 2 otherwise (INCONCLUSIVE, NO_DATA, ERROR, INVALID, or a test never
evaluated).

The HTML report (self-contained: inline CSS and SVG, nothing fetched) is :mod:`flagbridge.oracle.report_html`,
shared with the oracle API.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flagbridge.oracle.config import OracleConfig
from flagbridge.oracle.kinds import kind_of
from flagbridge.oracle.report_html import attribute_unit
from flagbridge.oracle.service import detail_document
from flagbridge.oracle.store import VerdictStore


def load_documents(config: OracleConfig, store: VerdictStore, name: str | None) -> list[dict[str, Any]]:
    """``GET /tests/{name}`` documents of the chosen test (or all), from the verdict store."""
    tests = [t for t in config.tests if name is None or t.name == name]
    return [detail_document(test, store) for test in tests]


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


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def annotate_units(documents: Iterable[dict[str, Any]], config: OracleConfig | None = None) -> None:
    """Give each percentile verdict of ``documents`` the ``unit`` of its metric's attribute: from ``config``, else
    from the document's own ``config`` (``GET /tests/{name}`` returns the test's configuration)."""
    for document in documents:
        if config is not None:
            test = config.test(str(document.get("name")))
            metrics = [m.model_dump(mode="json") for m in test.metrics] if test else []
        else:
            metrics = list((document.get("config") or {}).get("metrics") or [])
        units = {str(m.get("name")): attribute_unit(m.get("attribute")) for m in metrics}
        for verdict in (document.get("report") or {}).get("verdicts") or []:
            if verdict.get("kind") == "percentile" and units.get(verdict.get("metric")):
                verdict.setdefault("unit", units[verdict["metric"]])


def value_text(row: Mapping[str, Any]) -> str:
    """A verdict's observed value for people: a rate in %, a percentile with 4 significant digits and its unit."""
    if row.get("kind") == "rate":
        return _percent(row.get("rate"))
    value = row.get("value")
    if value is None:
        return "-"
    return f"{float(value):.4g} {row.get('unit') or ''}".strip()


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The CLI table's rows: the value with its unit, and the interval as the verdict's metric kind writes it."""
    out = []
    for row in rows:
        value, interval = kind_of(row).cells(row)
        if row.get("kind") in ("rate", "percentile"):
            value = value_text(row)
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
