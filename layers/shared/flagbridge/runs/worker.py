"""Sending one shard, exactly once in effect: claim, send from the last recorded case, record, finish.

For each shard message (:class:`ShardWorker.process`):

1. **Claim** the shard (:meth:`RunStore.claim`, one conditional write). A finished shard (a redelivered or
   duplicated message) is skipped; a shard another live worker holds is handed back to the queue for later.
2. **Resume** at the claim's ``next_index``: the first case not recorded as sent. A crash mid-shard loses no
   case and re-sends none that was recorded.
3. **Send** with the traffic package's run loop (:func:`flagbridge.traffic.run.run_traffic`): the run's
   generator (same plan hash, seed and clock: byte-identical cases), a token bucket at the run's rate divided
   by the parallelism, 429 back-off with ``Retry-After``, results reported to the bridge as tester events.
4. **Record** progress after every ``checkpoint_every`` cases (default 1): ``next_index`` and the counters, in
   one write conditional on still owning the claim (a worker whose claim was taken over stops there).
   Manifest lines are written to S3 in parts of ``part_cases`` lines, each right after a progress write.
5. **Stop** between batches when the stop switch says so (the shard ends ``stopped``), or hand the shard back
   (released claim, message visible again) when the invocation is about to time out. Before its first case the
   shard asks its target whether it answers at all (:func:`flagbridge.traffic.preflight.preflight`, one
   ``OPTIONS *``): a target that does not answer ends the shard ``stopped`` with ``target ... does not answer``,
   having sent and reported nothing. Mid-shard, ``max_unanswered`` requests in a row with no answer (the run's,
   default 20) end it ``stopped`` with ``target ... stopped answering``.
6. **Finish**: the shard's manifest (one NDJSON object: the run header, one line per case sent, a summary) is
   assembled from its parts; cases recorded as sent whose line was lost in a crash get a line saying their
   response was not recorded. Then the shard is marked ``done``/``stopped`` and its parts deleted.
7. **Rounds** (a run until decided): the worker that finishes a round's last shard sends the delayed look, and a
   look message is processed here too (:class:`flagbridge.runs.rounds.Rounds`).

**The remaining window.** A case is recorded *after* it is sent. An exception mid-shard records what was sent
and releases the claim: nothing is sent twice. A worker *killed* between sending a case and recording it (out of
memory, the sandbox gone) re-sends up to ``checkpoint_every`` cases on resume, once its lease has run out: with
the default of 1, at most one duplicate per kill. The bridge drops the duplicate result event (same
``source_message_id``); the target sees it twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from flagbridge.runs.rounds import Rounds
from flagbridge.runs.shards import LookMessage, ShardMessage, ShardMessageError, check_against, parse_message
from flagbridge.runs.spec import RunSpec
from flagbridge.runs.store import (
    Claim,
    ClaimLostError,
    ManifestStore,
    RunStore,
    ShardBusyError,
    ShardFinishedError,
    counter_name,
)
from flagbridge.traffic.generator import Case, TrafficGenerator, WireRequest
from flagbridge.traffic.manifest import ManifestWriter, Outcome, case_record
from flagbridge.traffic.preflight import preflight
from flagbridge.traffic.results import ResultReporter
from flagbridge.traffic.run import RunSettings, RunSummary, run_traffic
from flagbridge.traffic.stop import Check

DEADLINE_REASON = "the invocation is about to time out"
NOT_RECORDED = "response not recorded: the worker stopped between sending this case and writing its line"


def spec_key(run_id: str) -> str:
    return f"runs/{run_id}/run.json"


def part_prefix(run_id: str, shard: int) -> str:
    return f"runs/{run_id}/parts/{shard:05d}/"


def manifest_key(run_id: str, shard: int) -> str:
    return f"runs/{run_id}/manifest/{shard:05d}.ndjson"


@dataclass
class ShardResult:
    """What happened to one shard message; the handler acknowledges it or hands it back."""

    outcome: str  # done, stopped, skipped, busy, released, quarantined; a look: advanced, ended, waiting
    run_id: str = ""
    shard: int = -1
    sent: int = 0
    detail: str = ""
    retry_in_seconds: int = 0

    @property
    def acknowledged(self) -> bool:
        return self.outcome in ("done", "stopped", "skipped", "quarantined", "advanced", "ended", "waiting")


@dataclass
class Runtime:
    """What one worker invocation is given: the stores and the factories of its per-run collaborators."""

    store: RunStore
    manifests: ManifestStore
    generator: Callable[[RunSpec], TrafficGenerator]
    send: Callable[[], Callable[[WireRequest], Outcome]]
    reporter: Callable[[RunSpec], ResultReporter | None]
    stop: Callable[[RunSpec], Check]  # the run's stop check (flagbridge.runs.stop.run_stop)
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    lease_ms: int = 60_000
    part_cases: int = 1000
    batch_size: int = 50
    deadline_margin_ms: int = 20_000
    rounds: Rounds | None = None  # a run until decided: its looks and next rounds (None: no run may be one)


class _Checkpointer:
    """The run loop's ``progress`` callback: records progress and writes manifest parts."""

    def __init__(self, worker: ShardWorker, claim: Claim, spec: RunSpec, buffer: io.StringIO) -> None:
        self.worker = worker
        self.claim = claim
        self.spec = spec
        self.buffer = buffer
        self.next_index = claim.next_index
        self.part_first = claim.next_index
        self.pending = 0
        self.lines = 0
        self._statuses: Counter[str] = Counter()
        self._failures = 0
        self._latencies = 0
        self.summary: RunSummary | None = None

    def __call__(self, summary: RunSummary, case: Case) -> None:
        self.summary = summary
        self.next_index = case.index + 1
        self.pending += 1
        self.lines += 1
        if self.pending >= self.spec.checkpoint_every:
            self.record(summary)
        if self.lines >= self.worker.runtime.part_cases and self.pending == 0:
            self.write_part()

    def counts(self, summary: RunSummary) -> dict[str, int]:
        counts: dict[str, int] = {"sent": self.pending}
        for status, total in summary.statuses.items():
            delta = total - self._statuses[status]
            if delta:
                counts[counter_name(None if status == "error" else int(status))] = delta
        counts["failures"] = summary.failure_count - self._failures
        new_latencies = summary.latencies[self._latencies :]
        counts["latency_ms"] = round(sum(new_latencies))
        self._statuses = Counter(summary.statuses)
        self._failures = summary.failure_count
        self._latencies = len(summary.latencies)
        return counts

    def record(self, summary: RunSummary) -> None:
        if self.pending == 0:
            return
        runtime = self.worker.runtime
        runtime.store.progress(self.claim, self.next_index, self.counts(summary), runtime.clock_ms(), runtime.lease_ms)
        self.pending = 0

    def write_part(self) -> None:
        text = self.buffer.getvalue()
        lines = [line for line in text.splitlines() if line and '"type":"summary"' not in line[:20]]
        if lines:
            key = f"{part_prefix(self.spec.run_id, self.claim.shard)}{self.part_first:012d}.ndjson"
            self.worker.runtime.manifests.put(key, ("\n".join(lines) + "\n").encode())
        self.buffer.seek(0)
        self.buffer.truncate()
        self.part_first = self.next_index
        self.lines = 0


