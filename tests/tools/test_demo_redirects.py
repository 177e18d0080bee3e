"""The local tools' HTTP clients over real HTTP: a redirect is an answer, never followed with their credentials.

``urlopen`` follows a POST's 302 (as a GET) and a GET's redirect keeping the request's Authorization header, so
the demo service's mParticle Basic credentials, the demo driver's and the local runner's bearer tokens went
wherever a ``Location`` pointed. Two local servers stand for the bridge and the other host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.demo.run import BridgeClient
from local.demo.service import http_post
from local.runner.bridge import LocalBridge
from tests.fixtures.redirects import redirecting_servers

CREDENTIALS = "Basic a2V5OnNlY3JldA=="
ORACLE_TOKEN = "oracle-token-under-test"


@pytest.fixture
def servers() -> Iterator[tuple[str, list[Any], list[Any]]]:
    with redirecting_servers() as found:
        yield found


def test_the_service_posts_its_events_with_its_credentials(servers: tuple[str, list[Any], list[Any]]) -> None:
    bridge, bridge_seen, _ = servers
    assert http_post(bridge + "/mparticle/v2/bulkevents", b"[]", {"Authorization": CREDENTIALS}) == 200
    assert bridge_seen == [("POST", "/mparticle/v2/bulkevents", CREDENTIALS)]


def test_the_services_credentials_do_not_follow_a_redirect(servers: tuple[str, list[Any], list[Any]]) -> None:
    # Given a bridge that redirects the Events API to another host
    bridge, bridge_seen, other_seen = servers

    # When the sample service posts its events with mParticle's Basic credentials
    status = http_post(bridge + "/moved", b"[]", {"Authorization": CREDENTIALS})

    # Then the 302 is the answer, and the other host saw nothing, least of all the credentials
    assert other_seen == []
    assert status == 302
    assert bridge_seen == [("POST", "/moved", CREDENTIALS)]


def test_nothing_answering_is_status_0() -> None:
    assert http_post("http://127.0.0.1:9/mparticle/v2/bulkevents", b"[]", {}) == 0


def test_the_drivers_oracle_token_does_not_follow_a_redirect(servers: tuple[str, list[Any], list[Any]]) -> None:
    # Given a bridge that redirects the oracle API to another host
    bridge, bridge_seen, other_seen = servers

    # When the demo driver reads the test's verdict with the oracle API token
    with pytest.raises(RuntimeError, match=r"^GET /tests/\S+ answered 302"):
        BridgeClient(bridge + "/moved", ORACLE_TOKEN).test()

    # Then the other host saw nothing, least of all the token
    assert other_seen == []
    assert [(method, authorization) for method, _, authorization in bridge_seen] == [("GET", f"Bearer {ORACLE_TOKEN}")]


def test_the_driver_reads_the_bridges_json(servers: tuple[str, list[Any], list[Any]]) -> None:
    bridge, bridge_seen, _ = servers
    assert BridgeClient(bridge, ORACLE_TOKEN).test() == {}
    assert bridge_seen[0][2] == f"Bearer {ORACLE_TOKEN}"


def _runner(bridge: str) -> LocalBridge:
    return LocalBridge(port=int(bridge.rsplit(":", 1)[1]), endpoint_url="http://127.0.0.1:5000")  # not started


def test_the_runners_profile_token_does_not_follow_a_redirect(servers: tuple[str, list[Any], list[Any]]) -> None:
    # Given a bridge URL whose profile route redirects to another host
    bridge, bridge_seen, other_seen = servers

    # When the local runner reads a profile with the profile API token
    status, _ = _runner(bridge).request("GET", "/moved/profiles/user/u-1", headers={"Authorization": "Bearer p"})

    # Then the 302 is the answer, and the other host saw nothing, least of all the token
    assert other_seen == []
    assert status == 302
    assert bridge_seen == [("GET", "/moved/profiles/user/u-1", "Bearer p")]


def test_the_runner_reads_json_and_text_answers(servers: tuple[str, list[Any], list[Any]]) -> None:
    bridge, bridge_seen, _ = servers
    assert _runner(bridge).request("POST", "/split/impressions?token=t", b"[]") == (200, {})
    assert bridge_seen == [("POST", "/split/impressions?token=t", None)]
