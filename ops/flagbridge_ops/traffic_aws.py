"""The work behind ``flagbridge traffic run --stack``, ``status``, ``stop`` and ``replay --run`` (runs in AWS).

A deployed stack is reached through its outputs (``--stack NAME``): ``TrafficRunsUrl`` (the run API),
``TrafficApiTokenSecretArn`` (its bearer token), ``TrafficManifestBucketName`` and ``TrafficStopParameterName``.
Each can be given by a variable instead (the variable wins, e.g. to reach the local runner):
``FLAGBRIDGE_TRAFFIC_API`` (the API's base URL), ``FLAGBRIDGE_TRAFFIC_API_TOKEN``, ``MANIFEST_BUCKET`` and
``TRAFFIC_STOP_PARAMETER``.

The plan is sent as a document with its attack set files inlined (a deployed run reads no files); the stack
validates it with the same code as ``traffic run`` does locally.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flagbridge_ops.errors import CliError

OUTPUTS = {
    "TrafficRunsUrl": "api",
    "TrafficApiTokenSecretArn": "token_secret",
    "TrafficManifestBucketName": "bucket",
    "TrafficStopParameterName": "stop_parameter",
}
FINAL_STATES = frozenset({"completed", "stopped", "enqueue_failed"})
CONNECT_SECONDS, READ_SECONDS = 10.0, 60.0
MAX_ANSWER_BYTES = 1 << 24  # a run's status with every shard's counts stays far below


@dataclass
class Stack:
    """Where a stack's test runs are: the run API (base URL ending in /runs), its token, bucket, stop parameter."""

    api: str = ""
    token: str = ""
    bucket: str = ""
    stop_parameter: str = ""

    def require(self, name: str, hint: str) -> str:
        value = str(getattr(self, name))
        if not value:
            raise CliError(f"no {hint}: pass --stack NAME (a stack with the test-runs section) or set the variable")
        return value


def stack(args: Any, environ: Mapping[str, str], clients: Any) -> Stack:
    found = Stack()
    name = getattr(args, "stack", None)
    token_secret = ""
    if name:
        try:
            outputs = clients.get("cloudformation").describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
        except Exception as exc:
            if not environ.get("FLAGBRIDGE_TRAFFIC_API"):
                raise CliError(f"cannot read the outputs of stack {name!r}: {type(exc).__name__}") from exc
            outputs = []
        for output in outputs:
            field = OUTPUTS.get(output.get("OutputKey", ""))
            if field == "token_secret":
                token_secret = output.get("OutputValue", "")
            elif field:
                setattr(found, field, output.get("OutputValue", ""))
    if environ.get("FLAGBRIDGE_TRAFFIC_API"):
        found.api = environ["FLAGBRIDGE_TRAFFIC_API"].rstrip("/") + "/runs"
    found.bucket = environ.get("MANIFEST_BUCKET") or found.bucket
    found.stop_parameter = environ.get("TRAFFIC_STOP_PARAMETER") or found.stop_parameter
    found.token = environ.get("FLAGBRIDGE_TRAFFIC_API_TOKEN", "")
    if not found.token and token_secret:
        found.token = str(clients.get("secretsmanager").get_secret_value(SecretId=token_secret)["SecretString"])
    return found


