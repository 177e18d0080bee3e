"""The whole loop against a running local bridge: ``make demo`` (and once at ``make run``'s start-up).

1. starts the sample service under test (:mod:`local.demo.service`) in its own process, next to the bridge;
2. registers the demo's testers (``PUT /testers``: with the shipped ``testers.segments`` their keys go into the local
   Split Admin receiver's segment ``flagbridge_testers``), then runs the shipped traffic plan against the service
   as those testers, with the real command
   (``flagbridge traffic run local/demo/checkout_plan.yaml --model local/demo/checkout_model.yaml ...``), whose
   results go back through the bridge's mParticle ingest, as the service's own events and impressions do;
3. waits until the bridge has processed everything (``/_local/idle``) and the oracle evaluated after that
   (``GET /tests/new-checkout-health``), writes the oracle's HTML report
   (:func:`flagbridge.oracle.report_html.html_report`);
4. proves the kill end to end: relays the kill the local Split Admin receiver recorded to the service as Split's
   streaming would (a ``SPLIT_KILL`` notification), so the service serves ``off`` with label ``killed`` from then
   on; sends each tester's next request (:func:`after_kill`), whose impression and event take the real path
   (impressions webhook -> profiles, mParticle ingest -> oracle lane -> counters), and waits for the evaluation
   that counts them: the kill's timeline (t0 FAIL, t1 Split accepted, t2 ``killed`` counted) is then complete;
5. reads what the outside world received (``/_local/receivers``): the Split events of the run, the analytics
   webhook, the kills and the segment recorded by the local Split Admin receiver; and prints the summary.

Nothing here decides a verdict: they are the oracle's, read from its API. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import yaml

from flagbridge.outbound import Outbound, Response, TransportError
from local.resources import ROOT

DEMO_DIR = Path(__file__).resolve().parent
PLAN = DEMO_DIR / "checkout_plan.yaml"
MODEL = DEMO_DIR / "checkout_model.yaml"
TEST = "new-checkout-health"
FLAG = "new_checkout"
TESTERS = tuple(f"qa-demo-{n:02d}" for n in range(1, 9))  # testers by the shipped rule qa-key-prefix (qa-.*)
REQUESTS = 1400
RATE = "200/s"
SEED = 7
DEFAULT_TREATMENT = "off"  # the flag's default treatment in Split: what a killed flag serves
RUN_TAG_KEY = "local-demo-run-tag-key"  # a label's HMAC key for a local run; in AWS a Secrets Manager secret
DEFAULT_WORKDIR = ROOT / "build" / "demo"
DEFAULT_TIMEOUT = 300.0  # seconds for the whole loop; about one on an idle laptop
CHECKOUT_PATH = os.pathsep.join(str(ROOT / part) for part in ("layers/shared", "ops", ""))

Log = Callable[[str], None]
Secret = Callable[[str], str]


def _stderr(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


@dataclass
class DemoResult:
    """What the demo saw; :meth:`summary` is what ``make run`` prints."""

    run_id: str
    service_url: str
    flag_version: int
    run: dict[str, Any]
    service: dict[str, Any]
    split_events: dict[str, int]
    split_keys: list[str]
    split_duplicates: int
    analytics_events: int
    analytics_events_of_run: int
    test: dict[str, Any]
    kills: list[dict[str, Any]]
    html_report: Path
    manifest: Path
    seconds: float
    problems: list[str] = field(default_factory=list)
    segments: dict[str, list[str]] = field(default_factory=dict)  # the receiver's segments holding demo testers

    def verdicts(self) -> dict[tuple[str, str], dict[str, Any]]:
        report = self.test.get("report") or {}
        return {(v["treatment"], v["metric"]): v for v in report.get("verdicts") or []}

    def treatment_states(self) -> dict[str, str]:
        """Each treatment's overall state: FAIL if any metric fails, PASS if all pass, else the first other."""
        states: dict[str, list[str]] = {}
        for (treatment, _metric), verdict in sorted(self.verdicts().items()):
            states.setdefault(treatment, []).append(verdict["state"])
        overall = {}
        for treatment, found in states.items():
            if "FAIL" in found:
                overall[treatment] = "FAIL"
            elif all(state == "PASS" for state in found):
                overall[treatment] = "PASS"
            else:
                overall[treatment] = next(state for state in found if state != "PASS")
        return overall

    def summary(self) -> str:
        record = self.run.get("summary") or {}
        statuses = ", ".join(f"{status}: {count}" for status, count in (record.get("statuses") or {}).items())
        results = self.run.get("results") or {}
        lines = [
            f"The loop, end to end (docs/demo.md): flag {FLAG} version {self.flag_version}, in {self.seconds:.0f} s",
            f"  sample service under test: {self.service_url} (local/demo/service.py; `on` has a bug)",
            f"  traffic run {self.run_id}: {record.get('sent', 0)} requests sent as {len(TESTERS)} testers "
            f"({statuses}); manifest {_shown(self.manifest)}",
            f"    results to the bridge: {results.get('delivered_events', 0)} delivered, "
            f"{results.get('undelivered_events', 0)} undelivered",
            f"  service: {self.service.get('events_sent', 0)} api_response events and "
            f"{self.service.get('impressions_sent', 0)} impressions sent to the bridge "
            f"({self.service.get('undelivered_events', 0) + self.service.get('undelivered_impressions', 0)} "
            "undelivered)",
            f"  Split receiver: {sum(self.split_events.values())} events of the run "
            f"({', '.join(f'{name} {count}' for name, count in sorted(self.split_events.items()))}), "
            f"from {len(self.split_keys)} tester keys only, {self.split_duplicates} duplicates",
            f"  analytics webhook: {self.analytics_events_of_run} events of the run "
            f"({self.analytics_events} in all, from other traffic)",
            f"  oracle test {TEST}: {self.test.get('state')}",
        ]
        for treatment, state in sorted(self.treatment_states().items(), key=lambda item: item[0] != "on"):
            lines.append(f"    {FLAG}={treatment}: {state}")
            for (verdict_treatment, _metric), verdict in sorted(self.verdicts().items()):
                if verdict_treatment == treatment:
                    lines.append(f"      {verdict.get('explain') or verdict['state']}")
        lines.append(f"  HTML report (the oracle's `flagbridge verdict --html`): {_shown(self.html_report)}")
        lines += kill_summary((self.test.get("report") or {}).get("kill"))
        if self.kills:
            for kill in self.kills:
                lines.append(
                    f"  kill recorded by the local Split Admin receiver: {kill['flag']} in {kill['environment']} "
                    f"(workspace {kill['workspace']}): {json.dumps(kill.get('body'))}"
                )
        else:
            lines.append("  kill: none recorded by the local Split Admin receiver")
        for name, keys in sorted(self.segments.items()):
            demo = sorted(key for key in keys if key in TESTERS)  # the receiver keeps the order of concurrent adds
            lines.append(
                f"  segment {name} (local Split Admin receiver): the demo's {len(demo)} testers added "
                f"({demo[0]}..{demo[-1]}), {len(keys)} keys in all"
            )
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def kill_summary(kill: Mapping[str, Any] | None) -> list[str]:
    """The oracle's kill of the flag and its timeline, as ``GET /tests/{name}`` reports it."""
    if not kill:
        return []
    from flagbridge.oracle.kills import headline, timeline_lines

    return [f"  oracle: {headline(kill)}", *(f"    {line}" for line in timeline_lines(kill))]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class BridgeClient:
    """The few local-bridge calls the demo makes, over HTTP."""

    def __init__(self, url: str, oracle_token: str) -> None:
        self.url = url.rstrip("/")
        self.oracle_token = oracle_token

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(status, JSON body of a 2xx, else the text)."""
        answer = self._send("GET", path, headers or {})
        if 200 <= answer.status < 300:
            return answer.status, json.loads(answer.content)
        return answer.status, answer.body

    def _send(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        """One request to the bridge. A redirect is an answer, never followed: ``urlopen`` followed it keeping the
        Authorization header, sending the token to the ``Location``'s host."""
        http = Outbound(connect_timeout=60.0, read_timeout=60.0, max_idle=0)
        try:
            return http.request(method, self.url + path, body, dict(headers))
        except TransportError as exc:
            reason = getattr(exc.__cause__, "strerror", None) or exc
            raise RuntimeError(
                f"cannot reach the bridge at {self.url} ({reason}): start it with `make run`, or give its port "
                "(PORT=N make demo, the port `make run` printed in its ready line)"
            ) from exc

    def idle(self) -> bool:
        status, body = self.get("/_local/idle")
        return status == 200 and bool(body.get("idle"))

    def receivers(self) -> dict[str, Any]:
        status, body = self.get("/_local/receivers")
        if status != 200:
            raise RuntimeError(f"GET /_local/receivers answered {status}: {body}")
        return dict(body)

    def register_testers(self, token: str, expires_at: int) -> None:
        """Register the demo's testers (``PUT /testers/user/{key}``) until ``expires_at`` (epoch seconds)."""
        body = json.dumps({"expiresAt": expires_at, "reason": "make demo: the loop's tester pool"}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for key in TESTERS:
            answer = self._send("PUT", f"/testers/user/{key}", headers, body)
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"PUT /testers/user/{key} answered {answer.status}: {answer.content[:300]!r}")

    def test(self) -> dict[str, Any]:
        status, body = self.get(f"/tests/{TEST}", {"Authorization": f"Bearer {self.oracle_token}"})
        if status != 200:
            raise RuntimeError(f"GET /tests/{TEST} answered {status}: {body}")
        return dict(body)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; RuntimeError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_idle(client: BridgeClient, timeout: float) -> int:
    """Until the bridge is idle three polls in a row; returns the time (epoch ms) it was first seen idle."""
    confirmations = [0]
    first_idle = [0]

    def settled() -> bool:
        if client.idle():
            if confirmations[0] == 0:
                first_idle[0] = int(time.time() * 1000)
            confirmations[0] += 1
        else:
            confirmations[0] = 0
        return confirmations[0] >= 3

    wait_for("the bridge to process everything (/_local/idle)", settled, timeout, interval=0.2)
    return first_idle[0]


