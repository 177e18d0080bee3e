"""Starting a run and reporting its status (the run function: ``POST /runs``, ``GET /runs/{id}``, the schedule).

Starting (:meth:`RunService.start`):

1. validate the request (:func:`flagbridge.runs.spec.validate_run_request`: the CLI's checks, including the
   plan's oracle test against the stack's oracle configuration), and ask the target whether it answers at all
   (``probe``, once the testers are checked: one ``OPTIONS *``; no answer is a 422 ``target_not_answering`` naming
   it, and nothing is recorded or sent; each shard asks again before its first case, :mod:`flagbridge.runs.worker`);
2. make the tester pool testers for the run's duration plus a margin: register it in the tester registry
   (:class:`PoolRegistrar`, the registry's ``register_pool``) or, in a stack without the registry, check every
   key against the static tester rules. Either failure refuses the run; nothing is recorded or sent;
3. write the spec to S3 (``runs/<id>/run.json``) and record the run;
4. enqueue its shards, ten to a ``SendMessageBatch`` (SQS requests = ceil(shards / 10)). When SQS keeps
   failing, the run is recorded as ``enqueue_failed`` with how many shards made it and the answer is 503:
   repeating the same request (same ``run_id``, ``seed`` and sources) enqueues the rest (a shard enqueued twice
   is sent once: the worker's claim). A different request under an existing run id is a 409. A run until decided
   enqueues only its first round's shards; the workers send the rest in rounds (:mod:`flagbridge.runs.rounds`).

Status (:meth:`RunService.status`): planned, sent, the status histogram, errors, the rate achieved, shards by
state (``not_sent``: shards of a run until decided that no round sent), why it stopped, where the manifest is and
the oracle's verdict for the run's test; a run until decided also its rounds and why it ended.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flagbridge.errors import EnqueueError, RequestError
from flagbridge.oracle.verdicts import VerdictReadError, VerdictSource, status_verdict
from flagbridge.queues import MessageSender
from flagbridge.runs.rounds import first_rounds, round_shards, shards_sent
from flagbridge.runs.shards import shard_messages, sqs_requests
from flagbridge.runs.spec import RunSpec, spec_fingerprint, validate_run_request
from flagbridge.runs.store import ManifestStore, RunStore
from flagbridge.runs.worker import manifest_key, spec_key
from flagbridge.traffic.config import TrafficConfig
from flagbridge.traffic.decided import assess, run_ending
from flagbridge.traffic.errors import SafetyError
from flagbridge.traffic.model import Tester

if TYPE_CHECKING:
    from flagbridge.oracle.config import OracleConfig

REGISTRATION_MARGIN_SECONDS = 600
ACTOR = "flagbridge-runs"


class PoolRegistrar(Protocol):
    """The tester registry's pool registration (``flagbridge.testers.registry.TesterRegistry.register_pool``)."""

    def register_pool(
        self,
        traffic_type: str,
        keys: Iterable[str],
        duration_seconds: float,
        reason: str,
        actor: str,
        margin_seconds: float = 600,
    ) -> int: ...


def http_probe(traffic: TrafficConfig, timeout: float = 5.0) -> Callable[[RunSpec], str | None]:
    """The run's targets asked once each (``OPTIONS *``, :mod:`flagbridge.traffic.preflight`) before it starts."""
    from flagbridge.runs.spec import build_generator
    from flagbridge.traffic.preflight import preflight
    from flagbridge.traffic.sender import HttpSender

    def probe(spec: RunSpec) -> str | None:
        sender = HttpSender(traffic.allowlist, timeout=timeout)
        try:
            return preflight(build_generator(spec), sender.send)
        finally:
            sender.close()

    return probe