def call(target: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the run API: (status, JSON body). Connection problems are one CliError line.

    Sent through the layer's outbound adapter, which follows no redirect: urllib's ``urlopen`` would follow one
    and send the bearer token along to wherever it points."""
    from flagbridge.outbound import Outbound, TransportError

    url = target.require("api", "run API (TrafficRunsUrl)") + path
    data = None if body is None else json.dumps(body).encode()
    token = target.require("token", "run API token (TrafficApiTokenSecretArn or FLAGBRIDGE_TRAFFIC_API_TOKEN)")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    http = Outbound(connect_timeout=CONNECT_SECONDS, read_timeout=READ_SECONDS, max_idle=0)
    try:
        response = http.request(method, url, data, headers, max_body=MAX_ANSWER_BYTES)
    except TransportError as exc:
        raise CliError(f"cannot reach the run API at {url}: {exc}") from exc
    shown = response.content.decode("utf-8", "replace")[:200]
    try:
        answer = json.loads(response.content)
    except ValueError:
        return response.status, {"error": "not_json", "message": shown}
    if not isinstance(answer, dict):  # the run API answers objects: a list or a string came from something else
        return response.status, {"error": "not_a_json_object", "message": shown}
    return response.status, answer


def plan_document(plan_path: str, attack_set_files: list[str]) -> dict[str, Any]:
    """The plan as a document with every attack set file inlined (XML read as published, plus its sidecar)."""
    from flagbridge.documents import load_document, read_file
    from flagbridge.traffic.errors import PlanError
    from flagbridge.traffic.plan import load_plan

    path = Path(plan_path)
    load_plan(path, tuple(Path(item) for item in attack_set_files))  # refuse here, with the file's own locations
    raw = read_file(path, "the plan", PlanError)
    files = [Path(item) for item in attack_set_files]
    if path.suffix.lower() == ".xml":
        from flagbridge.traffic.planxml import xml_plan_document

        document, _, _ = xml_plan_document(raw, str(path))
        sidecar = path.with_name(path.stem + ".attack-sets.yaml")
        if sidecar.exists():
            files.insert(0, sidecar)
    else:
        fmt = "json" if path.suffix.lower() == ".json" else "yaml"
        document = load_document(raw, fmt, str(path), PlanError)  # load_plan above read it the same way
    if not isinstance(document, dict):
        raise PlanError(f"{path}: a plan is a mapping")
    files = [path.parent / item for item in document.pop("attack_set_files", None) or []] + files
    if files:
        inline: dict[str, Any] = {}
        for file in files:
            sets = load_document(read_file(file, "an attack set file", PlanError), "yaml", str(file), PlanError)
            inline.update(sets or {})
        inline.update(document.get("attack_sets") or {})
        document["attack_sets"] = inline
    return dict(document)


def run_request(args: Any, rate: float) -> dict[str, Any]:
    from flagbridge.documents import load_document, read_file
    from flagbridge.traffic.errors import ModelError

    model = Path(args.model)
    try:  # sent as a JSON object: the deployed layer ships no YAML parser
        model_document = load_document(
            read_file(model, "the request model", ModelError),
            "json" if model.suffix == ".json" else "yaml",
            str(model),
            ModelError,
        )
    except ModelError as exc:
        raise CliError(str(exc)) from None
    if not isinstance(model_document, dict):
        raise CliError(f"{model}: a request model must be a mapping")
    request: dict[str, Any] = {
        "plan": plan_document(args.plan, list(args.attack_sets or [])),
        "model": model_document,
        "requests": args.requests,
        "rate": rate,
        "seed": args.seed,
        "max_duration_s": args.max_duration,
    }
    if args.target:
        request["target"] = args.target
    if args.testers:
        request["testers"] = [key.strip() for key in args.testers.split(",") if key.strip()]
    if args.run_id:
        request["run_id"] = args.run_id
    if getattr(args, "until_decided", False):
        request["until_decided"] = True
    return request


def start(args: Any, environ: Mapping[str, str], clients: Any, rate: float) -> dict[str, Any]:
    target = stack(args, environ, clients)
    status, body = call(target, "POST", "", run_request(args, rate))
    if status >= 400:
        raise CliError(f"the stack refused the run ({status} {body.get('error')}): {body.get('message')}")
    return dict(body)


def status(args: Any, environ: Mapping[str, str], clients: Any, run_id: str) -> dict[str, Any]:
    code, body = call(stack(args, environ, clients), "GET", "/" + quote(run_id, safe=""))
    if code == 404:
        raise CliError(f"no run {run_id!r} in this stack")
    if code >= 400:
        raise CliError(f"the stack refused ({code} {body.get('error')}): {body.get('message')}")
    return dict(body)


def stop(args: Any, environ: Mapping[str, str], clients: Any, run_id: str) -> dict[str, Any]:
    from flagbridge.runs.stop import with_run

    name = stack(args, environ, clients).require("stop_parameter", "stop parameter (TrafficStopParameterName)")
    ssm = clients.get("ssm")
    current = str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    value = with_run(current, run_id)
    if value != current:
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    return {"run_id": run_id, "parameter": name, "value": value}


def replay(args: Any, environ: Mapping[str, str], clients: Any, run_id: str, case_id: str) -> dict[str, Any]:
    """The case's manifest line from S3, and its request regenerated from the run's spec (byte for byte)."""
    from flagbridge.runs.spec import RunSpec, build_generator
    from flagbridge.runs.worker import manifest_key, spec_key

    bucket = stack(args, environ, clients).require("bucket", "manifest bucket (TrafficManifestBucketName)")
    s3 = clients.get("s3")
    try:
        spec = RunSpec.from_document(json.loads(s3.get_object(Bucket=bucket, Key=spec_key(run_id))["Body"].read()))
    except Exception as exc:
        raise CliError(f"no run {run_id!r} in s3://{bucket} ({type(exc).__name__})") from exc
    text = case_id[1:] if case_id.startswith("c") else case_id
    if not text.isdigit() or int(text) >= spec.requests:
        raise CliError(f"no case {case_id} in run {run_id} (cases c0 to c{spec.requests - 1})")
    index = int(text)
    key = manifest_key(run_id, index // spec.shard_size)
    try:
        lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    except Exception as exc:
        raise CliError(f"the manifest of case {case_id} (s3://{bucket}/{key}) is not written yet") from exc
    record = next((json.loads(line) for line in lines if f'"index":{index},' in line), None)
    if record is None or record.get("index") != index:
        raise CliError(f"case {case_id} was not sent (its shard stopped before it): see s3://{bucket}/{key}")
    case = build_generator(spec).case(index)
    return {"run_id": run_id, "case": record, "manifest": f"s3://{bucket}/{key}", "curl": case.request.curl()}
