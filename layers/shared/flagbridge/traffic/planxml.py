"""The traffic plan's XML form, read as it was published: a tolerant tokenizer, not an XML parser.

The method's published plan is not well-formed XML: its attribute values are in curly quotes
(``MaxAttacks=“3”``) and ``<Request>`` and ``<Headers>`` are never closed. This module reads it anyway
and reports every repair as a warning (``line 5: curly quotes around ProbabilIty read as "..."``):

- quotes: ``"…"``, ``'…'``, ``“…”``, ``„…“``, ``\u2018…\u2019`` and ``«…»`` delimit values; an unquoted value ends
  at whitespace or the end of the tag; a value whose closing quote is missing ends at the end of its line;
- closes: a request-level element (``Method``, ``Host``, ``Path``, ``QueryLine``, ``Query``, ``Headers``,
  ``Cookie``, ``Body``) opened inside a map (``Headers``, ``Cookie``, ``Query``) closes that map, as a
  paragraph closes in HTML; a close tag for an outer element closes the ones inside it; everything
  still open at the end of the file is closed there.

It never expands anything: a ``<!DOCTYPE``, ``<!ENTITY`` (or any ``<!`` declaration other than a
comment) and any entity reference other than the five predefined ones and numeric character references
is refused with one clear error, so an XML bomb or an external entity cannot get further than the check.
The result is the same document :func:`flagbridge.traffic.plan.parse_plan` reads from YAML, with each key's
XML location for error messages.

Element and attribute names map to plan keys: ``<Request MaxAttacks>`` → ``max_attacks``; ``<Method>``,
``<Host>``, ``<Path>`` → those elements; ``<QueryLine>`` → ``query`` (whole-element form) and ``<Query>`` →
``query`` (map form); ``<Headers>`` → ``headers`` whose child elements are per-header overrides
(``<Authorization KeyChance="0%"/>``); ``<Cookie>``/``<Cookies>`` → ``cookies``; ``<Body Pointer="/a/*/b" …/>``
→ one ``body`` rule. Attributes: ``Probability``, ``AttackSet``, ``MaxAttacks``, ``KeyChance``,
``KeyAttacks``, ``ValueChance``, ``ValueAttacks``, ``Pointer``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from flagbridge.traffic.errors import PlanError

MAX_XML_BYTES = 1_000_000
MAX_DEPTH = 16
MAX_ELEMENTS = 10_000

_QUOTES = {
    '"': '"',
    "'": "'",
    "\u201c": "\u201d",
    "\u201d": "\u201d",
    "\u201e": "\u201c",
    "\u2018": "\u2019",
    "\u00ab": "\u00bb",
}
_STRAIGHT = {'"', "'"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)([^;\s<>]{0,40};?)")
_DECLARATION = re.compile(r"<!(?!--)")
_DECLARATION_REFUSED = (
    "DOCTYPE, ENTITY and other <! declarations are refused: entity expansion and external entities are never "
    "processed in a traffic plan"
)
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_REFERENCE = re.compile(r"&(amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")

REQUEST_LEVEL = frozenset({"Method", "Host", "Path", "QueryLine", "Query", "Headers", "Cookie", "Cookies", "Body"})
MAPS = frozenset({"Headers", "Cookie", "Cookies", "Query"})
_ELEMENTS = {
    "Method": "method",
    "Host": "host",
    "Path": "path",
    "QueryLine": "query",
    "Query": "query",
    "Headers": "headers",
    "Cookie": "cookies",
    "Cookies": "cookies",
}
_ATTRIBUTES = {
    "Probability": "probability",
    "AttackSet": "attack_set",
    "MaxAttacks": "max_attacks",
    "KeyChance": "key_chance",
    "KeyAttacks": "key_attacks",
    "ValueChance": "value_chance",
    "ValueAttacks": "value_attacks",
    "Pointer": "pointer",
}


@dataclass
class XmlElement:
    name: str
    attributes: dict[str, str]
    line: int
    children: list[XmlElement] = field(default_factory=list)


def _unescape(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _PREDEFINED:
            return _PREDEFINED[name]
        code = int(name[2:], 16) if name.startswith("#x") else int(name[1:])
        return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"

    return _REFERENCE.sub(replace, value)


def _runaway(value: str) -> int | None:
    """Where `` Name =`` ends ``value`` (the next attribute, read into a value whose closing quote is missing).

    A scan from the end, linear in the value: the regular expression ``\\s+NAME\\s*=\\s*$`` searched from
    every start backtracks over each run of spaces, quadratic in a value of spaces.
    """
    end = len(value.rstrip())
    if not value[:end].endswith("="):
        return None
    end = len(value[: end - 1].rstrip())
    start = end
    while start > 0 and (value[start - 1].isascii() and (value[start - 1].isalnum() or value[start - 1] in "_.:-")):
        start -= 1
    if start == end or _NAME.fullmatch(value, start, end) is None:
        return None
    spaces = len(value[:start].rstrip())
    return spaces if spaces < start else None


class _Tokenizer:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.warnings: list[str] = []
        self.root: XmlElement | None = None
        self.stack: list[XmlElement] = []
        self.count = 0
        self._newlines = [match.start() for match in re.finditer("\n", text)]

    def line(self, position: int) -> int:
        """1-based line of ``position`` (a bisection: warnings on a large file stay linear)."""
        return bisect.bisect_right(self._newlines, position - 1) + 1

    def error(self, position: int, message: str) -> PlanError:
        return PlanError(f"{self.source}: line {self.line(position)}: {message}")

    def warn(self, position: int, message: str) -> None:
        self.warnings.append(f"{self.source}: line {self.line(position)}: {message}")

    def run(self) -> XmlElement:
        text = self.text
        declaration = _DECLARATION.search(text)
        if declaration is not None:
            raise self.error(declaration.start(), _DECLARATION_REFUSED)
        entity = _ENTITY.search(text)
        if entity is not None:
            raise self.error(
                entity.start(),
                f"entity reference '&{entity.group(1)}' refused: a plan may use only &amp; &lt; &gt; &quot; &apos; "
                "and numeric character references (entities are never expanded)",
            )
        while self.pos < len(text):
            start = text.find("<", self.pos)
            if start < 0:
                self._text(self.pos, len(text))
                break
            self._text(self.pos, start)
            if text.startswith("<!--", start):
                end = text.find("-->", start + 4)
                if end < 0:
                    raise self.error(start, "comment never closed (missing -->)")
                self.pos = end + 3
            elif text.startswith("<!", start):
                raise self.error(start, _DECLARATION_REFUSED)
            elif text.startswith("<?", start):
                end = text.find("?>", start + 2)
                if end < 0:
                    raise self.error(start, "processing instruction never closed (missing ?>)")
                self.pos = end + 2
            else:
                self.pos = self._tag(start)
        while self.stack:
            element = self.stack.pop()
            self.warn(
                len(text), f"<{element.name}> (line {element.line}) never closed: inferred </{element.name}> at the end"
            )
        if self.root is None:
            raise self.error(0, "no <Request> element found")
        return self.root

    def _text(self, start: int, end: int) -> None:
        chunk = self.text[start:end]
        if chunk.strip():
            self.warn(start, f"text outside attributes ignored: {chunk.strip()[:40]!r}")

    def _tag(self, start: int) -> int:
        text = self.text
        pos = start + 1
        closing = text.startswith("/", pos)
        if closing:
            pos += 1
        match = _NAME.match(text, pos)
        if match is None:
            raise self.error(start, f"expected an element name after '<', got {text[pos : pos + 10]!r}")
        name = match.group(0)
        pos = match.end()
        if closing:
            end = text.find(">", pos)
            if end < 0:
                raise self.error(start, f"</{name} never ends (missing >)")
            self._close(name, start)
            return end + 1
        attributes: dict[str, str] = {}
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                raise self.error(start, f"<{name} never ends (missing >)")
            if text.startswith("/>", pos):
                self._open(name, attributes, start, self_closing=True)
                return pos + 2
            if text[pos] == ">":
                self._open(name, attributes, start, self_closing=False)
                return pos + 1
            pos = self._attribute(name, attributes, pos)

    def _attribute(self, element: str, attributes: dict[str, str], pos: int) -> int:
        text = self.text
        match = _NAME.match(text, pos)
        if match is None:
            raise self.error(pos, f"<{element}>: unexpected {text[pos]!r} where an attribute name should be")
        attribute = match.group(0)
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith("=", pos):
            raise self.error(pos, f'<{element}>: attribute {attribute} has no value (expected {attribute}="...")')
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if attribute in attributes:
            raise self.error(pos, f"<{element}>: attribute {attribute} given twice")
        quote = text[pos] if pos < len(text) else ""
        if quote in _QUOTES:
            value, pos = self._quoted(element, attribute, pos)
        else:
            end = pos
            while end < len(text) and not text[end].isspace() and text[end] != ">" and not text.startswith("/>", end):
                end += 1
            value = text[pos:end]
            self.warn(pos, f'<{element}> {attribute}: unquoted value {value!r} read as "{value}"')
            pos = end
        attributes[attribute] = _unescape(value)
        return pos

    def _quoted(self, element: str, attribute: str, pos: int) -> tuple[str, int]:
        text = self.text
        opening = text[pos]
        closers = {opening, _QUOTES[opening]} if opening in _STRAIGHT else set(_QUOTES.values()) | {"\u201c", '"'}
        end = pos + 1
        while end < len(text) and text[end] not in closers and text[end] not in "\n<>":
            end += 1
        if end < len(text) and text[end] in closers:
            closing = text[end]
            value = text[pos + 1 : end]
            runaway = _runaway(value)
            if runaway is not None:  # Probability="5% AttackSet="x": the quote after 5% is missing
                value = value[:runaway]
                self.warn(pos, f'<{element}> {attribute}: closing quote missing, read as "{value}"')
                return value, pos + 1 + runaway
            if opening not in _STRAIGHT or closing not in _STRAIGHT:
                self.warn(pos, f'<{element}> {attribute}: curly quotes {opening}{value}{closing} read as "{value}"')
            return value, end + 1
        value = text[pos + 1 : end].rstrip()
        if value.endswith("/"):
            value = value[:-1].rstrip()
            end = text.rfind("/", pos, end)
        self.warn(pos, f'<{element}> {attribute}: closing quote missing, read as "{value}"')
        return value, end

    def _open(self, name: str, attributes: dict[str, str], position: int, self_closing: bool) -> None:
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise self.error(position, f"more than {MAX_ELEMENTS} elements")
        element = XmlElement(name, attributes, self.line(position))
        if name in REQUEST_LEVEL and self.stack and self.stack[-1].name in MAPS:
            closed = self.stack.pop()
            self.warn(
                position,
                f"<{name}> is a request-level element: inferred </{closed.name}> (opened line {closed.line}) before it",
            )
        if not self.stack:
            if self.root is not None:
                raise self.error(position, f"<{name}> after the end of <{self.root.name}>: a plan has one <Request>")
            self.root = element
        else:
            self.stack[-1].children.append(element)
        if not self_closing:
            if len(self.stack) >= MAX_DEPTH:
                raise self.error(position, f"elements nested deeper than {MAX_DEPTH}")
            self.stack.append(element)

    def _close(self, name: str, position: int) -> None:
        if not any(element.name == name for element in self.stack):
            self.warn(position, f"</{name}> closes nothing open: ignored")
            return
        while self.stack:
            element = self.stack.pop()
            if element.name == name:
                return
            self.warn(
                position,
                f"<{element.name}> (line {element.line}) never closed: inferred </{element.name}> before </{name}>",
            )


def parse_xml_tree(raw: bytes | str, source: str = "<plan.xml>") -> tuple[XmlElement, list[str]]:
    """Tokenize the XML form into elements; return the root and the repair warnings."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_XML_BYTES:
            raise PlanError(f"{source}: larger than {MAX_XML_BYTES} bytes")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PlanError(f"{source}: not UTF-8 text: {exc}") from exc
    else:
        if len(raw) > MAX_XML_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_XML_BYTES:
            raise PlanError(f"{source}: larger than {MAX_XML_BYTES} bytes")
        text = raw
    tokenizer = _Tokenizer(text, source)
    root = tokenizer.run()
    return root, tokenizer.warnings


