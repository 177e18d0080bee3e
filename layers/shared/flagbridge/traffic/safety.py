"""Safe in production by construction: the allowlist, the tester check, the signed run tag, the rate limit.

- :class:`Allowlist`: configured hosts (exact, case-insensitive; ``*.example.com`` for subdomains) and,
  optionally, path prefixes per host. A plan, model or HAR naming any other host is refused before
  anything is sent.
- :func:`check_testers`: every key of the tester pool must be a tester by the bridge's own tester
  rules (:class:`flagbridge.cdp.testers.TesterResolver`, the rules the router applies); otherwise
  the run is refused, naming the first key that is not.
- :class:`RunTag`: ``X-Flagbridge-Run: <run id>.<case id>.<HMAC-SHA256, 32 hex>``. A **label, never a
  capability**: it lets the target's logs and the oracle attribute a request to a run; nothing may
  grant anything for carrying it (a test header that triggered side effects was exploitable; see
  testing-loop.md §B). Verify with :meth:`RunTag.verify` (constant time).
- :class:`TokenBucket`: requests per second with a burst, on an injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagbridge.traffic.errors import SafetyError
from flagbridge.traffic.model import Tester

MAX_RATE_TEXT = 40  # "1000000.5/minute" with room: longer is never a rate, and is refused before the regex
MIN_RATE = 0.001  # one request in about 17 minutes; below that a rate's arithmetic underflows toward 0
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute)\s*$")


@dataclass(frozen=True, slots=True)
class AllowedHost:
    host: str
    path_prefixes: tuple[str, ...] = ()

    def matches_host(self, host: str) -> bool:
        wanted = host.lower().rstrip(".")
        pattern = self.host.lower().rstrip(".")
        if pattern.startswith("*."):
            return wanted.endswith(pattern[1:]) and wanted != pattern[2:]
        return wanted == pattern


@dataclass(frozen=True)
class Allowlist:
    """Where traffic may go. Empty means nowhere."""

    hosts: tuple[AllowedHost, ...] = ()

    @classmethod
    def from_document(cls, document: Any, where: str = "traffic.allowlist") -> Allowlist:
        if document is None:
            return cls()
        if not isinstance(document, list):
            raise SafetyError(f"'{where}' must be a list of hosts or {{host, path_prefixes}}")
        hosts = []
        for index, item in enumerate(document):
            if isinstance(item, str) and item:
                hosts.append(AllowedHost(item))
            elif isinstance(item, dict) and isinstance(item.get("host"), str):
                prefixes = item.get("path_prefixes") or []
                if not isinstance(prefixes, list) or not all(
                    isinstance(p, str) and p.startswith("/") for p in prefixes
                ):
                    raise SafetyError(f"'{where}.{index}.path_prefixes' must be a list of paths starting with /")
                hosts.append(AllowedHost(item["host"], tuple(prefixes)))
            else:
                raise SafetyError(f"'{where}.{index}' must be a host or {{host, path_prefixes}}")
        return cls(tuple(hosts))

    def check(self, host: str, path: str | None = None, what: str = "host") -> None:
        """Raise SafetyError unless ``host`` (and ``path``, when given) is allowed."""
        entries = [entry for entry in self.hosts if entry.matches_host(host)]
        if not entries:
            allowed = ", ".join(entry.host for entry in self.hosts) or "none configured"
            raise SafetyError(f"{what} {host!r} is not in the traffic allowlist ({allowed}); nothing was sent")
        if path is None:
            return
        for entry in entries:
            if not entry.path_prefixes or any(_under(path, prefix) for prefix in entry.path_prefixes):
                return
        prefixes = ", ".join(prefix for entry in entries for prefix in entry.path_prefixes)
        raise SafetyError(
            f"{what} path {path!r} on {host!r} is outside the allowed prefixes ({prefixes}); nothing was sent"
        )

    def check_all(self, hosts: Iterable[tuple[str, str | None, str]]) -> None:
        for host, path, what in hosts:
            self.check(host, path, what)


def _under(path: str, prefix: str) -> bool:
    return path == prefix.rstrip("/") or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def check_testers(pool: Sequence[Tester], rules: Any) -> list[str]:
    """Check every tester against the bridge's tester rules; return the matching rule per tester.

    ``rules`` is the configuration's ``test_users`` (or a compiled resolver). The check builds the
    batch the results will be reported with (``customer_id`` = key, ``email``), exactly what the router
    will resolve. Profile marks are not consulted (they need the profile store): a pool must be testers
    by a static rule.
    """
    from flagbridge.cdp.batch import normalize_batch
    from flagbridge.cdp.testers import TesterResolver

    resolver = rules if isinstance(rules, TesterResolver) else TesterResolver(rules)
    matched = []
    for tester in pool:
        identities = {"customer_id": tester.key}
        if tester.email:
            identities["email"] = tester.email
        batch = normalize_batch({"environment": "production", "user_identities": identities, "events": []})
        decision = resolver.resolve(batch)
        if not decision.is_tester:
            raise SafetyError(
                f"tester pool key {tester.key!r} is not a tester by the bridge's tester rules "
                "(test_users.rules); refusing to run, nothing was sent"
            )
        matched.append(str(decision.rule))
    return matched


@dataclass(frozen=True)
class RunTag:
    """The signed run tag header (a label, never a capability)."""

    key: bytes = field(repr=False)
    header: str = "X-Flagbridge-Run"

    def signature(self, run_id: str, case_id: str) -> str:
        return hmac.new(self.key, f"{run_id}|{case_id}".encode(), hashlib.sha256).hexdigest()[:32]

    def value(self, run_id: str, case_id: str) -> str:
        return f"{run_id}.{case_id}.{self.signature(run_id, case_id)}"

    def verify(self, value: str) -> tuple[str, str] | None:
        """``(run_id, case_id)`` when ``value`` was signed with this key, else None."""
        parts = value.rsplit(".", 2)
        if len(parts) != 3:
            return None
        run_id, case_id, signature = parts
        try:
            expected = self.signature(run_id, case_id)
        except UnicodeEncodeError:  # a lone surrogate in a forged id: nothing this key signed
            return None
        # as bytes: compare_digest raises on a str with non-ASCII characters, and the value is anyone's
        if hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected.encode("ascii")):
            return run_id, case_id
        return None


def parse_rate(text: str) -> float:
    """``"50/s"`` → 50.0 requests per second; ``"600/m"`` → 10.0 (at least :data:`MIN_RATE`, finite)."""
    match = _RATE.match(text) if len(text) <= MAX_RATE_TEXT else None
    if match is None or float(match.group(1)) <= 0:
        raise SafetyError(f"--rate must look like 50/s or 600/m, got {text[:MAX_RATE_TEXT]!r}")
    value = float(match.group(1))
    rate = value if match.group(2).startswith("s") else value / 60.0
    if not MIN_RATE <= rate < math.inf:
        raise SafetyError(f"--rate must be at least {MIN_RATE:g}/s and finite, got {text!r}")
    return rate


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` banked. Clock and sleep are injected."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise SafetyError("the rate must be above 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        self._refill()
        slept = 0.0
        if self._tokens < 1.0:
            slept = (1.0 - self._tokens) / self.rate
            self._sleep(slept)
            self._refill()
            self._tokens = max(self._tokens, 1.0)  # waited long enough; float rounding must not loop
        self._tokens -= 1.0
        return slept

    def pause(self, seconds: float) -> None:
        """Back off: no tokens until ``seconds`` from now (a 429's Retry-After)."""
        self._sleep(seconds)
        self._last = self._clock()
        self._tokens = 0.0