@dataclass
class RunService:
    store: RunStore
    manifests: ManifestStore
    sender: MessageSender
    traffic: TrafficConfig
    test_users: Any
    parallelism: int
    registrar: PoolRegistrar | None = None
    verdicts: VerdictSource | None = None
    oracle: OracleConfig | None = None
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    probe: Callable[[RunSpec], str | None] | None = None
    """Why a new run's target does not answer (:func:`http_probe`), None when it does: checked before anything."""

    # ---- start --------------------------------------------------------------------------------------------

    def sources(self, body: Any) -> dict[str, str]:
        """``plan_key`` / ``model_key``: files under ``plans/`` in the manifest bucket (the schedule uses them)."""
        from flagbridge.runs.spec import PLAN_KEY

        found: dict[str, str] = {}
        if not isinstance(body, dict):
            return found
        for name in ("plan", "model"):
            key = body.get(f"{name}_key")
            if key is None:
                continue
            if body.get(name) is not None:
                raise RequestError(400, f"invalid_{name}", f"give '{name}' or '{name}_key', not both")
            if not isinstance(key, str) or not PLAN_KEY.match(key) or ".." in key:
                raise RequestError(400, f"invalid_{name}_key", f"'{name}_key' must be a key under plans/")
            raw = self.manifests.get(key)
            if raw is None:
                raise RequestError(400, f"unknown_{name}", f"no object {key!r} in the manifest bucket")
            try:
                found[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(400, f"invalid_{name}", f"{key!r} is not UTF-8 text") from None
        return found

    def start(self, body: Any) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)``: 202 started, 200 an identical repeat, 503 enqueueing failed part-way."""
        now = self.clock_ms()
        spec, warnings = validate_run_request(
            body,
            self.traffic,
            parallelism=self.parallelism,
            now_ms=now,
            sources=self.sources(body),
            oracle=self.oracle,
        )
        fingerprint = spec_fingerprint(spec)
        record = self.store.get_run(spec.run_id)
        if record is not None:
            return self._repeat(spec, fingerprint, record)
        registered_until = self._make_testers(spec)
        unanswered = self.probe(spec) if self.probe is not None else None
        if unanswered is not None:
            raise RequestError(422, "target_not_answering", unanswered)
        self.manifests.put(spec_key(spec.run_id), json.dumps(spec.document(), separators=(",", ":")).encode())
        record = {
            "run_id": spec.run_id,
            "state": "enqueuing",
            "created_ms": now,
            "requests": spec.requests,
            "rate": spec.rate,
            "parallelism": spec.parallelism,
            "shards": spec.shards,
            "shard_size": spec.shard_size,
            "checkpoint_every": spec.checkpoint_every,
            "enqueued": 0,
            "fingerprint": fingerprint,
            "plan_hash": spec.plan_hash,
            "plan_name": spec.plan_name,
            "oracle_test": spec.oracle_test,
            "testers": len(spec.testers),
            "testers_until": registered_until,
            "target": spec.target,
            "until_decided": spec.until_decided,
        }
        if spec.until_decided:
            record["rounds"] = first_rounds(spec, self._estimate(spec))
        if not self.store.create_run(spec.run_id, record):
            existing = self.store.get_run(spec.run_id) or {}
            return self._repeat(spec, fingerprint, existing)
        return self._enqueue(spec, record, 0, warnings)

    def _make_testers(self, spec: RunSpec) -> int | None:
        expected = spec.requests / spec.rate
        if self.registrar is None:
            from flagbridge.traffic.safety import check_testers

            try:
                check_testers([Tester(key, email) for key, email in spec.testers], self.test_users)
            except SafetyError as exc:
                raise RequestError(400, "not_testers", str(exc)) from None
            return None
        try:
            return int(
                self.registrar.register_pool(
                    spec.traffic_type,
                    [key for key, _ in spec.testers],
                    expected,
                    f"test run {spec.run_id}",
                    ACTOR,
                    margin_seconds=max(REGISTRATION_MARGIN_SECONDS, expected),
                )
            )
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code is not None and getattr(exc, "status", 400) < 500:
                raise RequestError(400, "invalid_testers", str(exc)) from None
            raise RequestError(
                503, "registry_unavailable", "the tester pool could not be registered; the run was not started"
            ) from None

    def _repeat(self, spec: RunSpec, fingerprint: str, record: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        if record.get("fingerprint") != fingerprint:
            raise RequestError(
                409, "run_exists", f"run {spec.run_id!r} exists with a different plan, model or settings"
            )
        stored = self.manifests.get(spec_key(spec.run_id))
        if stored is None:  # the first attempt died before writing its spec: write it now
            self.manifests.put(spec_key(spec.run_id), json.dumps(spec.document(), separators=(",", ":")).encode())
        else:
            spec = RunSpec.from_document(json.loads(stored))
        enqueued = int(record.get("enqueued", 0))
        end = self._first_round_end(spec, record)
        if enqueued >= end:
            return 200, self._started_body(spec, end, 0, [], "already started")
        return self._enqueue(spec, record, enqueued, [])

    def _estimate(self, spec: RunSpec) -> int | None:
        """The requests the verdict read before the run asks for (the CLI's first round), None without one."""
        if self.verdicts is None or not spec.oracle_test:
            return None
        try:
            document = self.verdicts.verdict(spec.oracle_test)
        except VerdictReadError:
            return None
        return assess(spec.oracle_test, document, spec.oracle_metrics).requests

    @staticmethod
    def _first_round_end(spec: RunSpec, record: Mapping[str, Any]) -> int:
        """The shards the run function enqueues: all of them, or a run until decided's first round."""
        rounds = record.get("rounds")
        return round_shards(rounds, 0)[1] if isinstance(rounds, dict) else spec.shards

    def _enqueue(
        self, spec: RunSpec, record: Mapping[str, Any], already: int, warnings: list[str]
    ) -> tuple[int, dict[str, Any]]:
        end = self._first_round_end(spec, record)
        messages = shard_messages(spec, range(already, end))
        enqueued = already
        requests = 0
        try:
            for start in range(0, len(messages), 10):
                chunk = messages[start : start + 10]
                requests += 1
                self.sender.send_bodies([message.body() for message in chunk])
                enqueued += len(chunk)
        except EnqueueError as exc:
            self.store.update_run(spec.run_id, {"state": "enqueue_failed", "enqueued": enqueued})
            raise RequestError(
                503,
                "enqueue_failed",
                f"{enqueued} of {end} shards enqueued ({exc}); repeat the same request to enqueue the rest",
            ) from None
        self.store.update_run(spec.run_id, {"state": "enqueued", "enqueued": enqueued})
        return 202, self._started_body(spec, end, requests, warnings, "started")

    def _started_body(self, spec: RunSpec, end: int, requests: int, warnings: list[str], state: str) -> dict[str, Any]:
        return {
            "run_id": spec.run_id,
            "state": state,
            "requests": spec.requests,
            "rate": spec.rate,
            "parallelism": spec.parallelism,
            "rate_per_worker": round(spec.rate_per_worker, 3),
            "shards": spec.shards,
            "shard_size": spec.shard_size,
            "sqs_requests": requests,
            "expected_sqs_requests": sqs_requests(end),
            "seed": spec.seed,
            "plan_hash": spec.plan_hash,
            "manifest": self.manifests.location(f"runs/{spec.run_id}/manifest/"),
            "status": f"/runs/{spec.run_id}",
            "warnings": warnings,
        }

    # ---- status -------------------------------------------------------------------------------------------

    def status(self, run_id: str) -> dict[str, Any] | None:
        record = self.store.get_run(run_id)
        if record is None:
            return None
        shards = self.store.shards(run_id, int(record.get("shards", 0)))
        rounds = record.get("rounds") if isinstance(record.get("rounds"), dict) else None
        tally = _ShardTally.of(shards, shards_sent(rounds) if rounds is not None else len(shards))
        histogram, states, reasons = tally.histogram, tally.states, tally.reasons
        sent, failures, latency, elapsed = tally.sent, tally.failures, tally.latency, tally.elapsed
        run_state = self._run_state(record, states, int(record.get("shards", 0)))
        return {
            "run_id": run_id,
            "state": run_state,
            "planned": record.get("requests"),
            "sent": sent,
            "statuses": dict(sorted(histogram.items())),
            "errors": histogram.get("error", 0),
            "failures": failures,
            "latency_avg_ms": round(latency / sent, 3) if sent else None,
            "rate": record.get("rate"),
            "rate_achieved": round(sent / elapsed, 2) if elapsed > 0 else None,
            "elapsed_s": round(elapsed, 3),
            "parallelism": record.get("parallelism"),
            "shards": {"total": record.get("shards"), "enqueued": record.get("enqueued"), **dict(states)},
            "stopped": sorted(reasons),
            "until_decided": bool(record.get("until_decided")),
            "ended": rounds.get("reason") if rounds is not None else run_ending(record, run_state, reasons),
            **({"rounds": rounds["rounds"]} if rounds is not None else {}),
            "manifest": {
                "location": self.manifests.location(f"runs/{run_id}/manifest/"),
                "objects": [
                    self.manifests.location(manifest_key(run_id, s["shard"])) for s in shards if s.get("manifest")
                ],
            },
            "verdict": status_verdict(record.get("oracle_test"), self.verdicts),
            "created_ms": record.get("created_ms"),
            "testers_until": record.get("testers_until"),
        }

    @staticmethod
    def _run_state(record: Mapping[str, Any], states: Counter[str], total: int) -> str:
        if record.get("state") == "enqueue_failed":
            return "enqueue_failed"
        rounds = record.get("rounds")
        if isinstance(rounds, dict) and rounds.get("ended"):
            return "completed" if rounds["ended"] == "budget" else "stopped"
        if isinstance(rounds, dict):
            return "running" if states["sending"] or states["done"] or states["stopped"] else "queued"
        finished = states["done"] + states["stopped"]
        if total and finished == total:
            return "stopped" if states["stopped"] else "completed"
        if states["sending"] or finished:
            return "running"
        return "queued"


@dataclass
class _ShardTally:
    """What a run's shard records add up to: requests sent, statuses, shard states, stop reasons, time spent."""

    histogram: Counter[str]
    states: Counter[str]
    reasons: set[str]
    sent: int = 0
    failures: int = 0
    latency: int = 0
    elapsed: float = 0.0

    @classmethod
    def of(cls, shards: list[dict[str, Any]], unsent: int) -> _ShardTally:
        """Shards numbered ``unsent`` and above were never sent (a run until decided that ended early)."""
        tally = cls(Counter(), Counter(), set())
        for shard in shards:
            tally.sent += shard.get("sent", 0)
            tally.failures += shard.get("failures", 0)
            tally.latency += shard.get("latency_ms", 0)
            for name, value in shard.items():
                if name.startswith("st_"):
                    tally.histogram[name[3:]] += value
            state = shard.get("state") or ("sending" if "started" in shard else "pending")
            tally.states["not_sent" if shard["shard"] >= unsent else state] += 1
            if shard.get("reason"):
                tally.reasons.add(str(shard["reason"]))
        started = [s["started"] for s in shards if "started" in s]
        updated = [s.get("finished") or s.get("updated") for s in shards if "started" in s]
        if started and any(updated):
            tally.elapsed = (max(u for u in updated if u) - min(started)) / 1000
        return tally
