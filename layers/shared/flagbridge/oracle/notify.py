"""How verdicts reach people and machines: the alarm SNS topic, EventBridge, CloudWatch metrics.

On a change of any verdict's state (:meth:`AwsNotifier.verdict_changed`): one SNS message on the alarm topic
(subject ``flagbridge oracle: <test> <STATE>``, body: the explain lines) and one EventBridge event with
``source: flagbridge.oracle`` and detail-type ``Oracle verdict changed`` (rules can route a FAIL to a pager or
a pipeline). Every evaluation (:meth:`AwsNotifier.metrics`): CloudWatch metrics in ``Flagbridge/Oracle`` per
test, treatment and metric: ``Rate`` (percent; for percentile metrics the share of events at or above the
pass line), ``LowerBound``, ``UpperBound``, ``Percentile`` (percentile metrics, in the attribute's unit),
``EventsCounted`` and ``VerdictState`` (0 PASS, 1 INCONCLUSIVE, 2 NO_DATA, 3 INVALID, 4 ERROR, 5 FAIL), which the
dashboard in ``template.yaml`` plots against the threshold lines. Nothing personal is sent: counts and rates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flagbridge.oracle.judge import STATE_CODES

NAMESPACE = "Flagbridge/Oracle"
SOURCE = "flagbridge.oracle"
DETAIL_TYPE = "Oracle verdict changed"
_METRIC_DATA_CHUNK = 500


def alert_message(report: Mapping[str, Any], changed: list[dict[str, str]]) -> tuple[str, str]:
    """The SNS subject (<= 100 characters) and body of a state change."""
    subject = f"flagbridge oracle: {report['test']} {report['state']}"[:100]
    lines = [f"Test {report['test']} (flag {report['flag']}, {report['environment']}): {report['state']}", ""]
    lines += [v.get("explain", "") for v in report.get("verdicts", [])]
    lines += ["", "Changed: " + ", ".join(f"{c['verdict']} {c['from']} -> {c['to']}" for c in changed)]
    kill = report.get("kill")
    if kill:
        lines.append(f"Kill: {kill.get('status')}{' (confirmed)' if kill.get('confirmed') else ''}")
    return subject, "\n".join(lines)


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
        if verdict.get("value") is not None:
            values["Percentile"] = (verdict["value"], "None")
        for name, (value, unit) in values.items():
            data.append({"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit})
    return data


class AwsNotifier:
    """The notifier on SNS, EventBridge and CloudWatch clients."""

    def __init__(self, sns: Any, events: Any, cloudwatch: Any, topic_arn: str, event_bus_name: str) -> None:
        self._sns, self._events, self._cloudwatch = sns, events, cloudwatch
        self._topic_arn, self._bus = topic_arn, event_bus_name

    def verdict_changed(self, report: Mapping[str, Any], changed: list[dict[str, str]]) -> None:
        subject, body = alert_message(report, changed)
        if self._topic_arn:
            self._sns.publish(TopicArn=self._topic_arn, Subject=subject, Message=body)
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(event_detail(report, changed)),
            "EventBusName": self._bus,
        }
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the verdict event: {response['Entries'][0].get('ErrorCode')}")

    def metrics(self, report: Mapping[str, Any]) -> None:
        data = metric_data(report)
        for start in range(0, len(data), _METRIC_DATA_CHUNK):
            self._cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start : start + _METRIC_DATA_CHUNK])
