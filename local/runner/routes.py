"""API Gateway HTTP API route matching: the most specific route wins, path parameters are URL-decoded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from local.resources import HttpRoute


@dataclass(frozen=True)
class CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str] | None  # None: $default
    names: tuple[str, ...]
    literals: int
    greedy: bool

    def priority(self) -> tuple[int, int, int, int]:
        """API Gateway picks the most specific match: literal paths, then parameters, then greedy, then $default."""
        return (self.pattern is None, self.greedy, -self.literals, self.route.method == "ANY")


def compile_route(route: HttpRoute) -> CompiledRoute:
    if route.path == "$default":
        return CompiledRoute(route, None, (), 0, True)
    parts, names, literals, greedy = [], [], 0, False
    for index, segment in enumerate(route.path.strip("/").split("/")):
        match = re.fullmatch(r"\{([^{}+]+)(\+?)\}", segment)
        if match is None:
            parts.append(re.escape(segment))
            literals += 1
            continue
        group = f"p{index}"
        names.append(match.group(1))
        if match.group(2):
            parts.append(f"(?P<{group}>.+)")
            greedy = True
        else:
            parts.append(f"(?P<{group}>[^/]+)")
    pattern = re.compile("/" + "/".join(parts) if parts != [""] else "/")
    return CompiledRoute(route, pattern, tuple(names), literals, greedy)


class Router:
    """Matches (method, raw path) to a route and its path parameters."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        self.routes = sorted((compile_route(route) for route in routes), key=CompiledRoute.priority)

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for compiled in self.routes:
            if compiled.route.method not in ("ANY", method):
                continue
            if compiled.pattern is None:
                return compiled.route, {}
            found = compiled.pattern.fullmatch(path)
            if found:
                values = [unquote(value) for value in found.groups()]
                return compiled.route, dict(zip(compiled.names, values, strict=True))
        return None
