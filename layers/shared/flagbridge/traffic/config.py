"""The ``traffic:`` section of the bridge's configuration file: where traffic may go and who sends it.

::

    traffic:
      allowlist:                      # hosts (``*.example.com`` for subdomains), optionally path prefixes
        - localhost
        - {host: api.shop.example, path_prefixes: [/v2/]}
      testers:                        # the pool; each key must be a tester by test_users.rules
        - {key: qa-bot-01, email: qa-bot-01@qa.example.com}
        - qa-bot-02
      run_tag:
        header: X-Flagbridge-Run
        key_env: FLAGBRIDGE_RUN_TAG_KEY             # locally: the HMAC key comes from this variable
        key_secret: flagbridge/traffic-run-tag-key  # in AWS: a Secrets Manager secret (never in this file)
      results:
        events_api: http://127.0.0.1:3000/mparticle/v2   # the bridge's own Events API ingest
        credentials_env: [FLAGBRIDGE_MPARTICLE_KEY, FLAGBRIDGE_MPARTICLE_SECRET]
        credentials_secret: flagbridge/mparticle-credentials   # {"api_key", "api_secret"} in AWS
        environment: production
      stop:
        file: .flagbridge-traffic-stop              # the run stops before its next batch once it exists
        ssm_parameter: /flagbridge/traffic/stop     # in AWS: value "stop" stops runs

Read with the standard library only (the section is kept as a mapping by :class:`flagbridge.config.BridgeConfig`).
Secrets are named here, never written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flagbridge.traffic.errors import SafetyError
from flagbridge.traffic.model import Tester, pool_from_document
from flagbridge.traffic.safety import Allowlist

_KEYS = frozenset({"allowlist", "testers", "run_tag", "results", "stop"})


@dataclass(frozen=True)
class TrafficConfig:
    allowlist: Allowlist
    testers: tuple[Tester, ...]
    run_tag_header: str = "X-Flagbridge-Run"
    run_tag_key_env: str = "FLAGBRIDGE_RUN_TAG_KEY"
    run_tag_key_secret: str | None = None
    events_api: str | None = None
    credentials_env: tuple[str, str] = ("FLAGBRIDGE_MPARTICLE_KEY", "FLAGBRIDGE_MPARTICLE_SECRET")
    credentials_secret: str | None = None
    environment: str = "production"
    stop_file: str | None = None
    stop_ssm_parameter: str | None = None

    @classmethod
    def from_document(cls, document: Any) -> TrafficConfig:
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise SafetyError("invalid configuration at 'traffic': must be a mapping")
        unknown = sorted(set(document) - _KEYS)
        if unknown:
            raise SafetyError(f"invalid configuration at 'traffic.{unknown[0]}': unknown key")
        allowlist = Allowlist.from_document(document.get("allowlist"))
        testers = tuple(pool_from_document(document["testers"], "traffic.testers")) if document.get("testers") else ()
        run_tag = _section(document, "run_tag", {"header", "key_env", "key_secret"})
        results = _section(document, "results", {"events_api", "credentials_env", "credentials_secret", "environment"})
        stop = _section(document, "stop", {"file", "ssm_parameter"})
        credentials_env = results.get("credentials_env", list(cls.credentials_env))
        if not (isinstance(credentials_env, list) and len(credentials_env) == 2):
            raise SafetyError("invalid configuration at 'traffic.results.credentials_env': two variable names")
        environment = results.get("environment", "production")
        if environment not in ("production", "development"):
            raise SafetyError("invalid configuration at 'traffic.results.environment': production or development")
        return cls(
            allowlist=allowlist,
            testers=testers,
            run_tag_header=str(run_tag.get("header", "X-Flagbridge-Run")),
            run_tag_key_env=str(run_tag.get("key_env", "FLAGBRIDGE_RUN_TAG_KEY")),
            run_tag_key_secret=_text(run_tag, "key_secret", "run_tag"),
            events_api=_text(results, "events_api", "results"),
            credentials_env=(str(credentials_env[0]), str(credentials_env[1])),
            credentials_secret=_text(results, "credentials_secret", "results"),
            environment=environment,
            stop_file=_text(stop, "file", "stop"),
            stop_ssm_parameter=_text(stop, "ssm_parameter", "stop"),
        )


def _text(section: dict[str, Any], key: str, name: str) -> str | None:
    """An optional text setting; a number or a list there is a mistake the run would trip on later, or ignore."""
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise SafetyError(f"invalid configuration at 'traffic.{name}.{key}': must be text")
    return value


def _section(document: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    section = document.get(name) or {}
    if not isinstance(section, dict):
        raise SafetyError(f"invalid configuration at 'traffic.{name}': must be a mapping")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SafetyError(f"invalid configuration at 'traffic.{name}.{unknown[0]}': unknown key")
    return section
