""":class:`LocalBridge`: the whole bridge in one process (AWS emulation, resources, HTTP API, queue consumers),
the sample replay and the summary ``make run`` prints."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from flagbridge.outbound import Outbound
from local.receivers import Receiver
from local.resources import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    PARAM_ENV_PREFIX,
    ROOT,
    TEMPLATE_PATH,
    FunctionSpec,
    Provisioned,
    Template,
    functions,
    provision,
    url_parameters,
)
from local.runner.http_api import ApiGatewayHandler, HttpApiServer
from local.runner.invoke import LambdaContext, LoadedFunction, import_handler, log
from local.runner.moto_patches import speed_up_moto_dispatch, speed_up_moto_queries, speed_up_moto_transactions
from local.runner.output import (
    HandlerOutput,
    InvocationTally,
    RepeatFilter,
    describe_invocation,
    tally_events,
)
from local.runner.routes import Router
from local.runner.schedule import SchedulePoller, schedule_interval
from local.runner.sqs import SqsPoller

DEFAULT_PORT = 3000
LIVE_REFRESH_SECONDS = 5
DEFAULT_CONFIG = ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"
SAMPLE_IMPRESSIONS = ROOT / "events" / "payloads" / "split_impressions.json"
SAMPLE_PROFILES = (("user", "u-1001"), ("user", "qa-bot-01"))
SAMPLE_BATCHES = tuple(
    ROOT / "events" / "payloads" / name
    for name in (
        "mparticle_batch_test_user.json",
        "mparticle_batch_real_customer.json",
        "mparticle_batch_commerce.json",
        "mparticle_batch_plan_violation.json",
    )
)
# The resources and settings the operator's command reads, as the functions' environment names them.
CLI_VARIABLES = (
    "FLAGBRIDGE_CONFIG",
    "PROFILES_TABLE",
    "QUARANTINE_BUCKET",
    "IMPRESSIONS_QUEUE_URL",
    "BATCHES_QUEUE_URL",
    "DESTINATION_QUEUES",
    "DESTINATION_DLQS",
    "DELIVERY_LEDGER_TABLE",
    "REPORTING_QUEUE_URL",
    "TESTERS_TABLE",
    "ORACLE_VERDICTS_TABLE",
    "RUNS_TABLE",
    "MANIFEST_BUCKET",
    "TRAFFIC_STOP_PARAMETER",
)
SAMPLE_WEBHOOK_BATCH = ROOT / "events" / "payloads" / "mparticle_webhook_batch.json"
LANES = ("http", "events")  # invocations of the HTTP routes; of the event sources (queues, schedules)


def fresh_timestamps(batch: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The sample batch with its events re-dated to just now (Split refuses data older than 24 h)."""
    events = batch.get("events") or []
    for offset, event in enumerate(events):
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and "timestamp_unixtime_ms" in data:
            data["timestamp_unixtime_ms"] = now_ms - (len(events) - offset) * 1000
    if "timestamp_unixtime_ms" in batch:
        batch["timestamp_unixtime_ms"] = now_ms
    return batch


