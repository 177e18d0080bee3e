"""Lambda handler for the tester segments' reconcile (EventBridge schedule): make each Split segment equal to the
tester registry.

:meth:`flagbridge.testers.segment.SegmentSync.reconcile` lists each configured segment (``testers.segments``),
adds the keys of active registrations it lacks and removes the keys nobody registered (expired registrations
included), in calls of at most Split's batch limit, audits every change and marks the registrations in the
segment ``synced``. ``{"dry_run": true}`` computes and reports without changing anything. Without
``testers.segments`` it does nothing (the schedule is in the template either way). The log and the answer carry
counts only, never a key.
"""

from __future__ import annotations

import gc

gc.disable()  # while importing; runtime.init_complete(), at the bottom, explains and re-enables it

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from flagbridge import runtime
from flagbridge.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not runtime.settings().config.testers.segments:  # off: the schedule still fires, and nothing happens
        logger.info("no tester segment configured (testers.segments): nothing to reconcile")
        return {"segments": [], "skipped": "no testers.segments in the configuration"}
    dry_run = isinstance(event, dict) and event.get("dry_run") is True
    report = runtime.tester_segment_sync().reconcile(runtime.settings().config.testers.reconcile_actor, dry_run=dry_run)
    document = report.document()
    for target in report.targets:
        metrics.add_metric(name="TesterSegmentKeysAdded", unit=MetricUnit.Count, value=target.added)
        metrics.add_metric(name="TesterSegmentKeysRemoved", unit=MetricUnit.Count, value=target.removed)
    if report.ok:
        logger.info("tester segments reconciled", extra={"report": document})
    else:
        metrics.add_metric(name="TesterSegmentReconcileFailures", unit=MetricUnit.Count, value=1)
        logger.error("tester segments not fully reconciled; the next run retries", extra={"report": document})
    return document


runtime.init_complete(reads_configuration=True)
