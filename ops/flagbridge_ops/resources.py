"""Where a stack's resources are, and the boto3 clients to reach them.

Resources come from the same environment variables the functions read (``IMPRESSIONS_QUEUE_URL``,
``BATCHES_QUEUE_URL``, ``DESTINATION_QUEUES`` / ``DESTINATION_DLQS`` JSON maps, ``QUARANTINE_BUCKET``,
``PROFILES_TABLE``, ``DELIVERY_LEDGER_TABLE``, ``TESTERS_TABLE``, ``FLAGBRIDGE_CONFIG``), from a deployed stack's
outputs (``--stack NAME``) or from flags: flags win over the stack, the stack over the environment. boto3 honours
``AWS_ENDPOINT_URL``, so the same commands work against the local runner's moto server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from flagbridge.config import BridgeConfig
from flagbridge.errors import ConfigError
from flagbridge.settings import PACKAGED_CONFIG, Settings
from flagbridge_ops.errors import CliError

_LANE_OUTPUT = re.compile(r"^(?P<lane>[A-Z][A-Za-z0-9]*)Destination(?P<dlq>DeadLetter)?QueueUrl$")
_STACK_OUTPUTS = {
    "ImpressionsQueueUrl": "IMPRESSIONS_QUEUE_URL",
    "BatchesQueueUrl": "BATCHES_QUEUE_URL",
    "QuarantineBucketName": "QUARANTINE_BUCKET",
    "ProfilesTableName": "PROFILES_TABLE",
    "DeliveryLedgerTableName": "DELIVERY_LEDGER_TABLE",
    "TestersTableName": "TESTERS_TABLE",
    "OracleVerdictsTableName": "ORACLE_VERDICTS_TABLE",
    "SplitAdminApiKeySecretArn": "SPLIT_ADMIN_API_KEY_SECRET",  # testers add/remove drive the Split segment
}
# Flags that override a variable of the functions' environment (attribute of the parsed arguments, variable).
_FLAG_VARIABLES = (
    ("config", "FLAGBRIDGE_CONFIG"),
    ("bucket", "QUARANTINE_BUCKET"),
    ("impressions_queue_url", "IMPRESSIONS_QUEUE_URL"),
    ("batches_queue_url", "BATCHES_QUEUE_URL"),
)


@dataclass
class Resources:
    """Where everything is: the functions' settings plus the DLQs of the impressions and batches queues."""

    settings: Settings
    dlqs: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> BridgeConfig:
        """The configuration a replay applies: ``--config``, else ``FLAGBRIDGE_CONFIG``, else the checkout's."""
        if not Path(self.settings.config_path).is_file():
            if not self.settings.config_path:
                raise CliError(
                    "no configuration: pass --config (the flagbridge.yaml you deployed), set FLAGBRIDGE_CONFIG, "
                    "or run inside a flagbridge checkout (its layers/shared/config/flagbridge.yaml)"
                )
            raise CliError(
                f"no configuration file at {self.settings.config_path}: "
                "pass --config (the flagbridge.yaml you deployed) or set FLAGBRIDGE_CONFIG"
            )
        return self.settings.config

    def require_bucket(self) -> str:
        if not self.settings.quarantine_bucket:
            raise CliError("no quarantine bucket: set QUARANTINE_BUCKET, --bucket or --stack")
        return self.settings.quarantine_bucket


def stack_environment(cloudformation: Any, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """Environment variables (and the impressions/batches DLQ URLs) from a deployed stack's outputs."""
    try:
        outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            region = getattr(getattr(cloudformation, "meta", None), "region_name", None) or "this region"
            raise CliError(f"no stack named {stack!r} in {region} (check --stack and AWS_DEFAULT_REGION)") from exc
        raise
    env: dict[str, str] = {}
    lanes: dict[str, str] = {}
    lane_dlqs: dict[str, str] = {}
    dlqs: dict[str, str] = {}
    for output in outputs:
        key, value = output.get("OutputKey", ""), output.get("OutputValue", "")
        if key in _STACK_OUTPUTS:
            env[_STACK_OUTPUTS[key]] = value
        elif key == "ImpressionsDeadLetterQueueUrl":
            dlqs["impressions"] = value
        elif key == "BatchesDeadLetterQueueUrl":
            dlqs["batches"] = value
        elif match := _LANE_OUTPUT.match(key):
            lane = match["lane"][0].lower() + match["lane"][1:]
            (lane_dlqs if match["dlq"] else lanes)[lane] = value
    if lanes:
        env["DESTINATION_QUEUES"] = json.dumps(lanes)
    if lane_dlqs:
        env["DESTINATION_DLQS"] = json.dumps(lane_dlqs)
    return env, dlqs


def resolve_resources(args: argparse.Namespace, environ: Mapping[str, str], clients: Clients) -> Resources:
    """The resources named by the environment, then ``--stack``'s outputs, then the flags (last wins)."""
    env = dict(environ)
    dlqs: dict[str, str] = {}
    if getattr(args, "stack", None):
        stack_env, dlqs = stack_environment(clients.get("cloudformation"), args.stack)
        env.update(stack_env)
    for flag, name in _FLAG_VARIABLES:
        value = getattr(args, flag, None)
        if value:
            env[name] = value
    if not env.get("FLAGBRIDGE_CONFIG"):
        # An installed command has no configuration of its own: never name a path inside its site-packages.
        env["FLAGBRIDGE_CONFIG"] = str(PACKAGED_CONFIG) if PACKAGED_CONFIG.is_file() else ""
    try:
        settings = Settings.from_environ(env)
    except ConfigError as exc:  # a variable, not the configuration file: say so, not "check --config"
        raise CliError(
            f"{exc} (DESTINATION_QUEUES and DESTINATION_DLQS are JSON objects {{lane: queue URL}}): "
            "fix the variable, or unset it and pass --stack"
        ) from exc
    return Resources(settings, dlqs)


class Clients:
    """boto3 clients, created on first use (endpoint, region and credentials from the usual AWS variables).

    Retries: botocore's standard mode, 5 attempts, unless ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` say
    otherwise. Connecting gives up after 10 seconds (botocore waits 60), so an unreachable endpoint is
    reported while the operator still waits for it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._clients: dict[str, Any] = {}
        # Another endpoint than this process's (``--local``): its endpoint, region and keys, not os.environ's.
        self._environ = environ

    def get(self, service: str) -> Any:
        if service not in self._clients:
            try:
                self._clients[service] = self._new(service)
            except ValueError as exc:
                if isinstance(exc, BotoCoreError):  # a bad region: describe_error has its line
                    raise
                endpoint = (self._environ if self._environ is not None else os.environ).get("AWS_ENDPOINT_URL")
                raise CliError(f"the AWS endpoint {endpoint!r} (AWS_ENDPOINT_URL) is not a URL: {exc}") from exc
        return self._clients[service]

    def _new(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        retries: Any = {
            "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
            "max_attempts": _whole_number("AWS_MAX_ATTEMPTS", 5),
        }
        config = Config(retries=retries, max_pool_connections=16, connect_timeout=10)
        if self._environ is None:
            # boto3's default session: its endpoint and model data are loaded once per process.
            return boto3.client(service, config=config)  # type: ignore[call-overload]
        env = self._environ
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            region_name=env.get("AWS_DEFAULT_REGION"),
        )
        return session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=env.get("AWS_ENDPOINT_URL"),
            config=config,
        )


def _whole_number(variable: str, default: int) -> int:
    value = os.environ.get(variable) or str(default)
    try:
        return int(value)
    except ValueError as exc:
        raise CliError(f"{variable} must be a whole number, not {value!r}") from exc
