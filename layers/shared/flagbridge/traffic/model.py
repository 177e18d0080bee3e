"""The request model: the requests a run sends, before any mutation.

A YAML/JSON document (``flagbridge traffic import-har`` writes one from a HAR file)::

    requests:
      - name: upload_events                # names the route in results (default: request<N>)
        weight: 3                          # relative share of the run's requests (whole number, default 1)
        method: POST
        url: https://api.shop.example/v2/events/{stream}     # scheme, host[:port], path with {params}
        path_params: {stream: "{{choice:web,ios,android}}"}
        query: {source: sdk}               # a mapping, or a list of [name, value] pairs
        headers: {Content-Type: application/json, Authorization: "Bearer {{tester.key}}"}
        cookies: {session: "{{uuid}}"}
        body: {user_identities: {customer_id: "{{tester.key}}", email: "{{tester.email}}"}, events: [...]}
        # body_text: "raw text"            # instead of body: sent as is, never mutated

Values may contain templates: ``{{tester.key}}`` and ``{{tester.email}}`` (the case's tester),
``{{uuid}}``, ``{{now}}`` (epoch ms: the run's clock plus the case index, so every case differs and a
replay with the run's clock is byte-identical), ``{{case.id}}``, ``{{case.index}}``,
``{{choice:a,b,c}}`` and ``{{int:1..10}}``. Every generator draws from the case's own random stream,
so the values are a function of (plan, seed, case index). A body value that is exactly one template
keeps its type (``"{{int:1..10}}"`` renders 7, not ``"7"``). Everything rendered from ``{{tester.*}}``
is frozen: no plan can mutate it, nor the JSON nodes and map entries that contain it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from flagbridge.traffic.errors import ModelError

_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_INT_RANGE = re.compile(r"^int:\s*(-?\d+)\s*\.\.\s*(-?\d+)$")
_REQUEST_KEYS = frozenset(
    {"name", "weight", "method", "url", "path_params", "query", "headers", "cookies", "body", "body_text"}
)


@dataclass(frozen=True, slots=True)
class Tester:
    """One member of the run's tester pool (a key the bridge's tester rules mark as a tester)."""

    __test__ = False  # not a pytest test class

    key: str
    email: str | None = None


class CaseRandom:
    """The random stream of one case, with primitives built on ``getrandbits`` only.

    ``random.Random(int).getrandbits`` is the same on every CPython version and platform; the
    convenience methods (``choice``, ``randrange``, ``shuffle``) are not guaranteed to be, so they are
    not used: a case must be byte-identical on any machine.
    """

    __slots__ = ("_bits",)

    def __init__(self, seed_bytes: bytes) -> None:
        import random

        self._bits = random.Random(int.from_bytes(seed_bytes, "big")).getrandbits

    def below(self, n: int) -> int:
        """Uniform integer in ``[0, n)``."""
        if n <= 1:
            return 0
        width = (n - 1).bit_length()
        bits = self._bits
        while True:
            value = bits(width)
            if value < n:
                return value

    def chance(self, probability: float) -> bool:
        """True with ``probability`` (to 2**-53)."""
        if probability <= 0.0:
            self._bits(53)
            return False
        return self._bits(53) < probability * 9007199254740992.0

    def bits(self, width: int) -> int:
        return self._bits(width)

    def shuffle(self, items: list[Any]) -> None:
        for index in range(len(items) - 1, 0, -1):
            other = self.below(index + 1)
            items[index], items[other] = items[other], items[index]

    def sample(self, count: int, population: int) -> list[int]:
        """``count`` distinct indices of ``range(population)``, in draw order (partial Fisher-Yates)."""
        pool = list(range(population))
        chosen = []
        for step in range(min(count, population)):
            pick = step + self.below(population - step)
            pool[step], pool[pick] = pool[pick], pool[step]
            chosen.append(pool[step])
        return chosen


@dataclass(slots=True)
class RenderContext:
    rng: CaseRandom
    tester: Tester
    now_ms: int
    case_index: int
    case_id: str


Generator = Callable[[RenderContext], Any]


def _uuid(ctx: RenderContext) -> str:
    value = ctx.rng.bits(128)
    value = (value & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _tester_email(ctx: RenderContext) -> str:
    if ctx.tester.email is None:
        raise ModelError(f"tester {ctx.tester.key!r} has no email, but the model uses {{{{tester.email}}}}")
    return ctx.tester.email


_FIXED_GENERATORS: dict[str, Generator] = {
    "tester.key": lambda ctx: ctx.tester.key,
    "tester.email": _tester_email,
    "uuid": _uuid,
    "now": lambda ctx: ctx.now_ms,
    "case.id": lambda ctx: ctx.case_id,
    "case.index": lambda ctx: ctx.case_index,
}


def _generator(spec: str, where: str) -> Generator:
    if spec in _FIXED_GENERATORS:
        return _FIXED_GENERATORS[spec]
    if spec.startswith("choice:"):
        options = tuple(item.strip() for item in spec[len("choice:") :].split(","))
        if not options or not all(options):
            raise ModelError(f"{where}: {{{{{spec}}}}} needs a comma-separated list like {{{{choice:a,b,c}}}}")
        return lambda ctx: options[ctx.rng.below(len(options))]
    match = _INT_RANGE.match(spec)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        if low > high:
            raise ModelError(f"{where}: {{{{{spec}}}}}: the range is empty ({low} > {high})")
        return lambda ctx: low + ctx.rng.below(high - low + 1)
    raise ModelError(
        f"{where}: unknown template {{{{{spec}}}}}; use tester.key, tester.email, uuid, now, case.id, case.index, "
        "choice:a,b,c or int:1..10"
    )


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``{{...}}`` parts; ``typed`` when it is exactly one generator (keeps its type in JSON)."""

    parts: tuple[str | Generator, ...]
    typed: bool
    uses_tester: bool

    def render(self, ctx: RenderContext) -> Any:
        if self.typed:
            generator = self.parts[0]
            assert callable(generator)
            return generator(ctx)
        return "".join(part if isinstance(part, str) else str(part(ctx)) for part in self.parts)