def cli_config(workdir: Path, bridge_config: Path) -> Path:
    """The bridge's configuration plus the demo's ``traffic`` section (allowlist: this machine; the tester pool)."""
    from flagbridge.documents import load_yaml, read_text
    from flagbridge.errors import ConfigError

    document = load_yaml(
        read_text(bridge_config, "the configuration file", ConfigError), str(bridge_config), ConfigError
    )
    document["traffic"] = {
        "allowlist": ["localhost", "127.0.0.1"],
        "testers": [{"key": key, "email": f"{key}@qa.example.com"} for key in TESTERS],
    }
    path = workdir / "flagbridge.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def start_service(
    bridge_url: str, env: Mapping[str, str], timeout: float
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.demo.service", "--bridge", bridge_url],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    started = time.monotonic()
    line = process.stdout.readline()  # the service's first line; it exits on its own if it cannot start
    if not line:
        process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        raise RuntimeError(f"the sample service exited with {process.returncode} before it started")
    return process, json.loads(line)


def service_call(url: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST ``body`` to) one of the service's ``/_demo/`` paths; RuntimeError naming a refusal."""
    data = None if body is None else json.dumps(body).encode()
    request = Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urlopen(request, timeout=60) as reply:
            return dict(json.loads(reply.read()))
    except HTTPError as exc:
        raise RuntimeError(
            f"the sample service refused {path}: {exc.code} {exc.read().decode(errors='replace')}"
        ) from None


