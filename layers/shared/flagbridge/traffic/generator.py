"""Generation: ``(plan hash, seed, case index)`` → one request, its mutations, byte for byte the same anywhere.

Each case has its own random stream, ``CaseRandom(sha256(plan_hash | seed | index))``, so case 7 is
the same whether it is generated first, alone, on another machine or in a replay. From that stream,
in this order: the model request (by weight), the tester (uniform over the pool), the template
values, one firing draw per element, then the order, attack counts, units and payloads of the fired
elements (:mod:`flagbridge.traffic.stats` documents the selection and proves its frequencies).

The rest of the request is fixed by the *run context*, recorded in the manifest's first line: the
run id, the clock (``{{now}}``), the target and the run tag key. Same plan, model, pool and run
context → byte-identical requests (:meth:`WireRequest.to_bytes`).

Elements (the names used in the manifest and ``explain``):

- ``method``, ``host`` (the Host header; the connection always goes to the allowlisted target),
  ``path`` (units: its segments), ``query`` (whole-element form, units: the parameter values);
- per map entry: ``query.<name>.key|value``, ``headers.<Name>.key|value``, ``cookies.<name>.key|value``,
  and the whole-element form ``headers`` / ``cookies`` (units: all values);
- JSON body: ``body:/events/0/data/event_name`` (a node replaced), ``body:/…/plan#key`` (a key renamed).

Frozen whatever the plan says: every unit rendered from ``{{tester.*}}`` (and the JSON nodes and keys
above one), and the run tag header, which is added after mutation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from flagbridge.traffic.attacks import MISSING, Payload, fits, payload_text
from flagbridge.traffic.errors import PlanError, SafetyError
from flagbridge.traffic.model import (
    CaseRandom,
    RenderContext,
    RequestModel,
    RequestTemplate,
    Template,
    Tester,
    climbs,
    render_body,
    render_text,
)
from flagbridge.traffic.plan import ElementRule, KeyRule, MapRule, TrafficPlan
from flagbridge.traffic.stats import SiteOdds, SiteRate, mutation_rates, uniform_counts

PATH_SAFE = "!$&'()*+,;=:@-._~%/"
QUERY_SAFE = "!$'()*+,;:@-._~%/?"
RUN_TAG_HEADER = "X-Flagbridge-Run"
USER_AGENT = "flagbridge-traffic/1"


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests are sent: overrides the model's scheme, host and port; its path is a prefix."""

    scheme: str
    host: str
    port: int
    base_path: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        """The target URL, refused (one SafetyError) unless it is ``http(s)://host[:port][/path]``, port 1-65535."""
        shown = repr(url[:200])
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError: a port out of range or not a number (host:1:2)
        except ValueError as exc:
            raise SafetyError(f"--target must be an http(s) URL, got {shown}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SafetyError(f"--target must be an http(s) URL, got {shown}")
        if port == 0 or parts.username is not None or parts.password is not None:
            raise SafetyError(
                f"--target must be an http(s) URL with a port from 1 to 65535 and no credentials, got {shown}"
            )
        if parts.query or parts.fragment:
            raise SafetyError(f"--target must not carry a query or fragment, got {shown}")
        if climbs(parts.path):
            raise SafetyError(
                f"--target must not carry . or .. path segments (a server resolves them out of an allowed path "
                f"prefix), got {shown}"
            )
        return cls(
            parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.path.rstrip("/")
        )

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Site:
    """One mutable element of a model request: its chance, payloads (fit for its context) and units."""

    element: str
    probability: float
    attack_set: str
    payloads: tuple[Payload, ...]
    units: tuple[tuple[Any, ...], ...]
    max_attacks: int

    @property
    def odds(self) -> SiteOdds:
        return SiteOdds(self.probability, uniform_counts(self.max_attacks, len(self.units)))


@dataclass(frozen=True, slots=True)
class Mutation:
    """One attack applied to one unit (the manifest keeps ``original`` → ``value``)."""

    element: str
    unit: tuple[Any, ...]
    attack_set: str
    attack: str
    payload_index: int
    value: Any
    original: Any

    @property
    def unit_label(self) -> str:
        return unit_label(self.unit)


def unit_label(unit: tuple[Any, ...]) -> str:
    kind = unit[0]
    if kind == "body":
        pointer = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in unit[1])
        return f"body:{pointer or '/'}" + ("#key" if unit[2] == "key" else "")
    if kind in ("query", "headers", "cookies"):
        return f"{kind}[{unit[1]}].{'key' if unit[2] == 0 else 'value'}"
    if kind == "path":
        return f"path[{unit[1]}]"
    return str(kind)


