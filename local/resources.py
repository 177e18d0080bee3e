"""Read ``template.yaml`` and create what it declares on an AWS endpoint (moto, LocalStack or AWS itself).

The local runner never keeps a second list of resources: everything comes from the template.

- :class:`Template` parses the template (short tags via :mod:`local.cfn_yaml`), evaluates conditions and resolves
  intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If``, ``Fn::Select``...)
  against the physical resources created so far.
- :func:`provision` creates, idempotently, every ``AWS::DynamoDB::Table``, ``AWS::SQS::Queue`` (dead-letter
  queues first), ``AWS::S3::Bucket``, ``AWS::SecretsManager::Secret`` (with a local value), ``AWS::SSM::Parameter`` and
  ``AWS::SNS::Topic``.
  Other resource types (alarms, log groups, IAM, KMS, policies...) are not needed locally and are skipped.
- :func:`functions` describes each ``AWS::Serverless::Function``: code directory, handler, resolved environment,
  HTTP API routes and SQS event sources.

Physical names: the resource's name property when it has one (``!Sub`` resolved with ``AWS::StackName`` =
``flagbridge-local`` and the parameters' defaults), else ``flagbridge-local-<LogicalId>`` (lower-cased for
buckets). A parameter default can be overridden with the environment variable ``FLAGBRIDGE_LOCAL_PARAM_<Name>``.

Secret values: ``FLAGBRIDGE_LOCAL_SECRET_<LogicalId>`` if set, else a documented default (:data:`SECRET_DEFAULTS`,
otherwise ``local-<logical-id-in-kebab-case>``). A secret that already exists keeps its value unless that
variable is set.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
STACK_NAME = "flagbridge-local"
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

SECRET_DEFAULTS = {
    "WebhookTokenSecret": "local-webhook-token",
    "ProfileApiTokenSecret": "local-profile-token",
    "TestersApiTokenSecret": "local-testers-token",
    "MParticleCredentialsSecret": '{"api_key": "local-mparticle-key", "api_secret": "local-mparticle-secret"}',
    "MParticleWebhookAuthSecret": "Bearer local-mparticle-webhook",
    "SplitSdkKeySecret": "local-split-sdk-key",
    "SplitAdminApiKeySecret": "local-split-admin-key",
    "OracleApiTokenSecret": "local-oracle-token",
    "TrafficApiTokenSecret": "local-traffic-token",
    "TrafficRunTagKeySecret": "local-traffic-run-tag-key",
}
SECRET_ENV_PREFIX = "FLAGBRIDGE_LOCAL_SECRET_"
PARAM_ENV_PREFIX = "FLAGBRIDGE_LOCAL_PARAM_"

# Resource types the runner creates, in creation order, and the property holding each one's physical name.
NAME_PROPERTIES = {
    "AWS::SNS::Topic": "TopicName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Events::EventBus": "Name",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Logs::LogStream": "LogStreamName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SSM::Parameter": "Name",
}
CREATED_TYPES = (
    "AWS::SNS::Topic",
    "AWS::SecretsManager::Secret",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::DynamoDB::Table",
    "AWS::SSM::Parameter",
    "AWS::Events::EventBus",
    "AWS::KinesisFirehose::DeliveryStream",
)
# Destinations' example sinks: created when the endpoint supports them; a failure is a warning, not fatal.
OPTIONAL_TYPES = ("AWS::Events::EventBus", "AWS::KinesisFirehose::DeliveryStream")

# SQS queue properties (CloudFormation) that map 1:1 onto CreateQueue attributes.
SQS_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "SqsManagedSseEnabled",
    "KmsDataKeyReusePeriodSeconds",
)


class TemplateError(Exception):
    """The template uses something the local runner cannot resolve."""


class _NoValue:
    """``AWS::NoValue``: the property or list item is removed."""


NO_VALUE = _NoValue()


def _log(message: str) -> None:
    print(f"[flagbridge-local] {message}", file=sys.stderr, flush=True)


def kebab(name: str) -> str:
    """``ProfileApiTokenSecret`` -> ``profile-api-token-secret``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def load_template_file(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML with short tags, or JSON)."""
    from local.cfn_yaml import load_template

    return load_template(path)


@dataclass
class Physical:
    """A created (or only named) resource: what ``Ref`` returns and its ``Fn::GetAtt`` attributes."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Template:
    """A parsed template with parameters, conditions and the physical resources known so far."""

    document: dict[str, Any]
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    stack_name: str = STACK_NAME
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    physical: dict[str, Physical] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = TEMPLATE_PATH, **kwargs: Any) -> Template:
        return cls(load_template_file(path), **kwargs)

    # ---- structure --------------------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.document.get("Resources") or {})

    def active_resources(self, resource_type: str | None = None) -> dict[str, dict[str, Any]]:
        """Resources whose Condition (if any) holds, optionally of one type, in template order."""
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if isinstance(resource, dict)
            and (resource_type is None or resource.get("Type") == resource_type)
            and self.condition_holds(resource.get("Condition"))
        }

    def parameter_value(self, name: str) -> Any:
        parameters = self.document.get("Parameters") or {}
        if name not in parameters:
            raise TemplateError(f"unknown parameter {name}")
        override = os.environ.get(PARAM_ENV_PREFIX + name, self.parameter_overrides.get(name))
        if override is not None:
            return override
        spec = parameters[name] or {}
        if "Default" not in spec:
            raise TemplateError(f"parameter {name} has no Default; set {PARAM_ENV_PREFIX}{name}")
        default = spec["Default"]
        if spec.get("Type") == "CommaDelimitedList" and isinstance(default, str):
            return [item.strip() for item in default.split(",")]
        return default if isinstance(default, str | list) else str(default)

    def condition_holds(self, name: Any) -> bool:
        if name is None:
            return True
        conditions = self.document.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    # ---- pseudo parameters and names ----------------------------------------------------------------

    def pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/local",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def physical_name(self, logical_id: str) -> str:
        """The resource's name property resolved, else ``<stack>-<LogicalId>`` (lower-case for buckets)."""
        resource = self.resources[logical_id]
        resource_type = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        name_property = NAME_PROPERTIES.get(resource_type)
        if name_property and properties.get(name_property) is not None:
            return str(self.resolve(properties[name_property]))
        name = f"{self.stack_name}-{logical_id}"
        if resource_type == "AWS::S3::Bucket":
            return name.lower()[:63]
        if resource_type == "AWS::SQS::Queue" and self.resolve(properties.get("FifoQueue", False)) in (True, "true"):
            return name + ".fifo"
        return name

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account if account else ''}:{resource}"

    # ---- Ref / GetAtt ---------------------------------------------------------------------------------

    def _physical(self, logical_id: str) -> Physical:
        if logical_id in self.physical:
            return self.physical[logical_id]
        if logical_id not in self.resources:
            raise TemplateError(f"unknown resource {logical_id}")
        # Not created locally: a stable placeholder so that templates still resolve.
        resource_type = self.resources[logical_id].get("Type", "")
        name = self.physical_name(logical_id)
        if resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            arn = self.arn("lambda", f"function:{name}")
            return Physical(name, {"Arn": arn})
        if resource_type in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
            return Physical("local", {"ApiEndpoint": "http://127.0.0.1"})
        if resource_type == "AWS::Serverless::LayerVersion":
            return Physical(self.arn("lambda", f"layer:{name}:1"))
        if resource_type == "AWS::IAM::Role":
            return Physical(name, {"Arn": f"arn:aws:iam::{self.account}:role/{name}", "RoleId": f"AROA{name[:16]}"})
        if resource_type == "AWS::Logs::LogGroup":
            return Physical(name, {"Arn": self.arn("logs", f"log-group:{name}:*")})
        service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "local"
        return Physical(name, {"Arn": self.arn(service, name)})

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in (self.document.get("Parameters") or {}):
            return self.parameter_value(name)
        return self._physical(name).ref

    def get_att(self, logical_id: str, attribute: str) -> str:
        physical = self._physical(logical_id)
        if attribute not in physical.attributes:
            raise TemplateError(f"{logical_id}.{attribute} is not available locally")
        return physical.attributes[attribute]

    # ---- intrinsic functions ----------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function inside ``value`` (dicts and lists recursively)."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition_holds(argument)
            if key.startswith("Fn::"):
                return self._function(key[4:], argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:
        handlers: dict[str, Callable[[Any], Any]] = {
            "GetAtt": self._fn_get_att,
            "Sub": self._fn_sub,
            "Join": lambda arg: str(arg[0]).join(str(item) for item in self.resolve(arg[1])),
            "Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Split": lambda arg: str(self.resolve(arg[1])).split(str(arg[0])),
            "If": lambda arg: self.resolve(arg[1] if self.condition_holds(arg[0]) else arg[2]),
            "Equals": lambda arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
            "Not": lambda arg: not self._truth(arg[0]),
            "And": lambda arg: all(self._truth(item) for item in arg),
            "Or": lambda arg: any(self._truth(item) for item in arg),
            "FindInMap": self._fn_find_in_map,
            "Base64": lambda arg: __import__("base64").b64encode(str(self.resolve(arg)).encode()).decode(),
            "GetAZs": lambda _arg: [f"{self.region}{suffix}" for suffix in "abc"],
            "ToJsonString": lambda arg: json.dumps(self.resolve(arg), separators=(",", ":")),
            "Length": lambda arg: len(self.resolve(arg)),
        }
        if name not in handlers:
            raise TemplateError(f"Fn::{name} is not supported by the local runner")
        return handlers[name](argument)

    def _truth(self, value: Any) -> bool:
        resolved = self.resolve(value)
        return resolved in (True, "true", "True")

    def _fn_get_att(self, argument: Any) -> str:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
        else:
            logical_id, attribute = argument[0], self.resolve(argument[1])
        return self.get_att(logical_id, attribute)

    def _fn_find_in_map(self, argument: Any) -> Any:
        map_name, top, second = (self.resolve(item) for item in argument[:3])
        mappings = self.document.get("Mappings") or {}
        try:
            return mappings[map_name][top][second]
        except KeyError as exc:
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} not found") from exc

    def _fn_sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = str(argument[0]), {k: self.resolve(v) for k, v in (argument[1] or {}).items()}
        else:
            text, variables = str(argument), {}

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return str(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                logical_id, _, attribute = expression.partition(".")
                return self.get_att(logical_id, attribute)
            return str(self.ref(expression))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def url_parameters(document: Mapping[str, Any]) -> dict[str, str]:
    """The template parameters whose default is an HTTP(S) URL (outside services), with that default."""
    parameters = document.get("Parameters") or {}
    return {
        name: spec["Default"]
        for name, spec in parameters.items()
        if isinstance(spec, dict)
        and isinstance(spec.get("Default"), str)
        and re.match(r"^https?://", spec["Default"], re.IGNORECASE)
    }


# ---- provisioning -------------------------------------------------------------------------------------


@dataclass
class Provisioned:
    """What :func:`provision` created: the template (with physical ids) and the secrets' local values."""

    template: Template
    secret_values: dict[str, str] = field(default_factory=dict)
    created: list[tuple[str, str, str]] = field(default_factory=list)  # (logical id, type, physical id)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _bool_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def provision(template: Template, client: Callable[[str], Any]) -> Provisioned:
    """Create every supported resource of ``template`` through ``client(service)`` (idempotent)."""
    result = Provisioned(template)
    creators: dict[str, Callable[[Template, str, dict[str, Any], Callable[[str], Any], Provisioned], Physical]] = {
        "AWS::SNS::Topic": _create_topic,
        "AWS::SecretsManager::Secret": _create_secret,
        "AWS::S3::Bucket": _create_bucket,
        "AWS::SQS::Queue": _create_queue,
        "AWS::DynamoDB::Table": _create_table,
        "AWS::SSM::Parameter": _create_parameter,
        "AWS::Events::EventBus": _create_event_bus,
        "AWS::KinesisFirehose::DeliveryStream": _create_delivery_stream,
    }
    pending: dict[str, dict[str, Any]] = {}
    for resource_type in CREATED_TYPES:
        pending.update(template.active_resources(resource_type))
    # Resources may reference each other (a queue's RedrivePolicy, a DLQ): create referenced ones first.
    while pending:
        ready = [
            logical_id
            for logical_id, resource in pending.items()
            if not (_references(resource) & set(pending)) - {logical_id}
        ]
        if not ready:
            raise TemplateError(f"circular references between {', '.join(pending)}")
        for logical_id in ready:
            resource = pending.pop(logical_id)
            resource_type = resource["Type"]
            properties = template.resolve(resource.get("Properties") or {})
            try:
                physical = creators[resource_type](template, logical_id, properties, client, result)
            except Exception as exc:
                if resource_type not in OPTIONAL_TYPES:
                    raise
                _log(f"{logical_id} ({resource_type}) could not be created locally: {type(exc).__name__}: {exc}")
                continue
            template.physical[logical_id] = physical
            result.created.append((logical_id, resource_type, physical.ref))
    return result


def _references(value: Any) -> set[str]:
    """Logical ids referenced anywhere inside ``value``."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item.split(".")[0] if isinstance(item, str) else item[0])
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
                if isinstance(item, list):
                    found |= _references(item[1:])
            else:
                found |= _references(item)
    return found


def _create_topic(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    name = template.physical_name(logical_id)
    attributes = {}
    for prop in ("FifoTopic", "ContentBasedDeduplication", "DisplayName"):
        if prop in properties:
            attributes[prop] = _bool_text(properties[prop])
    arn = client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return Physical(arn, {"TopicArn": arn, "TopicName": name})


def _secret_value(logical_id: str, properties: dict[str, Any]) -> tuple[str, bool]:
    """The local value of a secret, and whether it was chosen explicitly (environment variable)."""
    explicit = os.environ.get(SECRET_ENV_PREFIX + logical_id)
    if explicit is not None:
        return explicit, True
    if isinstance(properties.get("SecretString"), str):
        return properties["SecretString"], False
    value = SECRET_DEFAULTS.get(logical_id, f"local-{kebab(logical_id)}")
    generate = properties.get("GenerateSecretString") or {}
    if value.startswith("{"):  # a complete local JSON document replaces the template
        return value, False
    if generate.get("SecretStringTemplate") and generate.get("GenerateStringKey"):
        document = json.loads(generate["SecretStringTemplate"])
        document[generate["GenerateStringKey"]] = value
        return json.dumps(document), False
    return value, False


def _create_secret(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], result: Provisioned
) -> Physical:
    secrets = client("secretsmanager")
    name = template.physical_name(logical_id)
    value, explicit = _secret_value(logical_id, properties)
    try:
        arn = secrets.create_secret(Name=name, SecretString=value, Description=str(properties.get("Description", "")))[
            "ARN"
        ]
    except Exception as exc:
        if _error_code(exc) != "ResourceExistsException":
            raise
        arn = secrets.describe_secret(SecretId=name)["ARN"]
        if explicit:
            secrets.put_secret_value(SecretId=arn, SecretString=value)
        else:
            value = secrets.get_secret_value(SecretId=arn)["SecretString"]
    result.secret_values[logical_id] = value
    return Physical(arn, {"Id": arn})


def _create_bucket(
    template: Template, logical_id: str, _properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    s3 = client("s3")
    name = template.physical_name(logical_id)
    kwargs: dict[str, Any] = {"Bucket": name}
    if template.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": template.region}
    try:
        s3.create_bucket(**kwargs)
    except Exception as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
    return Physical(
        name,
        {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{template.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{template.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{template.region}.amazonaws.com",
        },
    )


def _create_parameter(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    """An SSM String parameter with its template value; one that exists keeps its value (an operator set it)."""
    ssm = client("ssm")
    name = template.physical_name(logical_id)
    try:
        ssm.put_parameter(Name=name, Value=str(properties.get("Value", "")), Type=properties.get("Type", "String"))
    except Exception as exc:
        if _error_code(exc) != "ParameterAlreadyExists":
            raise
    return Physical(name, {"Type": properties.get("Type", "String"), "Value": str(properties.get("Value", ""))})


def queue_attributes(properties: dict[str, Any]) -> dict[str, str]:
    """CreateQueue attributes from CloudFormation queue properties (already resolved)."""
    attributes = {prop: _bool_text(properties[prop]) for prop in SQS_ATTRIBUTES if prop in properties}
    for prop in ("RedrivePolicy", "RedriveAllowPolicy"):
        if prop in properties:
            policy = properties[prop]
            attributes[prop] = policy if isinstance(policy, str) else json.dumps(policy, separators=(",", ":"))
    return attributes


def _create_queue(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    sqs = client("sqs")
    name = template.physical_name(logical_id)
    attributes = queue_attributes(properties)
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except Exception as exc:
        if _error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        # Exists with other attributes (e.g. a shared endpoint): bring them in line with the template.
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        changeable = {k: v for k, v in attributes.items() if k not in ("FifoQueue",)}
        if changeable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=changeable)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Physical(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def table_request(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments from CloudFormation table properties (already resolved)."""
    billing = properties.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": billing,
    }
    throughput = properties.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _int_values(throughput)
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = []
        for index in properties.get(kind) or []:
            entry = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
            if kind == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                entry["ProvisionedThroughput"] = _int_values(index.get("ProvisionedThroughput") or throughput)
            indexes.append(entry)
        if indexes:
            request[kind] = indexes
    stream = properties.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return request


