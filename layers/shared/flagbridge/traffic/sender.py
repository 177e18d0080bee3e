"""Sending a generated request exactly as generated, through the one outbound adapter (:mod:`flagbridge.outbound`).

- The bytes on the wire are :meth:`WireRequest.to_bytes`: the request goes raw (``Outbound.exchange`` with
  ``raw=True``), nothing added (no Host, no Accept-Encoding of its own; Content-Length comes from the request).
- **No redirect is ever followed**, to another host or the same one: a 3xx is an answer like any
  other, recorded in the manifest (a redirect could otherwise lead a run off its allowlist).
- A per-request timeout (default 10 s, Schemathesis's default) for connecting and for each read; a timeout or a
  refused connection is an :class:`~flagbridge.traffic.manifest.Outcome` with ``error`` set, never an exception.
- Connections are kept alive per (scheme, host, port); a kept-alive connection the server had closed is
  retried once on a fresh connection (nothing was answered, so nothing was processed twice).
- Every destination is checked against the allowlist before a connection to it is opened.
"""

from __future__ import annotations

import time

from flagbridge.backoff import parse_retry_after
from flagbridge.outbound import Origin, Outbound, TransportError
from flagbridge.traffic.generator import WireRequest
from flagbridge.traffic.manifest import Outcome, body_digest, body_excerpt
from flagbridge.traffic.safety import Allowlist

DEFAULT_TIMEOUT = 10.0
MAX_BODY_READ = 1 << 20


class HttpSender:
    """Sends :class:`WireRequest` objects; one kept-alive connection per destination."""

    def __init__(self, allowlist: Allowlist | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.allowlist = allowlist
        self.timeout = timeout
        self._http = Outbound(connect_timeout=timeout, read_timeout=timeout, allowlist=allowlist, max_idle=1)

    def send(self, request: WireRequest) -> Outcome:
        """Send one request and read its answer (at most 1 MiB of body is read and hashed)."""
        origin = Origin(request.scheme, request.connect_host, request.connect_port)
        for attempt in range(2):
            started = time.perf_counter()
            try:
                answer = self._http.exchange(
                    origin, request.method, request.target, request.headers, request.body,
                    raw=True, max_body=MAX_BODY_READ,
                )  # fmt: skip
            except TransportError as exc:
                if exc.stale and attempt == 0:
                    continue
                return Outcome(None, (time.perf_counter() - started) * 1000, 0, "", str(exc))
            elapsed = (time.perf_counter() - started) * 1000
            body = answer.content
            excerpt = body_excerpt(answer.status, body)
            return Outcome(answer.status, elapsed, len(body), body_digest(body), None, answer.header_list, excerpt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()


def retry_after_seconds(outcome: Outcome, default: float = 5.0, now: float | None = None) -> float:
    """A 429's ``Retry-After`` in seconds (delta or HTTP date), else ``default``; capped at 300 s.

    The header is parsed by :func:`flagbridge.backoff.parse_retry_after`: a malformed value counts as absent.
    """
    seconds = parse_retry_after(dict(outcome.headers).get("retry-after"), now)
    return default if seconds is None else min(seconds, 300.0)
