"""The run manifest (NDJSON, streamed) and ``explain``: what a plan means, in words and numbers.

Manifest lines:

- first, ``{"type": "run", ...}``: everything needed to regenerate any case byte for byte (plan hash,
  seed, run id, clock, target, tester pool keys, file names);
- then one ``{"type": "case", ...}`` per case: ``id``, ``index``, ``route``, ``tester``, ``request``
  (sha256 of the request bytes, 16 hex), ``mutations`` (``element``, ``unit``, ``attack_set``,
  ``attack``, ``original`` → ``new``, long values shortened: the request is regenerated, never read
  back from here) and ``response`` (``status``, ``latency_ms``, ``size``, ``body_sha256`` of the
  first 16 hex, or ``error``). Dry runs have no ``response``.
- last, ``{"type": "summary", ...}``.

The writer flushes every line, so memory never grows with the run and a killed run leaves a valid
prefix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flagbridge.traffic.attacks import BUILTIN_SETS, MISSING, payload_text
from flagbridge.traffic.generator import Case, Mutation, TrafficGenerator
from flagbridge.traffic.plan import ElementRule, MapRule, TrafficPlan

SHORT = 80


def short(value: Any) -> Any:
    """A value for the manifest: JSON scalars as is, long text cut (``…(+65457 chars)``), *missing* named."""
    if value is MISSING:
        return "<missing>"
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = payload_text(value)
    if len(text) > SHORT:
        text = text[:SHORT] + f"…(+{len(text) - SHORT} chars)"
    elif not isinstance(value, str):
        return value
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate is shown as \ud800


def mutation_record(mutation: Mutation) -> dict[str, Any]:
    return {
        "element": mutation.element,
        "unit": mutation.unit_label,
        "attack_set": mutation.attack_set,
        "attack": mutation.attack,
        "original": short(mutation.original),
        "new": short(mutation.value),
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the target answered (or the transport error)."""

    status: int | None
    latency_ms: float
    size: int
    body_sha256: str
    error: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    excerpt: str = ""
    """The start of a refusal's body (4xx/5xx), to say why; empty for a success (not in the manifest)."""

    @property
    def failed(self) -> bool:
        """The default failure: a 5xx or no answer at all."""
        return self.error is not None or (self.status is not None and self.status >= 500)

    def record(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error, "latency_ms": round(self.latency_ms, 3)}
        return {
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
            "size": self.size,
            "body_sha256": self.body_sha256,
        }


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


EXCERPT_CHARS = 300


def body_excerpt(status: int, body: bytes) -> str:
    """The start of the body of a refusal (status >= 400) as text; nothing for a success."""
    return body[:EXCERPT_CHARS].decode("utf-8", "replace") if status >= 400 else ""


def case_record(case: Case, outcome: Outcome | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "case",
        "id": case.case_id,
        "index": case.index,
        "route": case.route,
        "tester": case.tester.key,
        "method": case.request.method,
        "request": hashlib.sha256(case.request.to_bytes()).hexdigest()[:16],
        "mutations": [mutation_record(mutation) for mutation in case.mutations],
    }
    if outcome is not None:
        record["response"] = outcome.record()
    return record


class ManifestWriter:
    """Writes NDJSON lines to a text stream, one flush per line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, record: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
        self.stream.flush()


def read_manifest(path: str | Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The run header and an iterator over the case records of a manifest file (ValueError naming the first line
    that is not a JSON object)."""
    handle = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed by the iterator below
    first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        handle.close()
        raise ValueError(f"{path}: not a traffic manifest (first line is not JSON)") from None
    if not isinstance(header, dict) or header.get("type") != "run":
        handle.close()
        raise ValueError(f"{path}: not a traffic manifest (no run header)")

    def cases() -> Iterator[dict[str, Any]]:
        with handle:
            for number, line in enumerate(handle, start=2):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        record = None
                    if not isinstance(record, dict):
                        raise ValueError(f"{path}: line {number} is not a JSON object")
                    if record.get("type") == "case":
                        yield record

    return header, cases()


# --------------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------------


def _percent(value: float) -> str:
    text = f"{value * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _element_words(name: str, rule: ElementRule | None, unit: str) -> str | None:
    if rule is None:
        return None
    if rule.probability == 0:
        return f"{name}: frozen (probability 0)"
    cap = (
        f"up to {rule.max_attacks} {unit}{'s' if rule.max_attacks > 1 else ''}"
        if rule.max_attacks > 1
        else f"one {unit}"
    )
    return f"{name}: mutated in {_percent(rule.probability)} of requests ({cap}, attack set {rule.attack_set})"


