"""The operator's errors, and the one line each failure prints instead of a traceback.

:class:`CliError` is a problem the user can fix (a missing resource, a wrong stack name): exit status 1.
:class:`UsageError` is a wrong or missing argument argparse cannot see: exit status 2, like argparse's own.
:func:`describe_error` turns anything a command raises (botocore's errors included) into one line.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from flagbridge.errors import ConfigError, FlagbridgeError

# ClientError codes that mean "these credentials are not valid here", whatever the service.
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)


class CliError(FlagbridgeError):
    """A problem the user can fix (missing resource, bad argument); printed as one line, exit status 1."""


class UsageError(CliError):
    """The command line is incomplete or contradictory; printed as one line, exit status 2."""


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong and what to check, for any exception a command raises."""
    return " ".join(_describe(exc).split())  # messages from AWS may hold newlines: one line, always


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return (
            f"{exc}: --config (or FLAGBRIDGE_CONFIG) must name a flagbridge configuration, "
            "such as the checkout's layers/shared/config/flagbridge.yaml"
        )
    if isinstance(exc, FlagbridgeError):
        return str(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE (see `aws configure`) "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_DEFAULT_REGION, or a region in your AWS profile (AWS_PROFILE)"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url") or "the AWS endpoint"
        return f"cannot reach {endpoint}: check AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and the network"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", "")
        operation = exc.operation_name
        if code in CREDENTIAL_CODES:
            return f"AWS refused the credentials ({code} on {operation}): {message}"
        if code.startswith("AccessDenied"):
            return f"not allowed: {operation} was denied ({message})"
        return f"AWS error on {operation}: {code}: {message}"
    if isinstance(exc, BotoCoreError):
        return f"AWS error: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"  # a file named on the command line (--report, --out...)
    return f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
