"""``flagbridge traffic ... --stack``'s client of the run API (``flagbridge_ops.traffic_aws.call``) over real HTTP.

It answers with the status and the JSON body, and a redirect is an answer, never followed: the bearer token must
not go to wherever a ``Location`` points (``urlopen``, used before, followed a GET's redirect with its headers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from flagbridge_ops.errors import CliError
from flagbridge_ops.traffic_aws import Stack, call
from tests.fixtures.redirects import redirecting_servers

TOKEN = "run-api-token-under-test"
RUNNING = {"run_id": "r-1", "state": "running"}


@pytest.fixture
def servers() -> Iterator[tuple[str, list[Any], list[Any]]]:
    with redirecting_servers(json.dumps(RUNNING).encode()) as (base, seen, other_seen):
        yield base + "/runs", seen, other_seen


def test_the_status_and_json_body_come_back_with_the_token_sent(servers: tuple[str, list[Any], list[Any]]) -> None:
    api, api_seen, _ = servers
    status, body = call(Stack(api=api, token=TOKEN), "POST", "", {"requests": 10})
    assert (status, body) == (200, RUNNING)
    assert api_seen == [("POST", "/runs", f"Bearer {TOKEN}")]


def test_a_redirect_is_answered_not_followed_and_the_token_stays(servers: tuple[str, list[Any], list[Any]]) -> None:
    # Given a run API that redirects a run's status to another host
    api, api_seen, other_seen = servers

    # When the CLI asks for that status
    status, body = call(Stack(api=api, token=TOKEN), "GET", "/moved")

    # Then the 302 is the answer, and the other host saw nothing, least of all the token
    assert (status, body) == (302, RUNNING)  # the redirect's own answer, as it came
    assert api_seen == [("GET", "/runs/moved", f"Bearer {TOKEN}")]
    assert other_seen == []


def test_no_answer_is_one_clear_line() -> None:
    with pytest.raises(CliError, match=r"^cannot reach the run API at http://127\.0\.0\.1:9/runs/r1: "):
        call(Stack(api="http://127.0.0.1:9/runs", token=TOKEN), "GET", "/r1")


def test_an_answer_that_is_no_json_object_is_named_not_a_crash(servers: tuple[str, list[Any], list[Any]]) -> None:
    api, _, _ = servers
    status, body = call(Stack(api=api, token=TOKEN), "GET", "/listed")
    assert (status, body["error"]) == (502, "not_a_json_object") and "not" in body["message"]
