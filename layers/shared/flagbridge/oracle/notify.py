"""How verdicts reach people and machines: the alarm SNS topic, EventBridge, CloudWatch metrics.

On a change of any verdict's state (:meth:`AwsNotifier.verdict_changed`): one SNS message on the alarm topic
(subject ``flagbridge oracle: <test> <STATE>``, body: the explain lines) and one EventBridge event with
``source: flagbridge.oracle`` and detail-type ``Oracle verdict changed`` (rules can route a FAIL to a pager or
a pipeline). A kill's progress (:meth:`AwsNotifier.kill_changed`, each once per kill): Split accepted it, the
first ``killed`` impression was counted, or none was within ``kill.confirm_within_minutes`` (``kill not
confirmed``): an SNS message (subject ``flagbridge oracle: <test> kill accepted|confirmed|not confirmed``, body:
the timeline with its latencies) and an EventBridge event, detail-type ``Oracle kill changed``, whose detail holds
the kill block (``timeline``, ``confirmation``).

Every evaluation (:meth:`AwsNotifier.metrics`): CloudWatch metrics in ``Flagbridge/Oracle`` per test, treatment
and metric: ``Rate`` (percent; for percentile metrics the share of events at or above the pass line),
``LowerBound``, ``UpperBound``, ``Percentile`` (percentile metrics, in the attribute's unit),
``EventsCounted`` and ``VerdictState`` (0 PASS, 1 INCONCLUSIVE, 2 NO_DATA, 3 INVALID, 4 ERROR, 5 FAIL), which the
dashboard in ``template.yaml`` plots against the threshold lines, plus ``PassLine`` and ``FailLine`` (the configured
lines, percent) for rate metrics. The metrics are written as CloudWatch embedded metric format (EMF) lines on
stdout, like the handlers' Powertools metrics: CloudWatch extracts them from the function's log, so the evaluator
needs no ``cloudwatch:PutMetricData`` permission (which cannot be scoped to a resource). Nothing personal is
sent: counts and rates.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from flagbridge.oracle.judge import STATE_CODES
from flagbridge.oracle.kills import KillEvent, headline, timeline_lines
from flagbridge.oracle.kinds import KINDS

NAMESPACE = "Flagbridge/Oracle"
SOURCE = "flagbridge.oracle"
DETAIL_TYPE = "Oracle verdict changed"
KILL_DETAIL_TYPE = "Oracle kill changed"
KILL_SUBJECTS: dict[str, str] = {
    "accepted": "kill accepted",
    "confirmed": "kill confirmed",
    "not_confirmed": "kill not confirmed",
}
KILL_FIELDS = ("version", "status", "confirmation", "confirm_within_ms", "comment", "reason", "timeline")
DIMENSIONS = ["Test", "Treatment", "Metric"]


def alert_message(report: Mapping[str, Any], changed: list[dict[str, str]]) -> tuple[str, str]:
    """The SNS subject (<= 100 characters) and body of a state change."""
    subject = f"flagbridge oracle: {report['test']} {report['state']}"[:100]
    lines = [f"Test {report['test']} (flag {report['flag']}, {report['environment']}): {report['state']}", ""]
    lines += [v.get("explain", "") for v in report.get("verdicts", [])]
    lines += ["", "Changed: " + ", ".join(f"{c['verdict']} {c['from']} -> {c['to']}" for c in changed)]
    kill = report.get("kill")
    if kill:
        lines.append(f"Kill: {kill.get('status')}{' (confirmed)' if kill.get('confirmed') else ''}")
        lines += ["  " + line for line in timeline_lines(kill)]
    return subject, "\n".join(lines)


def kill_message(report: Mapping[str, Any], event: KillEvent) -> tuple[str, str]:
    """The SNS subject and body of a kill's progress: what happened, then the timeline."""
    kill = report.get("kill") or {}
    subject = f"flagbridge oracle: {report['test']} {KILL_SUBJECTS[event]}"[:100]
    what = {
        "accepted": "Split's Admin API accepted the kill; waiting for the first `killed` impression to be counted.",
        "confirmed": "The first events of users served the flag `killed` were counted: the kill took effect.",
        "not_confirmed": (
            f"No event of a user served the flag `killed` was counted within "
            f"{int(kill.get('confirm_within_ms') or 0) / 60_000:g} minutes of Split accepting the kill: check "
            "the flag in Split and that the service's SDK and the impressions webhook still reach the bridge."
            + (
                " This test names treatments by an event attribute, whose events carry no label: it cannot see "
                "`killed` impressions, so check in Split."
                if kill.get("confirmable") is False
                else ""
            )
        ),
    }[event]
    lines = [
        f"Test {report['test']} (flag {report['flag']}, {report['environment']}): {KILL_SUBJECTS[event]}",
        "",
        what,
        "",
        headline(kill),
        *timeline_lines(kill),
    ]
    if kill.get("reason"):
        lines += ["", f"Reason: {kill['reason']}"]
    return subject, "\n".join(lines)


