"""Plans: the published XML as published, its YAML twin, refusals (bombs, bad probabilities, unknown sets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flagbridge.traffic.errors import PlanError
from flagbridge.traffic.plan import load_plan, parse_plan, parse_probability
from flagbridge.traffic.planxml import parse_xml_tree, xml_plan_document
from tests.unit.traffic.conftest import EXAMPLES

PUBLISHED = (EXAMPLES / "published-plan.xml").read_text(encoding="utf-8")


def test_the_published_xml_is_read_as_published_with_every_repair_reported() -> None:
    assert "“" in PUBLISHED and "</Request>" not in PUBLISHED and "</Headers>" not in PUBLISHED
    document, warnings, _ = xml_plan_document(PUBLISHED, "published.xml")
    assert document["headers"]["keys"] == {"Authorization": {"key_chance": "0%", "value_chance": "10%"}}
    assert document["cookies"]["value_chance"] == "25%"  # <Cookie> is not a header override
    curly = [w for w in warnings if "curly quotes" in w]
    assert len(curly) == PUBLISHED.count("“")
    assert any("inferred </Headers>" in w and "<Cookie>" in w for w in warnings)
    assert any("<Request>" in w and "never closed" in w for w in warnings)


def test_the_published_xml_and_its_yaml_equivalent_are_the_same_plan() -> None:
    from_xml, warnings = load_plan(EXAMPLES / "published-plan.xml")
    from_yaml, yaml_warnings = load_plan(EXAMPLES / "published-plan.yaml")
    assert warnings and not yaml_warnings
    assert from_xml.canonical == from_yaml.canonical
    assert from_xml.plan_hash == from_yaml.plan_hash
    assert from_xml.max_attacks == 3
    assert from_xml.method is not None and from_xml.method.probability == pytest.approx(0.05)
    assert from_xml.host is not None and from_xml.host.probability == 0
    assert from_xml.headers is not None and from_xml.headers.for_key("authorization").key_chance == 0


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Request MaxAttacks="3"><Method Probability="&lol2;" AttackSet="http_methods"/></Request>"""
EXTERNAL = """<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Request><Method AttackSet="&xxe;"/></Request>"""
UNDECLARED = """<Request><Method AttackSet="&xxe;" Probability="5%"/></Request>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL, UNDECLARED], ids=["bomb", "external", "reference"])
def test_entities_are_refused_with_one_clear_line(text: str) -> None:
    with pytest.raises(PlanError) as error:
        xml_plan_document(text, "bomb.xml")
    message = str(error.value)
    assert "\n" not in message and message.startswith("bomb.xml: line ")
    assert "entit" in message.lower() and "refused" in message


def test_predefined_and_numeric_references_are_fine() -> None:
    root, _ = parse_xml_tree('<Request><Method AttackSet="a&amp;b&#33;"/></Request>')
    assert root.children[0].attributes["AttackSet"] == "a&b!"


def test_unquoted_and_unterminated_values_are_repaired_with_warnings() -> None:
    document, warnings, _ = xml_plan_document(
        '<Request MaxAttacks=2>\n<Method Probability="5% AttackSet="http_methods"/>\n'
    )
    assert document["max_attacks"] == "2"
    assert any("unquoted" in w for w in warnings)


@pytest.mark.parametrize(
    ("value", "expected"), [("5%", 0.05), ("0%", 0.0), ("100%", 1.0), (0.25, 0.25), ("0.5", 0.5), (1, 1.0)]
)
def test_probabilities(value: object, expected: float) -> None:
    assert parse_probability(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("document", "key", "fragment"),
    [
        ({"method": {"probability": "150%", "attack_set": "http_methods"}}, "'method.probability'", "150%"),
        ({"path": {"probability": -1, "attack_set": "path_traversal"}}, "'path.probability'", "-1"),
        (
            {"headers": {"keys": {"Authorization": {"value_chance": "150%"}}}},
            "'headers.keys.Authorization.value_chance'",
            "150%",
        ),
        (
            {"method": {"probability": "5%", "attack_set": "AttacksZ"}},
            "'method.attack_set'",
            "unknown attack set 'AttacksZ'",
        ),
        ({"method": {"probability": "5%"}}, "'method.attack_set'", "required"),
        ({"max_attacks": 0}, "'max_attacks'", "whole number"),
        ({"metod": {}}, "'metod'", "unknown key"),
        (
            {"body": [{"pointer": "items/*", "probability": "5%", "attack_set": "xss"}]},
            "'body.0.pointer'",
            "JSON Pointer",
        ),
        (
            {"attack_sets": {"A": {"include": ["A"]}}, "query": {"value_chance": "1%", "value_attacks": "A"}},
            "'query.value_attacks'",
            "includes itself",
        ),
    ],
)
def test_validation_errors_are_one_line_naming_the_key(document: dict, key: str, fragment: str) -> None:
    with pytest.raises(PlanError) as error:
        parse_plan(document, "plan.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"plan.yaml: {key}: "), message
    assert fragment in message


def test_an_xml_error_names_the_xml_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(PUBLISHED.replace("ValueChance=“10%”", "ValueChance=“150%”"), encoding="utf-8")
    (tmp_path / "bad.attack-sets.yaml").write_text((EXAMPLES / "published-plan.attack-sets.yaml").read_text())
    with pytest.raises(PlanError) as error:
        load_plan(path)
    assert "'headers.keys.Authorization.value_chance'" in str(error.value)
    assert "XML line 7, <Authorization ValueChance>" in str(error.value)


def test_an_xml_plan_without_its_attack_sets_names_the_unknown_set(tmp_path: Path) -> None:
    path = tmp_path / "plan.xml"
    path.write_text(PUBLISHED, encoding="utf-8")
    with pytest.raises(PlanError, match=r"'method.attack_set': unknown attack set 'AttacksA'"):
        load_plan(path)


def test_inline_and_file_sets_and_the_hash_follows_their_content(tmp_path: Path) -> None:
    base = {"method": {"probability": "5%", "attack_set": "Mine"}}
    one = parse_plan({**base, "attack_sets": {"Mine": ["GET"]}})
    two = parse_plan({**base, "attack_sets": {"Mine": ["HEAD"]}})
    assert one.plan_hash != two.plan_hash
    (tmp_path / "sets.yaml").write_text("Mine: {include: [http_methods], values: [GET]}\n")
    three = parse_plan({**base, "attack_set_files": ["sets.yaml"]}, base_dir=tmp_path)
    assert {item.category for item in three.attack_sets["Mine"]} == {"http_methods", "Mine"}
