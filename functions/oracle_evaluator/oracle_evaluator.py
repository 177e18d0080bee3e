"""Lambda handler for the oracle's schedule (EventBridge, every minute): evaluate the tests that are due.

:class:`flagbridge.oracle.service.Evaluator` judges each test from its counters, keeps the verdict history,
alerts (SNS, EventBridge) when a verdict changes, puts CloudWatch metrics, and kills the flag through Split's
Admin API on FAIL when the test asks for it. The event's ``test`` and ``force`` keys (optional) evaluate one
test now, whatever its interval: ``{"test": "new-checkout-health", "force": true}``.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer
from flagbridge.oracle.service import Evaluator  # every invocation uses it: loaded at init


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    only = event.get("test") if isinstance(event.get("test"), str) else None
    evaluator: Evaluator = runtime.oracle_evaluator()
    reports = evaluator.run(only=only, force=event.get("force") is True)
    summary = {report["test"]: report["state"] for report in reports}
    failures = {report["test"]: report["failure"] for report in reports if "failure" in report}
    metrics.add_metric(name="OracleEvaluations", unit=MetricUnit.Count, value=len(reports))
    for report in reports:  # explain lines hold flag, treatment, metric and counts: no personal data
        logger.info("oracle verdict", extra={"test": report["test"], "state": report["state"],
                                             "explain": [v.get("explain") for v in report.get("verdicts", [])],
                                             "kill": (report.get("kill") or {}).get("status")})  # fmt: skip
    if failures:
        logger.error("oracle evaluations failed", extra={"failures": failures})
    return {"evaluated": summary, "failures": failures}


runtime.init_complete(reads_configuration=True)
