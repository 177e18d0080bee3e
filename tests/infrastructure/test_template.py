"""Invariant tests for template.yaml (and the layer Makefile it builds with).

They read the template as written (short tags mapped to their long form by ``local.cfn_yaml``) and fail when a
design invariant is broken: architecture, queue timing, durability and encryption settings, least-privilege
policies, secrets, logging, routes, alarms and outputs, and the CDP lanes agreeing with the destinations of
``layers/shared/config/flagbridge.yaml``. No AWS, no network, no SAM transform needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.cfn_yaml import load, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE["Globals"]["Function"]

FUNCTIONS = {
    "ImpressionsWebhookFunction": ("functions/impressions_webhook/", "impressions_webhook.lambda_handler"),
    "ImpressionsProcessorFunction": ("functions/impressions_processor/", "impressions_processor.lambda_handler"),
    "ProfileApiFunction": ("functions/profile_api/", "profile_api.lambda_handler"),
    "MParticleIngestFunction": ("functions/mparticle_ingest/", "mparticle_ingest.lambda_handler"),
    "CdpRouterFunction": ("functions/cdp_router/", "cdp_router.lambda_handler"),
    "DestinationDeliveryFunction": ("functions/destination_delivery/", "destination_delivery.lambda_handler"),
    "TesterRegistryFunction": ("functions/tester_registry/", "tester_registry.lambda_handler"),
    "TesterSegmentReconcileFunction": (
        "functions/tester_segment_reconcile/",
        "tester_segment_reconcile.lambda_handler",
    ),
    "OracleCounterFunction": ("functions/oracle_counter/", "oracle_counter.lambda_handler"),
    "OracleEvaluatorFunction": ("functions/oracle_evaluator/", "oracle_evaluator.lambda_handler"),
    "OracleApiFunction": ("functions/oracle_api/", "oracle_api.lambda_handler"),
    "TrafficRunsFunction": ("functions/traffic_runs/", "traffic_runs.lambda_handler"),
    "TrafficWorkerFunction": ("functions/traffic_worker/", "traffic_worker.lambda_handler"),
}
ROUTES = {
    ("POST", "/split/impressions"): "ImpressionsWebhookFunction",
    ("GET", "/profiles/{trafficType}/{key}"): "ProfileApiFunction",
    ("POST", "/mparticle/v2/events"): "MParticleIngestFunction",
    ("POST", "/mparticle/v2/bulkevents"): "MParticleIngestFunction",
    ("POST", "/mparticle/webhook"): "MParticleIngestFunction",
    ("PUT", "/testers/{trafficType}/{key}"): "TesterRegistryFunction",
    ("DELETE", "/testers/{trafficType}/{key}"): "TesterRegistryFunction",
    ("GET", "/testers"): "TesterRegistryFunction",
    ("GET", "/tests"): "OracleApiFunction",
    ("GET", "/tests/{name}"): "OracleApiFunction",
    ("GET", "/tests/{name}/report"): "OracleApiFunction",
    ("POST", "/runs"): "TrafficRunsFunction",
    ("GET", "/runs/{id}"): "TrafficRunsFunction",
}
# CDP destination name -> the logical id prefix of its lane (<Lane>DestinationQueue, <Lane>DestinationDeadLetterQueue).
LANES = {
    "split": "Split",
    "analytics": "Analytics",
    "warehouse": "Warehouse",
    "reporting": "Reporting",
    "audit": "Audit",
}
# The oracle's lane: routed like the others, consumed by the oracle's counter instead of the delivery function.
ORACLE_LANES = {"oracle": "Oracle"}
ALL_LANES = {**LANES, **ORACLE_LANES}
# The configuration the layer ships (plain YAML: its ${NAME:-default} placeholders are just strings here).
CONFIG_PATH = ROOT / "layers/shared/config/flagbridge.yaml"
CONFIG: dict[str, Any] = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
CDP_DESTINATIONS = [destination["name"] for destination in CONFIG["cdp"]["destinations"]]
# Which function consumes which queue (SQS event sources), and its expected batching/concurrency settings.
SQS_CONSUMERS = {
    "ImpressionsQueue": "ImpressionsProcessorFunction",
    "BatchesQueue": "CdpRouterFunction",
    **{f"{lane}DestinationQueue": "DestinationDeliveryFunction" for lane in LANES.values()},
    "OracleDestinationQueue": "OracleCounterFunction",
    "TrafficShardQueue": "TrafficWorkerFunction",
}
# Lanes whose messages are summed over big batches (a batching window of a few seconds).
BIG_BATCH_LANES = {"SplitDestinationQueue": 1000, "OracleDestinationQueue": 100}
MAX_RETENTION = 14 * 24 * 3600  # SQS's maximum MessageRetentionPeriod
# SAM policy templates we allow in function Policies: each expands to actions scoped to the named resource.
SAM_POLICY_TEMPLATES = {
    "SQSSendMessagePolicy",
    "S3WritePolicy",
    "S3ReadPolicy",
    "AWSSecretsManagerGetSecretValuePolicy",
    "DynamoDBCrudPolicy",
    "DynamoDBReadPolicy",
    "DynamoDBWritePolicy",
    "FirehoseWritePolicy",
    "EventBridgePutEventsPolicy",
    "SNSPublishMessagePolicy",
}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in RESOURCES.items() if res["Type"] == resource_type}


def props(name: str) -> dict[str, Any]:
    return RESOURCES[name].get("Properties", {})


def function_setting(name: str, key: str) -> Any:
    """A function property, falling back to Globals.Function like SAM does."""
    return props(name).get(key, GLOBAL_FUNCTION.get(key))


def events(function: str, event_type: str) -> list[dict[str, Any]]:
    return [e["Properties"] for e in props(function).get("Events", {}).values() if e["Type"] == event_type]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_json_map(value: Any) -> dict[str, str]:
    """A ``!Sub`` JSON object of ``${LogicalId}`` references, as {key: LogicalId} (e.g. DESTINATION_QUEUES)."""
    assert isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str), value
    document = json.loads(value["Fn::Sub"])
    assert isinstance(document, dict), value
    mapping = {}
    for key, reference in document.items():
        match = re.fullmatch(r"\$\{([A-Za-z0-9]+)\}", reference)
        assert match, (key, reference)
        mapping[key] = match.group(1)
    return mapping


def walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (path, key, value) for every mapping entry in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


# --------------------------------------------------------------------------------------------------------------
# Runtime, architecture and the layer build
# --------------------------------------------------------------------------------------------------------------


def test_functions_run_python313_on_arm64() -> None:
    assert GLOBAL_FUNCTION["Runtime"] == "python3.13"
    assert GLOBAL_FUNCTION["Architectures"] == ["arm64"]
    for name in of_type("AWS::Serverless::Function"):
        assert function_setting(name, "Runtime") == "python3.13", name
        assert function_setting(name, "Architectures") == ["arm64"], name


def test_layer_is_built_for_the_functions_architecture() -> None:
    # BuildArchitecture (not CompatibleArchitectures) selects the wheels: x86_64 pydantic_core on arm64 fails at import.
    layer = RESOURCES["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == GLOBAL_FUNCTION["Architectures"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert [layer["Metadata"]["BuildArchitecture"]] == GLOBAL_FUNCTION["Architectures"]


def test_layer_makefile_installs_arm64_cp313_wheels_without_the_runtime_sdk() -> None:
    makefile = (ROOT / "layers/shared/Makefile").read_text(encoding="utf-8")
    assert re.search(r"^build-SharedLayer:", makefile, re.MULTILINE)
    assert "manylinux2014_aarch64" in makefile
    assert "--python-version $(PY_VERSION)" in makefile and re.search(r"^PY_VERSION := 3\.13$", makefile, re.MULTILINE)
    assert "--only-binary=:all:" in makefile
    assert '--target "$(ARTIFACTS_DIR)/python"' in makefile
    assert re.search(r"^RUNTIME_PROVIDED := .*\bboto3\b.*\bbotocore\b.*\bs3transfer\b", makefile, re.MULTILINE)
    assert '"$(ARTIFACTS_DIR)/python/flagbridge"' in makefile
    # FLAGBRIDGE_CONFIG points where the layer puts the file (layers mount at /opt).
    assert '"$(ARTIFACTS_DIR)/config/flagbridge.json"' in makefile
    assert GLOBAL_FUNCTION["Environment"]["Variables"]["FLAGBRIDGE_CONFIG"] == "/opt/config/flagbridge.json"


def test_globals() -> None:
    assert GLOBAL_FUNCTION["Timeout"] == 30
    assert GLOBAL_FUNCTION["MemorySize"] == 512
    assert GLOBAL_FUNCTION["Tracing"] == "Active"
    assert GLOBAL_FUNCTION["LoggingConfig"]["LogFormat"] == "JSON"
    assert GLOBAL_FUNCTION["Layers"] == [ref("SharedLayer")]
    assert GLOBAL_FUNCTION["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "POWERTOOLS_LOG_LEVEL": ref("LogLevel"),
        "FLAGBRIDGE_CONFIG": "/opt/config/flagbridge.json",
    }


@pytest.mark.parametrize(("name", "code_uri", "handler"), [(n, *v) for n, v in FUNCTIONS.items()])
def test_function_code_and_handler(name: str, code_uri: str, handler: str) -> None:
    assert props(name)["CodeUri"] == code_uri
    assert props(name)["Handler"] == handler
    # Dependencies live in the layer. SAM CLI 1.148 demands a python3.13 binary for any python function it builds
    # (even without requirements.txt), so the functions are SkipBuild: their source folder is deployed as is.
    assert not (ROOT / code_uri / "requirements.txt").exists()
    assert RESOURCES[name]["Metadata"]["SkipBuild"] is True


def test_only_the_known_functions_with_unique_handler_modules() -> None:
    assert set(of_type("AWS::Serverless::Function")) == set(FUNCTIONS)
    modules = [props(name)["Handler"].rsplit(".", 1)[0] for name in FUNCTIONS]
    assert len(set(modules)) == len(modules)


# --------------------------------------------------------------------------------------------------------------
# Queueing
# --------------------------------------------------------------------------------------------------------------


def _sqs_consumers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, event) for name in of_type("AWS::Serverless::Function") for event in events(name, "SQS")]


def _event_queue(event: dict[str, Any]) -> str:
    assert event["Queue"] == get_att(event["Queue"]["Fn::GetAtt"][0], "Arn"), event["Queue"]
    return str(event["Queue"]["Fn::GetAtt"][0])


def _dead_letter_queue(queue: str) -> str:
    return str(props(queue)["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0])


def test_each_consumed_queue_has_exactly_one_event_source() -> None:
    consumed = [(_event_queue(event), name) for name, event in _sqs_consumers()]
    assert sorted(consumed) == sorted(SQS_CONSUMERS.items())
    # The delivery function consumes each lane through its own event source mapping (own concurrency cap).
    assert len(events("DestinationDeliveryFunction", "SQS")) == len(LANES)


def test_queue_visibility_timeout_is_at_least_six_times_the_consumer_timeout_plus_its_window() -> None:
    # AWS guidance for SQS event sources: 6x the function timeout, plus MaximumBatchingWindowInSeconds.
    for name, event in _sqs_consumers():
        queue = _event_queue(event)
        timeout, window = function_setting(name, "Timeout"), event.get("MaximumBatchingWindowInSeconds", 0)
        assert props(queue)["VisibilityTimeout"] >= 6 * timeout + window, (queue, name)
    for name in set(SQS_CONSUMERS.values()) - {"TrafficWorkerFunction"}:
        assert function_setting(name, "Timeout") == 60, name
    # a shard lasts at most 600 s (flagbridge.runs.spec.MAX_SHARD_SECONDS), well inside the worker's timeout
    assert function_setting("TrafficWorkerFunction", "Timeout") == 300


def test_sqs_events_report_batch_item_failures() -> None:
    for name, event in _sqs_consumers():
        assert "ReportBatchItemFailures" in event["FunctionResponseTypes"], name
        # Only the Split lane (its messages share Split requests) and the oracle lane (its counters are summed per
        # batch) take bigger batches (next test); the shard queue takes one shard per invocation.
        expected_batch = (
            1 if _event_queue(event) == "TrafficShardQueue" else BIG_BATCH_LANES.get(_event_queue(event), 10)
        )
        assert event["BatchSize"] == expected_batch, name
        concurrency = event["ScalingConfig"]["MaximumConcurrency"]
        if concurrency == ref("TrafficParallelism"):  # a parameter: its bounds are SQS's
            parallelism = TEMPLATE["Parameters"]["TrafficParallelism"]
            concurrency = parallelism["MinValue"]
            assert parallelism["MaxValue"] <= 1000
        assert 2 <= concurrency <= 1000, name
    (processor,) = events("ImpressionsProcessorFunction", "SQS")
    assert (processor["MaximumBatchingWindowInSeconds"], processor["ScalingConfig"]["MaximumConcurrency"]) == (5, 5)
    (router,) = events("CdpRouterFunction", "SQS")
    assert (router["MaximumBatchingWindowInSeconds"], router["ScalingConfig"]["MaximumConcurrency"]) == (2, 5)
    for lane in events("DestinationDeliveryFunction", "SQS"):
        assert lane["ScalingConfig"]["MaximumConcurrency"] == 2
    # test runs: one shard per invocation, as many at once as the parallelism (also the reserved concurrency)
    (shards,) = events("TrafficWorkerFunction", "SQS")
    assert shards["ScalingConfig"]["MaximumConcurrency"] == ref("TrafficParallelism")
    assert function_setting("TrafficWorkerFunction", "ReservedConcurrentExecutions") == ref("TrafficParallelism")


def test_batches_over_ten_messages_have_a_batching_window_the_visibility_timeout_allows_for() -> None:
    # AWS: above 10 an SQS event source needs MaximumBatchingWindowInSeconds >= 1 (standard queues: BatchSize up to
    # 10,000); the visibility timeout should cover 6x the function timeout plus the batching window.
    big = [(name, event) for name, event in _sqs_consumers() if event["BatchSize"] > 10]
    assert sorted(_event_queue(event) for _, event in big) == sorted(BIG_BATCH_LANES)
    for name, event in big:
        queue, window = _event_queue(event), event["MaximumBatchingWindowInSeconds"]
        assert event["BatchSize"] <= 10_000 and not props(queue).get("FifoQueue"), queue  # FIFO: at most 10
        assert 1 <= window <= 10, queue  # a few seconds: Split sees the events at most that much later
        assert props(queue)["VisibilityTimeout"] >= 6 * function_setting(name, "Timeout") + window, queue
    (split,) = [event for _, event in big if _event_queue(event) == "SplitDestinationQueue"]
    assert (split["BatchSize"], split["MaximumBatchingWindowInSeconds"]) == (1000, 5)
    # Split rate-limits: the bigger batches do not come with more concurrent senders.
    assert split["ScalingConfig"]["MaximumConcurrency"] == 2
    (oracle,) = events("OracleCounterFunction", "SQS")
    # 100 router messages: the ledger condition of one counter write stays under DynamoDB's 4 KB expression limit.
    assert (oracle["BatchSize"], oracle["MaximumBatchingWindowInSeconds"]) == (100, 5)


def test_every_consumed_queue_redrives_to_its_own_dead_letter_queue() -> None:
    dead_letter_queues = [_dead_letter_queue(queue) for queue in SQS_CONSUMERS]
    assert len(set(dead_letter_queues)) == len(SQS_CONSUMERS)  # one DLQ per queue, never shared
    for queue, dlq in zip(SQS_CONSUMERS, dead_letter_queues, strict=True):
        # shards: "busy" and hand-back receives count too (the claim makes every receive safe)
        assert props(queue)["RedrivePolicy"]["maxReceiveCount"] == (20 if queue == "TrafficShardQueue" else 5), queue
        assert RESOURCES[dlq]["Type"] == "AWS::SQS::Queue", queue
        assert dlq not in SQS_CONSUMERS, dlq  # nothing consumes a DLQ: messages wait there for a redrive
        assert "RedrivePolicy" not in props(dlq), dlq
        assert props(dlq)["MessageRetentionPeriod"] == MAX_RETENTION, dlq
        # The DLQ keeps messages at least as long as the source (retention counts from the original enqueue).
        assert props(dlq)["MessageRetentionPeriod"] >= props(queue).get("MessageRetentionPeriod", 4 * 24 * 3600)
    assert props("ImpressionsQueue")["MessageRetentionPeriod"] < MAX_RETENTION
    assert props("BatchesQueue")["MessageRetentionPeriod"] < MAX_RETENTION


def test_impressions_queue_redrives_to_the_dead_letter_queue() -> None:
    redrive = props("ImpressionsQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == get_att("ImpressionsDeadLetterQueue", "Arn")
    assert props("BatchesQueue")["RedrivePolicy"]["deadLetterTargetArn"] == get_att("BatchesDeadLetterQueue", "Arn")


def test_the_configured_destinations_are_the_lanes() -> None:
    assert sorted(CDP_DESTINATIONS) == sorted(ALL_LANES)
    assert len(set(CDP_DESTINATIONS)) == len(CDP_DESTINATIONS)


@pytest.mark.parametrize(("destination", "lane"), list(ALL_LANES.items()))
def test_each_lane_has_its_queue_and_dead_letter_queue(destination: str, lane: str) -> None:
    queue, dlq = f"{lane}DestinationQueue", f"{lane}DestinationDeadLetterQueue"
    assert RESOURCES[queue]["Type"] == RESOURCES[dlq]["Type"] == "AWS::SQS::Queue"
    assert _dead_letter_queue(queue) == dlq
    # A destination can be down for long: its lane keeps messages as long as SQS allows.
    assert props(queue)["MessageRetentionPeriod"] == MAX_RETENTION
    assert props(queue)["QueueName"] == {"Fn::Sub": f"flagbridge-${{Stage}}-{destination}-destination"}
    assert props(dlq)["QueueName"] == {"Fn::Sub": f"flagbridge-${{Stage}}-{destination}-destination-dlq"}
    assert [e for e in events(SQS_CONSUMERS[queue], "SQS") if _event_queue(e) == queue] != []


def test_destination_maps_name_exactly_the_configured_destinations() -> None:
    queues = sub_json_map(props("CdpRouterFunction")["Environment"]["Variables"]["DESTINATION_QUEUES"])
    dlqs = sub_json_map(props("DestinationDeliveryFunction")["Environment"]["Variables"]["DESTINATION_DLQS"])
    assert sorted(queues) == sorted(CDP_DESTINATIONS)
    assert sorted(dlqs) == sorted(LANES)  # the oracle's counter never dead-letters by hand: SQS redrives its lane
    for destination in CDP_DESTINATIONS:
        assert queues[destination] == f"{ALL_LANES[destination]}DestinationQueue"
    for destination in LANES:
        assert dlqs[destination] == _dead_letter_queue(queues[destination])
    # The delivery function consumes exactly the delivery lanes the router fans out to, the oracle's counter the rest.
    delivered = sorted(_event_queue(e) for e in events("DestinationDeliveryFunction", "SQS"))
    assert delivered == sorted(queues[name] for name in LANES)
    assert [_event_queue(e) for e in events("OracleCounterFunction", "SQS")] == [queues["oracle"]]


def test_queues_have_explicit_stage_scoped_names() -> None:
    # The local runner creates the queues under these names; CloudFormation-generated names would differ per stack.
    names = []
    for name in of_type("AWS::SQS::Queue"):
        queue_name = props(name)["QueueName"]["Fn::Sub"]
        assert re.fullmatch(r"flagbridge-\$\{Stage\}-[a-z0-9]+(-[a-z0-9]+)*", queue_name), name
        names.append(queue_name)
    assert len(set(names)) == len(names)


def test_queues_are_encrypted_and_tls_only() -> None:
    queues = of_type("AWS::SQS::Queue")
    lanes = {f"{lane}Destination{kind}" for lane in ALL_LANES.values() for kind in ("Queue", "DeadLetterQueue")}
    expected = {"ImpressionsQueue", "ImpressionsDeadLetterQueue", "BatchesQueue", "BatchesDeadLetterQueue"}
    runs = {"TrafficShardQueue", "TrafficShardDeadLetterQueue"}
    assert set(queues) == expected | lanes | runs | {"ReportingQueue"}
    for name in queues:
        assert props(name)["SqsManagedSseEnabled"] is True, name
    policies = of_type("AWS::SQS::QueuePolicy").values()
    covered = {q["Ref"] for p in policies for q in p["Properties"]["Queues"] if _denies_insecure_transport(p)}
    assert covered == set(queues)
    for policy in policies:  # the Deny names every queue the policy is attached to
        (statement,) = as_list(policy["Properties"]["PolicyDocument"]["Statement"])
        attached = [get_att(q["Ref"], "Arn") for q in policy["Properties"]["Queues"]]
        assert statement["Resource"] == attached


# --------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------


def test_tables_are_durable_and_encrypted() -> None:
    assert set(of_type("AWS::DynamoDB::Table")) == {
        "ProfilesTable",
        "DeliveryLedgerTable",
        "TestersTable",
        "OracleCountersTable",
        "OracleVerdictsTable",
        "TrafficRunsTable",
    }
    for name, table in of_type("AWS::DynamoDB::Table").items():
        assert table["DeletionPolicy"] == "Retain", name
        assert table["UpdateReplacePolicy"] == "Retain", name
        p = table["Properties"]
        assert p["BillingMode"] == "PAY_PER_REQUEST", name
        assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert p["SSESpecification"]["SSEEnabled"] is True, name


def test_profiles_table_keys() -> None:
    p = props("ProfilesTable")
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]} == {"pk": "S", "sk": "S"}


def test_delivery_ledger_table_keys_and_ttl() -> None:
    # flagbridge.forwarding.ledger.DynamoDBLedger: string key ``id``, TTL attribute ``expires_at``.
    p = props("DeliveryLedgerTable")
    assert p["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert p["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_testers_table_keys_listing_index_and_ttl() -> None:
    # flagbridge.testers.store.DynamoDBTesterStore: pk/sk strings, the sparse index "by-listing" (listed, pk),
    # TTL on expires_at (registrations: their expiry; audit entries: their retention).
    from flagbridge.testers.store import LISTING_INDEX

    p = props("TestersTable")
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    definitions = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    assert definitions == {"pk": "S", "sk": "S", "listed": "S"}
    (index,) = p["GlobalSecondaryIndexes"]
    assert index["IndexName"] == LISTING_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": "listed", "KeyType": "HASH"},
        {"AttributeName": "pk", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _denies_insecure_transport(policy: dict[str, Any]) -> bool:
    statements = as_list(policy["Properties"]["PolicyDocument"]["Statement"])
    return any(
        s["Effect"] == "Deny" and s["Principal"] == "*" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        for s in statements
    )


@pytest.mark.parametrize("name", ["QuarantineBucket", "WarehouseBucket", "TrafficManifestBucket"])
def test_buckets_are_private_encrypted_versioned_and_retained(name: str) -> None:
    assert set(of_type("AWS::S3::Bucket")) == {"QuarantineBucket", "WarehouseBucket", "TrafficManifestBucket"}
    bucket = RESOURCES[name]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    p = bucket["Properties"]
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_quarantined_payloads_expire() -> None:
    rules = props("QuarantineBucket")["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and r["ExpirationInDays"] == ref("QuarantineRetentionDays") for r in rules)


@pytest.mark.parametrize("name", ["QuarantineBucket", "WarehouseBucket", "TrafficManifestBucket"])
def test_bucket_policy_denies_insecure_transport_on_bucket_and_objects(name: str) -> None:
    (policy,) = [p for p in of_type("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == ref(name)]
    assert _denies_insecure_transport(policy)
    (statement,) = [s for s in as_list(policy["Properties"]["PolicyDocument"]["Statement"]) if s["Effect"] == "Deny"]
    assert statement["Action"] in ("s3:*", ["s3:*"])
    assert get_att(name, "Arn") in statement["Resource"]
    assert {"Fn::Sub": f"${{{name}.Arn}}/*"} in statement["Resource"]


# --------------------------------------------------------------------------------------------------------------
# Example sinks of the non-Split destinations
# --------------------------------------------------------------------------------------------------------------


def test_warehouse_delivery_stream_writes_encrypted_to_the_warehouse_bucket() -> None:
    stream = props("WarehouseDeliveryStream")
    assert RESOURCES["WarehouseDeliveryStream"]["Type"] == "AWS::KinesisFirehose::DeliveryStream"
    assert stream["DeliveryStreamName"] == {"Fn::Sub": "flagbridge-${Stage}-warehouse"}
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == get_att("WarehouseBucket", "Arn")
    assert s3["RoleARN"] == get_att("WarehouseDeliveryRole", "Arn")
    assert s3["Prefix"] == "mparticle/"
    assert s3["BufferingHints"]["IntervalInSeconds"] > 0 and s3["BufferingHints"]["SizeInMBs"] > 0
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_warehouse_delivery_role_is_scoped_to_firehose_and_the_warehouse_bucket() -> None:
    role = props("WarehouseDeliveryRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"])
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}}
    statements = [s for policy in role["Policies"] for s in as_list(policy["PolicyDocument"]["Statement"])]
    allowed = [get_att("WarehouseBucket", "Arn"), {"Fn::Sub": "${WarehouseBucket.Arn}/*"}]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        if all(a.startswith("s3:") for a in actions):
            for resource in as_list(statement["Resource"]):
                assert resource in allowed, resource
        else:
            assert actions == ["logs:PutLogEvents"], actions
            assert "${WarehouseDeliveryLogStream}" in statement["Resource"]["Fn::Sub"]


def test_reporting_queue_and_audit_bus() -> None:
    assert props("ReportingQueue")["QueueName"] == {"Fn::Sub": "flagbridge-${Stage}-reporting"}
    assert "ReportingQueue" not in SQS_CONSUMERS  # consumed outside the stack
    assert RESOURCES["AuditEventBus"]["Type"] == "AWS::Events::EventBus"
    assert props("AuditEventBus")["Name"] == {"Fn::Sub": "flagbridge-${Stage}-audit"}


# --------------------------------------------------------------------------------------------------------------
# Least privilege and secrets
# --------------------------------------------------------------------------------------------------------------

POLICY_RESOURCE_TYPES = {
    "AWS::IAM::Policy": "PolicyDocument",
    "AWS::IAM::ManagedPolicy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::KMS::Key": "KeyPolicy",
}


def _is_account_root(principal: Any) -> bool:
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return aws in (
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
        {"Ref": "AWS::AccountId"},
    )


def wildcard_violations(statements: list[dict[str, Any]], *, key_policy: bool = False) -> list[str]:
    """Why each statement breaks the no-wildcard rule (empty when all are fine).

    - ``Action: "*"`` and ``Resource: "*"`` are never allowed, nor ``NotAction``/``NotResource``.
    - An Allow may not use a service-wide action (``sqs:*``). A Deny may (denying everything without TLS is the
      point), but still only on named resources.
    - Key policies: ``Resource: "*"`` means "this key" and is the only valid form; ``kms:*`` is allowed only for the
      account root (AWS's default statement that delegates the key's management to IAM).
    """
    problems = []
    for statement in statements:
        sid = statement.get("Sid", "?")
        actions = as_list(statement.get("Action", []))
        resources = as_list(statement.get("Resource", []))
        root = key_policy and _is_account_root(statement.get("Principal"))
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: NotAction/NotResource")
        if "*" in actions:
            problems.append(f"{sid}: Action *")
        if "*" in resources and not key_policy:
            problems.append(f"{sid}: Resource *")
        if statement.get("Effect") == "Allow":
            wide = [a for a in actions if isinstance(a, str) and a.endswith(":*") and not (root and a == "kms:*")]
            if wide:
                problems.append(f"{sid}: service-wide Allow {wide}")
    return problems


def _policy_statements() -> Iterator[tuple[str, list[dict[str, Any]], bool]]:
    for name, resource in RESOURCES.items():
        document_key = POLICY_RESOURCE_TYPES.get(resource["Type"])
        if document_key:
            yield name, as_list(resource["Properties"][document_key]["Statement"]), resource["Type"] == "AWS::KMS::Key"
        for policy in as_list(resource.get("Properties", {}).get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:  # inline statements in a SAM function
                yield name, as_list(policy["Statement"]), False
            if isinstance(policy, dict) and "PolicyDocument" in policy:  # inline policies of an IAM role
                yield name, as_list(policy["PolicyDocument"]["Statement"]), False


def test_the_wildcard_check_catches_wildcards() -> None:
    bad: list[dict[str, Any]] = [
        {"Sid": "a", "Effect": "Allow", "Action": "*", "Resource": "arn:x"},
        {"Sid": "b", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "*"},
        {"Sid": "c", "Effect": "Allow", "Action": "sqs:*", "Resource": "arn:x"},
        {"Sid": "d", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
    ]
    assert len(wildcard_violations(bad)) == 4
    assert wildcard_violations([{"Effect": "Deny", "Action": "s3:*", "Resource": ["arn:x", "arn:x/*"]}]) == []


def test_no_wildcard_actions_or_resources_in_policies() -> None:
    checked = 0
    for name, statements, key_policy in _policy_statements():
        assert wildcard_violations(statements, key_policy=key_policy) == [], name
        checked += len(statements)
    assert checked >= 3  # the bucket, queue and key policies at least: the check is not vacuous


def test_function_policies_are_scoped_sam_policy_templates() -> None:
    for name in FUNCTIONS:
        for policy in as_list(props(name).get("Policies", [])):
            assert isinstance(policy, dict), f"{name}: managed policy {policy!r}"
            if "Statement" in policy:
                continue  # checked by test_no_wildcard_actions_or_resources_in_policies
            ((template, arguments),) = policy.items()
            assert template in SAM_POLICY_TEMPLATES, (name, template)
            assert arguments and all(isinstance(v, dict) for v in arguments.values()), (name, template)


def _templates(name: str) -> list[str]:
    """A function's policy templates with their arguments, as sorted JSON (one template may repeat)."""
    return sorted(json.dumps(policy, sort_keys=True) for policy in props(name)["Policies"])


