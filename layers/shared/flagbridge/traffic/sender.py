"""Sending a generated request exactly as generated, with the standard library's ``http.client``.

- The bytes on the wire are :meth:`WireRequest.to_bytes`: ``http.client`` adds nothing (no Host, no
  Accept-Encoding of its own; Content-Length comes from the request).
- **No redirect is ever followed**, to another host or the same one: a 3xx is an answer like any
  other, recorded in the manifest (a redirect could otherwise lead a run off its allowlist).
- A per-request timeout (default 10 s, Schemathesis's default); a timeout or a refused connection is an
  :class:`~flagbridge.traffic.manifest.Outcome` with ``error`` set, never an exception.
- Connections are kept alive per (scheme, host, port); a kept-alive connection the server had closed is
  retried once on a fresh connection (nothing was answered, so nothing was processed twice).
- Every destination is checked against the allowlist before a connection is opened.
"""

from __future__ import annotations

import http.client
import ssl
import time

from flagbridge.backoff import parse_retry_after
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
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def _connection(self, request: WireRequest) -> tuple[http.client.HTTPConnection, bool]:
        key = (request.scheme, request.connect_host, request.connect_port)
        connection = self._connections.get(key)
        if connection is not None:
            return connection, True
        if self.allowlist is not None:
            path = request.target.split("?", 1)[0]
            # ``*`` (the preflight's OPTIONS *) names the server, no path: only its host is checked
            self.allowlist.check(request.connect_host, None if path == "*" else path, "target")
        if request.scheme == "https":
            connection = http.client.HTTPSConnection(
                request.connect_host, request.connect_port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(request.connect_host, request.connect_port, timeout=self.timeout)
        self._connections[key] = connection
        return connection, False

    def _drop(self, request: WireRequest) -> None:
        connection = self._connections.pop((request.scheme, request.connect_host, request.connect_port), None)
        if connection is not None:
            connection.close()

    def send(self, request: WireRequest) -> Outcome:
        """Send one request and read its answer (at most 1 MiB of body is read and hashed)."""
        for attempt in range(2):
            connection, reused = self._connection(request)
            started = time.perf_counter()
            try:
                connection.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
                for name, value in request.headers:
                    connection.putheader(name, value)
                connection.endheaders(request.body or None)
                response = connection.getresponse()
                body = response.read(MAX_BODY_READ)
                if response.length:  # more than we read: do not reuse the connection
                    self._drop(request)
                elapsed = (time.perf_counter() - started) * 1000
                headers = tuple((name.lower(), value) for name, value in response.getheaders())
                if response.will_close:
                    self._drop(request)
                excerpt = body_excerpt(response.status, body)
                return Outcome(response.status, elapsed, len(body), body_digest(body), None, headers, excerpt)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(request)
                if reused and attempt == 0:
                    continue
                return Outcome(None, (time.perf_counter() - started) * 1000, 0, "", f"{type(exc).__name__}: {exc}")
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                self._drop(request)
                return Outcome(None, (time.perf_counter() - started) * 1000, 0, "", f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def retry_after_seconds(outcome: Outcome, default: float = 5.0, now: float | None = None) -> float:
    """A 429's ``Retry-After`` in seconds (delta or HTTP date), else ``default``; capped at 300 s.

    The header is parsed by :func:`flagbridge.backoff.parse_retry_after`: a malformed value counts as absent.
    """
    seconds = parse_retry_after(dict(outcome.headers).get("retry-after"), now)
    return default if seconds is None else min(seconds, 300.0)