class ShardWorker:
    """Processes shard messages (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._specs: dict[str, RunSpec] = {}
        self._generators: dict[str, TrafficGenerator] = {}

    def spec(self, run_id: str) -> RunSpec | None:
        if run_id not in self._specs:
            raw = self.runtime.manifests.get(spec_key(run_id))
            if raw is None:
                return None
            self._specs[run_id] = RunSpec.from_document(json.loads(raw))
        return self._specs[run_id]

    def generator(self, spec: RunSpec) -> TrafficGenerator:
        if spec.run_id not in self._generators:
            self._generators[spec.run_id] = self.runtime.generator(spec)
        return self._generators[spec.run_id]

    def process(self, body: str, remaining_ms: Callable[[], int]) -> ShardResult:
        """One shard message. Raises ShardMessageError for a message to quarantine; other errors propagate
        after the claim was released (the handler hands the message back)."""
        message = parse_message(body)
        spec = self.spec(message.run_id)
        if spec is None:
            raise ShardMessageError("unknown_run", "no run.json for this run id in the manifest bucket")
        if isinstance(message, LookMessage):
            return self._look(spec, message)
        check_against(message, spec)
        runtime = self.runtime
        owner = uuid.uuid4().hex
        try:
            claim = runtime.store.claim(
                spec.run_id, message.shard, message.first, owner, runtime.clock_ms(), runtime.lease_ms
            )
        except ShardFinishedError as exc:
            self._finished(spec, message.shard)  # the look of a worker that died right after finishing it
            return ShardResult("skipped", spec.run_id, message.shard, detail=f"already {exc.state}")
        except ShardBusyError as exc:
            wait = max(1, (exc.lease_until_ms - runtime.clock_ms()) // 1000 + 1)
            return ShardResult(
                "busy", spec.run_id, message.shard, detail="claimed by another worker", retry_in_seconds=wait
            )
        try:
            return self._send(message, spec, claim, remaining_ms)
        except ClaimLostError:
            return ShardResult("skipped", spec.run_id, message.shard, detail="claim taken over by another worker")
        except BaseException:
            runtime.store.release(claim)  # progress up to the last case sent is recorded: resume from there now
            raise

    def _send(self, message: ShardMessage, spec: RunSpec, claim: Claim, remaining_ms: Callable[[], int]) -> ShardResult:
        runtime = self.runtime
        end = message.first + message.count
        switch = runtime.stop(spec)
        reason: str | None = switch()
        sent = 0
        if reason is None and claim.next_index < end:
            reason = preflight(self.generator(spec), runtime.send())
        if reason is None and claim.next_index < end:
            generator = self.generator(spec)
            buffer = io.StringIO()
            checkpointer = _Checkpointer(self, claim, spec, buffer)
            deadline: list[bool] = []

            def stop() -> str | None:
                if remaining_ms() < runtime.deadline_margin_ms:
                    deadline.append(True)
                    return DEADLINE_REASON
                return switch()

            reporter = runtime.reporter(spec)
            try:
                summary = run_traffic(
                    generator,
                    RunSettings(
                        requests=end - claim.next_index,
                        rate=spec.rate_per_worker,
                        max_duration_s=None,
                        batch_size=runtime.batch_size,
                        first_index=claim.next_index,
                        max_unanswered=spec.max_unanswered,
                    ),
                    runtime.send(),
                    reporter=reporter,
                    manifest=ManifestWriter(buffer),
                    stop=stop,
                    progress=checkpointer,
                )
                checkpointer.record(summary)
            except BaseException:
                # a crash mid-shard (an exception): record what was sent before handing the shard back
                if checkpointer.summary is not None:
                    with contextlib.suppress(Exception):
                        checkpointer.record(checkpointer.summary)
                raise
            finally:
                # also on a crash: the lines and results of what was sent are kept, not lost
                with contextlib.suppress(Exception):
                    checkpointer.write_part()
                if reporter is not None:
                    with contextlib.suppress(Exception):
                        reporter.flush(spec.run_id)
                    self._keep_undelivered(spec, claim, reporter)
            sent = summary.sent
            if deadline:
                runtime.store.release(claim)
                return ShardResult("released", spec.run_id, claim.shard, sent, DEADLINE_REASON)
            reason = summary.stopped
            last = checkpointer.next_index
        else:
            last = claim.next_index
        state = "stopped" if reason is not None else "done"
        key = self._assemble(spec, claim, message.first, last, state, reason)
        runtime.store.finish(claim, state, reason, key, runtime.clock_ms())
        runtime.manifests.delete(runtime.manifests.keys(part_prefix(spec.run_id, claim.shard)))
        self._finished(spec, claim.shard)
        return ShardResult(state, spec.run_id, claim.shard, sent, reason or "")

    def _finished(self, spec: RunSpec, shard: int) -> None:
        if spec.until_decided and self.runtime.rounds is not None:
            self.runtime.rounds.shard_finished(spec, shard)

    def _look(self, spec: RunSpec, message: LookMessage) -> ShardResult:
        if not spec.until_decided or self.runtime.rounds is None:
            raise ShardMessageError("not_until_decided", "a look message for a run that is not until decided")
        outcome, detail = self.runtime.rounds.look(spec, message)
        return ShardResult(outcome, spec.run_id, -1, 0, detail)

    def _keep_undelivered(self, spec: RunSpec, claim: Claim, reporter: ResultReporter) -> None:
        """Result batches the bridge refused or never answered: kept in S3 with the run, never dropped, each beside
        the bridge's answer (status and body, or the transport error) so that the file says why."""
        if reporter.undelivered:
            key = f"runs/{spec.run_id}/undelivered/{claim.shard:05d}-{claim.owner}.json"
            kept = reporter.undelivered_with_answers()
            self.runtime.manifests.put(key, json.dumps(kept, separators=(",", ":")).encode())
            reporter.undelivered.clear()
            reporter.answers.clear()

    def _assemble(self, spec: RunSpec, claim: Claim, first: int, last: int, state: str, reason: str | None) -> str:
        """The shard's manifest object from its parts; lines lost in a crash are regenerated, marked unrecorded."""
        manifests = self.runtime.manifests
        records: dict[int, str] = {}
        for key in manifests.keys(part_prefix(spec.run_id, claim.shard)):
            for line in (manifests.get(key) or b"").decode().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                if record.get("type") == "case":
                    records.setdefault(int(record["index"]), line)
        missing = [index for index in range(first, last) if index not in records]
        if missing:
            generator = self.generator(spec)
            for index in missing:
                record = case_record(generator.case(index), None)
                record["response"] = {"error": NOT_RECORDED}
                records[index] = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        lines = [json.dumps({**spec.manifest_header(), "shard": claim.shard}, separators=(",", ":"))]
        lines += [records[index] for index in sorted(records) if first <= index < last]
        summary = {
            "type": "summary",
            "shard": claim.shard,
            "first": first,
            "planned": spec.shard_range(claim.shard)[1],
            "cases": last - first,
            "unrecorded": len(missing),
            "state": state,
            "stopped": reason,
        }
        lines.append(json.dumps(summary, separators=(",", ":")))
        key = manifest_key(spec.run_id, claim.shard)
        manifests.put(key, ("\n".join(lines) + "\n").encode())
        return key
