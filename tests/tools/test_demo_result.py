"""What the demo reports of the receivers after its run: the run's Split events, duplicates, analytics batches,
kills and segments of the demo, and a problem for any key outside the tester pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.demo.run import FLAG, TESTERS, _demo_result

RUN = "demo-3"


def _event(kind: str, key: str, **properties: Any) -> dict[str, Any]:
    return {"eventTypeId": kind, "key": key, "properties": properties}


def test_the_result_counts_what_the_receivers_got_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGBRIDGE_LOCAL_PARAM_AnalyticsWebhookUrl", "http://receiver/hooks/analytics/")
    tester = TESTERS[0]
    snapshot = {
        "split_events": [
            _event("flagbridge_test_request", tester, run_id=RUN, case_id="c1"),
            _event("flagbridge_test_request", tester, run_id=RUN, case_id="c1"),  # a duplicate
            _event("checkout", tester, flagbridge_run=RUN, flagbridge_case="c1"),
            _event("checkout", "someone-else", flagbridge_run=RUN, flagbridge_case="c2"),
            _event("checkout", tester, flagbridge_run="demo-2", flagbridge_case="c1"),  # another run
        ],
        "webhooks": {
            "/hooks/analytics?x=1": [{"events": [{}, {}], "run": RUN}, {"events": [{}]}, "not a batch"],
            "/hooks/other": [{"events": [{}], "run": RUN}],
        },
        "kills": [{"flag": FLAG, "n": 0}, {"flag": FLAG, "n": 1}, {"flag": "other"}],
        "segments": {"Production/testers": [tester, "x"], "Production/others": ["x"]},
    }
    result = _demo_result(
        snapshot,
        run_id=RUN,
        service={"url": "http://service", "flag_version": "3"},
        service_stats={"requests": 3},
        run={"summary": {}},
        test={"state": "PASS"},
        kills_before=1,
        html=Path("report.html"),
        manifest=Path("demo-3.ndjson"),
        started=0.0,
    )
    assert (result.run_id, result.service_url, result.flag_version) == (RUN, "http://service", 3)
    assert result.split_events == {"flagbridge_test_request": 2, "checkout": 2}
    assert result.split_keys == sorted([tester, "someone-else"])
    assert result.split_duplicates == 1
    assert (result.analytics_events, result.analytics_events_of_run) == (3, 2)
    assert result.kills == [{"flag": FLAG, "n": 1}]
    assert result.segments == {"Production/testers": [tester, "x"]}
    assert result.problems == ["Split received events of keys outside the tester pool: ['someone-else']"]
