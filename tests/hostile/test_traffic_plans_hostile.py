"""Hostile input to the traffic-plan readers: whatever arrives, the answer is a result or one clear error line.

Generated XML-ish text (tags, curly quotes, entities, declarations, junk), plan documents and request models
must never raise anything but the traffic errors, never print a multi-line message, and never expand an entity.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagbridge.traffic.errors import TrafficError
from flagbridge.traffic.model import parse_model
from flagbridge.traffic.plan import parse_plan
from flagbridge.traffic.planxml import xml_plan_document

PIECES = [
    "<Request",
    "<Request MaxAttacks=“3”>",
    "<Headers KeyChance=“2%” KeyAttacks=“http_methods” ValueChance='25%' ValueAttacks=\"xss\">",
    "<Authorization KeyChance=0% ValueChance=“10%” />",
    "<Cookie ",
    '<Method Probability="5%" AttackSet="http_methods"/>',
    '<Body Pointer="/a/*" Probability="1" AttackSet="xss"/>',
    "</Headers>",
    "</Request>",
    "</Nope>",
    '<!DOCTYPE x [<!ENTITY a "b">]>',
    "<!-- c -->",
    '<?xml version="1.0"?>',
    "&lol;",
    "&amp;",
    "&#x1F600;",
    "“",
    "”",
    '"',
    "'",
    "=",
    "/>",
    ">",
    "<",
    "\n",
    " ",
    "\u0000",
    "\ud800",
    "MaxAttacks=“150%”",
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
PLAN_KEYS = st.sampled_from(
    ["max_attacks", "method", "host", "path", "query", "headers", "cookies", "body", "attack_sets", "safety", "oracle"]
)
FIELDS = st.sampled_from(
    ["probability", "attack_set", "max_attacks", "key_chance", "key_attacks", "value_chance", "value_attacks", "keys",
     "pointer", "include", "values"]
)  # fmt: skip


def one_line(error: TrafficError) -> None:
    assert "\n" not in str(error) and str(error)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=40))
def test_xml_plans_never_escape_the_traffic_errors(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        document, warnings, _ = xml_plan_document(text, "h.xml")
    except TrafficError as error:
        one_line(error)
        return
    assert isinstance(document, dict) and all("\n" not in w for w in warnings)
    assert "lol" not in str(document)  # nothing was ever expanded
    try:
        parse_plan(document, "h.xml")
    except TrafficError as error:
        one_line(error)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        PLAN_KEYS, JSON | st.dictionaries(FIELDS, JSON | st.sampled_from(["5%", "150%", "-1", "xss"]), max_size=4)
    )
)
def test_plan_documents_never_escape_the_traffic_errors(document: dict[str, Any]) -> None:
    try:
        parse_plan(document, "h.yaml")
    except TrafficError as error:
        one_line(error)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "weight", "method", "url", "path_params", "query", "headers", "cookies", "body"]),
        JSON | st.sampled_from(["http://localhost/a/{id}", "{{uuid}}", "{{tester.key}}", "{{int:5..1}}", "POST"]),
    )
)
def test_models_never_escape_the_traffic_errors(request_document: dict[str, Any]) -> None:
    try:
        parse_model({"requests": [request_document]}, "h.yaml")
    except TrafficError as error:
        one_line(error)
