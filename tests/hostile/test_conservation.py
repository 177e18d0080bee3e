"""Conservation of the impressions webhook, as a property over generated mixes of valid and invalid items.

For every accepted request: items received = items enqueued + items quarantined; each quarantined item
is the original item at its index with a non-empty reason (the one its defect calls for); the enqueued
impressions are exactly the other items, in order. Bodies are sent plain or gzipped (with or without
``Content-Encoding``), as Split may.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_TOKEN, FakeLambdaContext, drain_queue, load_handler
from tests.hostile.corpus_split_impressions import ROUTE
from tests.hostile.support import Case, build_event, check_impressions_conservation, clear_quarantine

MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000
MAPPED_ENVIRONMENTS = ("Production", "Staging")
UNMAPPED_ENVIRONMENTS = ("Development", "production", "QA", "env-prod-0001-x", "Prod\u00fcction")
REQUIRED = ("key", "split", "environmentName", "treatment", "time")

# Any Unicode scalar value (no lone surrogates: those cannot be sent as UTF-8), short enough for DynamoDB keys,
# with the characters that have broken things before made likely: SQS refuses U+FFFE/U+FFFF raw.
HOSTILE_CHARACTERS = ["\uffff", "\ufffe", "\x00", "\x1b", "\u2028", "#", '"', "\\", "\U0001f600"]
text = st.text(st.characters(codec="utf-8") | st.sampled_from(HOSTILE_CHARACTERS), min_size=1, max_size=12)
optional_text = st.none() | text


@st.composite
def valid_impressions(draw: st.DrawFn, environments: tuple[str, ...] = MAPPED_ENVIRONMENTS) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": draw(text),
        "split": draw(text),
        "environmentName": draw(st.sampled_from(environments)),
        "treatment": draw(text),
        "time": draw(st.integers(MIN_TIME_MS, MAX_TIME_MS)),
    }
    optional = {
        "environmentId": st.sampled_from(["env-prod-0001", "env-stg-0001", ""]),
        "bucketingKey": optional_text,
        "label": optional_text,
        "machineName": optional_text,
        "machineIp": st.none() | st.ip_addresses(v=4).map(str),
        "splitVersionNumber": st.none() | st.integers(0, 2**53),
        "sdk": optional_text,
        "sdkVersion": optional_text,
        "properties": st.none() | st.dictionaries(text, text, max_size=3).map(json.dumps),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            item[name] = draw(strategy)
    return item


wrong_for_text = st.none() | st.integers() | st.booleans() | st.lists(st.integers(), max_size=2) | st.just({})
wrong_for_time = (
    st.none()
    | st.booleans()
    | text
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(max_value=MIN_TIME_MS - 1)
    | st.integers(min_value=MAX_TIME_MS + 1, max_value=10**18)
)
non_objects = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.lists(st.integers(), max_size=3)
)


@st.composite
def wrong_type(draw: st.DrawFn) -> dict[str, Any]:
    item = draw(valid_impressions())
    name = draw(st.sampled_from(REQUIRED))
    item[name] = draw(wrong_for_time if name == "time" else wrong_for_text)
    return item


@st.composite
def oversized(draw: st.DrawFn) -> dict[str, Any]:
    """Few characters but too many UTF-8 bytes for the profile's DynamoDB keys (key > 1024, split > 512)."""
    item = draw(valid_impressions())
    name = draw(st.sampled_from(["key", "split"]))
    character = draw(st.sampled_from(["\U0001f600", "\u00e9", "\u4e00"]))
    limit = 1024 if name == "key" else 512
    item[name] = character * (limit // len(character.encode()) + draw(st.integers(1, 3)))
    return item


@st.composite
def missing_field(draw: st.DrawFn) -> dict[str, Any]:
    item = draw(valid_impressions())
    del item[draw(st.sampled_from(REQUIRED))]
    return item


# (item, the reason it must be quarantined for, or None when it must be enqueued)
tagged_items = st.one_of(
    valid_impressions().map(lambda item: (item, None)),
    valid_impressions(UNMAPPED_ENVIRONMENTS).map(lambda item: (item, "unmapped_environment")),
    wrong_type().map(lambda item: (item, "invalid_impression")),
    missing_field().map(lambda item: (item, "invalid_impression")),
    oversized().map(lambda item: (item, "invalid_impression")),
    non_objects.map(lambda item: (item, "not_an_object")),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[tuple[Any, str | None]], str]:
    """A list of tagged items with some duplicated (same item again, anywhere), and how it is sent."""
    tagged = draw(st.lists(tagged_items, max_size=12))
    if tagged:
        for _ in range(draw(st.integers(0, 3))):
            copy = tagged[draw(st.integers(0, len(tagged) - 1))]
            tagged.insert(draw(st.integers(0, len(tagged))), copy)
    return tagged, draw(st.sampled_from(["plain", "gzip", "gzip+header"]))


def _case(items: list[Any], encoding: str, number: int) -> Case:
    body = json.dumps(items, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if encoding != "plain":
        body = gzip.compress(body, mtime=0)
    if encoding == "gzip+header":
        headers["Content-Encoding"] = "gzip"
    return Case(
        name=f"conservation-{number}",
        status=200,
        path=ROUTE.path,
        query=f"token={WEBHOOK_TOKEN}",
        headers=headers,
        body=body,
    )


def test_every_item_is_enqueued_or_quarantined_with_its_reason(shared_aws: dict[str, Any]) -> None:
    webhook = load_handler("impressions_webhook")
    context = FakeLambdaContext()
    examples = iter(range(1_000_000))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def check(request: tuple[list[tuple[Any, str | None]], str]) -> None:
        tagged, encoding = request
        items = [item for item, _ in tagged]
        drain_queue(shared_aws["sqs"], shared_aws["queue_url"])  # a failed example may have left some behind
        clear_quarantine(shared_aws["s3"])

        # When the mix is posted as Split would
        event = build_event(ROUTE, _case(items, encoding, next(examples)))
        response = webhook.lambda_handler(event, context)

        # Then: exactly 200, received = enqueued + quarantined, originals and reasons kept
        assert response["statusCode"] == 200, response["body"][:500]
        summary = json.loads(response["body"])
        _, rejected = check_impressions_conservation(items, summary, shared_aws)
        expected = {index: reason for index, (_, reason) in enumerate(tagged) if reason is not None}
        assert {entry["index"]: entry["reason"] for entry in rejected} == expected

    check()
