"""A small router for the HTTP API functions (payload format 2.0), with Powertools' resolver conventions.

Why not ``aws_lambda_powertools.event_handler.APIGatewayHttpResolver``: importing anything from that package
runs its ``__init__``, which loads every resolver (AppSync with asyncio, Bedrock agents, VPC Lattice, ALB, the
OpenAPI models) and every event data class; measured on CPython 3.13 with the layer's bytecode, that was 0.17x
``import boto3`` of each HTTP function's cold start, for three routes (docs/performance.md). This module keeps
the parts the functions use, with the same behaviour and response shape:

* ``@router.get(rule)`` / ``post`` / ``put`` / ``delete``; ``<name>`` in a rule matches one path segment of URI-safe
  characters (Powertools' pattern) and is passed to the route function as a keyword argument;
* the path is ``rawPath`` less the stage prefix (unless the stage is ``$default``); no match: the ``not_found``
  handler (404);
* an exception from a route goes to the handler registered for the nearest class in its MRO; unhandled, it is
  logged and raised (Lambda reports the invocation as failed, as with Powertools);
* ``router.current_event``: the request with case-insensitive ``headers``, ``query_string_parameters``,
  ``path_parameters``, ``is_base64_encoded``, ``request_context.request_id``;
* the result: ``{"statusCode", "body", "isBase64Encoded", "headers", "cookies"}`` (bytes bodies base64-encoded).

Logger, Metrics and Tracer stay Powertools' (:mod:`flagbridge.observability`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flagbridge.errors import RequestError
from flagbridge.observability import logger

# Powertools' route pattern: a dynamic segment is URI-safe characters plus those API Gateway decodes.
_DYNAMIC_SEGMENT = re.compile(r"<(\w+)>")
_SEGMENT_CHARACTERS = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"

RouteFunction = Callable[..., "Response"]
ErrorHandler = Callable[[Exception], "Response"]
F = TypeVar("F", bound=Callable[..., Any])


class Response:
    """An HTTP response: ``content_type`` becomes the ``Content-Type`` header unless ``headers`` set one."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        if content_type:
            self.headers.setdefault("Content-Type", content_type)

    def as_http_api_result(self) -> dict[str, Any]:
        """The Lambda result API Gateway HTTP APIs (payload 2.0) expect."""
        body: str | bytes | None = self.body
        encoded = isinstance(body, bytes)
        if isinstance(body, bytes):
            body = base64.b64encode(body).decode("ascii")
        return {
            "statusCode": self.status_code,
            "body": body,
            "isBase64Encoded": encoded,
            "headers": dict(self.headers),
            "cookies": [],
        }


class Headers(dict[str, str]):
    """Request headers looked up case-insensitively (HTTP API lower-cases them; tests and clients may not)."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        super().__init__((name.lower(), value) for name, value in (headers or {}).items())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class RequestContext:
    def __init__(self, context: Mapping[str, Any]) -> None:
        self._context = context

    @property
    def request_id(self) -> str:
        return str(self._context["requestId"])

    @property
    def stage(self) -> str:
        return str(self._context.get("stage", "$default"))

    @property
    def http_method(self) -> str:
        return str(self._context["http"]["method"]).upper()


class HttpEvent(dict[str, Any]):
    """An HTTP API (payload 2.0) event: the raw mapping plus the accessors the route functions use."""

    @property
    def headers(self) -> Headers:
        return Headers(self.get("headers"))

    @property
    def query_string_parameters(self) -> dict[str, str]:
        return self.get("queryStringParameters") or {}

    @property
    def path_parameters(self) -> dict[str, str]:
        return self.get("pathParameters") or {}

    @property
    def is_base64_encoded(self) -> bool | None:
        return self.get("isBase64Encoded")

    @property
    def body(self) -> str | None:
        return self.get("body")

    @property
    def request_context(self) -> RequestContext:
        return RequestContext(self["requestContext"])

    @property
    def path(self) -> str:
        stage = self.request_context.stage
        raw_path = str(self["rawPath"])
        return raw_path if stage == "$default" else raw_path[len("/" + stage) :]


class NotFoundError(RequestError):
    """No route for this method and path (a 404 refusal; the ``not_found`` handler, if any, answers it)."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(404, "not_found", "no such route")
        self.method = method
        self.path = path


class _Route:
    def __init__(self, method: str, rule: str, function: RouteFunction) -> None:
        self.method = method
        self.function = function
        pattern = _DYNAMIC_SEGMENT.sub(lambda match: f"(?P<{match.group(1)}>{_SEGMENT_CHARACTERS})", rule)
        self.regex = re.compile(f"^{pattern}$")


class HttpRouter:
    """Routes HTTP API events to functions; see the module docstring for what it keeps of Powertools'."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._error_handlers: dict[type[Exception], ErrorHandler] = {}
        self.current_event = HttpEvent()

    def route(self, method: str, rule: str) -> Callable[[F], F]:
        def register(function: F) -> F:
            self._routes.append(_Route(method.upper(), rule, function))
            return function

        return register

    def get(self, rule: str) -> Callable[[F], F]:
        return self.route("GET", rule)

    def post(self, rule: str) -> Callable[[F], F]:
        return self.route("POST", rule)

    def put(self, rule: str) -> Callable[[F], F]:
        return self.route("PUT", rule)

    def delete(self, rule: str) -> Callable[[F], F]:
        return self.route("DELETE", rule)

    def exception_handler(self, classes: type[Exception] | Iterable[type[Exception]]) -> Callable[[F], F]:
        """Register a function that turns these exceptions (and their subclasses) into a response."""
        registered = [classes] if isinstance(classes, type) else list(classes)

        def register(function: F) -> F:
            for exception_class in registered:
                self._error_handlers[exception_class] = function
            return function

        return register

    def not_found(self, function: F) -> F:
        """Register the response for a request no route matches (called with a :class:`NotFoundError`)."""
        return self.exception_handler(NotFoundError)(function)

    def resolve(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Call the route matching the event's method and path; the HTTP API result."""
        self.current_event = current = HttpEvent(event)
        method, path = current.request_context.http_method, current.path
        try:
            return self._call(method, path).as_http_api_result()
        finally:
            self.current_event = HttpEvent()

    def _call(self, method: str, path: str) -> Response:
        try:
            for route in self._routes:
                if route.method != method:
                    continue
                match = route.regex.match(path)
                if match:
                    return _checked(route.function(**match.groupdict()))
            raise NotFoundError(method, path)
        except Exception as exc:
            handler = self._handler_for(type(exc))
            if handler is None:
                if isinstance(exc, NotFoundError):
                    return Response(404, "application/json", json.dumps({"statusCode": 404, "message": "Not found"}))
                logger.exception(exc)
                raise
            return _checked(handler(exc))

    def _handler_for(self, exception_class: type[BaseException]) -> ErrorHandler | None:
        for cls in exception_class.__mro__:
            handler = self._error_handlers.get(cls)
            if handler is not None:
                return handler
        return None


def _checked(result: object) -> Response:
    if not isinstance(result, Response):
        raise TypeError(f"a route must return a flagbridge.routing.Response, not {type(result).__name__}")
    return result