def _map_words(name: str, rule: MapRule | None) -> list[str]:
    if rule is None:
        return []
    lines = []
    defaults = rule.defaults
    if defaults.key_chance or defaults.value_chance or rule.overrides:
        lines.append(
            f"{name}: each name mutated with {_percent(defaults.key_chance)} ({defaults.key_attacks or '-'}), "
            f"each value with {_percent(defaults.value_chance)} ({defaults.value_attacks or '-'})"
        )
    for key, override in rule.overrides:
        never = "never" if override.key_chance == 0 else _percent(override.key_chance)
        lines.append(f"  {key}: name {never}, value {_percent(override.value_chance)}")
    if rule.element is not None:
        words = _element_words(f"{name} (as one element)", rule.element, "value")
        if words:
            lines.append(words)
    return lines


def explain(plan: TrafficPlan, generator: TrafficGenerator | None = None, warnings: Sequence[str] = ()) -> str:
    """What the plan means, in words, and (with a model) the exact expected mutations per 1,000 requests."""
    lines = [f"Traffic plan {plan.name!r} (hash {plan.plan_hash})"]
    cap = "no limit" if plan.max_attacks is None else f"at most {plan.max_attacks}"
    lines.append(f"Mutations per request: {cap}.")
    for words in (
        _element_words("Method", plan.method, "method"),
        _element_words("Host header", plan.host, "value"),
        _element_words("Path", plan.path, "segment"),
    ):
        if words:
            lines.append(words)
    lines += _map_words("Query", plan.query)
    lines += _map_words("Headers", plan.headers)
    lines += _map_words("Cookies", plan.cookies)
    for rule in plan.body:
        if rule.element is not None:
            words = _element_words(f"Body {rule.pointer}", rule.element, "value")
            if words:
                lines.append(words)
        if rule.entries is not None:
            lines += _map_words(f"Body {rule.pointer} entries", rule.entries)
    lines.append(
        "Always frozen: the tester identity ({{tester.*}} values and what contains them) and the run tag header."
    )
    if not plan.allow_destructive:
        lines.append(f"Destructive methods never sent: {', '.join(sorted(plan.destructive_methods))}.")
    lines.append("Attack sets:")
    for name, payloads in sorted(plan.attack_sets.items()):
        categories = sorted({item.category for item in payloads})
        described = [
            f"{c} ({BUILTIN_SETS[c].description})" if c in BUILTIN_SETS else f"{c} (inline)" for c in categories
        ]
        lines.append(f"  {name}: {len(payloads)} values from {', '.join(described)}")
    if generator is None:
        lines.append("Give --model for the exact expected mutations per 1,000 requests under the caps.")
    else:
        lines += _expected_lines(generator)
    if warnings:
        lines.append(f"Parse warnings ({len(warnings)}):")
        lines += [f"  {warning}" for warning in warnings]
    return "\n".join(lines)


def _expected_lines(generator: TrafficGenerator) -> list[str]:
    model = generator.model
    lines = ["Expected per 1,000 requests (exact under the caps; see flagbridge.traffic.stats):"]
    for request in model.requests:
        share = request.weight / model.total_weight
        lines.append(f"  {request.name} ({request.method} {request.path_text}, {_percent(share)} of requests):")
        rates = generator.expected_rates(request.name)
        sites = generator.sites(request.name)
        if not sites:
            lines.append("    nothing is mutated")
            continue
        width = max(len(site.element) for site in sites)
        any_mutation = 1.0
        total_attacks = 0.0
        for site in sites:
            rate = rates[site.element]
            any_mutation *= 1 - site.probability
            total_attacks += rate.attacks
            lines.append(
                f"    {site.element:<{width}}  chance {_percent(site.probability):>8}  "
                f"mutated in {rate.mutated * 1000:8.1f}  attacks {rate.attacks * 1000:8.1f}  ({site.attack_set})"
            )
        lines.append(
            f"    requests with a mutation: {(1 - any_mutation) * 1000:.1f}; attacks in all: {total_attacks * 1000:.1f}"
        )
        frozen = generator.tester_frozen(request.name)
        if frozen:
            lines.append(f"    frozen (tester identity, and what contains it): {', '.join(frozen)}")
    return lines