def _expected(*policies: tuple[str, str, Any]) -> list[str]:
    return sorted(json.dumps({template: {argument: value}}, sort_keys=True) for template, argument, value in policies)


def _send(queue: str) -> tuple[str, str, Any]:
    return ("SQSSendMessagePolicy", "QueueName", get_att(queue, "QueueName"))


QUARANTINE_WRITE = ("S3WritePolicy", "BucketName", ref("QuarantineBucket"))


def _get_secret(secret: str) -> tuple[str, str, Any]:
    return ("AWSSecretsManagerGetSecretValuePolicy", "SecretArn", ref(secret))


def _inline(name: str) -> list[dict[str, Any]]:
    """A function's inline policy statements (the SAM templates are checked by ``_templates``)."""
    return [s for policy in props(name)["Policies"] if "Statement" in policy for s in as_list(policy["Statement"])]


def _sam_templates(name: str) -> list[str]:
    return sorted(json.dumps(policy, sort_keys=True) for policy in props(name)["Policies"] if "Statement" not in policy)


TESTERS_LOOKUP = {"Effect": "Allow", "Action": ["dynamodb:BatchGetItem"], "Resource": get_att("TestersTable", "Arn")}


def test_the_traffic_worker_sends_only_to_the_shard_queue_and_reads_only_its_tables() -> None:
    # a run until decided: the worker puts the delayed look and the next round's shards on its own queue
    # (SendMessageBatch is authorised by sqs:SendMessage), and reads a round's shards with BatchGetItem
    statements = {s["Sid"]: s for s in _inline("TrafficWorkerFunction")}
    sends = [s for s in statements.values() if any(a.startswith("sqs:Send") for a in as_list(s["Action"]))]
    assert sends == [statements["NextRoundsAndLooks"]]
    assert (sends[0]["Action"], sends[0]["Resource"]) == (["sqs:SendMessage"], get_att("TrafficShardQueue", "Arn"))
    assert statements["ShardClaimsAndProgress"]["Action"] == [
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
    ]
    assert statements["ShardClaimsAndProgress"]["Resource"] == get_att("TrafficRunsTable", "Arn")
    assert not any(t.startswith('{"SQSSendMessagePolicy"') for t in _sam_templates("TrafficWorkerFunction"))


