"""What a traffic run feeds: the oracle test (and metrics) its plan names, checked against the oracle configuration.

A traffic plan may say ``oracle: {test: new-checkout-health, metrics: [5xx rate, latency p95]}``. Every result of
the run is a tester's ``flagbridge_test_request`` custom event (:mod:`flagbridge.traffic.results`) that reaches the
oracle lane like any tester event. :func:`traffic_feed` checks, before anything is sent, that the run can move the
test at all; each problem is one line naming the plan's key:

* the test is one of the configuration's ``oracle.tests``;
* each named metric is one of the test's metrics and its ``events`` selector takes the run's results; without
  ``metrics``, the run feeds every metric of the test that takes them (with the default metrics: the 5xx rate, the
  unanswered rate and the p95 latency);
* the test attributes events to a treatment by the profiles' assignment history (no ``treatment_attribute``): a
  result carries the tester's identity, never the treatment the service chose, so a test that reads the treatment
  from an attribute would count every result as unattributed, never judged.

It also returns a warning (the run may go on) when no metric the run feeds counts a request nothing answered
(``status`` 0, outcome ``transport_error``) as bad, as the default ``unanswered rate`` does: the 5xx rate and the
latency count answers only, so such a run could not see its target stop answering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagbridge.cdp.batch import Event
from flagbridge.errors import ConfigError
from flagbridge.oracle.config import OracleConfig, OracleTest, Selector
from flagbridge.oracle.kinds import kind_of

RESULT_EVENT = "flagbridge_test_request"
"""The custom event name of a traffic result (:data:`flagbridge.traffic.results.EVENT_NAME`)."""


@dataclass(frozen=True)
class TrafficFeed:
    """The oracle test a run feeds and the metrics of it that count the run's results."""

    test: str
    flag: str
    metrics: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=(), compare=False)


def sample_result(test: str, status: int, outcome: str) -> Event:
    """A result event as the run sends it (the attributes every result carries), for checking selectors."""
    attributes: dict[str, Any] = {
        "run_id": "tr-check", "case_id": "c0", "route": "request1", "method": "POST", "status": status,
        "latency_ms": 12.5, "outcome": outcome, "mutations": 0, "mutated_elements": "", "attacks": "",
        "plan_hash": "0" * 16, "oracle_test": test,
    }  # fmt: skip
    if outcome == "transport_error":
        attributes["error"] = "TimeoutError: timed out"
    data = {"event_name": RESULT_EVENT, "custom_event_type": "other", "custom_attributes": attributes}
    return Event(0, "custom_event", data, {"event_type": "custom_event", "data": data})


def _takes(selector: Selector, event: Event) -> bool:
    return selector.compile().event_reason(event) is None


def _answered_and_not(test: str) -> tuple[Event, Event]:
    return sample_result(test, 200, "ok"), sample_result(test, 0, "transport_error")


def _feeds(test: OracleTest, metric: Any) -> bool:
    """Whether the metric's ``events`` take the run's results (answered or not)."""
    return any(_takes(metric.events, event) for event in _answered_and_not(test.name))


def _counts_no_answer(metric: Any, unanswered: Event) -> bool:
    """Whether a metric counts a request nothing answered as bad (the default ``unanswered rate`` does)."""
    return kind_of(metric).counts_as_bad(metric, unanswered)


def _warnings(test: OracleTest, metrics: tuple[str, ...]) -> list[str]:
    _, unanswered = _answered_and_not(test.name)
    fed = [metric for metric in test.metrics if metric.name in metrics]
    if any(_counts_no_answer(metric, unanswered) for metric in fed):
        return []
    counting = [metric.name for metric in test.metrics if _counts_no_answer(metric, unanswered)]
    if counting:
        return [
            f"the run does not feed metric {counting[0]!r} of oracle test {test.name!r}, which counts requests "
            "nothing answered: add it to the plan's oracle.metrics, or a target that stops answering goes unseen"
        ]
    return [
        f"no metric of oracle test {test.name!r} counts a request nothing answered (status 0, outcome "
        "transport_error) as bad: a target that stops answering would go unseen. Add the default metric "
        "'unanswered rate' (type rate, bad: {attributes: [{attribute: status, op: equals, value: 0}]})"
    ]


def traffic_feed(oracle_section: Mapping[str, Any], config: OracleConfig | None, source: str) -> TrafficFeed | None:
    """The feed a plan's ``oracle`` section names (None when it names none); ConfigError naming the key otherwise.

    ``source`` names the plan in errors (``plan.yaml: 'oracle.test': ...``).
    """
    name = oracle_section.get("test")
    if not name:
        return None
    known = [t.name for t in config.tests] if config is not None else []
    test = config.test(str(name)) if config is not None else None
    if test is None:
        listed = f"known: {', '.join(known)}" if known else "the configuration has no oracle tests"
        raise ConfigError(f"{source}: 'oracle.test': no oracle test {name!r} in the configuration ({listed})")
    if test.treatment_attribute is not None:
        raise ConfigError(
            f"{source}: 'oracle.test': test {test.name!r} reads the treatment from the event attribute "
            f"{test.treatment_attribute!r}, which a traffic result never carries: every result would be "
            "unattributed. Let the test attribute by the profiles (no treatment_attribute) to feed it"
        )
    taking = [m.name for m in test.metrics if _feeds(test, m)]
    named = oracle_section.get("metrics")
    if named is None:
        if not taking:
            raise ConfigError(
                f"{source}: 'oracle.test': no metric of test {test.name!r} counts {RESULT_EVENT} events, so the run "
                "could not move it"
            )
        metrics = tuple(taking)
    else:
        for position, metric_name in enumerate(named):
            if metric_name not in [m.name for m in test.metrics]:
                raise ConfigError(
                    f"{source}: 'oracle.metrics.{position}': test {test.name!r} has no metric {metric_name!r} "
                    f"(its metrics: {', '.join(m.name for m in test.metrics)})"
                )
            if metric_name not in taking:
                raise ConfigError(
                    f"{source}: 'oracle.metrics.{position}': metric {metric_name!r} of test {test.name!r} does not "
                    f"count {RESULT_EVENT} events (its events selector leaves them out)"
                )
        metrics = tuple(str(m) for m in named)
    return TrafficFeed(test.name, test.flag, metrics, tuple(_warnings(test, metrics)))
