"""The traffic plan: which parts of a request are mutated, how often, with what, and how many at most.

A plan is a YAML/JSON document (or the published XML form, :mod:`flagbridge.traffic.planxml`)::

    max_attacks: 3                          # mutations in one request, at most
    method:  {probability: 5%,  attack_set: AttacksA, max_attacks: 1}
    host:    {probability: 0%}              # 0 freezes an element
    path:    {probability: 10%, attack_set: AttackSetPath, max_attacks: 2}   # up to 2 segments
    query:   {probability: 50%, attack_set: Values, max_attacks: 2}          # up to 2 parameter values
    headers:                                # a map: each name and each value is its own element
      key_chance: 2%
      key_attacks: AttacksA
      value_chance: 25%
      value_attacks: Values
      keys:
        Authorization: {key_chance: 0%, value_chance: 10%}                   # per-key override
    cookies: {key_chance: 2%, key_attacks: AttacksA, value_chance: 25%, value_attacks: Values}
    body:                                   # JSON Pointers, * for every array item; first match wins
      - {pointer: /events/*/data/custom_attributes, key_chance: 5%, key_attacks: Values,
         value_chance: 10%, value_attacks: Values}
      - {pointer: /events/*/data/event_name, probability: 5%, attack_set: Values}
    attack_sets:                            # inline sets; built-ins are always available
      Values: {include: [boundary_numbers, type_confusion], values: ["x", {"$missing": true}]}
    attack_set_files: [more-sets.yaml]      # sets from files (paths relative to the plan)
    safety: {allow_destructive: false, destructive_methods: [PURGE]}
    oracle: {test: new-checkout-health, metrics: [5xx rate, latency p95]}   # the oracle test the results feed

``probability`` (and the chances) are ``"5%"`` or a number from 0 to 1. An element (map) with neither
a probability nor chances is never mutated. Whatever the plan says, the tester identity (every value
rendered from ``{{tester.*}}``, and the JSON nodes that contain one) and the run tag header are frozen.

Every problem is reported as one line naming the key: ``plan.yaml: 'headers.keys.Authorization.value_chance':
probability must be between 0% and 100%, got '150%'``.

``oracle`` names the oracle test the run's results feed and, optionally, which of its metrics (default: those of
its metrics that count ``flagbridge_test_request`` events: with the default metrics, the 5xx rate and the p95
latency); the test's FAIL stops the run (:mod:`flagbridge.traffic.stop`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagbridge.documents import load_document, read_file, read_text
from flagbridge.traffic.attacks import DEFAULT_DESTRUCTIVE_METHODS, Payload, payload_to_json, resolve_set
from flagbridge.traffic.errors import PlanError

_ELEMENT_KEYS = frozenset({"probability", "attack_set", "max_attacks"})
_MAP_KEYS = frozenset({"key_chance", "key_attacks", "value_chance", "value_attacks", "keys"})
_KEY_OVERRIDE_KEYS = frozenset({"key_chance", "key_attacks", "value_chance", "value_attacks"})
_TOP_KEYS = frozenset(
    {
        "flagbridge_traffic_plan",
        "name",
        "description",
        "max_attacks",
        "method",
        "host",
        "path",
        "query",
        "headers",
        "cookies",
        "body",
        "attack_sets",
        "attack_set_files",
        "safety",
        "oracle",
    }
)
_MAX_CAP = 1000


@dataclass(frozen=True, slots=True)
class ElementRule:
    """An element mutated as a whole: ``max_attacks`` of its units (segments, parameter values) at most."""

    probability: float
    attack_set: str | None
    max_attacks: int = 1


@dataclass(frozen=True, slots=True)
class KeyRule:
    """Chances for one map entry: its name (key) and its value."""

    key_chance: float
    key_attacks: str | None
    value_chance: float
    value_attacks: str | None


@dataclass(frozen=True, slots=True)
class MapRule:
    """A map (headers, cookies, query, a JSON object or array): per-entry key/value chances, overrides by key.

    ``element`` is the optional whole-element form (``probability``/``attack_set``/``max_attacks``): that
    many of the map's values are replaced together, as one element.
    """

    defaults: KeyRule
    overrides: tuple[tuple[str, KeyRule], ...] = ()
    element: ElementRule | None = None
    case_insensitive: bool = False

    def for_key(self, key: str) -> KeyRule:
        wanted = key.lower() if self.case_insensitive else key
        for name, rule in self.overrides:
            if (name.lower() if self.case_insensitive else name) == wanted:
                return rule
        return self.defaults


@dataclass(frozen=True, slots=True)
class BodyRule:
    """Rules for the JSON body nodes a pointer matches (``*`` matches every array item / object member)."""

    pointer: str
    tokens: tuple[str, ...]
    element: ElementRule | None
    entries: MapRule | None


@dataclass(frozen=True)
class TrafficPlan:
    """A validated traffic plan. :attr:`plan_hash` identifies it (canonical form, attack sets resolved)."""

    max_attacks: int | None
    method: ElementRule | None
    host: ElementRule | None
    path: ElementRule | None
    query: MapRule | None
    headers: MapRule | None
    cookies: MapRule | None
    body: tuple[BodyRule, ...]
    attack_sets: Mapping[str, tuple[Payload, ...]]
    allow_destructive: bool
    destructive_methods: frozenset[str]
    oracle: Mapping[str, Any]
    name: str
    canonical: Mapping[str, Any] = field(repr=False)
    plan_hash: str = ""

    @property
    def blocked_methods(self) -> frozenset[str]:
        """Methods no request and no mutation may use in this plan."""
        return frozenset() if self.allow_destructive else self.destructive_methods


# --------------------------------------------------------------------------------------------------
# Value parsing
# --------------------------------------------------------------------------------------------------


def parse_probability(value: Any) -> float:
    """``"5%"`` → 0.05; a number from 0 to 1 as is. ValueError otherwise (150%, -1, "often")."""
    if isinstance(value, bool):
        raise ValueError(f"probability must be a percentage like '5%' or a number from 0 to 1, got {value!r}")
    number: float
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1].strip()) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"probability must be a percentage like '5%' or a number from 0 to 1, got {value!r}"
            ) from None
    else:
        raise ValueError(f"probability must be a percentage like '5%' or a number from 0 to 1, got {value!r}")
    if not math.isfinite(number) or number < 0 or number > 1:
        raise ValueError(f"probability must be between 0% and 100%, got {value!r}")
    return number


def _parse_cap(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_CAP:
        raise ValueError(f"max_attacks must be a whole number from 1 to {_MAX_CAP}, got {value!r}")
    return value


class _Reader:
    """Reads a plan document, turning every problem into one PlanError line naming the key."""

    def __init__(self, source: str, locations: Mapping[str, str] | None) -> None:
        self.source = source
        self.locations = locations or {}
        self.set_names: dict[str, None] = {}  # in order of first use

    def fail(self, key: str, message: str) -> PlanError:
        where = self.locations.get(key)
        suffix = f" ({where})" if where else ""
        return PlanError(f"{self.source}: '{key}': {message}{suffix}")

    def mapping(self, value: Any, key: str, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(str(name) for name in value if name not in allowed)
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0],
                f"unknown key; expected one of {', '.join(sorted(allowed))}",
            )
        return value

    def probability(self, document: Mapping[str, Any], name: str, key: str, default: float = 0.0) -> float:
        if name not in document or document[name] is None:
            return default
        try:
            return parse_probability(document[name])
        except ValueError as exc:
            raise self.fail(f"{key}.{name}", str(exc)) from None

    def set_name(self, document: Mapping[str, Any], name: str, key: str, needed: bool) -> str | None:
        value = document.get(name)
        if value is None:
            if needed:
                raise self.fail(f"{key}.{name}", "an attack set is required when the chance is above 0%")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}", f"must be an attack set name, got {value!r}")
        self.set_names.setdefault(value.strip(), None)
        return value.strip()

    def element(self, document: Any, key: str) -> ElementRule | None:
        if document is None:
            return None
        body = self.mapping(document, key, _ELEMENT_KEYS)
        probability = self.probability(body, "probability", key)
        attack_set = self.set_name(body, "attack_set", key, probability > 0)
        cap = 1
        if body.get("max_attacks") is not None:
            try:
                cap = _parse_cap(body["max_attacks"])
            except ValueError as exc:
                raise self.fail(f"{key}.max_attacks", str(exc)) from None
        return ElementRule(probability, attack_set, cap)

    def key_rule(self, document: Mapping[str, Any], key: str, defaults: KeyRule | None) -> KeyRule:
        base = defaults or KeyRule(0.0, None, 0.0, None)
        key_chance = self.probability(document, "key_chance", key, base.key_chance)
        value_chance = self.probability(document, "value_chance", key, base.value_chance)
        key_attacks = self.set_name(document, "key_attacks", key, False) or base.key_attacks
        value_attacks = self.set_name(document, "value_attacks", key, False) or base.value_attacks
        if key_chance > 0 and key_attacks is None:
            raise self.fail(f"{key}.key_attacks", "an attack set is required when key_chance is above 0%")
        if value_chance > 0 and value_attacks is None:
            raise self.fail(f"{key}.value_attacks", "an attack set is required when value_chance is above 0%")
        return KeyRule(key_chance, key_attacks, value_chance, value_attacks)

    def map_rule(
        self, document: Any, key: str, case_insensitive: bool, extra: frozenset[str] = frozenset()
    ) -> MapRule | None:
        if document is None:
            return None
        body = self.mapping(document, key, _MAP_KEYS | _ELEMENT_KEYS | extra)
        defaults = self.key_rule(body, key, None)
        overrides: list[tuple[str, KeyRule]] = []
        keys = body.get("keys") or {}
        keys = self.mapping(
            keys, f"{key}.keys", frozenset(str(name) for name in keys) if isinstance(keys, dict) else frozenset()
        )
        for name, override in keys.items():
            where = f"{key}.keys.{name}"
            overrides.append(
                (str(name), self.key_rule(self.mapping(override or {}, where, _KEY_OVERRIDE_KEYS), where, defaults))
            )
        element = None
        if _ELEMENT_KEYS & set(body):
            element = self.element({name: body[name] for name in _ELEMENT_KEYS if name in body}, key)
        return MapRule(defaults, tuple(overrides), element, case_insensitive)

    def body_rules(self, document: Any) -> tuple[BodyRule, ...]:
        if document is None:
            return ()
        if not isinstance(document, list):
            raise self.fail("body", "must be a list of pointer rules")
        rules = []
        for index, item in enumerate(document):
            key = f"body.{index}"
            body = self.mapping(item, key, _MAP_KEYS | _ELEMENT_KEYS | {"pointer"})
            pointer = body.get("pointer")
            if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
                raise self.fail(f"{key}.pointer", f"must be a JSON Pointer like '/items/*/quantity', got {pointer!r}")
            tokens = tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:])
            element = None
            if _ELEMENT_KEYS & set(body):
                element = self.element({name: body[name] for name in _ELEMENT_KEYS if name in body}, key)
            entries = None
            if _MAP_KEYS & set(body):
                entries = self.map_rule({name: body[name] for name in _MAP_KEYS if name in body}, key, False)
            rules.append(BodyRule(pointer, tokens, element, entries))
        return tuple(rules)


def _load_set_file(path: Path, source: str) -> dict[str, Any]:
    text = read_text(path, f"the attack set file named by {source}", PlanError)
    fmt = "json" if path.suffix == ".json" else "yaml"
    document = load_document(text, fmt, f"{source}: 'attack_set_files': {path}", PlanError)
    if isinstance(document, dict) and "attack_sets" in document:
        document = document["attack_sets"]
    if not isinstance(document, dict):
        raise PlanError(f"{source}: 'attack_set_files': {path} must map attack set names to values")
    return document


def _canonical_element(rule: ElementRule | None) -> Any:
    if rule is None:
        return None
    return {"probability": rule.probability, "attack_set": rule.attack_set, "max_attacks": rule.max_attacks}


def _canonical_key(rule: KeyRule) -> Any:
    return [rule.key_chance, rule.key_attacks, rule.value_chance, rule.value_attacks]


def _canonical_map(rule: MapRule | None) -> Any:
    if rule is None:
        return None
    return {
        "defaults": _canonical_key(rule.defaults),
        "overrides": [[name, _canonical_key(item)] for name, item in rule.overrides],
        "element": _canonical_element(rule.element),
        "case_insensitive": rule.case_insensitive,
    }


_ORACLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # the oracle's test names


def _oracle_section(reader: _Reader, value: Any) -> dict[str, Any]:
    """``{test, metrics?}``: the oracle test the run's results feed and, optionally, which of its metrics.

    Only the shape is checked here; that the test and its metrics exist, and take the run's results, is checked
    against the bridge's configuration before a run (:func:`flagbridge.oracle.feeds.traffic_feed`).
    """
    if value is None:
        return {}
    section = reader.mapping(value, "oracle", frozenset({"test", "metrics"}))
    test = section.get("test")
    if not isinstance(test, str) or not _ORACLE_NAME.match(test):
        raise reader.fail("oracle.test", f"must name an oracle test (letters, digits, '_.-'), got {test!r}")
    if "metrics" not in section:
        return {"test": test}
    metrics = section["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m.strip() for m in metrics):
        raise reader.fail("oracle.metrics", f"must be a non-empty list of the test's metric names, got {metrics!r}")
    repeated = sorted({m for m in metrics if metrics.count(m) > 1})
    if repeated:
        raise reader.fail("oracle.metrics", f"names {repeated[0]!r} twice")
    return {"test": test, "metrics": [str(m) for m in metrics]}


def parse_plan(
    document: Any,
    source: str = "<plan>",
    base_dir: Path | None = None,
    extra_set_files: tuple[Path, ...] = (),
    locations: Mapping[str, str] | None = None,
) -> TrafficPlan:
    """Validate a parsed plan document and resolve its attack sets; PlanError names the offending key."""
    reader = _Reader(source, locations)
    top = reader.mapping(document if document is not None else {}, "", _TOP_KEYS)
    cap = _max_attacks(reader, top)
    method = reader.element(top.get("method"), "method")
    host = reader.element(top.get("host"), "host")
    path = reader.element(top.get("path"), "path")
    query = reader.map_rule(top.get("query"), "query", False)
    headers = reader.map_rule(top.get("headers"), "headers", True)
    cookies = reader.map_rule(top.get("cookies"), "cookies", False)
    body = reader.body_rules(top.get("body"))
    definitions = _set_definitions(reader, top, source, base_dir, extra_set_files)
    resolved: dict[str, tuple[Payload, ...]] = {}
    for name in reader.set_names:  # the sets the rules above use, and only those
        try:
            resolved[name] = resolve_set(name, definitions, source)
        except ValueError as exc:
            raise reader.fail(_first_use(top, name), str(exc)) from None
    allow, destructive = _safety(reader, top)
    oracle = _oracle_section(reader, top.get("oracle"))
    name = top.get("name") or Path(source).stem

    canonical = {
        "max_attacks": cap,
        "method": _canonical_element(method),
        "host": _canonical_element(host),
        "path": _canonical_element(path),
        "query": _canonical_map(query),
        "headers": _canonical_map(headers),
        "cookies": _canonical_map(cookies),
        "body": [
            {
                "pointer": rule.pointer,
                "element": _canonical_element(rule.element),
                "entries": _canonical_map(rule.entries),
            }
            for rule in body
        ],
        "attack_sets": {
            set_name: [[payload_to_json(item.value), item.category] for item in payloads]
            for set_name, payloads in sorted(resolved.items())
        },
        "allow_destructive": allow,
        "destructive_methods": sorted(destructive),
    }
    digest = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    ).hexdigest()[:16]
    return TrafficPlan(
        max_attacks=cap,
        method=method,
        host=host,
        path=path,
        query=query,
        headers=headers,
        cookies=cookies,
        body=body,
        attack_sets=resolved,
        allow_destructive=allow,
        destructive_methods=frozenset(destructive),
        oracle=dict(oracle),
        name=str(name),
        canonical=canonical,
        plan_hash=digest,
    )


def _max_attacks(reader: _Reader, top: Mapping[str, Any]) -> int | None:
    if top.get("max_attacks") is None:
        return None
    try:
        return _parse_cap(top["max_attacks"])
    except ValueError as exc:
        raise reader.fail("max_attacks", str(exc)) from None


def _set_definitions(
    reader: _Reader, top: Mapping[str, Any], source: str, base_dir: Path | None, extra_set_files: tuple[Path, ...]
) -> dict[str, Any]:
    """The attack set definitions by name: the files' (extra ones first, then the listed), then the inline ones."""
    definitions: dict[str, Any] = {}
    files = [*extra_set_files]
    listed = top.get("attack_set_files") or []
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise reader.fail("attack_set_files", "must be a list of file paths")
    files.extend((base_dir or Path(".")) / item for item in listed)
    for file in files:
        for name, definition in _load_set_file(file, source).items():
            definitions[str(name)] = definition
    inline = top.get("attack_sets") or {}
    if not isinstance(inline, dict):
        raise reader.fail("attack_sets", "must map attack set names to a list of values or {include, values}")
    definitions.update({str(name): value for name, value in inline.items()})
    return definitions