def kill_detail(report: Mapping[str, Any], event: KillEvent) -> dict[str, Any]:
    kill = report.get("kill") or {}
    return {
        "test": report["test"],
        "flag": report["flag"],
        "environment": report["environment"],
        "event": event,
        "evaluatedAt": report.get("evaluated_at"),
        "kill": {name: kill.get(name) for name in KILL_FIELDS},
    }


def event_detail(report: Mapping[str, Any], changed: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "test": report["test"],
        "flag": report["flag"],
        "environment": report["environment"],
        "state": report["state"],
        "evaluatedAt": report.get("evaluated_at"),
        "changes": changed,
        "verdicts": [
            {k: v.get(k) for k in ("treatment", "metric", "state", "n", "k", "rate", "lower", "upper", "explain")}
            for v in report.get("verdicts", [])
        ],
        "kill": (report.get("kill") or {}).get("status"),
        "killTimeline": (report.get("kill") or {}).get("timeline"),
    }


def metric_data(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CloudWatch datums of one report."""
    data: list[dict[str, Any]] = []
    for verdict in report.get("verdicts", []):
        dimensions = [
            {"Name": "Test", "Value": str(report["test"])},
            {"Name": "Treatment", "Value": str(verdict["treatment"])},
            {"Name": "Metric", "Value": str(verdict["metric"])},
        ]
        values: dict[str, tuple[float, str]] = {
            "VerdictState": (STATE_CODES.get(verdict["state"], 4), "None"),
            "EventsCounted": (verdict.get("n") or 0, "Count"),
        }
        if verdict.get("rate") is not None:
            values["Rate"] = (100 * verdict["rate"], "Percent")
            values["LowerBound"] = (100 * verdict.get("lower", 0.0), "Percent")
            values["UpperBound"] = (100 * verdict.get("upper", 1.0), "Percent")
        if verdict.get("kind") in KINDS:
            values.update(KINDS[verdict["kind"]].datums(verdict))
        for name, (value, unit) in values.items():
            data.append({"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit})
    return data


def emf_lines(report: Mapping[str, Any], now_ms: int) -> list[str]:
    """One EMF document per (treatment, metric) of the report."""
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for datum in metric_data(report):
        key = tuple(d["Value"] for d in datum["Dimensions"])
        grouped.setdefault(key, []).append(datum)
    lines = []
    for key, data in grouped.items():
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [DIMENSIONS],
                        "Metrics": [{"Name": d["MetricName"], "Unit": d["Unit"]} for d in data],
                    }
                ],
            },
            **dict(zip(DIMENSIONS, key, strict=True)),
        }
        document.update({d["MetricName"]: d["Value"] for d in data})
        lines.append(json.dumps(document, separators=(",", ":")))
    return lines


class AwsNotifier:
    """The notifier on SNS and EventBridge clients, with metrics as EMF lines."""

    def __init__(
        self, sns: Any, events: Any, topic_arn: str, event_bus_name: str, write: Callable[[str], Any] | None = None
    ) -> None:
        self._sns, self._events = sns, events
        self._topic_arn, self._bus = topic_arn, event_bus_name
        self._write = write or (lambda line: print(line, file=sys.stdout, flush=True))

    def verdict_changed(self, report: Mapping[str, Any], changed: list[dict[str, str]]) -> None:
        subject, body = alert_message(report, changed)
        if self._topic_arn:
            self._sns.publish(TopicArn=self._topic_arn, Subject=subject, Message=body)
        self._put_event(DETAIL_TYPE, event_detail(report, changed))

    def kill_changed(self, report: Mapping[str, Any], event: KillEvent) -> None:
        subject, body = kill_message(report, event)
        if self._topic_arn:
            self._sns.publish(TopicArn=self._topic_arn, Subject=subject, Message=body)
        self._put_event(KILL_DETAIL_TYPE, kill_detail(report, event))

    def _put_event(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        entry = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": self._bus}
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            error = response["Entries"][0].get("ErrorCode")
            raise RuntimeError(f"EventBridge refused the {detail_type!r} event: {error}")

    def metrics(self, report: Mapping[str, Any]) -> None:
        for line in emf_lines(report, int(time.time() * 1000)):
            self._write(line)