def _convert_attributes(
    element: XmlElement, key: str, source: str, locations: dict[str, str], allowed: frozenset[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute, value in element.attributes.items():
        name = _ATTRIBUTES.get(attribute)
        if name is None or name not in allowed:
            expected = ", ".join(sorted(a for a, n in _ATTRIBUTES.items() if n in allowed))
            raise PlanError(
                f"{source}: line {element.line}: <{element.name}> has unknown attribute {attribute} "
                f"(expected {expected})"
            )
        out[name] = value
        locations[f"{key}.{name}"] = f"XML line {element.line}, <{element.name} {attribute}>"
    return out


_ELEMENT_ATTRS = frozenset({"probability", "attack_set", "max_attacks"})
_MAP_ATTRS = frozenset({"key_chance", "key_attacks", "value_chance", "value_attacks"})


def xml_plan_document(raw: bytes | str, source: str = "<plan.xml>") -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Read the XML form: return the plan document (YAML shape), the repair warnings, and key → XML location."""
    root, warnings = parse_xml_tree(raw, source)
    if root.name != "Request":
        raise PlanError(f"{source}: line {root.line}: the root element must be <Request>, got <{root.name}>")
    locations: dict[str, str] = {}
    document: dict[str, Any] = _convert_attributes(root, "", source, locations, frozenset({"max_attacks"}))
    locations = {key.lstrip("."): value for key, value in locations.items()}
    body: list[dict[str, Any]] = []
    for child in root.children:
        if child.name == "Body":
            key = f"body.{len(body)}"
            body.append(_convert_attributes(child, key, source, locations, _ELEMENT_ATTRS | _MAP_ATTRS | {"pointer"}))
            continue
        target = _ELEMENTS.get(child.name)
        if target is None:
            known = ", ".join(sorted(REQUEST_LEVEL))
            raise PlanError(
                f"{source}: line {child.line}: unknown element <{child.name}> in <Request> (expected {known})"
            )
        if target in document:
            raise PlanError(f"{source}: line {child.line}: <{child.name}> given twice (as '{target}')")
        if child.name in MAPS:
            entry = _convert_attributes(child, target, source, locations, _ELEMENT_ATTRS | _MAP_ATTRS)
            keys: dict[str, Any] = {}
            for override in child.children:
                where = f"{target}.keys.{override.name}"
                keys[override.name] = _convert_attributes(override, where, source, locations, _MAP_ATTRS)
            if keys:
                entry["keys"] = keys
        else:
            if child.children:
                raise PlanError(f"{source}: line {child.line}: <{child.name}> takes no child elements")
            entry = _convert_attributes(child, target, source, locations, _ELEMENT_ATTRS)
        document[target] = entry
    if body:
        document["body"] = body
    return document, warnings, locations
