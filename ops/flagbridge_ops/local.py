"""Finding things without being told: the local runner's stack (``--local``) and the checkout's configuration.

``flagbridge --local`` (or ``FLAGBRIDGE_LOCAL=URL``) reads ``GET /_local/aws`` from ``make run`` and uses its
``environment``: the AWS endpoint, every resource, the configuration and the local secrets the commands need, so
``verdict``, ``testers``, ``dlq``, ``quarantine`` and ``traffic`` work against it with no variable set by hand.

Run inside a checkout, the configuration defaults to its ``layers/shared/config/flagbridge.yaml``, found from the
working directory upwards (an installed command would otherwise look inside its own site-packages).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import urlopen

from flagbridge_ops.errors import CliError

DEFAULT_PORT = 3000
CHECKOUT_CONFIG = Path("layers") / "shared" / "config" / "flagbridge.yaml"


def default_local_url(environ: Mapping[str, str]) -> str:
    """``make run``'s address: ``FLAGBRIDGE_LOCAL``, else 127.0.0.1 on ``PORT`` (3000), as ``make run`` binds."""
    return environ.get("FLAGBRIDGE_LOCAL") or f"http://127.0.0.1:{environ.get('PORT') or DEFAULT_PORT}"


def checked_local_url(url: str, source: str) -> str:
    """``url`` when it is an http(s) URL with a host and a valid port; else one line naming where it came from."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad IPv6 literal, a port that is no number or out of range
        valid = False
    if not valid:
        raise CliError(
            f"{source} gives {url!r}, not an http URL of the local runner (`make run` prints its address, "
            f"http://127.0.0.1:{DEFAULT_PORT} by default)"
        )
    return url


def _local_url(environ: Mapping[str, str], local: str) -> str:
    if local:
        return checked_local_url(local, "--local")
    if environ.get("FLAGBRIDGE_LOCAL"):
        return checked_local_url(environ["FLAGBRIDGE_LOCAL"], "FLAGBRIDGE_LOCAL")
    return checked_local_url(default_local_url(environ), "PORT")


def local_environment(url: str, timeout: float = 10.0) -> dict[str, str]:
    """The variables the local runner at ``url`` exports for this command (``GET /_local/aws``)."""
    address = url.rstrip("/") + "/_local/aws"
    try:
        with urlopen(address, timeout=timeout) as response:
            document = json.loads(response.read())
    except HTTPError as exc:
        raise CliError(
            f"{address} answered HTTP {exc.code}: that is not a flagbridge local runner "
            "(`make run` prints its address; pass --local URL)"
        ) from exc
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        reason = getattr(reason, "strerror", None) or reason
        raise CliError(
            f"cannot reach the local runner at {url} ({reason}): start it with `make run` "
            "(PORT=N make run for another port), or pass --local URL"
        ) from exc
    except ValueError as exc:
        raise CliError(f"{address} did not answer JSON: is it a flagbridge local runner (`make run`)?") from exc
    environment = document.get("environment") if isinstance(document, dict) else None
    if not isinstance(environment, dict):
        raise CliError(f"{address} has no environment: that runner is older than this command (restart `make run`)")
    return {str(name): str(value) for name, value in environment.items() if value is not None}


def checkout_config(start: Path | None = None) -> Path | None:
    """The checkout's configuration when ``start`` (default: the working directory) is inside a checkout."""
    here = (start or Path(os.getcwd())).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CHECKOUT_CONFIG
        if candidate.is_file() and (directory / "template.yaml").is_file():
            return candidate
    return None


def with_defaults(environ: Mapping[str, str], *, local: str | None, config_given: bool) -> Mapping[str, str]:
    """``environ`` completed: the local runner's variables (``--local``), then the checkout's configuration."""
    if local is None and not environ.get("FLAGBRIDGE_LOCAL"):
        completed: dict[str, str] | None = None
    else:
        completed = {**environ, **local_environment(_local_url(environ, local or ""))}
    if not config_given and not (completed or environ).get("FLAGBRIDGE_CONFIG"):
        found = checkout_config()
        if found is not None:
            completed = {**(completed or environ), "FLAGBRIDGE_CONFIG": str(found)}
    return environ if completed is None else completed
