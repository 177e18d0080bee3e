"""Process-wide adapters, built once per Lambda container (warm invocations reuse them).

boto3 clients honour ``AWS_ENDPOINT_URL`` (and per-service variants) natively, which is how the local
runner points every function at moto server. Tests call :func:`reset` between moto mocks.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from flagbridge.auth import load_secret
from flagbridge.errors import ConfigError
from flagbridge.quarantine import S3Quarantine
from flagbridge.queues import SqsSender
from flagbridge.settings import Settings, get_settings

if TYPE_CHECKING:  # imported by the adapters below: only the functions that use them load them
    from flagbridge.cdp.config import CompiledDestination
    from flagbridge.forwarding.delivery import DeliveryService
    from flagbridge.forwarding.destinations import Sink, SplitEventsClient
    from flagbridge.forwarding.ingest import BatchIngestResult
    from flagbridge.forwarding.ledger import DynamoDBLedger
    from flagbridge.forwarding.router_service import RouterService
    from flagbridge.impressions.ingest import IngestResult
    from flagbridge.oracle.config import OracleConfig
    from flagbridge.oracle.notify import AwsNotifier
    from flagbridge.oracle.service import CounterService, Evaluator
    from flagbridge.oracle.split_admin import SplitAdminClient
    from flagbridge.oracle.store import DynamoDBCounterStore, DynamoDBVerdictStore
    from flagbridge.oracle.verdicts import StoreVerdicts
    from flagbridge.outbound import Outbound
    from flagbridge.profiles.processor import ImpressionProcessor
    from flagbridge.profiles.store import DynamoDBProfileStore
    from flagbridge.runs.consumer import ShardConsumer
    from flagbridge.runs.service import RunService
    from flagbridge.runs.spec import RunSpec
    from flagbridge.runs.store import ManifestStore, RunStore
    from flagbridge.runs.worker import ShardWorker
    from flagbridge.testers.registry import TesterRegistry
    from flagbridge.testers.segment import SegmentSync
    from flagbridge.traffic.config import TrafficConfig
    from flagbridge.traffic.generator import TrafficGenerator
    from flagbridge.traffic.stop import Check

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


@cache
def aws_client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def settings() -> Settings:
    return get_settings()


def init_complete(*, reads_configuration: bool) -> None:
    """Call at the end of a handler module: everything allocated so far lives as long as the container.

    ``reads_configuration``: whether the function's requests read the configuration file (all but the profile
    API's do). Then its models (pydantic) are imported here, at init, where Lambda gives a function the most CPU
    and where ``make bench`` measures a cold start, rather than on the first request: :mod:`flagbridge.settings`
    loads the file only when it is first read, so that a function which never reads it never imports them.

    The handler modules disable the garbage collector before their imports: what init allocates (the
    modules of boto3, pydantic and Powertools, about 100,000 objects) lives as long as the container, so
    the collections that importing triggers are wasted work (about 35 ms of a webhook cold start in
    ``make bench``'s probe). ``gc.freeze()`` then moves those objects out of the collector's generations,
    so the full collections that a large request triggers (a 10,000-impression webhook body allocates
    enough objects for several) stop re-scanning them; then the collector is turned back on.
    """
    if reads_configuration:
        import flagbridge.config  # noqa: F401  (its import builds the models)
    gc.freeze()
    gc.enable()


@cache
def impressions_sender() -> SqsSender:
    return SqsSender(aws_client("sqs"), settings().require("impressions_queue_url"))


@cache
def quarantine() -> S3Quarantine:
    return S3Quarantine(aws_client("s3"), settings().require("quarantine_bucket"))


@cache
def profile_store() -> DynamoDBProfileStore:
    from flagbridge.profiles.store import DynamoDBProfileStore

    return DynamoDBProfileStore(aws_client("dynamodb"), settings().require("profiles_table"))


@cache
def batches_sender() -> SqsSender:
    return SqsSender(aws_client("sqs"), settings().require("batches_queue_url"))


def impressions_ingest() -> partial[IngestResult]:
    """The webhook's ingest of a decoded body (``(data, request_id=...)``): to the impressions queue or the quarantine.

    Not cached: binding the cached adapters is cheap, and a replaced factory (the benchmarks') applies at once."""
    from flagbridge.impressions.ingest import ingest_body

    return partial(ingest_body, config=settings().config, sender=impressions_sender(), quarantine=quarantine())


def batch_ingest() -> partial[BatchIngestResult]:
    """The mParticle ingest of a decoded document (``(document, bulk=, source=, request_id=)``): to the batches
    queue or the quarantine."""
    from flagbridge.forwarding.ingest import ingest_batches

    return partial(ingest_batches, sender=batches_sender(), quarantine=quarantine())


@cache
def impressions_processor() -> ImpressionProcessor:
    """The impressions processor's service: the profiles table, the quarantine, the registered testers."""
    from flagbridge.profiles.processor import ImpressionProcessor

    return ImpressionProcessor(profile_store(), quarantine(), settings().config, lookup_registered=registered_testers())


def mparticle_credentials() -> tuple[str, str]:
    from flagbridge.auth import parse_credentials

    current = settings()
    return parse_credentials(
        load_secret(
            current.mparticle_credentials_secret,
            current.mparticle_credentials,
            current.secrets_max_age_seconds,
            "MPARTICLE_CREDENTIALS_SECRET",
        )
    )


def mparticle_webhook_auth() -> str:
    current = settings()
    return load_secret(
        current.mparticle_webhook_auth_secret,
        current.mparticle_webhook_auth,
        current.secrets_max_age_seconds,
        "MPARTICLE_WEBHOOK_AUTH_SECRET",
    )


@cache
def queue_sender(queue_url: str) -> SqsSender:
    return SqsSender(aws_client("sqs"), queue_url)


def destination_sender(destination: str) -> SqsSender:
    """The sender for a destination's own queue (DESTINATION_QUEUES maps names to queue URLs)."""
    url = settings().destination_queues.get(destination)
    if not url:
        raise ConfigError(f"no queue for destination {destination!r} in DESTINATION_QUEUES")
    return queue_sender(url)


def destination_dead_letter_sender(destination: str) -> SqsSender:
    url = settings().destination_dlqs.get(destination)
    if not url:
        raise ConfigError(f"no dead-letter queue for destination {destination!r} in DESTINATION_DLQS")
    return queue_sender(url)


@cache
def cdp_router() -> RouterService:
    """The CDP router's service: the configuration, profile marks, destination queues, quarantine, testers."""
    from flagbridge.forwarding.router_service import RouterService

    return RouterService(
        settings().config,
        profile_store().load_marks,
        destination_sender,
        quarantine(),
        lookup_registered=registered_testers(),
    )


@cache
def delivery_ledger() -> DynamoDBLedger:
    from flagbridge.forwarding.ledger import DynamoDBLedger

    return DynamoDBLedger(aws_client("dynamodb"), settings().require("delivery_ledger_table"))


@cache
def http_client() -> Outbound:
    """The outbound HTTP client of the destinations (one connection pool per container)."""
    from flagbridge.outbound import Outbound

    return Outbound()


def _destination_adapters() -> Any:
    from flagbridge.forwarding.destinations import Adapters

    # looked up at call time, so tests can replace http_client
    return Adapters(http=lambda: http_client(), aws_client=aws_client, secret=secret)


def destination_sink(destination: CompiledDestination) -> Sink:
    """The sink of a (non-Split) destination, built from its options (``forwarding.destinations.SINK_BUILDERS``)."""
    from flagbridge.forwarding.delivery import UndeliverableMessageError
    from flagbridge.forwarding.destinations import build_sink

    try:
        return build_sink(destination.type, destination.spec.options, _destination_adapters())
    except LookupError as exc:
        raise UndeliverableMessageError(str(exc)) from exc


def split_events_client(destination: CompiledDestination) -> SplitEventsClient:
    from flagbridge.forwarding.destinations import build_split_client

    return build_split_client(destination.spec.options, _destination_adapters())


@cache
def delivery_service() -> DeliveryService:
    """The destination-delivery function's service, wired to this container's adapters."""
    from flagbridge.forwarding.delivery import DeliveryService

    return DeliveryService(
        settings().config.cdp,
        delivery_ledger(),
        split_events_client,
        destination_sink,
        destination_dead_letter_sender,
        quarantine=quarantine(),
    )


def secret(name: str) -> str:
    """A Secrets Manager secret by name (cached by Powertools for FLAGBRIDGE_SECRETS_MAX_AGE seconds)."""
    return load_secret(name, "", settings().secrets_max_age_seconds)


def webhook_token() -> str:
    current = settings()
    return load_secret(
        current.webhook_token_secret, current.webhook_token, current.secrets_max_age_seconds, "WEBHOOK_TOKEN_SECRET"
    )


def profile_api_token() -> str:
    current = settings()
    return load_secret(
        current.profile_api_token_secret,
        current.profile_api_token,
        current.secrets_max_age_seconds,
        "PROFILE_API_TOKEN_SECRET",
    )


@cache
def tester_registry() -> TesterRegistry:
    """The tester registry (testers API, CLI, test runs write it; the router and the processor read it).

    With ``testers.segments`` configured and the Admin API secret set, each change also updates the segments,
    within a short budget (a request must answer; the reconcile repairs what did not fit)."""
    from flagbridge.testers.registry import TesterRegistry
    from flagbridge.testers.store import DynamoDBTesterStore

    store = DynamoDBTesterStore(aws_client("dynamodb"), settings().require("testers_table"))
    return TesterRegistry(store, segment=_segment_sync(store, request=True))


@cache
def tester_segment_sync() -> SegmentSync:
    """The reconcile's segment sync (the Admin API client's full retry budget); ConfigError when it cannot run."""
    from flagbridge.testers.store import DynamoDBTesterStore

    current = settings()
    if not current.config.testers.segments:
        raise ConfigError("no tester segment is configured (testers.segments in the configuration)")
    current.require("split_admin_api_key_secret")
    store = DynamoDBTesterStore(aws_client("dynamodb"), current.require("testers_table"))
    sync = _segment_sync(store, request=False)
    if sync is None:
        raise ConfigError("SPLIT_ADMIN_API_KEY_SECRET is not set")
    return sync


def _segment_sync(store: Any, *, request: bool) -> SegmentSync | None:
    """The segments' sync when configured (``testers.segments``) and the Admin API secret is set, else None.

    ``request``: the update a registry request makes itself, with short timeouts and a 5 s retry budget so the
    API answers even when Split hangs (the reconcile repairs what did not fit); else the kill's full budget."""
    current = settings()
    targets = current.config.testers.segments
    if not targets or not current.split_admin_api_key_secret:
        return None
    from flagbridge.oracle.split_admin import SplitAdminClient, admin_http
    from flagbridge.testers import registry
    from flagbridge.testers.segment import SegmentSync

    client = SplitAdminClient(
        admin_http(connect_timeout=2.0, read_timeout=4.0) if request else admin_http(),
        current.split_admin_api_url,
        lambda: secret(current.require("split_admin_api_key_secret")),
        auth=current.config.split_admin.auth,
        attempts=3 if request else 5,
        budget_seconds=5.0 if request else 20.0,
    )

    def on_problem(message: str, extra: dict[str, Any]) -> None:
        from flagbridge.observability import logger

        logger.warning(message, extra=extra)

    return SegmentSync(targets, client, store, lambda: registry._now(), on_problem)  # the registry's clock


def registered_testers() -> Callable[[Iterable[str]], Mapping[str, Any]] | None:
    """The bulk lookup of active registrations for the router and the processor; None without TESTERS_TABLE."""
    return tester_registry().active if settings().testers_table else None


def testers_api_tokens() -> dict[str, str]:
    """The testers API's named bearer tokens (one unnamed token is called ``testers-api-token``)."""
    from flagbridge.auth import named_tokens

    current = settings()
    return named_tokens(
        load_secret(
            current.testers_api_token_secret,
            current.testers_api_token,
            current.secrets_max_age_seconds,
            "TESTERS_API_TOKEN_SECRET",
        )
    )


@cache
def oracle_counters() -> DynamoDBCounterStore:
    from flagbridge.oracle.store import DynamoDBCounterStore

    return DynamoDBCounterStore(aws_client("dynamodb"), settings().require("oracle_counters_table"))


@cache
def oracle_verdicts() -> DynamoDBVerdictStore:
    from flagbridge.oracle.store import DynamoDBVerdictStore

    return DynamoDBVerdictStore(aws_client("dynamodb"), settings().require("oracle_verdicts_table"))


@cache
def oracle_notifier() -> AwsNotifier:
    from flagbridge.oracle.notify import AwsNotifier

    current = settings()
    return AwsNotifier(
        aws_client("sns"),
        aws_client("events"),
        current.require("oracle_alarm_topic_arn"),
        current.oracle_event_bus_name,
    )


@cache
def split_admin() -> SplitAdminClient:
    """Split's Admin API client; the key is read from its secret at each kill (rotations apply)."""
    from flagbridge.oracle.split_admin import SplitAdminClient, admin_http

    current = settings()
    return SplitAdminClient(
        admin_http(),
        current.split_admin_api_url,
        lambda: secret(current.require("split_admin_api_key_secret")),
        auth=current.config.split_admin.auth,
    )


@cache
def oracle_config() -> OracleConfig:
    """The ``oracle`` section, checked against its lane (ConfigError naming the key otherwise)."""
    from flagbridge.oracle.service import oracle_config as checked

    return checked(settings().config)


@cache
def oracle_counter_service() -> CounterService:
    """The oracle counter's service: counters, the profiles attribution reads, the quarantine of unreadable ones."""
    from flagbridge.oracle.counting import Counter, traffic_types_by_identity
    from flagbridge.oracle.service import CounterService

    config = settings().config
    counter = Counter(oracle_config(), traffic_types_by_identity(config.identity_mapping.split_environments))
    store = profile_store()
    return CounterService(
        counter, oracle_counters(), lambda pairs: store.load(pairs, [])[0], quarantine=lambda: quarantine()
    )


@cache
def oracle_evaluator() -> Evaluator:
    """The oracle evaluator's service: counters, verdicts, notifier and (per kill) Split's Admin API."""
    from flagbridge.oracle.service import Evaluator

    return Evaluator(oracle_config(), oracle_counters(), oracle_verdicts(), oracle_notifier(), split_admin)


def oracle_api_token() -> str:
    current = settings()
    return load_secret(current.oracle_api_token_secret, current.oracle_api_token, current.secrets_max_age_seconds)


# ---- test runs in AWS (flagbridge.runs) -------------------------------------------------------------------------


@cache
def run_store() -> RunStore:
    from flagbridge.runs.store import DynamoDBRunStore

    return DynamoDBRunStore(aws_client("dynamodb"), settings().require("runs_table"))


@cache
def manifest_store() -> ManifestStore:
    from flagbridge.runs.store import S3ManifestStore

    return S3ManifestStore(aws_client("s3"), settings().require("manifest_bucket"))


@cache
def shard_sender() -> SqsSender:
    return SqsSender(aws_client("sqs"), settings().require("shard_queue_url"))


def traffic_api_token() -> str:
    current = settings()
    return load_secret(
        current.traffic_api_token_secret,
        current.traffic_api_token,
        current.secrets_max_age_seconds,
        "TRAFFIC_API_TOKEN_SECRET",
    )


def traffic_config() -> TrafficConfig:
    from flagbridge.traffic.config import TrafficConfig

    return TrafficConfig.from_document(settings().config.traffic_document)


def run_verdicts() -> StoreVerdicts | None:
    """The oracle's verdict store as a run reads it, when this stack has the oracle (ORACLE_VERDICTS_TABLE)."""
    from flagbridge.oracle.verdicts import StoreVerdicts

    return StoreVerdicts(oracle_verdicts()) if settings().oracle_verdicts_table else None


def pool_registrar() -> TesterRegistry | None:
    """The tester registry (its ``register_pool``) when this stack has it (TESTERS_TABLE), else None."""
    return tester_registry() if settings().testers_table else None


@cache
def run_service() -> RunService:
    """The test runs API's service: runs table, manifest bucket, shard queue, tester pool, oracle, target probe."""
    from flagbridge.runs.service import RunService, http_probe

    current = settings()
    return RunService(
        run_store(),
        manifest_store(),
        shard_sender(),
        traffic_config(),
        current.config.test_users,
        current.traffic_parallelism,
        registrar=pool_registrar(),
        verdicts=run_verdicts(),
        oracle=current.config.oracle,  # a plan's oracle test is checked against it (flagbridge.oracle.feeds)
        probe=http_probe(traffic_config()),  # a target that does not answer: 422, nothing started
    )


def stop_parameter_value() -> str:
    """The stack's stop parameter, read fresh (at most once a second per worker: flagbridge.runs.stop)."""
    name = settings().traffic_stop_parameter
    if not name:
        return "none"
    return str(aws_client("ssm").get_parameter(Name=name)["Parameter"]["Value"])


@cache
def shard_worker() -> ShardWorker:
    """The worker's service: the runs table, the manifest bucket and, per run, its generator, sender and switch."""
    from flagbridge.runs.rounds import Rounds
    from flagbridge.runs.stop import run_stop
    from flagbridge.runs.worker import Runtime, ShardWorker
    from flagbridge.traffic.results import ResultReporter
    from flagbridge.traffic.safety import RunTag
    from flagbridge.traffic.sender import HttpSender

    current = settings()
    traffic = traffic_config()

    def generator(spec: RunSpec) -> TrafficGenerator:
        from flagbridge.runs.spec import build_generator

        key = secret(current.require("traffic_run_tag_key_secret")).encode()
        return build_generator(spec, RunTag(key, spec.run_tag_header))

    def send() -> Any:
        return HttpSender(traffic.allowlist).send  # every destination checked against the allowlist

    def reporter(spec: RunSpec) -> ResultReporter | None:
        if not current.traffic_results_url:
            return None
        key, api_secret = mparticle_credentials()
        return ResultReporter(
            current.traffic_results_url,
            key,
            api_secret,
            post=HttpSender(timeout=30.0).send,
            environment=traffic.environment,
            oracle_test=spec.oracle_test,
        )

    def stop(spec: RunSpec) -> Check:
        from flagbridge.observability import logger

        def on_error(what: str, exc: Exception) -> None:
            logger.warning("stop switch unreadable", extra={"what": what, "error_type": type(exc).__name__})

        # SSM's standard throughput is 40 GetParameter/s per account and region: all workers together stay well
        # under it (one read per worker every parallelism/20 s, at least every second; docs/runs.md). The oracle's
        # verdict item is read as often.
        refresh = max(1.0, spec.parallelism / 20)
        return run_stop(
            spec.run_id,
            stop_parameter_value,
            spec.oracle_test,
            spec.oracle_metrics,
            run_verdicts(),
            refresh_seconds=refresh,
            on_error=on_error,
            decided_since_ms=spec.decided_since_ms(),
        )

    rounds = Rounds(
        run_store(),
        shard_sender(),
        shard_sender().send_delayed,
        run_verdicts(),
        delay_seconds=current.traffic_look_delay_seconds,
        wait_seconds=current.traffic_look_wait_seconds,
    )
    return ShardWorker(
        Runtime(
            run_store(),
            manifest_store(),
            generator,
            send,
            reporter,
            stop,
            lease_ms=current.traffic_shard_lease_seconds * 1000,
            rounds=rounds,
        )
    )


@cache
def shard_consumer() -> ShardConsumer:
    """The worker function's service: the shard worker, the quarantine, and the shard queue's visibility."""
    from flagbridge.queues import SqsVisibility
    from flagbridge.runs.consumer import ShardConsumer

    url = settings().shard_queue_url
    visibility = SqsVisibility(aws_client("sqs"), url) if url else None
    return ShardConsumer(lambda: shard_worker(), lambda: quarantine(), visibility)  # built when a record needs them


def reset() -> None:
    """Forget every cached client, adapter and setting (tests; never needed in Lambda)."""
    for cached in (
        aws_client,
        impressions_sender,
        batches_sender,
        queue_sender,
        delivery_ledger,
        http_client,
        quarantine,
        profile_store,
        tester_registry,
        tester_segment_sync,
        oracle_counters,
        oracle_verdicts,
        oracle_notifier,
        split_admin,
        get_settings,
        run_store,
        manifest_store,
        shard_sender,
        shard_worker,
        impressions_processor,
        cdp_router,
        delivery_service,
        oracle_config,
        oracle_counter_service,
        oracle_evaluator,
        run_service,
        shard_consumer,
    ):
        getattr(cached, "cache_clear", lambda: None)()  # a test may have replaced one (http_client)
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