def _int_values(mapping: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(value) for key, value in mapping.items()}


def _create_table(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    dynamodb = client("dynamodb")
    name = template.physical_name(logical_id)
    try:
        dynamodb.create_table(**table_request(name, properties))
    except Exception as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    description = dynamodb.describe_table(TableName=name)["Table"]
    deadline = time.monotonic() + 120
    while description.get("TableStatus") not in ("ACTIVE", None) and time.monotonic() < deadline:
        time.sleep(1)  # real AWS / LocalStack: wait until the table can be used
        description = dynamodb.describe_table(TableName=name)["Table"]
    ttl = properties.get("TimeToLiveSpecification") or {}
    if _bool_text(ttl.get("Enabled", False)) == "true" and ttl.get("AttributeName"):
        try:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        except Exception as exc:  # already enabled on a shared endpoint
            if _error_code(exc) != "ValidationException":
                raise
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return Physical(name, attributes)


def _create_event_bus(
    template: Template, logical_id: str, _properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    events = client("events")
    name = template.physical_name(logical_id)
    try:
        arn = events.create_event_bus(Name=name)["EventBusArn"]
    except Exception as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
        arn = events.describe_event_bus(Name=name)["Arn"]
    return Physical(name, {"Arn": arn, "Name": name})


def _create_delivery_stream(
    template: Template, logical_id: str, properties: dict[str, Any], client: Callable[[str], Any], _r: Provisioned
) -> Physical:
    firehose = client("firehose")
    name = template.physical_name(logical_id)
    request: dict[str, Any] = {
        "DeliveryStreamName": name,
        "DeliveryStreamType": properties.get("DeliveryStreamType", "DirectPut"),
    }
    for destination in ("ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"):
        if destination in properties:
            request[destination] = properties[destination]
    try:
        arn = firehose.create_delivery_stream(**request)["DeliveryStreamARN"]
    except Exception as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
        arn = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
            "DeliveryStreamARN"
        ]
    return Physical(name, {"Arn": arn})


# ---- functions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One ``HttpApi`` event: ``method`` (upper-case, ``ANY`` for all) and ``path`` (``$default`` = catch-all)."""

    function: str
    method: str
    path: str

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class SqsSource:
    """One ``SQS`` event source mapping."""

    function: str
    event_name: str
    queue_arn: str
    batch_size: int
    report_batch_item_failures: bool
    enabled: bool = True
    batching_window_seconds: int = 0


@dataclass(frozen=True)
class ScheduleSource:
    """One ``Schedule`` event (an EventBridge rule): the runner fires it on a short local interval."""

    function: str
    event_name: str
    expression: str
    enabled: bool = True


@dataclass
class FunctionSpec:
    """An ``AWS::Serverless::Function`` with everything the runner needs to invoke it in process."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    layer_dirs: list[Path]
    routes: list[HttpRoute]
    sqs_sources: list[SqsSource]
    schedules: list[ScheduleSource] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:function:{self.name}"


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _layer_dirs(template: Template, layers: list[Any], root: Path) -> list[Path]:
    """Local directories of the template's own layers (``Ref`` to an ``AWS::Serverless::LayerVersion``)."""
    dirs = []
    for layer in layers:
        if isinstance(layer, dict) and isinstance(layer.get("Ref"), str):
            resource = template.resources.get(layer["Ref"]) or {}
            content = (resource.get("Properties") or {}).get("ContentUri")
            if resource.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(content, str):
                dirs.append((root / content).resolve())
    return dirs


def map_opt_path(value: str, layer_dirs: list[Path]) -> str:
    """``/opt/<rest>`` (where Lambda mounts layers) -> the first local layer directory holding ``<rest>``."""
    if not value.startswith("/opt/"):
        return value
    rest = value[len("/opt/") :]
    for layer_dir in layer_dirs:
        for candidate in (layer_dir / rest, layer_dir / "python" / rest):
            if candidate.exists():
                return str(candidate)
    return value


def functions(template: Template, root: Path = ROOT) -> list[FunctionSpec]:
    """Every serverless function of the template, with resolved environment, routes and SQS sources."""
    globals_function = (template.document.get("Globals") or {}).get("Function") or {}
    specs = []
    for logical_id, resource in template.active_resources("AWS::Serverless::Function").items():
        properties = resource.get("Properties") or {}

        def prop(name: str, default: Any = None, properties: dict[str, Any] = properties) -> Any:
            return properties.get(name, globals_function.get(name, default))

        layers = list(globals_function.get("Layers") or []) + list(properties.get("Layers") or [])
        layer_dirs = _layer_dirs(template, layers, root)
        environment = _function_environment(template, (globals_function, properties), layer_dirs)
        code_uri = prop("CodeUri", ".")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local directory")
        routes, sqs_sources, schedules = _event_sources(template, logical_id, properties.get("Events") or {})
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                name=template.physical_name(logical_id),
                code_dir=(root / code_uri).resolve(),
                handler=str(prop("Handler", "app.lambda_handler")),
                timeout=int(template.resolve(prop("Timeout", 3))),
                memory=int(template.resolve(prop("MemorySize", 128))),
                environment=environment,
                layer_dirs=layer_dirs,
                routes=routes,
                sqs_sources=sqs_sources,
                schedules=schedules,
            )
        )
    return specs


