"""The one ``Retry-After`` parser (:func:`flagbridge.backoff.parse_retry_after`) treats every malformed value as absent.

A target's or a vendor's header is untrusted input: the traffic worker, the results sink and the Split clients
all read it through this parser, so a value it cannot read must give None (the caller's default), never raise.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagbridge.backoff import parse_retry_after
from flagbridge.traffic.manifest import Outcome
from flagbridge.traffic.sender import retry_after_seconds

NOW = 1445412480.0


@pytest.mark.parametrize(
    "header",
    [
        "²",  # str.isdigit() is true, int() and float() refuse it: once a ValueError in the traffic worker
        "٣",  # float() reads Arabic-Indic digits: not delay-seconds
        "1_000",
        "1e3",
        "nan",
        "inf",
        "0x10",
        "\x00",
        "9" * 5000,
        "Wed, 32 Oct 2015 07:28:10 GMT",
        "Wed, 21 Oct 99999 07:28:10 GMT",
        "soon",
    ],
)
def test_a_malformed_retry_after_is_absent(header: str) -> None:
    assert parse_retry_after(header, NOW) is None
    outcome = Outcome(429, 1.0, 0, "", headers=(("retry-after", header),))
    assert retry_after_seconds(outcome, default=4.0, now=NOW) == 4.0


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(max_size=40))
def test_no_header_value_raises(header: str) -> None:
    seconds = parse_retry_after(header, NOW)
    assert seconds is None or seconds >= 0.0


def test_well_formed_values_still_parse() -> None:
    assert parse_retry_after(" 7 ", NOW) == 7.0
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after("-5", NOW) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", NOW) == 10.0