def after_kill(service_url: str, run_id: str, round_number: int) -> int:
    """Each tester's next requests after the kill; returns how many were answered.

    They carry a run tag of their own, so the service's events of them never enter the judged counts (whatever
    order the bridge processes an impression and an event in); the oracle counts an event of a user served the
    flag ``killed`` under ``(killed)`` before any metric looks at it. The caller waits for the bridge to be idle
    between rounds: the first round's impressions reach the profiles, so the next round's events are attributed
    to the killed flag even if the first round's raced ahead of their impressions.
    """
    answered = 0
    for tester in TESTERS:
        tag = f"{run_id}-after-kill.{tester}-{round_number}.demo"
        request = Request(f"{service_url}/products/A1", headers={"X-User-Key": tester, "X-Flagbridge-Run": tag})
        with urlopen(request, timeout=30) as reply:
            reply.read()
            answered += 1
    service_call(service_url, "/_demo/flush")
    return answered


def confirm_kill(client: BridgeClient, service_url: str, run_id: str, kill: Mapping[str, Any], timeout: float) -> Any:
    """Relay the recorded kill to the service, send the testers' next requests, and wait for the evaluation that
    counts their ``killed`` events; returns that ``GET /tests/{name}`` document."""
    service_call(service_url, "/_demo/split-kill", {"splitName": kill["flag"], "defaultTreatment": DEFAULT_TREATMENT,
                                                    "changeNumber": int(time.time() * 1000)})  # fmt: skip
    started = time.monotonic()
    idle_at = 0
    for round_number in (1, 2):
        after_kill(service_url, run_id, round_number)
        idle_at = wait_idle(client, max(30.0, timeout - (time.monotonic() - started)))

    def confirmed() -> dict[str, Any] | None:
        document = client.test()
        report = document.get("report") or {}
        kill = report.get("kill") or {}
        return document if report.get("evaluated_at", 0) > idle_at and kill.get("confirmation") == "confirmed" else None

    return wait_for(f"the evaluation of {TEST} that counts the `killed` events", confirmed,
                    max(30.0, timeout - (time.monotonic() - started)))  # fmt: skip


