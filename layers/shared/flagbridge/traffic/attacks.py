"""Attack sets: named lists of replacement values, and where each value can travel.

A mutation replaces one unit of a request (the method, a path segment, a query value, a header name or
value, a cookie, a JSON body value or key) with one payload of the element's attack set. Every built-in
payload is text or a JSON value that a well-behaved target must **refuse cleanly** (a 4xx, never a 5xx,
never a side effect): no payload deletes, writes, calls out (no ``${jndi:...}``, no ``SLEEP``) or
is larger than 64 KiB.

Built-in sets (``flagbridge traffic plan explain`` lists them too):

================== =====================================================================================
``boundary_numbers`` 0, -1, 2^31 edges, 2^53 + 1, 10^30, 1e308, 5e-324, -0.0 (numbers in JSON, text elsewhere)
``type_confusion``   the wrong type: ``true``, ``[]``, ``{}``, ``"0"``, ``"true"``, ``"null"``, ``[1]``
``empty_null_missing`` ``""``, ``" "``, ``null``, and *missing* (the key, header, segment or parameter is removed)
``long_strings``     257, 4,097 (over mParticle's 4,096-character attribute limit) and 65,537 characters
``unicode``          RTL override, zero-width joiner/space, stacked combining marks, emoji ZWJ sequence, BOM,
                     NUL, a lone surrogate (sent as ``\\ud800`` in JSON; as its raw bytes elsewhere)
``format_strings``   ``%s%s%s``, ``%x%p%d``, ``{0}``, ``{}``, ``%(name)s``
``path_traversal``   ``../``, ``../../../../etc/passwd``, ``..%2F``, ``%2e%2e%2f``, double-encoded, backslashes
``sql_injection``    read-only probes: ``' OR '1'='1``, ``1 UNION SELECT NULL--``, ``')--``
``nosql_injection``  ``{"$gt": ""}``, ``{"$ne": null}``, ``[$ne]=1``, ``';return true;'``
``template_injection`` ``{{7*7}}``, ``${7*7}``, ``<%= 7*7 %>``, ``#{7*7}``
``xss``              ``<script>alert(1)</script>``, an ``onerror`` image, ``javascript:`` URL
``http_methods``     other and odd methods (``DELETE`` and the plan's destructive methods only when opted in)
``header_names``     odd but legal header names (underscores, dots, 300 characters, a duplicate ``Accept``)
``header_breaking``  values that break naive header parsers: separators, quotes, tabs, Latin-1, 8 KiB
================== =====================================================================================

Where a payload may go is decided by the element's *context*: a header name must be an RFC 9110 token and
a header value may not contain CR, LF or NUL (the HTTP client refuses them: "where the transport allows"),
a header-name attack never produces a framing header (``Content-Length``, ``Transfer-Encoding``, ``Host``...)
or the run tag,
a method must be a token, *missing* makes no sense for a method. Payloads a context cannot carry are left
out of that context's choices; a set with nothing left for an element is a plan error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final


class _Missing:
    """The *missing* payload: the unit is removed (a JSON key, a header, a query parameter, a segment)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""Sentinel payload: remove the unit instead of replacing it."""

MISSING_JSON: Final = {"$missing": True}
"""How :data:`MISSING` is written in plan files and the canonical plan."""

CONTEXTS: Final = (
    "method",
    "header_name",
    "header_value",
    "path",
    "query",
    "cookie_name",
    "body",
    "body_key",
)
"""Where a payload can be placed; each has its own transport rule (:func:`fits`)."""

DEFAULT_DESTRUCTIVE_METHODS: Final = frozenset({"DELETE"})

RESERVED_HEADER_NAMES: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "x-flagbridge-run"}
)
"""Names a header-name attack never produces: framing headers (request smuggling could hurt other users of a
shared proxy, which is destructive) and the run tag (frozen)."""

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_FORBIDDEN = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class Payload:
    """One attack value and the built-in set it comes from (its *attack name* in the manifest)."""

    value: Any
    category: str


@dataclass(frozen=True, slots=True)
class BuiltinSet:
    name: str
    description: str
    values: tuple[Any, ...]


def _builtin_sets() -> dict[str, BuiltinSet]:
    sets = [
        BuiltinSet(
            "boundary_numbers",
            "integer and float edges",
            (
                0,
                -1,
                1,
                2147483647,
                2147483648,
                -2147483649,
                9007199254740993,
                10**30,
                1e308,
                -1e308,
                5e-324,
                -0.0,
            ),
        ),
        BuiltinSet(
            "type_confusion",
            "a value of the wrong JSON type",
            (True, False, [], {}, [1], {"a": 1}, "0", "true", "null", "[]", "{}"),
        ),
        BuiltinSet("empty_null_missing", "empty, blank, null and absent", ("", " ", None, MISSING)),
        BuiltinSet("long_strings", "strings over common limits", ("A" * 257, "A" * 4097, "A" * 65537)),
        BuiltinSet(
            "unicode",
            "RTL, zero-width, combining, emoji, BOM, NUL, lone surrogate",
            (
                "\u202eevil\u202c",
                "a\u200bb\u200d",
                "e\u0301\u0301\u0301\u0301\u0301",
                "\U0001f600\U0001f469\u200d\U0001f469\u200d\U0001f467",
                "\ufeffbom",
                "nul\u0000byte",
                "\ud800",
                "\u0645\u0631\u062d\u0628\u0627",
            ),
        ),
        BuiltinSet("format_strings", "printf/format placeholders", ("%s%s%s", "%x%p%d", "{0}", "{}", "%(name)s")),
        BuiltinSet(
            "path_traversal",
            "dot segments and encoded slashes",
            (
                "../",
                "../../../../etc/passwd",
                "..%2F..%2F..%2Fetc%2Fpasswd",
                "%2e%2e%2f",
                "%252e%252e%252f",
                "..\\..\\windows\\win.ini",
                "%2F",
                "./",
            ),
        ),
        BuiltinSet(
            "sql_injection",
            "read-only SQL probes",
            ("' OR '1'='1", "1 UNION SELECT NULL--", "')--", '" OR ""="', "1;SELECT 1"),
        ),
        BuiltinSet(
            "nosql_injection",
            "operator injection",
            ({"$gt": ""}, {"$ne": None}, "[$ne]=1", "';return true;'", '{"$where": "1"}'),
        ),
        BuiltinSet("template_injection", "template expressions", ("{{7*7}}", "${7*7}", "<%= 7*7 %>", "#{7*7}")),
        BuiltinSet(
            "xss",
            "script injection probes",
            ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "javascript:alert(1)"),
        ),
        BuiltinSet(
            "http_methods",
            "other and odd methods (DELETE only when opted in)",
            ("GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "TRACE", "PROPFIND", "get", "FOO", "DELETE"),
        ),
        BuiltinSet(
            "header_names",
            "odd but legal header names",
            ("X-Flagbridge-Probe", "X_Underscore", "X.Dot", "x-" + "a" * 300, "Accept", "1"),
        ),
        BuiltinSet(
            "header_breaking",
            "values that break naive header parsers",
            ("a, b", "a;b=c", "\tleading-tab", '"unbalanced', "caf\u00e9", "\u00ff\u00fe", "=", "x" * 8193),
        ),
    ]
    return {item.name: item for item in sets}


BUILTIN_SETS: Final[Mapping[str, BuiltinSet]] = _builtin_sets()


def payload_text(value: Any) -> str:
    """A payload as text, for the elements that carry text (JSON for non-strings: ``true``, ``[]``, ``1e+308``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def fits(context: str, value: Any, destructive: frozenset[str] = frozenset()) -> bool:
    """Whether ``value`` can be sent in ``context`` (see the module docstring)."""
    if value is MISSING:
        return context not in ("method", "body_key")
    if context == "body":
        return True
    text = payload_text(value)
    if context == "method":
        return bool(_TOKEN.match(text)) and text.upper() not in destructive
    if context == "header_name" and text.lower() in RESERVED_HEADER_NAMES:
        return False
    if context in ("header_name", "cookie_name"):
        return bool(_TOKEN.match(text)) and len(text) <= 1024
    if context == "header_value":
        return _HEADER_FORBIDDEN.search(text) is None
    return True  # path, query, body_key: encoded on the wire


def payload_from_json(value: Any) -> Any:
    """Read a payload written in a plan file (``{"$missing": true}`` is :data:`MISSING`)."""
    return MISSING if value == MISSING_JSON else value


def payload_to_json(value: Any) -> Any:
    """The canonical JSON form of a payload (the inverse of :func:`payload_from_json`)."""
    return MISSING_JSON if value is MISSING else value


def resolve_set(
    name: str,
    definitions: Mapping[str, Any],
    where: str,
    resolving: Sequence[str] = (),
) -> tuple[Payload, ...]:
    """Expand the attack set ``name``: a built-in, or a plan definition (list and/or ``include`` of other sets).

    Raises ``ValueError`` with a message naming the set (the plan loader prefixes the key).
    """
    if name in resolving:
        raise ValueError(f"attack set {name!r} includes itself ({' -> '.join([*resolving, name])})")
    if name in definitions:
        return _resolve_definition(name, definitions[name], definitions, where, (*resolving, name))
    if name in BUILTIN_SETS:
        builtin = BUILTIN_SETS[name]
        return tuple(Payload(value, builtin.name) for value in builtin.values)
    known = sorted({*BUILTIN_SETS, *definitions})
    raise ValueError(f"unknown attack set {name!r}; known: {', '.join(known)}")


def _resolve_definition(
    name: str, definition: Any, definitions: Mapping[str, Any], where: str, resolving: Sequence[str]
) -> tuple[Payload, ...]:
    includes: Iterable[Any] = ()
    values: Iterable[Any] = ()
    if isinstance(definition, list):
        values = definition
    elif isinstance(definition, dict):
        unknown = sorted(set(definition) - {"include", "values"})
        if unknown:
            raise ValueError(f"attack set {name!r}: unknown key(s) {', '.join(unknown)} (use include, values)")
        includes = definition.get("include") or []
        values = definition.get("values") or []
        if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
            raise ValueError(f"attack set {name!r}: include must be a list of set names")
        if not isinstance(values, list):
            raise ValueError(f"attack set {name!r}: values must be a list")
    else:
        raise ValueError(f"attack set {name!r} must be a list of values or a mapping with include/values")
    payloads: list[Payload] = []
    for included in includes:
        payloads.extend(resolve_set(included, definitions, where, resolving))
    payloads.extend(Payload(payload_from_json(value), name) for value in values)
    if not payloads:
        raise ValueError(f"attack set {name!r} is empty")
    return tuple(payloads)
