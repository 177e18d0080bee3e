"""Import a request model from a HAR file (what browser dev tools save), keeping only allowed hosts.

Each HAR entry's request becomes a model request: method, URL (without query), query string, headers
(minus the ones the generator sets: ``Host``, ``Content-Length``, ``Cookie``, HTTP/2 pseudo-headers,
hop-by-hop headers), cookies, and the body (JSON when it parses as JSON, else ``body_text``).
Identical ``METHOD URL`` entries are merged into one request whose weight is their count.

A HAR carries whatever the browser sent, credentials included: ``Authorization`` and cookie values are
replaced by ``<redacted>`` unless ``keep_secrets`` is set, and each replacement is reported; credentials in a
URL (``https://user:secret@host/``) are always dropped (a model's URL is printed and logged, never secret). Entries
whose host is not allowed (:class:`flagbridge.traffic.safety.Allowlist`) are skipped and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flagbridge.traffic.errors import ModelError, SafetyError
from flagbridge.traffic.safety import Allowlist

REDACTED = "<redacted>"
_SKIPPED_HEADERS = frozenset(
    {"host", "content-length", "cookie", "connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}
)
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key"})
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class HarImport:
    """The model document, what was skipped, and what was redacted."""

    model: dict[str, Any]
    kept: int
    skipped_hosts: dict[str, int]
    warnings: tuple[str, ...]


def _pairs(items: Any) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        return []
    return [
        (str(item["name"]), str(item.get("value", "")))
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    ]


def _name(method: str, path: str, taken: dict[str, int]) -> str:
    """A unique request name from the method and path; ``taken`` maps each name used to the next suffix to try.

    Starting from the last suffix of a base keeps many entries with one base (paths alike in their first 60
    characters) linear: counting up from 2 for each was quadratic in a HAR of such entries.
    """
    base = f"{method.lower()}_{_SLUG.sub('_', path.lower()).strip('_') or 'root'}"[:60]
    name, counter = base, taken.get(base, 2)
    while name in taken:
        name, counter = f"{base}_{counter}", counter + 1
    taken[base] = counter
    taken.setdefault(name, 2)
    return name


def _har_request(
    request: Mapping[str, Any],
    method: str,
    url: str,
    path: str,
    keep_secrets: bool,
    redacted: set[str],
    names: dict[str, int],
) -> dict[str, Any]:
    """One model request from a HAR ``request`` (credentials redacted unless ``keep_secrets``)."""
    headers: dict[str, str] = {}
    for name, value in _pairs(request.get("headers")):
        lowered = name.lower()
        if lowered in _SKIPPED_HEADERS or name.startswith(":"):
            continue
        if lowered in _SECRET_HEADERS and not keep_secrets:
            redacted.add(f"header {name}")
            value = REDACTED
        headers[name] = value
    cookies = {}
    for name, value in _pairs(request.get("cookies")):
        if not keep_secrets:
            redacted.add(f"cookie {name}")
            value = REDACTED
        cookies[name] = value
    item: dict[str, Any] = {"name": _name(method, path, names), "weight": 1, "method": method, "url": url}
    query = _pairs(request.get("queryString"))
    if query:
        item["query"] = [list(pair) for pair in query]
    if headers:
        item["headers"] = headers
    if cookies:
        item["cookies"] = cookies
    post = request.get("postData")
    if isinstance(post, Mapping) and isinstance(post.get("text"), str) and post["text"]:
        try:
            item["body"] = json.loads(post["text"])
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's recursion: kept as text
            item["body_text"] = post["text"]
    return item


def _netloc(host: str, port: int | None) -> str:
    """``host[:port]`` without the ``user:password@`` a URL may carry."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _hosts(skipped: Mapping[str, int]) -> str:
    """The hosts a refusal names: the first ten, then how many more (a HAR can name thousands)."""
    seen = sorted(skipped)
    if not seen:
        return "none"
    return ", ".join(seen[:10]) + (f" and {len(seen) - 10} more" if len(seen) > 10 else "")


def import_har(document: Any, allowlist: Allowlist, keep_secrets: bool = False, source: str = "<har>") -> HarImport:
    """Build a request model document from a parsed HAR."""
    entries = document.get("log", {}).get("entries") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ModelError(f"{source}: not a HAR file (no log.entries list)")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: dict[str, int] = {}
    redacted: set[str] = set()
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, Mapping) else None
        if not isinstance(request, Mapping) or not isinstance(request.get("url"), str):
            raise ModelError(f"{source}: log.entries[{index}] has no request.url")
        try:
            parts = urlsplit(request["url"])
            port = parts.port
        except ValueError as exc:
            raise ModelError(f"{source}: log.entries[{index}].request.url is not a URL: {exc}") from None
        host = parts.hostname or ""
        try:
            allowlist.check(host, parts.path or "/")
        except SafetyError:
            skipped[host] = skipped.get(host, 0) + 1
            continue
        method = str(request.get("method") or "GET").upper()
        if parts.username is not None or parts.password is not None:
            redacted.add("URL credentials (user:password@)")  # dropped whatever keep_secrets says: a URL is shown
        url = urlunsplit((parts.scheme, _netloc(host, port), parts.path or "/", "", ""))
        if (method, url) in merged:
            merged[(method, url)]["weight"] += 1
        else:
            merged[(method, url)] = _har_request(request, method, url, parts.path, keep_secrets, redacted, names)
    if not merged:
        raise SafetyError(
            f"{source}: no request in the HAR is to an allowed host (hosts seen: {_hosts(skipped)}); nothing imported"
        )
    warnings = [
        f"{source}: skipped {count} request(s) to {host} (not in the traffic allowlist)"
        for host, count in sorted(skipped.items())
    ]
    if redacted:
        warnings.append(
            f"{source}: replaced {', '.join(sorted(redacted))} with {REDACTED!r} or dropped them (credentials never go "
            "into a model; "
            "put a tester's credentials back by hand or import with keep_secrets)"
        )
    model = {"requests": list(merged.values())}
    return HarImport(model, len(merged), skipped, tuple(warnings))