def test_the_run_api_writes_only_run_specs_and_only_reads_the_scheduled_plans() -> None:
    # it writes runs/<id>/run.json (flagbridge.runs.worker.spec_key) and reads plans/ (the schedule's plan_key
    # and model_key): a PutObject on plans/ would let it replace what every scheduled run sends
    s3 = [s for s in _inline("TrafficRunsFunction") if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    grants = sorted(
        (action, json.dumps(resource)) for s in s3 for action in s["Action"] for resource in as_list(s["Resource"])
    )
    assert grants == sorted(
        [
            ("s3:GetObject", json.dumps({"Fn::Sub": "${TrafficManifestBucket.Arn}/plans/*"})),
            ("s3:GetObject", json.dumps({"Fn::Sub": "${TrafficManifestBucket.Arn}/runs/*"})),
            ("s3:PutObject", json.dumps({"Fn::Sub": "${TrafficManifestBucket.Arn}/runs/*"})),
        ]
    )


def test_expected_function_permissions() -> None:
    assert _templates("ImpressionsWebhookFunction") == _expected(
        _send("ImpressionsQueue"), QUARANTINE_WRITE, _get_secret("WebhookTokenSecret")
    )
    assert _sam_templates("ImpressionsProcessorFunction") == _expected(
        ("DynamoDBCrudPolicy", "TableName", ref("ProfilesTable")), QUARANTINE_WRITE
    )
    # The registry lookups of the processor and the router: BatchGetItem on the testers table, nothing more.
    assert _inline("ImpressionsProcessorFunction") == [TESTERS_LOOKUP]
    assert _inline("CdpRouterFunction") == [TESTERS_LOOKUP]
    # The registry API: registrations and audit entries (a transaction: PutItem, DeleteItem), the listing index,
    # and for the Split segment: its state (UpdateItem), its audit entries (BatchWriteItem), the Admin API secret.
    assert _sam_templates("TesterRegistryFunction") == _expected(
        _get_secret("TestersApiTokenSecret"), _get_secret("SplitAdminApiKeySecret")
    )
    testers_and_index = [get_att("TestersTable", "Arn"), {"Fn::Sub": "${TestersTable.Arn}/index/by-listing"}]
    assert _inline("TesterRegistryFunction") == [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            ],
            "Resource": testers_and_index,
        }
    ]
    # The segment reconcile: reads the registrations (index), marks their state, audits; the Admin API secret.
    assert _sam_templates("TesterSegmentReconcileFunction") == _expected(_get_secret("SplitAdminApiKeySecret"))
    assert _inline("TesterSegmentReconcileFunction") == [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
            "Resource": testers_and_index,
        }
    ]
    (schedule,) = events("TesterSegmentReconcileFunction", "Schedule")
    assert schedule["Schedule"] == "rate(15 minutes)" and schedule["Enabled"] is True
    assert _templates("ProfileApiFunction") == _expected(
        ("DynamoDBReadPolicy", "TableName", ref("ProfilesTable")), _get_secret("ProfileApiTokenSecret")
    )
    assert _templates("MParticleIngestFunction") == _expected(
        _send("BatchesQueue"),
        QUARANTINE_WRITE,
        _get_secret("MParticleCredentialsSecret"),
        _get_secret("MParticleWebhookAuthSecret"),
    )
    # The router only reads the profiles (tester marks) and may send to every lane, nothing else.
    assert _sam_templates("CdpRouterFunction") == _expected(
        ("DynamoDBReadPolicy", "TableName", ref("ProfilesTable")),
        QUARANTINE_WRITE,
        *(_send(f"{lane}DestinationQueue") for lane in ALL_LANES.values()),
    )
    # Delivery: the ledger (TransactWriteItems is authorised as PutItem; BatchWriteItem, DeleteItem), the lanes'
    # DLQs, and one permission per example sink. It cannot send to the lanes themselves.
    assert _templates("DestinationDeliveryFunction") == _expected(
        ("DynamoDBCrudPolicy", "TableName", ref("DeliveryLedgerTable")),
        QUARANTINE_WRITE,
        *(_send(f"{lane}DestinationDeadLetterQueue") for lane in LANES.values()),
        _send("ReportingQueue"),
        _get_secret("SplitSdkKeySecret"),
        ("FirehoseWritePolicy", "DeliveryStreamName", ref("WarehouseDeliveryStream")),
        ("EventBridgePutEventsPolicy", "EventBusName", ref("AuditEventBus")),
    )
    # The oracle: the counter writes its counters and reads profiles (attribution); the evaluator reads counters,
    # writes verdicts, publishes to the alarm topic (and its key: inline statement) and the oracle bus, and reads
    # the Split Admin API key; the API reads verdicts only.
    assert _templates("OracleCounterFunction") == _expected(
        ("DynamoDBCrudPolicy", "TableName", ref("OracleCountersTable")),
        ("DynamoDBReadPolicy", "TableName", ref("ProfilesTable")),
        QUARANTINE_WRITE,
    )
    evaluator = [p for p in props("OracleEvaluatorFunction")["Policies"] if "Statement" not in p]
    assert sorted(json.dumps(p, sort_keys=True) for p in evaluator) == _expected(
        ("DynamoDBReadPolicy", "TableName", ref("OracleCountersTable")),
        ("DynamoDBCrudPolicy", "TableName", ref("OracleVerdictsTable")),
        ("SNSPublishMessagePolicy", "TopicName", get_att("AlarmTopic", "TopicName")),
        ("EventBridgePutEventsPolicy", "EventBusName", ref("OracleEventBus")),
        _get_secret("SplitAdminApiKeySecret"),
    )
    (inline,) = [p["Statement"] for p in props("OracleEvaluatorFunction")["Policies"] if "Statement" in p]
    assert inline == [
        {
            "Sid": "PublishToTheEncryptedAlarmTopic",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": get_att("AlarmTopicKey", "Arn"),
        }
    ]
    assert _templates("OracleApiFunction") == _expected(
        ("DynamoDBReadPolicy", "TableName", ref("OracleVerdictsTable")), _get_secret("OracleApiTokenSecret")
    )