def stop_service(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


def run_traffic(
    config: Path, service_url: str, bridge_url: str, run_id: str, manifest: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "flagbridge_ops", "--config", str(config), "traffic", "run", str(PLAN),
        "--model", str(MODEL), "--target", service_url, "--seed", str(SEED), "--requests", str(REQUESTS),
        "--rate", RATE, "--bridge", bridge_url, "--run-id", run_id, "--report", str(manifest), "--json",
        # The demo reads the oracle's verdict itself once the bridge is idle. Without --no-oracle the run would
        # stop on `on`'s FAIL (the stop switch) before `off` has the samples its PASS needs.
        "--no-oracle",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1):  # 1: some requests failed, which is the point of the demo
        raise RuntimeError(f"flagbridge traffic run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout))


def describe_run(record: Mapping[str, Any]) -> str:
    """A traffic run's progress for a person: requests, statuses, the rate achieved against the rate asked."""
    statuses = ", ".join(f"{status}: {count}" for status, count in (record.get("statuses") or {}).items())
    asked = float(RATE.removesuffix("/s"))
    achieved = float(record.get("rate_per_s") or 0)
    line = (
        f"{record.get('sent', 0)} requests sent in {record.get('elapsed_s', 0)} s ({statuses}); "
        f"rate {achieved:g}/s of {asked:g}/s asked"
    )
    if achieved < 0.9 * asked:
        line += " (this machine is busy: fewer requests per second, the same cases)"
    return line


def _run_events(snapshot: Mapping[str, Any], run_id: str) -> list[dict[str, Any]]:
    """The Split events of one run: its results (``run_id``) and the service's events of it (``flagbridge_run``)."""
    return [
        event
        for event in snapshot.get("split_events") or []
        if (event.get("properties") or {}).get("run_id") == run_id
        or (event.get("properties") or {}).get("flagbridge_run") == run_id
    ]


def analytics_webhook_path() -> str:
    """The path the local receiver records the analytics destination's batches under (the runner keeps the path
    of the template's ``AnalyticsWebhookUrl`` and points its host at the receiver)."""
    from local.resources import PARAM_ENV_PREFIX, TEMPLATE_PATH, load_template_file, url_parameters

    url = os.environ.get(PARAM_ENV_PREFIX + "AnalyticsWebhookUrl") or url_parameters(
        load_template_file(TEMPLATE_PATH)
    ).get("AnalyticsWebhookUrl", "")
    return urlsplit(url).path.rstrip("/")


def _analytics_events(snapshot: Mapping[str, Any], run_id: str) -> tuple[int, int]:
    """(events the analytics webhook received in all, events of the run or of the demo's testers)."""
    total = of_run = 0
    path = analytics_webhook_path()
    for received_path, batches in (snapshot.get("webhooks") or {}).items():
        if received_path.split("?")[0].rstrip("/") != path:
            continue
        for batch in batches:
            events = batch.get("events") or [] if isinstance(batch, dict) else []
            total += len(events)
            text = json.dumps(batch)
            if run_id in text or any(key in text for key in TESTERS):
                of_run += len(events)
    return total, of_run


def run_demo(
    bridge_url: str,
    secret: Secret,
    *,
    bridge_config: Path,
    workdir: Path = DEFAULT_WORKDIR,
    log: Log = _stderr,
    timeout: float | None = None,
) -> DemoResult:
    """The loop above; raises RuntimeError naming what did not happen within ``timeout`` seconds (default
    ``FLAGBRIDGE_DEMO_TIMEOUT``, else 300)."""
    started = time.monotonic()
    if timeout is None:
        timeout = float(os.environ.get("FLAGBRIDGE_DEMO_TIMEOUT") or DEFAULT_TIMEOUT)
    workdir.mkdir(parents=True, exist_ok=True)
    client = BridgeClient(bridge_url, secret("OracleApiTokenSecret"))
    env = _demo_environment(secret)
    config = cli_config(workdir, bridge_config)
    kills_before = len(client.receivers().get("kills") or [])
    client.register_testers(secret("TestersApiTokenSecret"), int(time.time() + timeout + 3600))
    process, service = start_service(bridge_url, env, timeout)
    run_id = f"demo-{service['flag_version']}"
    manifest = workdir / f"{run_id}.ndjson"
    try:
        log(f"sample service {service['url']} (flag {FLAG} version {service['flag_version']}); sending {REQUESTS} "
            f"requests at {RATE} as testers {TESTERS[0]}..{TESTERS[-1]}")  # fmt: skip
        run = run_traffic(config, service["url"], bridge_url, run_id, manifest, env)
        log(f"traffic run {run_id}: {describe_run(run['summary'])}")
        service_call(service["url"], "/_demo/flush")  # its last events and impressions of the run
        remaining = max(30.0, timeout - (time.monotonic() - started))
        log("waiting for the bridge to route everything and the oracle to evaluate")
        idle_at = wait_idle(client, remaining)

        def evaluated() -> dict[str, Any] | None:
            document = client.test()
            return document if (document.get("evaluated_at") or 0) > idle_at else None

        test = wait_for(f"an evaluation of {TEST} after the bridge was idle", evaluated, remaining)
        recorded = [k for k in (client.receivers().get("kills") or [])[kills_before:] if k.get("flag") == FLAG]
        if recorded:
            log("the flag was killed: the service now serves it killed; waiting for the oracle to count that")
            remaining = max(30.0, timeout - (time.monotonic() - started))
            test = confirm_kill(client, service["url"], run_id, recorded[0], remaining)
    finally:
        service_stats = stop_service(process)  # flushes its last events and impressions
    html = workdir / f"{TEST}.html"
    from flagbridge.oracle.report_html import html_report

    fed = {"run_id": run_id, "manifest": str(manifest.resolve()), "failures": run.get("failures") or []}
    html.write_text(html_report([test], runs=[fed]), encoding="utf-8")
    return _demo_result(
        client.receivers(),
        run_id=run_id,
        service=service,
        service_stats=service_stats,
        run=run,
        test=test,
        kills_before=kills_before,
        html=html,
        manifest=manifest,
        started=started,
    )


def _demo_environment(secret: Secret) -> dict[str, str]:
    """The environment of the sample service and of ``flagbridge traffic run``: the checkout and local secrets."""
    credentials = json.loads(secret("MParticleCredentialsSecret"))
    env = {
        **os.environ,
        "PYTHONPATH": CHECKOUT_PATH,
        "FLAGBRIDGE_RUN_TAG_KEY": os.environ.get("FLAGBRIDGE_RUN_TAG_KEY") or RUN_TAG_KEY,
        "FLAGBRIDGE_MPARTICLE_KEY": credentials["api_key"],
        "FLAGBRIDGE_MPARTICLE_SECRET": credentials["api_secret"],
        "FLAGBRIDGE_LOCAL_SECRET_WebhookTokenSecret": secret("WebhookTokenSecret"),
    }
    env.pop("FLAGBRIDGE_CONFIG", None)
    return env


def _demo_result(
    snapshot: Mapping[str, Any],
    *,
    run_id: str,
    service: dict[str, Any],
    service_stats: dict[str, Any],
    run: dict[str, Any],
    test: dict[str, Any],
    kills_before: int,
    html: Path,
    manifest: Path,
    started: float,
) -> DemoResult:
    """What the receivers got from the run (``snapshot``), with the run, the verdict and the problems seen."""
    events = _run_events(snapshot, run_id)
    ids = [
        (event.get("eventTypeId"), (event.get("properties") or {}).get("case_id"))
        if event.get("eventTypeId") == "flagbridge_test_request"
        else (event.get("eventTypeId"), (event.get("properties") or {}).get("flagbridge_case"))
        for event in events
    ]
    total, of_run = _analytics_events(snapshot, run_id)
    result = DemoResult(
        run_id=run_id,
        service_url=service["url"],
        flag_version=int(service["flag_version"]),
        run=run,
        service=service_stats,
        split_events=dict(Counter(str(event.get("eventTypeId")) for event in events)),
        split_keys=sorted({str(event.get("key")) for event in events}),
        split_duplicates=len(ids) - len(set(ids)),
        analytics_events=total,
        analytics_events_of_run=of_run,
        test=test,
        kills=[kill for kill in (snapshot.get("kills") or [])[kills_before:] if kill.get("flag") == FLAG],
        html_report=html,
        manifest=manifest,
        seconds=time.monotonic() - started,
        segments={
            name: list(keys)
            for name, keys in (snapshot.get("segments") or {}).items()
            if any(key in TESTERS for key in keys)
        },
    )
    unknown = set(result.split_keys) - set(TESTERS)
    if unknown:
        result.problems.append(f"Split received events of keys outside the tester pool: {sorted(unknown)}")
    return result