def compile_text(value: Any, where: str) -> str | Template:
    """A literal string, or a :class:`Template` when ``value`` contains ``{{...}}``."""
    if not isinstance(value, str):
        raise ModelError(f"{where}: must be text, got {type(value).__name__}")
    if "{{" not in value:
        return value
    parts: list[str | Generator] = []
    position = 0
    uses_tester = False
    for match in _TEMPLATE.finditer(value):
        if match.start() > position:
            parts.append(value[position : match.start()])
        spec = match.group(1)
        uses_tester = uses_tester or spec.startswith("tester.")
        parts.append(_generator(spec, where))
        position = match.end()
    if position < len(value):
        parts.append(value[position:])
    typed = len(parts) == 1 and not isinstance(parts[0], str)
    return Template(tuple(parts), typed, uses_tester)


def render_text(value: str | Template, ctx: RenderContext) -> str:
    return value if isinstance(value, str) else str(value.render(ctx))


# --- the JSON body: compiled once, rendered into fresh containers per case -------------------------


@dataclass(frozen=True, slots=True)
class BodyNode:
    kind: str  # "dict" | "list" | "literal" | "template"
    value: Any


def compile_body(value: Any, where: str, tester_paths: list[tuple[Any, ...]], path: tuple[Any, ...] = ()) -> BodyNode:
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelError(f"{where}: JSON object keys must be text, got {key!r}")
            items.append((key, compile_body(item, where, tester_paths, (*path, key))))
        return BodyNode("dict", tuple(items))
    if isinstance(value, list):
        return BodyNode(
            "list", tuple(compile_body(item, where, tester_paths, (*path, i)) for i, item in enumerate(value))
        )
    if isinstance(value, str) and "{{" in value:
        template = compile_text(value, where + "".join(f"/{p}" for p in path))
        if isinstance(template, Template) and template.uses_tester:
            tester_paths.append(path)
        return BodyNode("template", template)
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, float) and value != value:
            raise ModelError(f"{where}: NaN is not JSON")
        return BodyNode("literal", value)
    raise ModelError(f"{where}: {type(value).__name__} is not a JSON value")


def render_body(node: BodyNode, ctx: RenderContext) -> Any:
    kind = node.kind
    if kind == "literal":
        return node.value
    if kind == "dict":
        return {key: render_body(item, ctx) for key, item in node.value}
    if kind == "list":
        return [render_body(item, ctx) for item in node.value]
    return node.value.render(ctx)


NO_BODY: Any = type("NoBody", (), {"__repr__": lambda self: "<no body>"})()


@dataclass(frozen=True)
class RequestTemplate:
    """One compiled request of the model."""

    name: str
    weight: int
    method: str
    scheme: str
    host: str
    path: tuple[str | Template, ...]
    query: tuple[tuple[str | Template, str | Template], ...]
    headers: tuple[tuple[str, str | Template], ...]
    cookies: tuple[tuple[str, str | Template], ...]
    body: BodyNode | None
    body_text: str | None
    tester_body_paths: tuple[tuple[Any, ...], ...] = field(default=())

    @property
    def hostname(self) -> str:
        return urlsplit(f"{self.scheme}://{self.host}").hostname or ""

    @property
    def path_text(self) -> str:
        return "/" + "/".join(part if isinstance(part, str) else "{…}" for part in self.path)

    def uses_tester(self) -> bool:
        values: list[Any] = [*self.path, *(v for _, v in self.headers), *(v for _, v in self.cookies)]
        values += [v for pair in self.query for v in pair]
        return bool(self.tester_body_paths) or any(isinstance(v, Template) and v.uses_tester for v in values)


