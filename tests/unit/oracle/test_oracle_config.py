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
    rate_metric, latency, unanswered = test.metrics
    assert isinstance(rate_metric, RateMetric) and isinstance(latency, PercentileMetric)
    assert (rate_metric.alpha, rate_metric.decision) == (0.01, "sequential")
    assert (rate_metric.confidence, rate_metric.interim_confidence) == (None, None)
    assert (rate_metric.min_samples, rate_metric.min_failures) == (300, 3)
    assert (latency.attribute, latency.percentile, latency.tail) == ("latency_ms", 95, 0.05)
    assert rate_metric.events.event_names.include == ["api_response", "flagbridge_test_request"]
    assert isinstance(unanswered, RateMetric) and unanswered.name == "unanswered rate"
    assert (unanswered.pass_below, unanswered.fail_at, unanswered.actions) == (0.01, 0.05, ["alert"])
    assert rate_metric.actions is None and latency.actions is None  # the test's actions


def _result(status: int) -> Any:
    from flagbridge.oracle.feeds import sample_result

    return sample_result("t", status, "transport_error" if status == 0 else "ok")


@pytest.mark.parametrize("source", ["defaults", "shipped"])
def test_no_answer_is_its_own_metric_and_the_5xx_rate_and_latency_count_answers_only(source: str) -> None:
    from pathlib import Path

    import yaml

    if source == "shipped":
        shipped = Path(__file__).resolve().parents[3] / "layers/shared/config/flagbridge.yaml"
        test = parse_oracle_config(yaml.safe_load(shipped.read_text(encoding="utf-8"))["oracle"]).tests[0]
    else:
        test = parse_oracle_config(config_doc()).tests[0]
    metrics = {metric.name: metric for metric in test.metrics}

    def verdict(metric: str, status: int) -> str:
        event = _result(status)
        chosen = metrics[metric].events.compile().event_reason(event) is None
        if not chosen:
            return "left out"
        bad = metrics[metric].bad  # type: ignore[union-attr]
        return "bad" if bad.compile().event_reason(event) is None else "good"

    assert [verdict("5xx rate", status) for status in (0, 200, 404, 500, 503)] == [
        "left out", "good", "good", "bad", "bad"
    ]  # fmt: skip
    assert [verdict("unanswered rate", status) for status in (0, 200, 404, 500)] == ["bad", "good", "good", "good"]
    latency = metrics["latency p95"].events.compile()
    assert latency.event_reason(_result(0)) is not None and latency.event_reason(_result(200)) is None
    assert test.metric_actions("unanswered rate") == ["alert"]  # alerts; kills only where a test opts in
    if source == "shipped":
        assert test.metric_actions("5xx rate") == ["alert", "kill"]


def test_a_metric_s_actions_override_the_test_s() -> None:
    latency = {"name": "latency p95", "type": "percentile", "attribute": "latency_ms", "percentile": 95,
               "pass_below": 500, "fail_at": 1000, "actions": []}  # fmt: skip
    unanswered = rate(name="unanswered rate", actions=["kill"])
    config = parse_oracle_config(
        config_doc(actions=["alert"], kill={"workspace_id": "ws1"}, metrics=[rate(), latency, unanswered])
    )
    [test] = config.tests
    assert test.metric_actions("5xx rate") == ["alert"]  # the test's
    assert test.metric_actions("latency p95") == ["alert"]  # alert is always an action
    assert test.metric_actions("unanswered rate") == ["alert", "kill"]  # opted in on the metric
    killing = parse_oracle_config(
        config_doc(actions=["kill"], kill={"workspace_id": "ws1"}, metrics=[rate(), dict(latency, actions=["alert"])])
    ).tests[0]
    assert killing.metric_actions("5xx rate") == ["alert", "kill"]
    assert killing.metric_actions("latency p95") == ["alert"]  # kill on 5xx, only alert on latency


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
        (config_doc(metrics=[rate(actions=["kill"])]),
         "'oracle.tests.0': metrics.0.actions include kill: set the test's kill.workspace_id"),
        (config_doc(metrics=[rate(actions=["page"])]), "'oracle.tests.0.metrics.0.actions.0'"),
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
