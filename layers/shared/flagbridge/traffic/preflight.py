"""Before a run sends anything: does its target answer at all?

A run whose target does not answer (a wrong port, a host that is down, a name that does not resolve) would send
every case into the void and report each one to the bridge as a request nothing answered, moving the oracle's
verdicts with the run's own mistake. :func:`preflight` asks each destination of the run once, before the first
case, with ``OPTIONS *``: the request RFC 9110 (section 9.3.7) defines for asking a server about itself, a "ping"
that names no resource, so no route of the service runs and no tester, run tag or body is sent. **Any** HTTP answer
(a 404, a 405, a 501, a 500) means the target answers; only no answer at all (refused, timed out, reset, no such
host) stops the run before it starts::

    target http://127.0.0.1:9 does not answer (ConnectionRefusedError: [Errno 111] Connection refused); nothing
    was sent

The probe goes through the run's own ``send`` (the same allowlist, timeout and TLS settings as the cases).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from flagbridge.traffic.generator import TrafficGenerator, WireRequest
from flagbridge.traffic.manifest import Outcome

PROBE_TARGET = "*"
USER_AGENT = b"flagbridge-traffic/1 preflight"


def probes(generator: TrafficGenerator) -> list[tuple[str, WireRequest]]:
    """One ``OPTIONS *`` per destination (scheme, host, port) of the run, with the URL that names it."""
    target = generator.target
    found: dict[tuple[str, str, int], tuple[str, WireRequest]] = {}
    if target is not None:
        destinations = [(target.scheme, target.host, target.port, target.netloc, target.base_path)]
    else:
        destinations = []
        for request in generator.model.requests:
            parts = urlsplit(f"{request.scheme}://{request.host}")
            port = parts.port or (443 if request.scheme == "https" else 80)
            destinations.append((request.scheme, parts.hostname or "", port, request.host, ""))
    for scheme, host, port, netloc, base in destinations:
        if (scheme, host, port) in found:
            continue
        headers = (("Host", netloc.encode("utf-8")), ("User-Agent", USER_AGENT))
        probe = WireRequest("OPTIONS", scheme, host, port, PROBE_TARGET, headers, b"")
        found[(scheme, host, port)] = (f"{scheme}://{netloc}{base}", probe)
    return list(found.values())


def preflight(generator: TrafficGenerator, send: Callable[[WireRequest], Outcome]) -> str | None:
    """Why the run must not start (a destination that does not answer), or None when every one answers."""
    for url, probe in probes(generator):
        outcome = send(probe)
        if outcome.status is None:
            return f"target {url} does not answer ({outcome.error or 'no answer'}); nothing was sent"
    return None
