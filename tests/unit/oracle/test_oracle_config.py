"""The oracle configuration: defaults, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from flagbridge.errors import ConfigError
from flagbridge.oracle.config import PercentileMetric, RateMetric, parse_oracle_config


def config_doc(**overrides: Any) -> dict[str, Any]:
    test = {"name": "new-checkout-health", "flag": "new_checkout", "environment": "Production", **overrides}
    return {"tests": [test]}


def rate(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "5xx rate",
        "type": "rate",
        "events": {"event_names": {"include": ["api_response"]}},
        "bad": {"attributes": [{"attribute": "status", "op": "gte", "value": 500}]},
        "pass_below": 0.01,
        "fail_at": 0.05,
        **overrides,
    }


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_oracle_config(document, source="flagbridge.yaml")
    return str(caught.value)


def test_defaults() -> None:
    config = parse_oracle_config(config_doc())
    [test] = config.tests
    assert (test.cohort, test.interval_minutes, test.window_hours, test.actions) == ("testers", 1, 24, ["alert"])
    rate_metric, latency = test.metrics
    assert isinstance(rate_metric, RateMetric) and isinstance(latency, PercentileMetric)
    assert (rate_metric.alpha, rate_metric.decision) == (0.01, "sequential")
    assert (rate_metric.confidence, rate_metric.interim_confidence) == (None, None)
    assert (rate_metric.min_samples, rate_metric.min_failures) == (300, 3)
    assert (latency.attribute, latency.percentile, latency.tail) == ("latency_ms", 95, 0.05)
    assert rate_metric.events.event_names.include == ["api_response", "flagbridge_test_request"]


def test_alert_is_always_an_action() -> None:
    config = parse_oracle_config(config_doc(actions=["kill"], kill={"workspace_id": "ws1"}))
    assert config.tests[0].actions == ["alert", "kill"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (config_doc(metrics=[rate(pass_below=0.05, fail_at=0.01)]),
         "'oracle.tests.0.metrics.0': pass_below (0.05) must be below fail_at (0.01)"),
        (config_doc(metrics=[rate(pass_below=0.05, fail_at=0.05)]), "'oracle.tests.0.metrics.0': pass_below (0.05)"),
        (config_doc(metrics=[rate(confidence=1.0)]), "'oracle.tests.0.metrics.0.confidence'"),
        (config_doc(metrics=[rate(confidence=0.5)]), "'oracle.tests.0.metrics.0.confidence'"),
        (config_doc(metrics=[rate(alpha=0.5)]), "'oracle.tests.0.metrics.0.alpha'"),
        (config_doc(metrics=[rate(alpha=0)]), "'oracle.tests.0.metrics.0.alpha'"),
        (config_doc(metrics=[rate(decision="peek")]), "'oracle.tests.0.metrics.0.decision'"),
        (config_doc(metrics=[rate(fail_at=1)]), "'oracle.tests.0.metrics.0.fail_at'"),
        (config_doc(actions=["alert", "page"]), "'oracle.tests.0.actions.1'"),
        (config_doc(actions=["kill"]), "'oracle.tests.0': actions include kill"),
        (config_doc(metrics=[rate(events={"event_types": {"include": ["custom_event"], "exclude": ["custom_event"]}})]),
         "'oracle.tests.0.metrics.0': events can never match: event_types"),
        (config_doc(metrics=[rate(events={"event_names": {"include": ["a"], "exclude": ["a"]}})]),
         "events can never match: event_names"),
        (config_doc(metrics=[rate(events={"event_types": {"include": ["session_start"]},
                                           "event_names": {"include": ["api_response"]}})]),
         "no included name can match the included event types"),
        (config_doc(metrics=[rate(events={"attributes": [{"attribute": "status", "op": "lt", "value": 500}]})]),
         "'oracle.tests.0.metrics.0': bad can never match among the selected events: attributes: no number"),
        (config_doc(metrics=[rate(bad={"attributes": [{"attribute": "s", "op": "exists"},
                                                      {"attribute": "s", "op": "not_exists"}]})]),
         "bad can never match"),
        (config_doc(metrics=[rate(bad={"attributes": [{"attribute": "s", "op": "equals", "value": "a"},
                                                      {"attribute": "s", "op": "in", "value": ["b", "c"]}]})]),
         "no value of s satisfies"),
        (config_doc(metrics=[rate(bad={"attributes": [{"attribute": "s", "op": "in", "value": [1, 2]},
                                                      {"attribute": "s", "op": "gt", "value": 5}]})]),
         "no allowed value of s satisfies its numeric bounds"),
        (config_doc(metrics=[rate(bad={"attributes": [{"attribute": "s", "op": "gt", "value": 5},
                                                      {"attribute": "s", "op": "lte", "value": 5}]})]),
         "no number satisfies every bound on s"),
        (config_doc(split={"on": 50}), "'oracle.tests.0.split'"),
        (config_doc(metrics=[rate(), rate()]), "metric names must be unique"),
        (config_doc(cohort="customers"), "'oracle.tests.0.cohort'"),
        (config_doc(metrics=[rate(type="mean")]), "'oracle.tests.0.metrics.0'"),
        ({"tests": [config_doc()["tests"][0]] * 2}, "'oracle.tests': test names must be unique"),
        (config_doc(flag=""), "'oracle.tests.0.flag'"),
        (config_doc(typo=1), "'oracle.tests.0.typo'"),
    ],
)  # fmt: skip
def test_errors_name_the_key(document: dict[str, Any], expected: str) -> None:
    message = error_of(document)
    assert message.startswith("flagbridge.yaml: invalid configuration at ")
    assert expected in message


def test_deprecated_confidence_keys_still_load_and_are_named(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_oracle_config(config_doc(metrics=[rate(confidence=0.95, interim_confidence=0.99)]), "f.yaml")
    assert config.tests[0].metrics[0].alpha == 0.01
    assert config.deprecations() == [
        f"'oracle.tests.0.metrics.0.{key}' is deprecated and ignored: verdicts are valid at every look at error "
        "level alpha (0.01); set alpha, or decision: fixed for one look at the window's end"
        for key in ("confidence", "interim_confidence")
    ]
    assert [r.getMessage() for r in caplog.records] == [f"f.yaml: {line}" for line in config.deprecations()]
    assert parse_oracle_config(config_doc()).deprecations() == []


def test_a_satisfiable_selector_is_accepted() -> None:
    ok = rate(bad={"attributes": [{"attribute": "status", "op": "gte", "value": 500},
                                  {"attribute": "status", "op": "lt", "value": 600},
                                  {"attribute": "route", "op": "in", "value": ["/a", "/b"]},
                                  {"attribute": "route", "op": "not_equals", "value": "/a"}]})  # fmt: skip
    assert parse_oracle_config(config_doc(metrics=[ok])).tests[0].metrics[0].name == "5xx rate"
