"""A sample service under test for ``make run``'s demo (local only, never deployed): a checkout behind a flag.

``POST /checkout`` (JSON ``{"currency", "items": [{"sku", "quantity"}], "coupon"}``) and ``GET /products/{sku}``,
on 127.0.0.1. The caller is the ``X-User-Key`` header. Everything a real service behind Split and mParticle does
with the bridge, it does over HTTP as those clients do:

* **The flag** ``new_checkout``: each user key gets a treatment by hash bucket, deterministically (50% ``on``,
  50% ``off``; Split buckets with murmur3 and the flag's seed, this uses SHA-256: what matters is that a key
  always gets the same treatment). Each evaluation is an **impression**, sent to the bridge's Split webhook as
  Split sends them: a gzipped JSON array, the token in the URL, every evaluation (Split's *debug* impressions
  mode), batched every :data:`FLUSH_SECONDS`. A key's first impression is posted before its request is answered,
  so the bridge knows the exposure before any result of it can reach the oracle.
* **Its own events**: one ``api_response`` custom event per answered request (``status``, ``latency_ms``,
  ``route``), batched per user, posted to the bridge's mParticle Events API (``/mparticle/v2/bulkevents``, HTTP
  Basic) every :data:`FLUSH_SECONDS`. A request that carries the traffic generator's run tag
  (``X-Flagbridge-Run``) adds its run and case ids as ``flagbridge_run`` and ``flagbridge_case``, as services echo
  a correlation id: the oracle then counts that request once, from the generator's own result, not twice.
* **The bug**, in treatment ``on`` only: the new checkout reserves stock *before* it validates the quantity, and
  the inventory client raises on anything but a positive whole number, unhandled: a 500. Treatment ``off``
  validates first and answers the same inputs with a clean 422.

* **The kill**: ``POST /_demo/split-kill`` takes what Split's streaming sends SDKs when a flag is killed (a
  ``SPLIT_KILL`` notification: ``{"splitName", "defaultTreatment", "changeNumber"}``); from then on every key
  gets the default treatment with label ``killed`` in that change number, as an SDK serves a killed flag, and
  its first impression of it goes out before the request is answered. ``make run``'s demo relays the kill the
  local Split Admin receiver recorded.

Nothing accepted is dropped silently: a batch the bridge does not take after retries is counted in
``GET /_demo/stats`` (``undelivered``). ``python -m local.demo.service --bridge URL`` runs it alone; the
first line it prints is ``{"url": ...}``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from flagbridge.outbound import Outbound, TransportError
from local.stopping import StopRequest

FLAG = "new_checkout"
ON_PERCENT = 50
ENVIRONMENT_ID = "env-prod-0001"
ENVIRONMENT_NAME = "Production"
LABEL = "default rule"
KILLED_LABEL = "killed"
PRICES = {"A1": 1999, "B2": 4500, "C3": 850}  # cents
CURRENCIES = ("EUR", "USD")
MAX_QUANTITY = 99
MAX_BODY_BYTES = 64 * 1024
FLUSH_SECONDS = 0.25
MAX_EVENTS_PER_BATCH = 100  # mParticle's limits, as the traffic results keep them
MAX_BATCHES_PER_REQUEST = 100
RUN_TAG_HEADER = "X-Flagbridge-Run"


def treatment_for(key: str, flag: str = FLAG, on_percent: int = ON_PERCENT) -> str:
    """The key's treatment: its hash bucket (0..99) below ``on_percent`` is ``on``."""
    bucket = int.from_bytes(hashlib.sha256(f"{flag}:{key}".encode()).digest()[:8], "big") % 100
    return "on" if bucket < on_percent else "off"


class InventoryError(Exception):
    """The new inventory client's refusal (the ``on`` code path lets it escape: the bug)."""


def reserve_units(sku: str, quantity: Any) -> int:
    """The new inventory client: reserves ``quantity`` units; raises on anything but a positive whole number."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InventoryError(f"cannot reserve {type(quantity).__name__} units of {sku}")
    return quantity


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class Refused(Exception):
    """A clean 4xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.answer = Answer(status, {"error": code, "message": message})


