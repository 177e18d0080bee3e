"""Invariant tests for template.yaml (and the layer Makefile it builds with).

They read the template as written (short tags mapped to their long form by ``local.cfn_yaml``) and fail when a
design invariant is broken: architecture, queue timing, durability and encryption settings, least-privilege
policies, secrets, logging, routes, alarms and outputs. No AWS, no network, no SAM transform needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.cfn_yaml import load, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE["Globals"]["Function"]

FUNCTIONS = {
    "ImpressionsWebhookFunction": ("functions/impressions_webhook/", "impressions_webhook.lambda_handler"),
    "ImpressionsProcessorFunction": ("functions/impressions_processor/", "impressions_processor.lambda_handler"),
    "ProfileApiFunction": ("functions/profile_api/", "profile_api.lambda_handler"),
}
ROUTES = {
    ("POST", "/split/impressions"): "ImpressionsWebhookFunction",
    ("GET", "/profiles/{trafficType}/{key}"): "ProfileApiFunction",
}
# SAM policy templates we allow in function Policies: each expands to actions scoped to the named resource.
SAM_POLICY_TEMPLATES = {
    "SQSSendMessagePolicy",
    "S3WritePolicy",
    "S3ReadPolicy",
    "AWSSecretsManagerGetSecretValuePolicy",
    "DynamoDBCrudPolicy",
    "DynamoDBReadPolicy",
    "DynamoDBWritePolicy",
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
    assert '"$(ARTIFACTS_DIR)/config/flagbridge.yaml"' in makefile
    assert GLOBAL_FUNCTION["Environment"]["Variables"]["FLAGBRIDGE_CONFIG"] == "/opt/config/flagbridge.yaml"


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
        "FLAGBRIDGE_CONFIG": "/opt/config/flagbridge.yaml",
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


def test_processor_consumes_the_impressions_queue() -> None:
    assert [(name, event["Queue"]) for name, event in _sqs_consumers()] == [
        ("ImpressionsProcessorFunction", get_att("ImpressionsQueue", "Arn"))
    ]


def test_queue_visibility_timeout_is_at_least_six_times_the_consumer_timeout() -> None:
    for name, event in _sqs_consumers():
        queue = event["Queue"]["Fn::GetAtt"][0]
        timeout = function_setting(name, "Timeout")
        assert props(queue)["VisibilityTimeout"] >= 6 * timeout, (queue, name)
    assert function_setting("ImpressionsProcessorFunction", "Timeout") == 60


def test_sqs_events_report_batch_item_failures() -> None:
    for name, event in _sqs_consumers():
        assert "ReportBatchItemFailures" in event["FunctionResponseTypes"], name
        assert event["BatchSize"] == 10
        assert event["MaximumBatchingWindowInSeconds"] == 5
        assert 2 <= event["ScalingConfig"]["MaximumConcurrency"] <= 1000


def test_impressions_queue_redrives_to_the_dead_letter_queue() -> None:
    redrive = props("ImpressionsQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == get_att("ImpressionsDeadLetterQueue", "Arn")
    assert redrive["maxReceiveCount"] == 5
    assert props("ImpressionsDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    # The DLQ keeps messages longer than the source queue (retention counts from the original enqueue).
    assert props("ImpressionsDeadLetterQueue")["MessageRetentionPeriod"] > props("ImpressionsQueue").get(
        "MessageRetentionPeriod", 4 * 24 * 3600
    )


def test_queues_are_encrypted_and_tls_only() -> None:
    queues = of_type("AWS::SQS::Queue")
    assert set(queues) == {"ImpressionsQueue", "ImpressionsDeadLetterQueue"}
    for name in queues:
        assert props(name)["SqsManagedSseEnabled"] is True, name
    policies = of_type("AWS::SQS::QueuePolicy").values()
    covered = {q["Ref"] for p in policies for q in p["Properties"]["Queues"] if _denies_insecure_transport(p)}
    assert covered == set(queues)


# --------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------


def test_profiles_table_is_durable_and_encrypted() -> None:
    table = RESOURCES["ProfilesTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]} == {"pk": "S", "sk": "S"}
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True


def _denies_insecure_transport(policy: dict[str, Any]) -> bool:
    statements = as_list(policy["Properties"]["PolicyDocument"]["Statement"])
    return any(
        s["Effect"] == "Deny" and s["Principal"] == "*" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        for s in statements
    )


def test_quarantine_bucket_is_private_encrypted_versioned_and_expiring() -> None:
    bucket = RESOURCES["QuarantineBucket"]
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
    rules = p["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and r["ExpirationInDays"] == ref("QuarantineRetentionDays") for r in rules)


def test_quarantine_bucket_policy_denies_insecure_transport_on_bucket_and_objects() -> None:
    (policy,) = [
        p for p in of_type("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == ref("QuarantineBucket")
    ]
    assert _denies_insecure_transport(policy)
    (statement,) = [s for s in as_list(policy["Properties"]["PolicyDocument"]["Statement"]) if s["Effect"] == "Deny"]
    assert statement["Action"] in ("s3:*", ["s3:*"])
    assert get_att("QuarantineBucket", "Arn") in statement["Resource"]
    assert {"Fn::Sub": "${QuarantineBucket.Arn}/*"} in statement["Resource"]


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
    bad = [
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


def test_expected_function_permissions() -> None:
    def templates(name: str) -> dict[str, Any]:
        return {k: v for p in props(name)["Policies"] for k, v in p.items()}

    assert templates("ImpressionsWebhookFunction") == {
        "SQSSendMessagePolicy": {"QueueName": get_att("ImpressionsQueue", "QueueName")},
        "S3WritePolicy": {"BucketName": ref("QuarantineBucket")},
        "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": ref("WebhookTokenSecret")},
    }
    assert templates("ImpressionsProcessorFunction") == {
        "DynamoDBCrudPolicy": {"TableName": ref("ProfilesTable")},
        "S3WritePolicy": {"BucketName": ref("QuarantineBucket")},
    }
    assert templates("ProfileApiFunction") == {
        "DynamoDBReadPolicy": {"TableName": ref("ProfilesTable")},
        "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": ref("ProfileApiTokenSecret")},
    }


def test_no_secret_values_in_the_template() -> None:
    keys = {key for _, key, _ in walk(TEMPLATE)}
    assert "SecretString" not in keys
    assert "SecretStringTemplate" not in keys
    secrets = of_type("AWS::SecretsManager::Secret")
    assert set(secrets) == {"WebhookTokenSecret", "ProfileApiTokenSecret"}
    for name in secrets:
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


def test_function_environment() -> None:
    def env(name: str) -> dict[str, Any]:
        return props(name)["Environment"]["Variables"]

    assert env("ImpressionsWebhookFunction") == {
        "IMPRESSIONS_QUEUE_URL": ref("ImpressionsQueue"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
        "WEBHOOK_TOKEN_SECRET": ref("WebhookTokenSecret"),
    }
    assert env("ImpressionsProcessorFunction") == {
        "PROFILES_TABLE": ref("ProfilesTable"),
        "QUARANTINE_BUCKET": ref("QuarantineBucket"),
    }
    assert env("ProfileApiFunction") == {
        "PROFILES_TABLE": ref("ProfilesTable"),
        "PROFILE_API_TOKEN_SECRET": ref("ProfileApiTokenSecret"),
    }


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
    assert len(log_groups) == len(FUNCTIONS) + 1  # + the HTTP API access log
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


def test_alarms_cover_the_dlq_the_backlog_and_every_function() -> None:
    (dlq,) = _alarms("ApproximateNumberOfMessagesVisible").values()
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": get_att("ImpressionsDeadLetterQueue", "QueueName")}]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    (age,) = _alarms("ApproximateAgeOfOldestMessage").values()
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": get_att("ImpressionsQueue", "QueueName")}]
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
    }


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
    } <= set(outputs)
    base = "https://${FlagbridgeHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    assert outputs["HttpApiUrl"]["Value"] == {"Fn::Sub": base}
    assert outputs["ImpressionsWebhookUrl"]["Value"] == {"Fn::Sub": f"{base}/split/impressions"}
    assert outputs["ProfileApiUrl"]["Value"] == {"Fn::Sub": f"{base}/profiles"}


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