class LocalBridge:
    """The whole bridge in one process: AWS emulation, resources, HTTP API and queue consumers."""

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        template_path: Path = TEMPLATE_PATH,
        endpoint_url: str | None = None,
        moto_port: int | None = None,
        retry_seconds: int | None = None,
        handler_output: HandlerOutput | None = None,
    ) -> None:
        self.port = int(os.environ.get("PORT", DEFAULT_PORT)) if port is None else port
        self.host = host
        self.template_path = template_path
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._external_endpoint = self.endpoint_url
        self.moto_port = int(os.environ.get("MOTO_PORT", 0)) if moto_port is None else moto_port
        self.retry_seconds = (
            int(os.environ.get("FLAGBRIDGE_LOCAL_RETRY_SECONDS", 2)) if retry_seconds is None else retry_seconds
        )
        self.region = DEFAULT_REGION
        self.ready = False
        self.functions: dict[str, LoadedFunction] = {}
        self.router = Router([])
        self.provisioned: Provisioned | None = None
        self.pollers: list[SqsPoller] = []
        self.schedules: list[SchedulePoller] = []
        self.receiver: Receiver | None = None
        self.receiver_urls: dict[str, str] = {}
        self.startup_seconds = 0.0
        self._moto: Any = None
        self._server: HttpApiServer | None = None
        self._server_thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._session: Any = None  # one boto3 session: its loader parses botocore's models and endpoints once
        self._clients_lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        # Default: one invocation at a time per lane, so that the handlers' shared module state (one Powertools
        # Logger with the function name, request id and correlation id of "the" invocation) mostly describes the
        # invocation that is running. Two lanes, because a function consuming a queue may call the bridge's own
        # routes (a test run's worker posts its results to the Events API): with one lock for both, that call
        # waited for the lock its caller held until its HTTP client gave up, and every route stalled meanwhile.
        # FLAGBRIDGE_LOCAL_CONCURRENCY=function lets different functions run at the same time (each still one
        # at a time), with interleaved log context.
        self._lanes = {lane: threading.Lock() for lane in LANES}
        self.per_function_concurrency = os.environ.get("FLAGBRIDGE_LOCAL_CONCURRENCY", "").lower() == "function"
        # Set (by ``python -m local.runner``) when handlers write through a HandlerOutput: each invocation then
        # gets one readable line on stderr.
        self.handler_output = handler_output
        self._tally: InvocationTally | None = None
        self._repeats = RepeatFilter()
        self._saved_environ: dict[str, str] | None = None
        self._saved_path: list[str] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            return f"http://{self.host}:{self.port}"
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> LocalBridge:
        started = time.perf_counter()
        self._saved_environ = dict(os.environ)
        self._saved_path = list(sys.path)
        try:
            self._start_aws()
            template = Template.load(self.template_path, region=self.region, account=self._account())
            self._start_receiver(template)
            self.provisioned = provision(template, self.client)
            if self.receiver is not None:
                self.receiver.split_sdk_key = self.secret_value("SplitSdkKeySecret")
                self.receiver.split_admin_key = self.secret_value("SplitAdminApiKeySecret")
            specs = functions(template)
            self._configure_environment(specs)
            for spec in specs:
                loaded = LoadedFunction(spec)
                try:
                    loaded.handler = import_handler(spec)
                except Exception:
                    loaded.import_error = traceback.format_exc()
                    log(f"{spec.logical_id}: handler {spec.handler} failed to import; it will answer 500:")
                    print(loaded.import_error, file=sys.stderr)
                self.functions[spec.logical_id] = loaded
            self.router = Router([route for spec in specs for route in spec.routes])
            self._start_http()
            self._start_pollers(specs)
        except BaseException:
            self.stop()
            raise
        self.ready = True
        self.startup_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        self.ready = False
        for stopping in [poller.stopping for poller in self.pollers] + [ticker.stopping for ticker in self.schedules]:
            stopping.set()  # they finish their current wait or long poll (<= 1 s) while the servers shut down
        stoppers = []
        if self._server is not None:
            stoppers.append(threading.Thread(target=self._stop_http, args=(self._server,), daemon=True))
            self._server = None
        if self.receiver is not None:
            stoppers.append(threading.Thread(target=self.receiver.stop, daemon=True))
            self.receiver = None
        for stopper in stoppers:
            stopper.start()
        for thread in [*self.pollers, *self.schedules, *stoppers]:
            thread.join(timeout=10)
        self.pollers = []
        self.schedules = []
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        self._clients.clear()
        self._session = None
        runtime = sys.modules.get("flagbridge.runtime")
        if runtime is not None and hasattr(runtime, "reset"):
            with contextlib.suppress(Exception):
                runtime.reset()  # forget clients bound to this endpoint (a later bridge in the same process)
        for name in [name for name in sys.modules if name.startswith("flagbridge_local_fn_")]:
            del sys.modules[name]
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
        if self._saved_path is not None:
            sys.path[:] = self._saved_path
            self._saved_path = None

    @staticmethod
    def _stop_http(server: HttpApiServer) -> None:
        server.shutdown()
        server.server_close()

    def __enter__(self) -> LocalBridge:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _start_aws(self) -> None:
        self.endpoint_url = self._external_endpoint
        if self.endpoint_url:
            self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
            os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
            log(f"using the AWS endpoint {self.endpoint_url} (no emulator started)")
        else:
            import logging

            from moto.server import ThreadedMotoServer

            from local.moto_isolation import isolate_dynamodb_operations

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            isolate_dynamodb_operations()  # the server is threaded: give transactions DynamoDB's isolation
            if os.environ.get("FLAGBRIDGE_LOCAL_MOTO_SPEEDUPS", "1") != "0":
                speed_up_moto_queries()
                speed_up_moto_dispatch()
                speed_up_moto_transactions()
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self.region = DEFAULT_REGION
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                os.environ.pop(name, None)
            os.environ.update(
                {
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": self.region,
                    "AWS_REGION": self.region,
                }
            )
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url

    def _start_receiver(self, template: Template) -> None:
        """Point every URL parameter (an outside service) at the local receiver, keeping the URL's path.

        ``FLAGBRIDGE_LOCAL_PARAM_<Name>`` still wins (see :mod:`local.resources`), e.g. to reach a real service.
        """
        own = "TrafficResultsUrl"  # the test runs' results go to this bridge's own mParticle ingest, as deployed
        if own in template.document.get("Parameters", {}) and PARAM_ENV_PREFIX + own not in os.environ and self.port:
            template.parameter_overrides = {
                **template.parameter_overrides,
                own: f"http://{self.host}:{self.port}/mparticle/v2",
            }
        defaults = url_parameters(template.document)
        if not defaults:
            return
        port = int(os.environ.get("FLAGBRIDGE_RECEIVER_PORT", 0))
        self.receiver = Receiver(host=self.host, port=port).start()
        overrides = {}
        for name, default in defaults.items():
            if PARAM_ENV_PREFIX + name not in os.environ:
                overrides[name] = self.receiver.url + urlsplit(default).path.rstrip("/")
        template.parameter_overrides = {**template.parameter_overrides, **overrides}
        self.receiver_urls = {name: str(template.parameter_value(name)) for name in defaults}

    def _account(self) -> str:
        try:
            return str(self.client("sts").get_caller_identity()["Account"])
        except Exception:
            return DEFAULT_ACCOUNT

    def client(self, service: str) -> Any:
        """A boto3 client on the bridge's endpoint (cached; boto3 clients are thread-safe)."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session()
                self._clients[service] = self._session.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16),
                )
            return self._clients[service]

    def _configure_environment(self, specs: list[FunctionSpec]) -> None:
        merged: dict[str, str] = {}
        for spec in specs:
            for name, value in spec.environment.items():
                if name in merged and merged[name] != value:
                    log(f"environment variable {name} differs between functions; using {spec.logical_id}'s")
                merged[name] = value
        merged["FLAGBRIDGE_CONFIG"] = os.environ.get("FLAGBRIDGE_CONFIG") or str(DEFAULT_CONFIG)
        os.environ.update(merged)
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "1")
        layer_paths: list[str] = []
        for spec in specs:
            for layer_dir in spec.layer_dirs:
                for candidate in (layer_dir / "python", layer_dir):
                    if candidate.is_dir() and str(candidate) not in layer_paths:
                        layer_paths.append(str(candidate))
        sys.path[:0] = [path for path in layer_paths if path not in sys.path]

    def _start_http(self) -> None:
        self._server = HttpApiServer((self.host, self.port), ApiGatewayHandler)
        self._server.bridge = self
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http-api", daemon=True
        )
        self._server_thread.start()

    def _start_pollers(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            for source in spec.sqs_sources:
                if source.enabled:
                    poller = SqsPoller(self, source, self.queue_url(source.queue_arn))
                    self.pollers.append(poller)
                    poller.start()
        interval = schedule_interval()
        for spec in specs:
            for schedule in spec.schedules:
                if schedule.enabled and interval > 0:
                    ticker = SchedulePoller(self, schedule, interval)
                    self.schedules.append(ticker)
                    ticker.start()

    @property
    def embedded_moto(self) -> bool:
        """Whether AWS is the moto server in this process (not an external endpoint)."""
        return self._moto is not None

    def queue_url(self, queue_arn: str) -> str:
        assert self.provisioned is not None
        for physical in self.provisioned.template.physical.values():
            if physical.attributes.get("Arn") == queue_arn and "QueueUrl" in physical.attributes:
                return physical.attributes["QueueUrl"]
        *_, account, name = queue_arn.split(":")
        return str(self.client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])

    # ---- invocation and idleness --------------------------------------------------------------------------

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def invoke(self, logical_id: str, event: dict[str, Any], lane: str = "events") -> Any:
        """Invoke a function's handler in process: one invocation at a time per lane (``http`` for the routes,
        ``events`` for queues and schedules), or per function with FLAGBRIDGE_LOCAL_CONCURRENCY=function."""
        loaded = self.functions[logical_id]
        if loaded.handler is None:
            raise RuntimeError(f"{logical_id} could not be imported:\n{loaded.import_error}")
        lock = loaded.lock if self.per_function_concurrency else self._lanes[lane]
        context = LambdaContext(loaded.spec)
        with self.in_flight(), lock:
            started = time.perf_counter()
            try:
                result = loaded.handler(event, context)
            except Exception as exc:
                self._report(loaded.spec, context, event, None, exc, time.perf_counter() - started)
                raise
            self._report(loaded.spec, context, event, result, None, time.perf_counter() - started)
        return result

    def _report(
        self,
        spec: FunctionSpec,
        context: LambdaContext,
        event: Any,
        result: Any,
        error: Exception | None,
        seconds: float,
    ) -> None:
        if self.handler_output is None:
            return
        records = self.handler_output.records_for(context.aws_request_id)
        function = spec.handler.rpartition(".")[0] or spec.logical_id
        if error is None and self._tally is not None:
            self._tally.count(function)
            return
        line = describe_invocation(function, event, result, error, seconds, records)
        if error is None and self._repeats.repeated(function, event, line):
            return
        log(line)

    @contextlib.contextmanager
    def invocation_tally(self, every_seconds: float = 30.0) -> Iterator[InvocationTally]:
        """Collapse the per-invocation lines into one line every ``every_seconds`` and whenever the caller
        flushes (errors still show one line each).

        The demo makes hundreds of invocations in a minute; a person reads their totals, not each one.
        """
        self._tally = InvocationTally(every_seconds)
        try:
            yield self._tally
        finally:
            tally, self._tally = self._tally, None
            tally.flush()

    def is_idle(self) -> bool:
        """No invocation running and every consumed queue empty (nothing visible, in flight or delayed)."""
        if self._in_flight:
            return False
        sqs = self.client("sqs")
        for poller in self.pollers:
            attributes = sqs.get_queue_attributes(
                QueueUrl=poller.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            if any(int(value) for value in attributes.values()):
                return False
        return self._in_flight == 0

    def wait_idle(self, timeout: float = 60.0, interval: float = 0.1) -> bool:
        """Wait until :meth:`is_idle` holds twice in a row; False on timeout."""
        deadline = time.monotonic() + timeout
        confirmations = 0
        while time.monotonic() < deadline:
            confirmations = confirmations + 1 if self.is_idle() else 0
            if confirmations >= 2:
                return True
            time.sleep(interval)
        return False

    # ---- replay and summary -------------------------------------------------------------------------------

    def secret_value(self, logical_id: str) -> str | None:
        return self.provisioned.secret_values.get(logical_id) if self.provisioned else None

    def cli_environment(self) -> dict[str, str]:
        """Every variable the ``flagbridge`` command needs against this bridge (``flagbridge --local``,
        ``GET /_local/aws``): the AWS endpoint, the resources, the configuration, and the local secrets of the
        oracle API, the Events API and the run tag (local values, printed in the summary anyway)."""
        env = {"AWS_ENDPOINT_URL": str(self.endpoint_url), "AWS_DEFAULT_REGION": self.region}
        if self._moto is not None:  # the embedded emulator takes any key; an outside endpoint keeps yours
            env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        for name in CLI_VARIABLES:
            if os.environ.get(name):
                env[name] = os.environ[name]
        oracle_token = self.secret_value("OracleApiTokenSecret")
        if oracle_token:
            env["FLAGBRIDGE_ORACLE_API_TOKEN"] = oracle_token
        credentials = self.secret_value("MParticleCredentialsSecret")
        if credentials:
            document = json.loads(credentials)
            env["FLAGBRIDGE_MPARTICLE_KEY"] = str(document["api_key"])
            env["FLAGBRIDGE_MPARTICLE_SECRET"] = str(document["api_secret"])
        from local.demo.run import RUN_TAG_KEY

        env["FLAGBRIDGE_RUN_TAG_KEY"] = os.environ.get("FLAGBRIDGE_RUN_TAG_KEY") or RUN_TAG_KEY  # as the demo signs
        if self.has_route("POST", "/runs"):
            env["FLAGBRIDGE_TRAFFIC_API"] = self.url
            token = self.secret_value("TrafficApiTokenSecret")
            if token:
                env["FLAGBRIDGE_TRAFFIC_API_TOKEN"] = token
        return env

    def live_page(self, refresh_seconds: int = LIVE_REFRESH_SECONDS) -> tuple[int, str]:
        """``GET /``: every oracle test's verdicts, rendered as ``flagbridge verdict --html`` renders them, from
        the verdicts table, reloading itself every ``refresh_seconds``."""
        import html

        from flagbridge.config import load_config
        from flagbridge.oracle.report_html import html_report
        from flagbridge.oracle.store import DynamoDBVerdictStore
        from flagbridge_ops.verdict import load_documents

        try:
            oracle = load_config(os.environ["FLAGBRIDGE_CONFIG"]).oracle
            table = os.environ.get("ORACLE_VERDICTS_TABLE")
            if oracle is None or not oracle.tests or not table:
                documents: list[dict[str, Any]] = []
            else:
                documents = load_documents(oracle, DynamoDBVerdictStore(self.client("dynamodb"), table), None)
        except Exception as exc:  # the page says what is wrong, and reloads until it is not
            message = html.escape(f"{type(exc).__name__}: {exc}")
            page = f'<!DOCTYPE html><meta http-equiv="refresh" content="{refresh_seconds}"><p>{message}</p>'
            return 503, page
        return 200, html_report(documents, refresh_seconds=refresh_seconds)

    def has_route(self, method: str, path: str) -> bool:
        return any(c.route.method == method and c.route.path == path for c in self.router.routes)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A real HTTP request to this bridge: (status, JSON body or text).

        A redirect is an answer, never followed: ``urlopen`` followed it keeping the Authorization header, sending
        the token to the ``Location``'s host.
        """
        answer = Outbound(connect_timeout=60.0, read_timeout=60.0, max_idle=0).request(
            method, self.url + path, body, headers or {}
        )
        status, data = answer.status, answer.content
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def replay_samples(self) -> dict[str, Any]:
        """POST the sample impressions as Split does (gzip, token in the URL), wait, read the sample profiles."""
        report: dict[str, Any] = {}
        token = self.secret_value("WebhookTokenSecret")
        if self.has_route("POST", "/split/impressions") and token is not None and SAMPLE_IMPRESSIONS.exists():
            body = gzip.compress(SAMPLE_IMPRESSIONS.read_bytes())
            report["webhook"] = self.request(
                "POST",
                f"/split/impressions?token={quote(token, safe='')}",
                body,
                {"Content-Type": "application/json", "User-Agent": "flagbridge-local-replay"},
            )
            report["idle"] = self.wait_idle(60)
        profile_token = self.secret_value("ProfileApiTokenSecret")
        if self.has_route("GET", "/profiles/{trafficType}/{key}") and profile_token is not None:
            report["profiles"] = {
                f"{traffic_type}/{key}": self.request(
                    "GET",
                    f"/profiles/{traffic_type}/{quote(key)}",
                    headers={"Authorization": f"Bearer {profile_token}"},
                )
                for traffic_type, key in SAMPLE_PROFILES
            }
        return report

    def replay_mparticle_samples(self) -> dict[str, Any]:
        """POST the sample mParticle batches (Events API with Basic auth, and the webhook format), wait."""
        report: dict[str, Any] = {}
        credentials = self.secret_value("MParticleCredentialsSecret")
        if not credentials or not self.has_route("POST", "/mparticle/v2/events"):
            return report
        document = json.loads(credentials)
        basic = base64.b64encode(f"{document['api_key']}:{document['api_secret']}".encode()).decode()
        now_ms = int(time.time() * 1000)
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        for path in SAMPLE_BATCHES:
            batch = fresh_timestamps(json.loads(path.read_text(encoding="utf-8")), now_ms)
            report[path.name] = self.request("POST", "/mparticle/v2/events", json.dumps(batch).encode(), headers)
        webhook_auth = self.secret_value("MParticleWebhookAuthSecret")
        if webhook_auth and self.has_route("POST", "/mparticle/webhook"):
            batch = fresh_timestamps(json.loads(SAMPLE_WEBHOOK_BATCH.read_text(encoding="utf-8")), now_ms)
            report[SAMPLE_WEBHOOK_BATCH.name] = self.request(
                "POST",
                "/mparticle/webhook",
                json.dumps(batch).encode(),
                {"Content-Type": "application/json", "Authorization": webhook_auth},
            )
        self.wait_idle(60)
        return report

    def destinations_report(self) -> list[str]:
        """What each destination received: the local receiver (Split, webhooks) and the AWS sinks."""
        lines: list[str] = []
        if self.receiver is not None:
            snapshot = self.receiver.snapshot()
            split_events = snapshot["split_events"]
            lines.append(f"  split (local Split receiver): {len(split_events)} event(s)")
            lines += [f"    {line}" for line in tally_events(split_events)]
            for path, batches in snapshot["webhooks"].items():
                users = sorted({str(i) for b in batches for i in _identity_values(b)})
                events = sum(len(b.get("events") or []) for b in batches if isinstance(b, dict))
                lines.append(f"  webhook {path}: {len(batches)} batch(es), {events} event(s), users {users}")
        sqs = self.client("sqs")
        lanes = []
        for name, url in sorted(json.loads(os.environ.get("DESTINATION_QUEUES", "{}")).items()):
            dlq = json.loads(os.environ.get("DESTINATION_DLQS", "{}")).get(name)
            depth = _queue_depth(sqs, dlq) if dlq else 0
            lanes.append(f"{name} {_queue_depth(sqs, url)}/{depth}")
        if lanes:
            lines.append(f"  lanes (messages waiting/in the DLQ): {', '.join(lanes)}")
        reporting = os.environ.get("REPORTING_QUEUE_URL")
        if reporting:
            lines.append(f"  reporting sink (SQS): {_queue_depth(sqs, reporting)} message(s)")
        bucket = os.environ.get("QUARANTINE_BUCKET")
        if bucket:
            counts: dict[str, int] = {}
            for entry in self.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []):
                prefix = entry["Key"].split("/", 1)[0]
                counts[prefix] = counts.get(prefix, 0) + 1
            lines.append(f"  quarantine bucket s3://{bucket}: {counts or 'empty'} (objects per prefix)")
        return lines

    def summary(self, replay: dict[str, Any] | None = None, demo: str | None = None, closing: bool = True) -> str:
        """What a person needs to use the bridge; ``closing``: end with the log file and "Ctrl-C to stop."."""
        lines = ["", f"flagbridge is running locally at {self.url} (AWS endpoint {self.endpoint_url})", "", "Routes:"]
        for compiled in self.router.routes:
            route = compiled.route
            target = route.route_key if route.path == "$default" else f"{route.method:<6} {self.url}{route.path}"
            lines.append(f"  {target}  -> {route.function}")
        for poller in self.pollers:
            lines.append(f"  SQS    {poller.queue_url}  -> {poller.source.function}")
        if replay:
            lines += self._replay_lines(replay)
        if self.receiver is not None:
            lines += ["", f"Outside services -> local receiver {self.receiver.url} (GET {self.url}/_local/receivers):"]
            lines += [f"  {name} = {url}" for name, url in self.receiver_urls.items()]
        if self.provisioned and self.provisioned.secret_values:
            lines += ["", "Local secret values (FLAGBRIDGE_LOCAL_SECRET_<LogicalId> to change):"]
            lines += [f"  {name}: {value}" for name, value in self.provisioned.secret_values.items()]
        lines += ["", "Try it:", *self._try_it_lines()]
        lines += ["", f"The oracle's verdicts, live (reloads every {LIVE_REFRESH_SECONDS} s): {self.url}/"]
        return "\n".join(lines + (self.closing_lines(demo) if closing else []))

    def _replay_lines(self, replay: dict[str, Any]) -> list[str]:
        """What replaying the sample impressions and mParticle batches answered, and what the destinations got."""
        lines: list[str] = []
        if "webhook" in replay:
            status, body = replay["webhook"]
            lines += ["", f"Replayed {SAMPLE_IMPRESSIONS.relative_to(ROOT)}: HTTP {status} {json.dumps(body)}"]
            if not replay.get("idle"):
                lines.append("  (the queue consumers did not finish within 60 s)")
        for name, (status, body) in (replay.get("profiles") or {}).items():
            lines += ["", f"Profile {name} (GET /profiles/{name}): HTTP {status}"]
            lines += [f"  {line}" for line in describe_profile(body)]
        if replay.get("mparticle"):
            lines += ["", "Replayed the sample mParticle batches (events/payloads/mparticle_*.json):"]
            for name, (status, body) in replay["mparticle"].items():
                lines.append(f"  {name}: HTTP {status} {json.dumps(body)}")
            lines += ["", "What each destination received:", *self.destinations_report()]
        return lines

    def _try_it_lines(self) -> list[str]:
        """Commands to try each public route this bridge serves, with its local secret."""
        lines: list[str] = []
        webhook_token = self.secret_value("WebhookTokenSecret")
        profile_token = self.secret_value("ProfileApiTokenSecret")
        if webhook_token is not None and self.has_route("POST", "/split/impressions"):
            lines.append(
                f"  gzip -c {SAMPLE_IMPRESSIONS.relative_to(ROOT)} | curl -sS -X POST"
                f" -H 'Content-Type: application/json' --data-binary @-"
                f" '{self.url}/split/impressions?token={quote(webhook_token, safe='')}'"
            )
        if profile_token is not None and self.has_route("GET", "/profiles/{trafficType}/{key}"):
            lines.append(f"  curl -sS -H 'Authorization: Bearer {profile_token}' {self.url}/profiles/user/u-1001")
        testers_token = self.secret_value("TestersApiTokenSecret")
        if testers_token is not None and self.has_route("PUT", "/testers/{trafficType}/{key}"):
            lines.append(
                f"  curl -sS -X PUT -H 'Authorization: Bearer {testers_token}' -H 'Content-Type: application/json'"
                f' -d \'{{"expiresAt": \'$(($(date +%s) + 3600))\', "reason": "trying the registry"}}\''
                f" {self.url}/testers/user/u-1001"
            )
        return [*lines, f"  curl -sS {self.url}/_local/idle"]

    def closing_lines(self, demo: str | None) -> list[str]:
        """Where the handlers' logs went, the demo's summary when it ran, and how to stop."""
        lines = []
        if self.handler_output is not None and self.handler_output.path is not None:
            lines += [
                "",
                f"Handler logs and metrics (JSON, one line each): {_shown(self.handler_output.path)}",
                "  (`make run ARGS=--verbose` prints them here instead)",
            ]
        if demo:
            lines += ["", demo]
        return [*lines, "", "Ctrl-C to stop.", ""]


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _identity_values(batch: Any) -> list[str]:
    identities = batch.get("user_identities") if isinstance(batch, dict) else None
    if isinstance(identities, dict):
        return [str(v) for v in identities.values()]
    if isinstance(identities, list):
        return [str(i.get("identity")) for i in identities if isinstance(i, dict)]
    return []


def _queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def describe_profile(body: Any) -> list[str]:
    """A few human lines about a profile document (the raw JSON when it has another shape)."""
    if not isinstance(body, dict) or not isinstance(body.get("flags"), dict):
        return [json.dumps(body)]
    test_user = body.get("testUser") or {}
    mark = f"tester (rule {test_user.get('rule')})" if test_user.get("isTestUser") else "not a tester"
    lines = [f"identity type {body.get('identityType')}, {mark}"]
    for flag, state in body["flags"].items():
        lines.append(
            f"{flag}: {state.get('treatment')!r} (label {state.get('label')!r}, version {state.get('version')}),"
            f" {state.get('exposures')} exposure(s), {len(state.get('history') or [])} assignment(s) in history"
        )
    return lines