def _parse_items(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        raise Refused(400, "invalid_body", "the body must be a JSON object")
    items = document.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise Refused(422, "invalid_items", "items must be a non-empty list of objects")
    for item in items:
        if item.get("sku") not in PRICES:
            raise Refused(422, "unknown_sku", "items[].sku must be a known product")
    if document.get("currency") not in CURRENCIES:
        raise Refused(422, "invalid_currency", f"currency must be one of {', '.join(CURRENCIES)}")
    return items


def _validate_quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise Refused(422, "invalid_quantity", f"items[].quantity must be a whole number from 1 to {MAX_QUANTITY}")
    return quantity


def checkout(document: Any, treatment: str) -> Answer:
    """The checkout, old (``off``) or new (``on``). Raises on the ``on`` bug; :class:`Refused` for bad input."""
    items = _parse_items(document)
    total = 0
    for item in items:
        if treatment == "on":
            reserve_units(item["sku"], item.get("quantity"))  # the bug: before validation, unhandled
        units = _validate_quantity(item.get("quantity"))
        if treatment == "off":
            reserve_units(item["sku"], units)
        total += PRICES[item["sku"]] * units
    return Answer(201, {"total_cents": total, "currency": document["currency"], "checkout": treatment})


def product(sku: str) -> Answer:
    if sku not in PRICES:
        raise Refused(404, "not_found", "no such product")
    return Answer(200, {"sku": sku, "price_cents": PRICES[sku]})


Post = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST and return the status (0 when nothing answered).

    Through the layer's outbound adapter, which follows no redirect: ``urlopen`` followed a 302 with the
    Authorization header, sending the mParticle credentials to the ``Location``'s host.
    """
    http = Outbound(connect_timeout=30.0, read_timeout=30.0, max_idle=0)
    try:
        return http.post(url, body, headers).status
    except TransportError:
        return 0


@dataclass
class BridgeReporter:
    """Impressions to the Split webhook, ``api_response`` events to the mParticle ingest, batched, with retries."""

    bridge_url: str
    webhook_token: str
    mparticle_key: str
    mparticle_secret: str = field(repr=False)
    flag_version: int = field(default_factory=lambda: int(time.time() * 1000))
    post: Post = http_post
    retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    impressions_sent: int = 0
    events_sent: int = 0
    undelivered_impressions: int = 0
    undelivered_events: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _send_lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: set[tuple[str, str, int]] = field(default_factory=set)
    _impressions: list[dict[str, Any]] = field(default_factory=list)
    _events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _sequence: int = 0

    def impression(self, key: str, treatment: str, at_ms: int, label: str = LABEL, version: int | None = None) -> bool:
        """Record one evaluation; True when it is the key's first of this treatment and flag version (then
        :meth:`flush_impressions` right away)."""
        version = self.flag_version if version is None else version
        identity = (key, treatment, version)
        with self._lock:
            first = identity not in self._seen
            self._seen.add(identity)
            self._impressions.append(
                {
                    "key": key,
                    "split": FLAG,
                    "environmentId": ENVIRONMENT_ID,
                    "environmentName": ENVIRONMENT_NAME,
                    "treatment": treatment,
                    "time": at_ms,
                    "bucketingKey": None,
                    "label": label,
                    "machineName": "demo-checkout",
                    "machineIp": "127.0.0.1",
                    "splitVersionNumber": version,
                    "sdk": "python",
                    "sdkVersion": "10.5.1",
                    "properties": None,
                }
            )
            return first

    def event(self, key: str, attributes: dict[str, Any], at_ms: int) -> None:
        with self._lock:
            self._sequence += 1
            self._events.setdefault(key, []).append(
                {
                    "event_type": "custom_event",
                    "data": {
                        "event_name": "api_response",
                        "custom_event_type": "other",
                        "timestamp_unixtime_ms": at_ms,
                        "source_message_id": f"demo-{self.flag_version}-{self._sequence}",
                        "custom_attributes": attributes,
                    },
                }
            )

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._impressions) + sum(len(events) for events in self._events.values())

    def flush(self) -> None:
        with self._send_lock:  # one sender at a time: batches leave in order, counts stay exact
            self._flush_impressions()
            self._flush_events()

    def flush_impressions(self) -> None:
        with self._send_lock:
            self._flush_impressions()

    def _flush_impressions(self) -> None:
        with self._lock:
            impressions, self._impressions = self._impressions, []
        if not impressions:
            return
        body = gzip.compress(json.dumps(impressions, separators=(",", ":")).encode())
        url = f"{self.bridge_url}/split/impressions?token={quote(self.webhook_token, safe='')}"
        headers = {"Content-Type": "application/json", "User-Agent": "Split-Webhook/1.0"}
        if self._deliver(url, body, headers):
            self.impressions_sent += len(impressions)
        else:
            self.undelivered_impressions += len(impressions)

    def _flush_events(self) -> None:
        with self._lock:
            pending, self._events = self._events, {}
            self._sequence += 1
            sequence = self._sequence
        batches = [
            {
                "environment": "production",
                "source_request_id": f"demo-{self.flag_version}-{sequence}-{index}-{start}",
                "user_identities": {"customer_id": key},
                "events": events[start : start + MAX_EVENTS_PER_BATCH],
            }
            for index, (key, events) in enumerate(sorted(pending.items()))
            for start in range(0, len(events), MAX_EVENTS_PER_BATCH)
        ]
        credentials = base64.b64encode(f"{self.mparticle_key}:{self.mparticle_secret}".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
        for start in range(0, len(batches), MAX_BATCHES_PER_REQUEST):
            chunk = batches[start : start + MAX_BATCHES_PER_REQUEST]
            count = sum(len(batch["events"]) for batch in chunk)
            body = json.dumps(chunk, separators=(",", ":")).encode()
            if self._deliver(f"{self.bridge_url}/mparticle/v2/bulkevents", body, headers):
                self.events_sent += count
            else:
                self.undelivered_events += count

    def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        for attempt in range(self.retries):
            status = self.post(url, body, headers)
            if 200 <= status < 300:
                return True
            if 400 <= status < 500 and status != 429:
                return False  # refused: the same bytes will be refused again
            self.sleep(0.2 * 2**attempt)
        return False

    def stats(self) -> dict[str, int]:
        return {
            "impressions_sent": self.impressions_sent,
            "events_sent": self.events_sent,
            "undelivered_impressions": self.undelivered_impressions,
            "undelivered_events": self.undelivered_events,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class Kill:
    """A ``SPLIT_KILL`` notification: the flag now serves ``default_treatment``, label killed, in ``change_number``."""

    default_treatment: str
    change_number: int


def parse_split_kill(body: bytes, flag_version: int) -> Kill:
    """The kill notification's body, or Refused naming what is wrong with it."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Refused(400, "invalid_json", "the body is not JSON") from exc
    if not isinstance(document, dict) or document.get("splitName") != FLAG:
        raise Refused(422, "unknown_split", f"splitName must be {FLAG!r}")
    treatment, change = document.get("defaultTreatment"), document.get("changeNumber")
    if not isinstance(treatment, str) or not treatment:
        raise Refused(422, "invalid_default_treatment", "defaultTreatment must be a non-empty string")
    if not isinstance(change, int) or isinstance(change, bool) or change <= flag_version:
        raise Refused(422, "invalid_change_number", f"changeNumber must be a whole number above {flag_version}")
    return Kill(treatment, change)