def _safety(reader: _Reader, top: Mapping[str, Any]) -> tuple[bool, frozenset[str]]:
    """Whether destructive methods are allowed, and the methods that are destructive."""
    safety = reader.mapping(top.get("safety") or {}, "safety", frozenset({"allow_destructive", "destructive_methods"}))
    allow = safety.get("allow_destructive", False)
    if not isinstance(allow, bool):
        raise reader.fail("safety.allow_destructive", f"must be true or false, got {allow!r}")
    extra_methods = safety.get("destructive_methods") or []
    if not isinstance(extra_methods, list) or not all(isinstance(item, str) for item in extra_methods):
        raise reader.fail("safety.destructive_methods", "must be a list of HTTP methods")
    return allow, DEFAULT_DESTRUCTIVE_METHODS | {item.upper() for item in extra_methods}


def _first_use(top: Mapping[str, Any], set_name: str) -> str:
    """The dotted key that first names ``set_name`` (for the error message)."""

    def walk(value: Any, key: str) -> str | None:
        if isinstance(value, dict):
            for name, item in value.items():
                if name in ("attack_set", "key_attacks", "value_attacks") and item == set_name:
                    return f"{key}.{name}" if key else str(name)
                found = walk(item, f"{key}.{name}" if key else str(name))
                if found:
                    return found
        elif isinstance(value, list):
            for index, item in enumerate(value):
                found = walk(item, f"{key}.{index}")
                if found:
                    return found
        return None

    return walk({k: v for k, v in top.items() if k != "attack_sets"}, "") or "attack_sets"


def load_plan(path: str | Path, attack_set_files: tuple[Path, ...] = ()) -> tuple[TrafficPlan, list[str]]:
    """Read a plan file (``.yaml``/``.yml``, ``.json`` or ``.xml``); return the plan and the parse warnings.

    An XML plan (which cannot name attack set files, as published) also reads ``<stem>.attack-sets.yaml``
    next to it when that file exists, plus any ``attack_set_files`` given.
    """
    plan_path = Path(path)
    source = str(plan_path)
    raw = read_file(plan_path, "the plan", PlanError)
    warnings: list[str] = []
    locations: dict[str, str] = {}
    files = tuple(attack_set_files)
    if plan_path.suffix.lower() == ".xml":
        from flagbridge.traffic.planxml import xml_plan_document

        document, warnings, locations = xml_plan_document(raw, source)
        sidecar = plan_path.with_name(plan_path.stem + ".attack-sets.yaml")
        if sidecar.exists():
            files = (sidecar, *files)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(f"{source}: not UTF-8 text: {exc}") from exc
        document = load_document(text, "json" if plan_path.suffix.lower() == ".json" else "yaml", source, PlanError)
    plan = parse_plan(document, source, plan_path.parent, files, locations)
    return plan, warnings