def _function_environment(
    template: Template, sources: tuple[dict[str, Any], ...], layer_dirs: list[Path]
) -> dict[str, str]:
    """The variables of the globals then the function's own, resolved, as strings, ``/opt`` paths made local."""
    variables: dict[str, Any] = {}
    for source in sources:
        variables.update(((source.get("Environment") or {}).get("Variables")) or {})
    return {key: map_opt_path(_env_string(value), layer_dirs) for key, value in template.resolve(variables).items()}


def _event_sources(
    template: Template, logical_id: str, events: dict[str, Any]
) -> tuple[list[HttpRoute], list[SqsSource], list[ScheduleSource]]:
    """A function's emulated events: HTTP routes, SQS sources and schedules (others are logged and ignored)."""
    routes: list[HttpRoute] = []
    sqs_sources: list[SqsSource] = []
    schedules: list[ScheduleSource] = []
    for event_name, event in events.items():
        event_properties = event.get("Properties") or {}
        if event.get("Type") == "HttpApi":
            routes.append(_http_route(template, logical_id, event_properties))
        elif event.get("Type") == "SQS":
            sqs_sources.append(_sqs_source(template, logical_id, event_name, event_properties))
        elif event.get("Type") in ("Schedule", "ScheduleV2"):
            schedules.append(_schedule(template, logical_id, event_name, event_properties))
        else:
            _log(f"{logical_id}: event {event_name} of type {event.get('Type')} is not emulated locally")
    return routes, sqs_sources, schedules