class CheckoutServer(ThreadingHTTPServer):
    daemon_threads = True
    reporter: BridgeReporter
    answered: Counter[tuple[str, int]]
    """(treatment, status) -> requests answered; treatment ``-`` before a user is known."""
    answered_lock: threading.Lock
    kill: Kill | None = None

    def flag(self, key: str) -> tuple[str, str, int]:
        """``(treatment, label, version)`` the key is served: its bucket's, or the default one once killed."""
        kill = self.kill
        if kill is not None:
            return kill.default_treatment, KILLED_LABEL, kill.change_number
        return treatment_for(key), LABEL, self.reporter.flag_version


class CheckoutHandler(BaseHTTPRequestHandler):
    """Every method lands in :meth:`dispatch` (an unknown method is a 405, never http.server's 501)."""

    server: CheckoutServer
    protocol_version = "HTTP/1.1"
    server_version = "demo-checkout/1"
    wbufsize = 1 << 16  # the head and the body leave in one write (flushed per request by http.server)
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self.dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def dispatch(self) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path
        if path.startswith("/_demo/"):
            self._local(path)
            return
        key = (self.headers.get("X-User-Key") or "").strip()
        treatment, label, version = self.server.flag(key) if key else ("-", LABEL, 0)
        try:
            answer = self._answer(path, key, treatment, label, version)
        except Refused as refused:
            answer = refused.answer
        except Exception as exc:  # the bug surfaces here as in a real framework: a bare 500
            answer = Answer(500, {"error": "internal_error", "message": type(exc).__name__})
        self._send(answer)
        if key:
            attributes: dict[str, Any] = {
                "status": answer.status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "route": "checkout" if path == "/checkout" else "product" if path.startswith("/products/") else "other",
            }
            run_tag = self.headers.get(RUN_TAG_HEADER)
            if run_tag:  # <run id>.<case id>.<signature>: echoed as a correlation id, never trusted for anything
                run, _, rest = run_tag.partition(".")
                attributes["flagbridge_run"] = run[:64]
                attributes["flagbridge_case"] = rest.partition(".")[0][:64]
            self.server.reporter.event(key, attributes, int(time.time() * 1000))
        with self.server.answered_lock:
            self.server.answered[(treatment, answer.status)] += 1

    def _answer(self, path: str, key: str, treatment: str, label: str, version: int) -> Answer:
        body = self._read_body()
        if not key:
            raise Refused(401, "missing_user", "X-User-Key is required")
        if self.server.reporter.impression(key, treatment, int(time.time() * 1000), label, version):
            self.server.reporter.flush_impressions()
        if path == "/checkout":
            if self.command != "POST":
                raise Refused(405, "method_not_allowed", "POST /checkout")
            if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
                raise Refused(415, "unsupported_media_type", "Content-Type must be application/json")
            try:
                document = json.loads(body)
            except ValueError as exc:
                raise Refused(400, "invalid_json", "the body is not JSON") from exc
            return checkout(document, treatment)
        if path.startswith("/products/") and path.count("/") == 2:
            if self.command not in ("GET", "HEAD"):
                raise Refused(405, "method_not_allowed", "GET /products/{sku}")
            return product(unquote(path.removeprefix("/products/")))
        raise Refused(404, "not_found", "no such route")

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_header)
        except ValueError as exc:
            self.close_connection = True
            raise Refused(400, "invalid_length", "Content-Length is not a number") from exc
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise Refused(413, "too_large", f"at most {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _local(self, path: str) -> None:
        if path == "/_demo/split-kill":
            try:
                if self.command != "POST":
                    raise Refused(405, "method_not_allowed", "POST /_demo/split-kill")
                self.server.kill = parse_split_kill(self._read_body(), self.server.reporter.flag_version)
            except Refused as refused:
                self._send(refused.answer)
                return
        if path == "/_demo/flush":
            self.server.reporter.flush()
        with self.server.answered_lock:
            by_treatment: dict[str, dict[str, int]] = {}
            for (treatment, status), count in sorted(self.server.answered.items()):
                by_treatment.setdefault(treatment, {})[str(status)] = count
        document = {
            "flag": FLAG,
            "flag_version": self.server.reporter.flag_version,
            "killed": None if self.server.kill is None else self.server.kill.change_number,
            "answered": sum(sum(statuses.values()) for statuses in by_treatment.values()),
            "statuses": by_treatment,
            **self.server.reporter.stats(),
        }
        self._send(Answer(200, document))

    def _send(self, answer: Answer) -> None:
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


@dataclass
class CheckoutService:
    """The server and its reporter's flusher thread; ``start()``, read ``url``, ``stop()`` (flushes first)."""

    reporter: BridgeReporter
    host: str = "127.0.0.1"
    port: int = 0
    _server: CheckoutServer | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> CheckoutService:
        server = CheckoutServer((self.host, self.port), CheckoutHandler)
        server.reporter = self.reporter
        server.answered = Counter()
        server.answered_lock = threading.Lock()
        self._server = server
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        flushing = threading.Thread(target=self._flush_loop, daemon=True)
        self._threads = [serving, flushing]
        for thread in self._threads:
            thread.start()
        return self

    def _flush_loop(self) -> None:
        while not self._stopping.wait(FLUSH_SECONDS):
            self.reporter.flush()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self.reporter.flush()


def local_secret(logical_id: str) -> str:
    """A local bridge's secret value: ``FLAGBRIDGE_LOCAL_SECRET_<LogicalId>`` if set, else the runner's default."""
    from local.resources import SECRET_DEFAULTS, SECRET_ENV_PREFIX

    return os.environ.get(SECRET_ENV_PREFIX + logical_id) or SECRET_DEFAULTS[logical_id]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo.service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bridge", required=True, help="the local bridge's base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--flag-version", type=int, help="the flag's version (default: now, in epoch ms)")
    args = parser.parse_args(argv)
    credentials = json.loads(local_secret("MParticleCredentialsSecret"))
    reporter = BridgeReporter(
        args.bridge.rstrip("/"),
        local_secret("WebhookTokenSecret"),
        os.environ.get("FLAGBRIDGE_MPARTICLE_KEY") or credentials["api_key"],
        os.environ.get("FLAGBRIDGE_MPARTICLE_SECRET") or credentials["api_secret"],
    )
    if args.flag_version is not None:
        reporter.flag_version = args.flag_version
    service = CheckoutService(reporter, port=args.port).start()
    stop = StopRequest()
    stop.install()
    print(json.dumps({"url": service.url, "flag": FLAG, "flag_version": reporter.flag_version}), flush=True)
    stop.wait()
    service.stop()
    print(json.dumps({"stopped": True, **reporter.stats()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
