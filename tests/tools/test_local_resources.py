"""What the local runner reads of each function in a template: globals, environment, layers and event sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.resources import HttpRoute, ScheduleSource, SqsSource, Template, TemplateError, functions

QUEUE_ARN = {"Fn::GetAtt": ["Jobs", "Arn"]}


def _template(tmp_path: Path, function_properties: dict[str, Any]) -> Template:
    (tmp_path / "layer" / "python" / "config").mkdir(parents=True)
    document = {
        "Globals": {
            "Function": {
                "Timeout": 10,
                "Handler": "app.lambda_handler",
                "Layers": [{"Ref": "Shared"}],
                "Environment": {"Variables": {"LEVEL": "INFO", "TABLE": "global"}},
            }
        },
        "Resources": {
            "Shared": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layer"}},
            "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs"}},
            "Worker": {"Type": "AWS::Serverless::Function", "Properties": function_properties},
        },
    }
    return Template(document, stack_name="t")


def test_globals_environment_and_every_emulated_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    properties = {
        "CodeUri": "functions/worker",
        "MemorySize": 256,
        "Environment": {"Variables": {"TABLE": "own", "FLAG": True, "CONFIG": "/opt/config", "MAP": {"a": 1}}},
        "Events": {
            "Any": {"Type": "HttpApi", "Properties": {"Method": "x-amazon-apigateway-any-method", "Path": "/a"}},
            "Post": {"Type": "HttpApi", "Properties": {"Method": "post", "Path": "/b"}},
            "Default": {"Type": "HttpApi"},
            "Queue": {
                "Type": "SQS",
                "Properties": {
                    "Queue": QUEUE_ARN,
                    "BatchSize": 5,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "MaximumBatchingWindowInSeconds": 2,
                },
            },
            "Off": {"Type": "SQS", "Properties": {"Queue": QUEUE_ARN, "Enabled": False}},
            "Hourly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}},
            "Paused": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(1 day)", "State": "DISABLED"}},
            "Bucket": {"Type": "S3", "Properties": {}},
        },
    }
    [spec] = functions(_template(tmp_path, properties), root=tmp_path)

    assert (spec.logical_id, spec.handler, spec.timeout, spec.memory) == ("Worker", "app.lambda_handler", 10, 256)
    assert spec.code_dir == (tmp_path / "functions" / "worker").resolve()
    assert spec.layer_dirs == [(tmp_path / "layer").resolve()]
    assert spec.environment == {
        "LEVEL": "INFO",
        "TABLE": "own",
        "FLAG": "true",
        "CONFIG": str((tmp_path / "layer" / "python" / "config").resolve()),
        "MAP": '{"a":1}',
    }
    assert spec.routes == [
        HttpRoute("Worker", "ANY", "/a"),
        HttpRoute("Worker", "POST", "/b"),
        HttpRoute("Worker", "ANY", "$default"),
    ]
    queue_arn = spec.sqs_sources[0].queue_arn
    assert queue_arn.endswith(":jobs")
    assert spec.sqs_sources == [
        SqsSource("Worker", "Queue", queue_arn, 5, True, True, 2),
        SqsSource("Worker", "Off", queue_arn, 10, False, False, 0),
    ]
    assert spec.schedules == [
        ScheduleSource("Worker", "Hourly", "rate(1 hour)", True),
        ScheduleSource("Worker", "Paused", "rate(1 day)", False),
    ]
    assert "Worker: event Bucket of type S3 is not emulated locally" in capsys.readouterr().err


def test_a_code_uri_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"^Worker: CodeUri must be a local directory$"):
        functions(_template(tmp_path, {"CodeUri": {"Bucket": "b", "Key": "k"}}), root=tmp_path)