def test_oracle_tables_schedule_and_dashboard() -> None:
    for table in ("OracleCountersTable", "OracleVerdictsTable"):
        p = props(table)
        assert p["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
    assert props("OracleVerdictsTable")["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (schedule,) = events("OracleEvaluatorFunction", "Schedule")
    assert schedule["Schedule"] == "rate(1 minute)" and schedule["Enabled"] is True
    assert props("OracleEvaluatorFunction")["ReservedConcurrentExecutions"] == 1  # one evaluation at a time
    body, variables = props("OracleDashboard")["DashboardBody"]["Fn::Sub"]
    assert variables == {"PassLine": ref("OracleDashboardPassLine"), "FailLine": ref("OracleDashboardFailLine")}
    widgets = json.loads(re.sub(r"\$\{[A-Za-z:]+\}", "1", body))["widgets"]
    titles = [w["properties"].get("title") for w in widgets if w["type"] == "metric"]
    assert titles == ["Rate per treatment (%)", "Bounds per treatment (%)", "Verdict state (5 = FAIL)",
                      "Events counted per treatment"]  # fmt: skip
    rate = widgets[1]["properties"]
    expression = rate["metrics"][0][0]["expression"]
    assert "Treatment" in expression and "Flagbridge/Oracle" in expression
    assert [a["label"] for a in rate["annotations"]["horizontal"]] == ["pass line", "fail line"]
    assert "${PassLine}" in body and "${FailLine}" in body


SECRETS = {
    "WebhookTokenSecret": "webhook-token",
    "ProfileApiTokenSecret": "profile-api-token",
    "MParticleCredentialsSecret": "mparticle-credentials",
    "MParticleWebhookAuthSecret": "mparticle-webhook-auth",
    "SplitSdkKeySecret": "split-sdk-key",
    "TestersApiTokenSecret": "testers-api-token",
    "SplitAdminApiKeySecret": "split-admin-api-key",
    "OracleApiTokenSecret": "oracle-api-token",
    "TrafficApiTokenSecret": "traffic-api-token",
    "TrafficRunTagKeySecret": "traffic-run-tag-key",
}


def test_no_secret_values_in_the_template() -> None:
    keys = [(path, key) for path, key, _ in walk(TEMPLATE)]
    assert "SecretString" not in {key for _, key in keys}
    # The only SecretStringTemplate is the mParticle credentials' public part (the API key is an identifier); the
    # secret half is generated into GenerateStringKey.
    assert [path for path, key in keys if key == "SecretStringTemplate"] == [
        "/Resources/MParticleCredentialsSecret/Properties/GenerateSecretString"
    ]
    credentials = props("MParticleCredentialsSecret")["GenerateSecretString"]
    assert json.loads(credentials["SecretStringTemplate"]) == {"api_key": "flagbridge"}
    assert credentials["GenerateStringKey"] == "api_secret"
    secrets = of_type("AWS::SecretsManager::Secret")
    assert set(secrets) == set(SECRETS)
    for name, suffix in SECRETS.items():
        assert props(name)["Name"] == {"Fn::Sub": f"flagbridge/${{Stage}}/{suffix}"}, name
        generate = props(name)["GenerateSecretString"]
        assert generate["PasswordLength"] >= 40, name
        assert generate["ExcludePunctuation"] is True, name
    # Secret-looking environment variables only ever carry a reference (the secret's ARN), never a value.
    for function in [GLOBAL_FUNCTION, *(props(n) for n in FUNCTIONS)]:
        for var, value in function.get("Environment", {}).get("Variables", {}).items():
            if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", var):
                assert isinstance(value, dict), var
    for name, parameter in TEMPLATE["Parameters"].items():
        if re.search(r"token|secret|password|key", name, re.IGNORECASE):
            assert parameter.get("NoEcho") is True and not parameter.get("Default"), name


def test_secret_descriptions_say_what_to_do_after_deploy() -> None:
    assert "Authorization" in props("MParticleWebhookAuthSecret")["Description"]
    assert "after deploy" in props("MParticleWebhookAuthSecret")["Description"]
    assert "after deploy" in props("SplitSdkKeySecret")["Description"]
    assert "after deploy" in props("SplitAdminApiKeySecret")["Description"]


def _env(name: str) -> dict[str, Any]:
    return dict(props(name)["Environment"]["Variables"])


def test_function_environment() -> None:
    env = _env

    assert env("ImpressionsWebhookFunction") == {
        "IMPRESSIONS_QUEUE_URL": ref("ImpressionsQueue"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
        "WEBHOOK_TOKEN_SECRET": ref("WebhookTokenSecret"),
    }
    assert env("ImpressionsProcessorFunction") == {
        "PROFILES_TABLE": ref("ProfilesTable"),
        "TESTERS_TABLE": ref("TestersTable"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
    }
    assert env("TesterRegistryFunction") == {
        "TESTERS_TABLE": ref("TestersTable"),
        "TESTERS_API_TOKEN_SECRET": ref("TestersApiTokenSecret"),
        "SPLIT_ADMIN_API_URL": ref("SplitAdminApiUrl"),
        "SPLIT_ADMIN_API_KEY_SECRET": ref("SplitAdminApiKeySecret"),
    }
    assert env("TesterSegmentReconcileFunction") == {
        "TESTERS_TABLE": ref("TestersTable"),
        "SPLIT_ADMIN_API_URL": ref("SplitAdminApiUrl"),
        "SPLIT_ADMIN_API_KEY_SECRET": ref("SplitAdminApiKeySecret"),
    }
    assert env("ProfileApiFunction") == {
        "PROFILES_TABLE": ref("ProfilesTable"),
        "PROFILE_API_TOKEN_SECRET": ref("ProfileApiTokenSecret"),
    }
    assert env("MParticleIngestFunction") == {
        "BATCHES_QUEUE_URL": ref("BatchesQueue"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
        "MPARTICLE_CREDENTIALS_SECRET": ref("MParticleCredentialsSecret"),
        "MPARTICLE_WEBHOOK_AUTH_SECRET": ref("MParticleWebhookAuthSecret"),
    }
    router = env("CdpRouterFunction")
    assert sub_json_map(router.pop("DESTINATION_QUEUES"))  # contents: test_destination_maps_name_exactly_...
    assert router == {
        "PROFILES_TABLE": ref("ProfilesTable"),
        "TESTERS_TABLE": ref("TestersTable"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
    }
    delivery = env("DestinationDeliveryFunction")
    assert sub_json_map(delivery.pop("DESTINATION_DLQS"))
    assert delivery == {
        "DELIVERY_LEDGER_TABLE": ref("DeliveryLedgerTable"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
        "SPLIT_SDK_KEY_SECRET": ref("SplitSdkKeySecret"),
        "SPLIT_EVENTS_URL": ref("SplitEventsUrl"),
        "ANALYTICS_WEBHOOK_URL": ref("AnalyticsWebhookUrl"),
        "WAREHOUSE_STREAM_NAME": ref("WarehouseDeliveryStream"),
        "REPORTING_QUEUE_URL": ref("ReportingQueue"),
        "AUDIT_EVENT_BUS_NAME": ref("AuditEventBus"),
    }
    assert env("OracleCounterFunction") == {
        "ORACLE_COUNTERS_TABLE": ref("OracleCountersTable"),
        "PROFILES_TABLE": ref("ProfilesTable"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
    }
    assert env("OracleEvaluatorFunction") == {
        "ORACLE_COUNTERS_TABLE": ref("OracleCountersTable"),
        "ORACLE_VERDICTS_TABLE": ref("OracleVerdictsTable"),
        "ORACLE_ALARM_TOPIC_ARN": ref("AlarmTopic"),
        "ORACLE_EVENT_BUS_NAME": ref("OracleEventBus"),
        "SPLIT_ADMIN_API_URL": ref("SplitAdminApiUrl"),
        "SPLIT_ADMIN_API_KEY_SECRET": ref("SplitAdminApiKeySecret"),
    }
    assert env("OracleApiFunction") == {
        "ORACLE_VERDICTS_TABLE": ref("OracleVerdictsTable"),
        "ORACLE_API_TOKEN_SECRET": ref("OracleApiTokenSecret"),
    }


def _config_placeholders(node: Any) -> set[str]:
    """Names of the ${NAME:-default} / ${NAME} environment placeholders in a configuration subtree."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::-[^}]*)?\}", json.dumps(node)))


def test_every_environment_variable_is_read_by_the_code() -> None:
    settings = (ROOT / "layers/shared/flagbridge/settings.py").read_text(encoding="utf-8")
    known = set(re.findall(r'alias="([A-Z][A-Z0-9_]*)"', settings)) | _config_placeholders(CONFIG)
    known |= {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    for name in FUNCTIONS:
        assert set(_env(name)) <= known, (name, set(_env(name)) - known)
    assert set(GLOBAL_FUNCTION["Environment"]["Variables"]) <= known


def test_delivery_sets_every_placeholder_of_the_destinations() -> None:
    # Unset, a placeholder falls back to its example default (events.split.io, a non-existent stream ...).
    placeholders = _config_placeholders(CONFIG["cdp"]["destinations"])
    assert placeholders
    assert placeholders <= set(_env("DestinationDeliveryFunction"))


# --------------------------------------------------------------------------------------------------------------
# Logging, HTTP API, alarms, outputs
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_logs_to_its_own_log_group_with_retention(name: str) -> None:
    log_group = props(name)["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert props(log_group)["RetentionInDays"] == ref("LogRetentionDays")
    function_name = props(name)["FunctionName"]["Fn::Sub"]
    assert props(log_group)["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/{function_name}"}


def test_every_log_group_has_retention() -> None:
    log_groups = of_type("AWS::Logs::LogGroup")
    assert len(log_groups) == len(FUNCTIONS) + 2  # + the HTTP API access log and the warehouse stream's errors
    for name in log_groups:
        assert props(name)["RetentionInDays"] == ref("LogRetentionDays"), name
    assert TEMPLATE["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_http_routes() -> None:
    routes = {}
    for name in of_type("AWS::Serverless::Function"):
        for event in events(name, "HttpApi"):
            assert event["ApiId"] == ref("FlagbridgeHttpApi"), name
            routes[(event["Method"].upper(), event["Path"])] = name
    assert routes == ROUTES


def test_http_api_is_throttled_and_access_logged() -> None:
    api = RESOURCES["FlagbridgeHttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    settings = api["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] > 0
    assert settings["ThrottlingRateLimit"] > 0
    access = api["Properties"]["AccessLogSettings"]
    log_group = access["DestinationArn"]["Fn::GetAtt"][0]
    assert RESOURCES[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.requestId" in access["Format"]


def _alarms(metric: str) -> dict[str, dict[str, Any]]:
    return {
        name: a["Properties"]
        for name, a in of_type("AWS::CloudWatch::Alarm").items()
        if a["Properties"]["MetricName"] == metric
    }


def _alarmed_queues(alarms: dict[str, dict[str, Any]]) -> list[str]:
    queues = []
    for alarm in alarms.values():
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "QueueName"
        queue = dimension["Value"]["Fn::GetAtt"][0]
        assert dimension["Value"] == get_att(queue, "QueueName")
        queues.append(queue)
    return sorted(queues)


def test_alarms_cover_the_dlqs_the_backlogs_and_every_function() -> None:
    depth = _alarms("ApproximateNumberOfMessagesVisible")
    assert _alarmed_queues(depth) == sorted(_dead_letter_queue(queue) for queue in SQS_CONSUMERS)
    for dlq in depth.values():
        assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    age = _alarms("ApproximateAgeOfOldestMessage")
    assert _alarmed_queues(age) == sorted(SQS_CONSUMERS)  # incl. every lane: its destination is down
    for alarm in age.values():
        # a shard lasts up to 600 s: its queue's backlog alarm allows for runs beyond the parallelism
        threshold = 1800 if alarm["Dimensions"][0]["Value"] == get_att("TrafficShardQueue", "QueueName") else 900
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", threshold)
    errors = _alarms("Errors").values()
    assert sorted(a["Dimensions"][0]["Value"]["Ref"] for a in errors) == sorted(FUNCTIONS)
    for alarm in errors:
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [ref("AlarmTopic")]


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_can_use() -> None:
    # alias/aws/sns would silently drop every alarm notification: its key policy cannot grant CloudWatch.
    key_id = props("AlarmTopic")["KmsMasterKeyId"]
    assert key_id != "alias/aws/sns"
    key = key_id["Ref"]
    assert RESOURCES[key]["Type"] == "AWS::KMS::Key"
    assert props(key)["EnableKeyRotation"] is True
    grants = [
        set(as_list(s["Action"]))
        for s in props(key)["KeyPolicy"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert any({"kms:Decrypt", "kms:GenerateDataKey"} <= actions for actions in grants)


def test_alarm_email_subscription_is_optional() -> None:
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}
    for subscription in of_type("AWS::SNS::Subscription").values():
        assert subscription["Condition"] == "HasAlarmEmail"
        assert subscription["Properties"]["TopicArn"] == ref("AlarmTopic")


def test_parameters() -> None:
    assert set(TEMPLATE["Parameters"]) == {
        "Stage",
        "LogLevel",
        "LogRetentionDays",
        "AlarmEmail",
        "QuarantineRetentionDays",
        "SplitEventsUrl",
        "AnalyticsWebhookUrl",
        "SplitAdminApiUrl",
        "OracleDashboardPassLine",
        "OracleDashboardFailLine",
        "TrafficParallelism",
        "TrafficShardLeaseSeconds",
        "TrafficResultsUrl",
        "TrafficScheduleExpression",
        "TrafficScheduledRun",
    }
    for name in ("SplitEventsUrl", "AnalyticsWebhookUrl", "SplitAdminApiUrl"):
        assert TEMPLATE["Parameters"][name]["Default"].startswith("https://"), name
        assert re.fullmatch(TEMPLATE["Parameters"][name]["AllowedPattern"], TEMPLATE["Parameters"][name]["Default"])
        assert not re.fullmatch(TEMPLATE["Parameters"][name]["AllowedPattern"], "http://insecure.example.com")
    assert TEMPLATE["Parameters"]["SplitEventsUrl"]["Default"] == "https://events.split.io/api"


def test_outputs() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "ImpressionsWebhookUrl",
        "ProfileApiUrl",
        "HttpApiUrl",
        "ProfilesTableName",
        "ImpressionsQueueUrl",
        "ImpressionsDeadLetterQueueUrl",
        "QuarantineBucketName",
        "WebhookTokenSecretArn",
        "ProfileApiTokenSecretArn",
        "MParticleEventsApiHost",
        "MParticleWebhookUrl",
        "BatchesQueueUrl",
        "BatchesDeadLetterQueueUrl",
        "DeliveryLedgerTableName",
        "MParticleCredentialsSecretArn",
        "MParticleWebhookAuthSecretArn",
        "SplitSdkKeySecretArn",
        "ReportingQueueUrl",
        "AuditEventBusName",
        "WarehouseBucketName",
        "WarehouseDeliveryStreamName",
        "TestersApiUrl",
        "TestersTableName",
        "TestersApiTokenSecretArn",
    } <= set(outputs)
    base = "https://${FlagbridgeHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    assert outputs["HttpApiUrl"]["Value"] == {"Fn::Sub": base}
    assert outputs["ImpressionsWebhookUrl"]["Value"] == {"Fn::Sub": f"{base}/split/impressions"}
    assert outputs["ProfileApiUrl"]["Value"] == {"Fn::Sub": f"{base}/profiles"}
    assert outputs["TestersApiUrl"]["Value"] == {"Fn::Sub": f"{base}/testers"}
    assert outputs["TestersTableName"]["Value"] == ref("TestersTable")
    # SDKs append /events and /bulkevents to the host they are pointed at.
    assert outputs["MParticleEventsApiHost"]["Value"] == {"Fn::Sub": f"{base}/mparticle/v2"}
    assert outputs["MParticleWebhookUrl"]["Value"] == {"Fn::Sub": f"{base}/mparticle/webhook"}
    assert outputs["OracleApiUrl"]["Value"] == {"Fn::Sub": f"{base}/tests"}
    for lane in ALL_LANES.values():
        for kind in ("Queue", "DeadLetterQueue"):
            assert outputs[f"{lane}Destination{kind}Url"]["Value"] == ref(f"{lane}Destination{kind}")
    for name, output in outputs.items():
        for reference in [v for _, k, v in walk(output) if k == "Ref"]:
            assert reference in RESOURCES or reference in TEMPLATE["Parameters"] or reference.startswith("AWS::"), (
                name,
                reference,
            )


# --------------------------------------------------------------------------------------------------------------
# The loader itself
# --------------------------------------------------------------------------------------------------------------


def test_cfn_loader_maps_short_tags_to_long_form() -> None:
    document = load(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "A: !Ref Queue\n"
        "B: !GetAtt Queue.Arn\n"
        "C: !Sub 'arn:${AWS::Partition}:s3:::${Bucket}'\n"
        "D: !If [IsProd, !Ref X, !Ref AWS::NoValue]\n"
        "E: !Not [!Equals [!Ref P, '']]\n"
        "F: !Join ['', [a, !Select [0, !Split [',', !Ref L]]]]\n"
        "G: !GetAtt [Queue, QueueName]\n"
    )
    assert document == {
        "AWSTemplateFormatVersion": "2010-09-09",
        "A": {"Ref": "Queue"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}"},
        "D": {"Fn::If": ["IsProd", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]},
        "E": {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
        "F": {"Fn::Join": ["", ["a", {"Fn::Select": [0, {"Fn::Split": [",", {"Ref": "L"}]}]}]]},
        "G": {"Fn::GetAtt": ["Queue", "QueueName"]},
    }


def test_cfn_loader_rejects_non_mappings() -> None:
    with pytest.raises(ValueError, match="mapping"):
        load("- a\n- b\n")