@dataclass(frozen=True, slots=True)
class WireRequest:
    """A request exactly as it goes on the wire (HTTP/1.1), plus where to connect."""

    method: str
    scheme: str
    connect_host: str
    connect_port: int
    target: str
    headers: tuple[tuple[str, bytes], ...]
    body: bytes

    def to_bytes(self) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1".encode("ascii", "backslashreplace")]
        lines += [name.encode("ascii") + b": " + value for name, value in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        port = "" if self.connect_port == default else f":{self.connect_port}"
        return f"{self.scheme}://{self.connect_host}{port}{self.target}"

    def header(self, name: str) -> bytes | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def curl(self) -> str:
        """A ``curl`` command that sends these bytes (``--path-as-is``, body from a here-string)."""

        parts = ["curl", "-sS", "--path-as-is", "-X", _shell(self.method.encode()), _shell(self.url.encode())]
        for name, value in self.headers:
            if name.lower() == "content-length":
                continue
            parts += ["-H", _shell(name.encode() + b": " + value) if value else _shell(name.encode() + b";")]
        if self.body:
            parts += ["--data-binary", _shell(self.body)]
        return " ".join(parts)


def _shell(data: bytes) -> str:
    """One shell word for ``data``: '...' when it is printable ASCII, else $'...' with \\xHH escapes."""
    if all(32 <= byte < 127 for byte in data):
        return "'" + data.decode("ascii").replace("'", "'\\''") + "'"
    escaped = "".join(chr(byte) if 32 <= byte < 127 and byte not in (39, 92) else f"\\x{byte:02x}" for byte in data)
    return "$'" + escaped + "'"


@dataclass(frozen=True)
class Case:
    """One generated case: which request, which tester, which mutations, and the bytes."""

    index: int
    case_id: str
    route: str
    tester: Tester
    mutations: tuple[Mutation, ...]
    request: WireRequest


@dataclass
class _Draft:
    method: str
    host: Any
    path: list[Any]
    query: list[list[Any]]
    headers: list[list[Any]]
    cookies: list[list[Any]]
    body: Any
    has_body: bool
    body_text: str | None
    body_missing: bool = False  # a MISSING was written into the body: strip it when serialising


@dataclass
class _Compiled:
    template: RequestTemplate
    sites: tuple[Site, ...]
    rates: tuple[SiteRate, ...] = field(default=())


def _header_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _quote(text: str, safe: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _strip_missing(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _strip_missing(item) for key, item in value.items() if item is not MISSING}
    if isinstance(value, list):
        return [_strip_missing(item) for item in value if item is not MISSING]
    return value


def _body_nodes(value: Any, tokens: Sequence[str], path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The nodes a pointer (``*`` for every item/member) matches, in document order."""
    if not tokens:
        yield path, value
        return
    head, rest = tokens[0], tokens[1:]
    if isinstance(value, dict):
        if head == "*":
            for key, item in value.items():
                yield from _body_nodes(item, rest, (*path, key))
        elif head in value:
            yield from _body_nodes(value[head], rest, (*path, head))
    elif isinstance(value, list):
        if head == "*":
            for index, item in enumerate(value):
                yield from _body_nodes(item, rest, (*path, index))
        elif head.isdigit() and int(head) < len(value):
            yield from _body_nodes(value[int(head)], rest, (*path, int(head)))


class TrafficGenerator:
    """Builds cases from a plan, a model and a tester pool; pure (no I/O, no clock of its own)."""

    def __init__(
        self,
        plan: TrafficPlan,
        model: RequestModel,
        testers: Sequence[Tester],
        *,
        seed: int,
        run_id: str,
        clock_ms: int,
        target: Target | None = None,
        run_tag: Any = None,
    ) -> None:
        if not testers:
            raise SafetyError("the tester pool is empty: every request must be a tester's")
        self.plan = plan
        self.model = model
        self.testers = tuple(testers)
        self.seed = seed
        self.run_id = run_id
        self.clock_ms = clock_ms
        self.target = target
        self.run_tag = run_tag
        self._seed_prefix = f"{plan.plan_hash}|{seed}|".encode()
        blocked = plan.blocked_methods
        for request in model.requests:
            if request.method.upper() in blocked:
                raise SafetyError(
                    f"request {request.name!r} uses {request.method}, a destructive method: "
                    "set safety.allow_destructive: true in the plan to opt in"
                )
        self._payload_cache: dict[tuple[str, str], tuple[Payload, ...]] = {}
        self._compiled = {request.name: self._compile(request) for request in model.requests}

    # --- compile: the elements of each model request -------------------------------------------

    def _payloads(self, set_name: str, context: str, element: str) -> tuple[Payload, ...]:
        key = (set_name, context)
        cached = self._payload_cache.get(key)
        if cached is None:
            blocked = self.plan.blocked_methods
            tag = self.run_tag.header.lower() if self.run_tag is not None else None
            cached = tuple(
                item
                for item in self.plan.attack_sets[set_name]
                if fits(context, item.value, blocked)
                and not (context == "header_name" and tag is not None and payload_text(item.value).lower() == tag)
            )
            if not cached:
                raise PlanError(
                    f"attack set {set_name!r} has no value that can be sent as {context.replace('_', ' ')} "
                    f"(element {element})"
                )
            self._payload_cache[key] = cached
        return cached

    def _site(self, element: str, rule: ElementRule, context: str, units: list[tuple[Any, ...]]) -> Site | None:
        if rule.probability <= 0 or not units or rule.attack_set is None:
            return None
        payloads = self._payloads(rule.attack_set, context, element)
        return Site(element, rule.probability, rule.attack_set, payloads, tuple(units), rule.max_attacks)

    def _entry_sites(
        self, kind: str, rule: MapRule, names: Sequence[str], frozen: set[int], key_context: str, value_context: str
    ) -> list[Site]:
        sites: list[Site] = []
        counts = {name: names.count(name) for name in names}
        for index, name in enumerate(names):
            if index in frozen:
                continue
            label = name if counts[name] == 1 else f"{name}[{index}]"
            entry: KeyRule = rule.for_key(name)
            for side, chance, set_name, context in (
                ("key", entry.key_chance, entry.key_attacks, key_context),
                ("value", entry.value_chance, entry.value_attacks, value_context),
            ):
                if chance > 0 and set_name is not None:
                    element = f"{kind}.{label}.{side}"
                    payloads = self._payloads(set_name, context, element)
                    unit = (kind, index, 0 if side == "key" else 1)
                    sites.append(Site(element, chance, set_name, payloads, (unit,), 1))
        if rule.element is not None:
            units = [(kind, index, 1) for index in range(len(names)) if index not in frozen]
            site = self._site(kind, rule.element, value_context, units)
            if site is not None:
                sites.append(site)
        return sites

    def _compile(self, request: RequestTemplate) -> _Compiled:
        sites = [*self._line_sites(request), *self._pair_sites(request), *self._body_sites(request)]
        compiled = _Compiled(request, tuple(sites))
        compiled.rates = tuple(mutation_rates([site.odds for site in sites], self.plan.max_attacks))
        return compiled

    def _line_sites(self, request: RequestTemplate) -> list[Site]:
        """The sites of the request line: the method, the host and the path segments not carrying the tester."""
        plan = self.plan
        sites: list[Site] = []
        if plan.method is not None:
            site = self._site("method", plan.method, "method", [("method",)])
            sites += [site] if site else []
        if plan.host is not None:
            site = self._site("host", plan.host, "header_value", [("host",)])
            sites += [site] if site else []
        if plan.path is not None:
            units = [
                ("path", index)
                for index, segment in enumerate(request.path)
                if not (isinstance(segment, Template) and segment.uses_tester)
            ]
            site = self._site("path", plan.path, "path", units)
            sites += [site] if site else []
        return sites

    def _pair_sites(self, request: RequestTemplate) -> list[Site]:
        """The sites of the query, headers and cookies, without the pairs carrying the tester."""
        plan = self.plan
        sites: list[Site] = []
        for kind, rule, pairs, key_context, value_context in (
            ("query", plan.query, request.query, "query", "query"),
            ("headers", plan.headers, request.headers, "header_name", "header_value"),
            ("cookies", plan.cookies, request.cookies, "cookie_name", "header_value"),
        ):
            if rule is None:
                continue
            names = [key if isinstance(key, str) else "{…}" for key, _ in pairs]
            frozen = {
                index
                for index, (key, value) in enumerate(pairs)
                if any(isinstance(part, Template) and part.uses_tester for part in (key, value))
            }
            if kind == "query" and rule.element is not None:
                # the published QueryLine: the query as one element, its parameter values as units
                query_units: list[tuple[Any, ...]] = [
                    ("query", index, 1) for index in range(len(pairs)) if index not in frozen
                ]
                site = self._site("query", rule.element, "query", query_units)
                sites += [site] if site else []
                rule = MapRule(rule.defaults, rule.overrides, None, rule.case_insensitive)
            sites += self._entry_sites(kind, rule, names, frozen, key_context, value_context)
        return sites

    def _body_sites(self, request: RequestTemplate) -> list[Site]:
        if request.body is None or not self.plan.body:
            return []
        probe = render_body(
            request.body, RenderContext(CaseRandom(b"probe"), Tester("probe", "probe@example.invalid"), 0, 0, "probe")
        )
        tester_paths = request.tester_body_paths

        def frozen(path: tuple[Any, ...]) -> bool:
            return any(tp[: len(path)] == path for tp in tester_paths)

        claimed: set[tuple[Any, ...]] = set()
        sites: list[Site] = []
        for rule in self.plan.body:
            for path, node in _body_nodes(probe, rule.tokens):
                if path in claimed or frozen(path):
                    continue
                claimed.add(path)
                label = unit_label(("body", path, "value"))
                if rule.element is not None:
                    site = self._site(label, rule.element, "body", [("body", path, "value")])
                    sites += [site] if site else []
                if rule.entries is not None and isinstance(node, (dict, list)):
                    entries = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
                    for key, _ in entries:
                        child = (*path, key)
                        if frozen(child):
                            continue
                        entry = rule.entries.for_key(str(key))
                        child_label = unit_label(("body", child, "value"))
                        if entry.value_chance > 0 and entry.value_attacks:
                            payloads = self._payloads(entry.value_attacks, "body", child_label)
                            sites.append(
                                Site(
                                    child_label,
                                    entry.value_chance,
                                    entry.value_attacks,
                                    payloads,
                                    (("body", child, "value"),),
                                    1,
                                )
                            )
                        if isinstance(node, dict) and entry.key_chance > 0 and entry.key_attacks:
                            payloads = self._payloads(entry.key_attacks, "body_key", child_label + "#key")
                            sites.append(
                                Site(
                                    child_label + "#key",
                                    entry.key_chance,
                                    entry.key_attacks,
                                    payloads,
                                    (("body", child, "key"),),
                                    1,
                                )
                            )
        return sites

    # --- public: expected frequencies ---------------------------------------------------------

    def sites(self, route: str) -> tuple[Site, ...]:
        return self._compiled[route].sites

    def tester_frozen(self, route: str) -> list[str]:
        """The parts of ``route`` frozen because they carry the tester identity (for ``explain``)."""
        request = self._compiled[route].template

        def tester(value: Any) -> bool:
            return isinstance(value, Template) and value.uses_tester

        frozen = [f"path[{index}]" for index, segment in enumerate(request.path) if tester(segment)]
        for kind, pairs in (("query", request.query), ("headers", request.headers), ("cookies", request.cookies)):
            frozen += [f"{kind}.{key}" for key, value in pairs if tester(key) or tester(value)]
        frozen += [unit_label(("body", path, "value")) for path in request.tester_body_paths]
        return frozen

    def expected_rates(self, route: str) -> dict[str, SiteRate]:
        """Per element of ``route``: the exact frequency of being mutated and the expected attacks per request."""
        compiled = self._compiled[route]
        return {site.element: rate for site, rate in zip(compiled.sites, compiled.rates, strict=True)}

    # --- generation -----------------------------------------------------------------------------

    def case_random(self, index: int) -> CaseRandom:
        return CaseRandom(hashlib.sha256(self._seed_prefix + str(index).encode()).digest())

    def case_id(self, index: int) -> str:
        return f"c{index}"

    def case(self, index: int, keep: Sequence[int] | None = None) -> Case:
        """Generate case ``index``; with ``keep``, apply only those of its mutations (by position)."""
        rng = self.case_random(index)
        template = self.model.pick(rng)
        tester = self.testers[rng.below(len(self.testers))]
        case_id = self.case_id(index)
        ctx = RenderContext(rng, tester, self.clock_ms + index, index, case_id)
        draft = self._render(template, ctx)
        compiled = self._compiled[template.name]
        mutations = self._choose(compiled.sites, rng, draft)
        applied = mutations if keep is None else [mutations[position] for position in keep]
        self._apply(draft, applied)
        return Case(index, case_id, template.name, tester, tuple(mutations), self._wire(template, draft, case_id))

    def unmutated(self, index: int) -> Case:
        """Case ``index`` with no mutation applied (the bench's floor and a shrink's baseline)."""
        return self.case(index, keep=())

    def _render(self, template: RequestTemplate, ctx: RenderContext) -> _Draft:
        return _Draft(
            method=template.method,
            host=self.target.netloc if self.target is not None else template.host,
            path=[render_text(segment, ctx) for segment in template.path],
            query=[[render_text(key, ctx), render_text(value, ctx)] for key, value in template.query],
            headers=[[key, render_text(value, ctx)] for key, value in template.headers],
            cookies=[[key, render_text(value, ctx)] for key, value in template.cookies],
            body=render_body(template.body, ctx) if template.body is not None else None,
            has_body=template.body is not None,
            body_text=template.body_text,
        )

    def _choose(self, sites: Sequence[Site], rng: CaseRandom, draft: _Draft) -> list[Mutation]:
        fired = [site for site in sites if rng.chance(site.probability)]
        if not fired:
            return []
        rng.shuffle(fired)
        remaining = self.plan.max_attacks if self.plan.max_attacks is not None else 1 << 30
        mutations: list[Mutation] = []
        for site in fired:
            if remaining <= 0:
                break
            wanted = 1 + rng.below(min(site.max_attacks, len(site.units)))
            count = min(wanted, remaining)
            remaining -= count
            for position in rng.sample(count, len(site.units)):
                unit = site.units[position]
                choice = rng.below(len(site.payloads))
                payload = site.payloads[choice]
                mutations.append(
                    Mutation(
                        site.element, unit, site.attack_set, payload.category, choice, payload.value, _read(draft, unit)
                    )
                )
        return mutations

    def _apply(self, draft: _Draft, mutations: Sequence[Mutation]) -> None:
        def order(mutation: Mutation) -> tuple[int, int]:
            if mutation.unit[0] != "body":
                return (0, 0)
            return (-len(mutation.unit[1]), 0 if mutation.unit[2] == "value" else 1)

        for mutation in sorted(mutations, key=order):
            _write(draft, mutation.unit, mutation.value)

    def _wire(self, template: RequestTemplate, draft: _Draft, case_id: str) -> WireRequest:
        target = self.target
        request_target = _request_target(draft, target.base_path if target is not None else "")
        headers = self._headers(draft, case_id)
        body = _body_bytes(draft)
        if body or draft.method.upper() in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body)).encode("ascii")))
        if target is not None:
            scheme, host, port = target.scheme, target.host, target.port
        else:
            scheme, host, port = _template_address(template)
        return WireRequest(draft.method, scheme, host, port, request_target, tuple(headers), body)

    def _headers(self, draft: _Draft, case_id: str) -> list[tuple[str, bytes]]:
        """The headers of a draft as sent, before Content-Length: its own, then Cookie, User-Agent and the run tag."""
        headers: list[tuple[str, bytes]] = []
        if draft.host is not MISSING:
            headers.append(("Host", _header_bytes(payload_text(draft.host))))
        for name, value in draft.headers:
            if name is not MISSING and value is not MISSING:
                headers.append((payload_text(name), _header_bytes(payload_text(value))))
        cookies = [
            f"{payload_text(name)}={payload_text(value)}"
            for name, value in draft.cookies
            if name is not MISSING and value is not MISSING
        ]
        if cookies:
            headers.append(("Cookie", _header_bytes("; ".join(cookies))))
        if not any(name.lower() == "user-agent" for name, _ in headers):
            headers.append(("User-Agent", USER_AGENT.encode()))
        if self.run_tag is not None:
            headers.append((self.run_tag.header, self.run_tag.value(self.run_id, case_id).encode("ascii")))
        return headers


def _request_target(draft: _Draft, base: str) -> str:
    """The path and query of a draft, quoted, without the parts attacked with *missing*."""
    path = base + "/" + "/".join(_quote(payload_text(s), PATH_SAFE) for s in draft.path if s is not MISSING)
    pairs = [
        _quote(payload_text(key), QUERY_SAFE) + "=" + _quote(payload_text(value), QUERY_SAFE)
        for key, value in draft.query
        if key is not MISSING and value is not MISSING
    ]
    return path + ("?" + "&".join(pairs) if pairs else "")


def _body_bytes(draft: _Draft) -> bytes:
    if not draft.has_body:
        return (draft.body_text or "").encode("utf-8")
    document = _strip_missing(draft.body) if draft.body_missing else draft.body
    if document is MISSING:
        return b""  # the whole body was attacked with *missing*
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _template_address(template: RequestTemplate) -> tuple[str, str, int]:
    """The scheme, host and port of the model's own server, when no target replaces it."""
    parts = urlsplit(f"{template.scheme}://{template.host}")
    scheme, host = template.scheme, parts.hostname or ""
    return scheme, host, parts.port or (443 if scheme == "https" else 80)


def _read(draft: _Draft, unit: tuple[Any, ...]) -> Any:
    kind = unit[0]
    if kind == "method":
        return draft.method
    if kind == "host":
        return draft.host
    if kind == "path":
        return draft.path[unit[1]]
    if kind in ("query", "headers", "cookies"):
        return getattr(draft, kind)[unit[1]][unit[2]]
    node = draft.body
    for part in unit[1]:
        node = node[part]
    return unit[1][-1] if unit[2] == "key" else node


def _write(draft: _Draft, unit: tuple[Any, ...], value: Any) -> None:
    kind = unit[0]
    if kind == "method":
        draft.method = payload_text(value)
    elif kind == "host":
        draft.host = value if value is MISSING else payload_text(value)
    elif kind == "path":
        draft.path[unit[1]] = value if value is MISSING else payload_text(value)
    elif kind in ("query", "headers", "cookies"):
        getattr(draft, kind)[unit[1]][unit[2]] = value if value is MISSING else payload_text(value)
    else:
        _write_body(draft, unit[1], unit[2], value)


def _write_body(draft: _Draft, path: tuple[Any, ...], side: str, value: Any) -> None:
    draft.body_missing = draft.body_missing or value is MISSING
    if not path:
        draft.body = value
        return
    parent = draft.body
    for part in path[:-1]:
        if not isinstance(parent, (dict, list)):
            return  # an outer mutation already replaced this subtree
        parent = parent[part]
    last = path[-1]
    if side == "value":
        if (isinstance(parent, dict) and last in parent) or (
            isinstance(parent, list) and isinstance(last, int) and last < len(parent)
        ):
            parent[last] = value
        return
    if isinstance(parent, dict) and last in parent:
        new_key = payload_text(value)
        items = [(new_key if key == last else key, item) for key, item in parent.items()]
        parent.clear()
        parent.update(items)