def _http_route(template: Template, logical_id: str, event_properties: dict[str, Any]) -> HttpRoute:
    method = str(template.resolve(event_properties.get("Method", "ANY"))).upper()
    path = str(template.resolve(event_properties.get("Path", "$default")))
    return HttpRoute(logical_id, "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method, path)


def _sqs_source(template: Template, logical_id: str, event_name: str, event_properties: dict[str, Any]) -> SqsSource:
    types = template.resolve(event_properties.get("FunctionResponseTypes") or [])
    return SqsSource(
        function=logical_id,
        event_name=event_name,
        queue_arn=str(template.resolve(event_properties["Queue"])),
        batch_size=int(template.resolve(event_properties.get("BatchSize", 10))),
        report_batch_item_failures="ReportBatchItemFailures" in types,
        enabled=_bool_text(template.resolve(event_properties.get("Enabled", True))) == "true",
        batching_window_seconds=int(template.resolve(event_properties.get("MaximumBatchingWindowInSeconds", 0))),
    )


def _schedule(template: Template, logical_id: str, event_name: str, event_properties: dict[str, Any]) -> ScheduleSource:
    expression = event_properties.get("Schedule") or event_properties.get("ScheduleExpression", "")
    enabled = event_properties.get("Enabled", event_properties.get("State", True) != "DISABLED")
    return ScheduleSource(
        logical_id, event_name, str(template.resolve(expression)), _bool_text(template.resolve(enabled)) == "true"
    )