@dataclass(frozen=True)
class RequestModel:
    """The compiled model: its requests and the total weight."""

    requests: tuple[RequestTemplate, ...]
    source: str = "<model>"

    @property
    def total_weight(self) -> int:
        return sum(request.weight for request in self.requests)

    def pick(self, rng: CaseRandom) -> RequestTemplate:
        point = rng.below(self.total_weight)
        for request in self.requests:
            if point < request.weight:
                return request
            point -= request.weight
        return self.requests[-1]  # unreachable


def _pairs(value: Any, where: str) -> list[tuple[str, Any]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(key), item) for key, item in value.items()]
    if isinstance(value, list) and all(isinstance(item, list | tuple) and len(item) == 2 for item in value):
        return [(str(key), item) for key, item in value]
    raise ModelError(f"{where}: must be a mapping or a list of [name, value] pairs")


def _scalar_text(value: Any, where: str) -> str | Template:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = json.dumps(value)
    return compile_text(value, where)


def climbs(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment, percent-encoded or not: servers resolve them (RFC 3986
    5.2.4), so ``/shop/../admin`` is ``/admin``, out of an allowlist's ``/shop`` prefix."""
    return any(segment.lower().replace("%2e", ".") in (".", "..") for segment in path.split("/"))


def _url_parts(url: str, where: str) -> SplitResult:
    """A model URL, split: absolute http(s), a port from 1, no credentials, query, fragment or dot segments."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError: out of range or not a number; parsed here, never first in a worker
    except ValueError as exc:
        raise ModelError(f"{where}: 'url' must be an absolute http(s) URL, got {url[:200]!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(f"{where}: 'url' must be an absolute http(s) URL, got {url[:200]!r}")
    if port == 0:
        raise ModelError(f"{where}: 'url' has port 0; a port is 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise ModelError(f"{where}: 'url' must not carry credentials (user:password@); use a header")
    if parts.query or parts.fragment:
        raise ModelError(f"{where}: 'url' must not carry a query or fragment; use 'query'")
    if climbs(parts.path):
        raise ModelError(
            f"{where}: 'url' must not carry . or .. path segments (a server resolves them out of an allowed path "
            f"prefix), got {url[:200]!r}"
        )
    return parts


def _compile_url(document: dict[str, Any], where: str) -> tuple[str, str, tuple[str | Template, ...]]:
    """Scheme, ``host[:port]`` and the path segments (``{params}`` filled from ``path_params``)."""
    url = document.get("url")
    if not isinstance(url, str):
        raise ModelError(f"{where}: 'url' is required (scheme://host/path)")
    parts = _url_parts(url, where)
    params = document.get("path_params") or {}
    if not isinstance(params, dict):
        raise ModelError(f"{where}: 'path_params' must be a mapping")
    segments: list[str | Template] = []
    used: set[str] = set()
    for raw in [segment for segment in parts.path.split("/") if segment]:
        match = _PARAM.fullmatch(raw)
        if match:
            param = match.group(1)
            if param not in params:
                raise ModelError(f"{where}: path parameter {{{param}}} has no value in 'path_params'")
            used.add(param)
            segment = _scalar_text(params[param], f"{where}: path_params.{param}")
            if isinstance(segment, str) and climbs(segment):
                raise ModelError(f"{where}: path_params.{param} must not carry . or .. path segments, got {segment!r}")
            segments.append(segment)
        elif _PARAM.search(raw):
            raise ModelError(f"{where}: a path parameter must be a whole segment, got {raw!r}")
        else:
            segments.append(raw)
    extra = sorted(set(params) - used)
    if extra:
        raise ModelError(f"{where}: path_params.{extra[0]} is not used by the url")
    return parts.scheme, parts.netloc, tuple(segments)


def _compile_named(
    document: dict[str, Any], field_name: str, where: str, reserved: frozenset[str] = frozenset()
) -> tuple[tuple[str, str | Template], ...]:
    """Headers or cookies: token names, values that may be templates; ``reserved`` names are refused."""
    pairs = []
    for key, value in _pairs(document.get(field_name), f"{where}: '{field_name}'"):
        if not _TOKEN.match(key):
            raise ModelError(f"{where}: {field_name[:-1]} name {key!r} is not a valid HTTP token")
        if key.lower() in reserved:
            raise ModelError(f"{where}: header {key!r} is set by the generator (use 'url' and 'cookies')")
        pairs.append((key, _scalar_text(value, f"{where}: {field_name}.{key}")))
    return tuple(pairs)


def _compile_payload(document: dict[str, Any], where: str) -> tuple[BodyNode | None, str | None, tuple[Any, ...]]:
    """The JSON body (with the paths of its tester values) or the raw ``body_text``."""
    if "body" in document and "body_text" in document:
        raise ModelError(f"{where}: give 'body' (JSON) or 'body_text', not both")
    tester_paths: list[tuple[Any, ...]] = []
    body = compile_body(document["body"], f"{where}: body", tester_paths) if "body" in document else None
    body_text = document.get("body_text")
    if body_text is not None and not isinstance(body_text, str):
        raise ModelError(f"{where}: 'body_text' must be text")
    return body, body_text, tuple(tester_paths)


_GENERATED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "cookie"})


def compile_request(document: Any, index: int, source: str) -> RequestTemplate:
    if not isinstance(document, dict):
        raise ModelError(f"{source}: requests[{index}] must be a mapping")
    name = str(document.get("name") or f"request{index}")
    where = f"{source}: request {name!r}"
    unknown = sorted(str(key) for key in document if key not in _REQUEST_KEYS)
    if unknown:
        raise ModelError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(_REQUEST_KEYS))}")
    weight = document.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ModelError(f"{where}: 'weight' must be a whole number of at least 1, got {weight!r}")
    method = document.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.match(method):
        raise ModelError(f"{where}: 'method' must be an HTTP method, got {method!r}")
    scheme, host, path = _compile_url(document, where)
    query = tuple(
        (compile_text(key, f"{where}: query"), _scalar_text(value, f"{where}: query.{key}"))
        for key, value in _pairs(document.get("query"), f"{where}: 'query'")
    )
    body, body_text, tester_paths = _compile_payload(document, where)
    return RequestTemplate(
        name=name,
        weight=weight,
        method=method,
        scheme=scheme,
        host=host,
        path=path,
        query=query,
        headers=_compile_named(document, "headers", where, _GENERATED_HEADERS),
        cookies=_compile_named(document, "cookies", where),
        body=body,
        body_text=body_text,
        tester_body_paths=tester_paths,
    )


def parse_model(document: Any, source: str = "<model>") -> RequestModel:
    """Validate and compile a request model document; ModelError names the request and field."""
    if not isinstance(document, dict) or not isinstance(document.get("requests"), list) or not document["requests"]:
        raise ModelError(f"{source}: a request model is a mapping with a non-empty 'requests' list")
    unknown = sorted(str(key) for key in document if key not in ("requests", "name", "description"))
    if unknown:
        raise ModelError(f"{source}: unknown top-level key {unknown[0]!r}")
    requests = tuple(compile_request(item, index, source) for index, item in enumerate(document["requests"]))
    names = [request.name for request in requests]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(f"{source}: request names must be unique; repeated: {', '.join(duplicates)}")
    return RequestModel(requests, source)


def load_model(path: str | Path) -> RequestModel:
    """Read a request model file (YAML, or JSON when it ends in ``.json``)."""
    model_path = Path(path)
    from flagbridge.documents import load_document, read_text

    text = read_text(model_path, "the request model", ModelError)
    document = load_document(text, "json" if model_path.suffix == ".json" else "yaml", str(model_path), ModelError)
    return parse_model(document, str(model_path))


def model_hosts(model: RequestModel) -> list[str]:
    """Every host the model names (for the allowlist check)."""
    return sorted({request.hostname for request in model.requests})


def pool_from_document(document: Any, where: str) -> list[Tester]:
    """Read a tester pool: a list of keys, or of ``{key, email}`` mappings."""
    if not isinstance(document, list) or not document:
        raise ModelError(f"{where}: the tester pool must be a non-empty list")
    pool = []
    for index, item in enumerate(document):
        if isinstance(item, str) and item:
            pool.append(Tester(item))
        elif isinstance(item, Mapping) and isinstance(item.get("key"), str) and item["key"]:
            email = item.get("email")
            if email is not None and not isinstance(email, str):
                raise ModelError(f"{where}[{index}]: email must be text")
            pool.append(Tester(item["key"], email))
        else:
            raise ModelError(f"{where}[{index}]: a tester is a key or {{key, email}}")
    return pool


__all__: Sequence[str] = (
    "NO_BODY",
    "CaseRandom",
    "RenderContext",
    "RequestModel",
    "RequestTemplate",
    "Template",
    "Tester",
    "load_model",
    "parse_model",
)
