"""A hostile corpus per parser of user input: the XML plan tokenizer, YAML, JSON, HAR, the testers cursor, the
CLI's duration and rate.

Grown from issue 17's classes: sizes at and past the limit (refused before parsing), inputs that made a parser
quadratic (an attribute value of spaces, a runaway quote, HAR entries alike in their first 60 characters),
bombs (YAML aliases, XML entities), nesting past the recursion limit, numbers past every float, encodings
(stray bytes, lone surrogates, byte order marks). Every case must end in its expected outcome (a result, or
the parser's one-line error), under 50 MB (tracemalloc), and the worst inputs of each parser must scale
linearly (:mod:`tests.hostile.bounds`: a CPU-time ratio, never a wall-clock bound).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flagbridge.documents import MAX_DOCUMENT_BYTES, MAX_HAR_BYTES, load_json, load_yaml
from flagbridge.testers.registry import InvalidTesterError, decode_cursor, encode_cursor
from flagbridge.traffic.errors import ModelError, PlanError, SafetyError
from flagbridge.traffic.har import import_har
from flagbridge.traffic.plan import parse_plan
from flagbridge.traffic.planxml import MAX_XML_BYTES, xml_plan_document
from flagbridge.traffic.safety import Allowlist, parse_rate
from flagbridge_ops.commands.testers import parse_duration
from flagbridge_ops.errors import UsageError
from tests.hostile.bounds import MAX_PEAK_BYTES, MAX_SCALING_RATIO, outcome, peak_memory, scaling_ratio

MIN_CASES_PER_PARSER = 60
OK = "ok"


@dataclass(frozen=True)
class Case:
    name: str
    value: Any
    expected: Any  # OK, or the exception class the parse must raise


@dataclass(frozen=True)
class Parser:
    name: str
    parse: Callable[[Any], Any]
    cases: list[Case]
    worst: dict[str, tuple[Callable[[int], Any], int]]  # input of size n, and n for the scaling test


# ---- XML plans --------------------------------------------------------------------------------------------


def _xml(attributes: str = 'MaxAttacks="1"', inner: str = "") -> str:
    return f"<Request {attributes}>{inner}</Request>"


def _xml_cases() -> list[Case]:
    cases = [
        Case("published_form", "<Request MaxAttacks=“3”>\n<Headers KeyChance=“2%” KeyAttacks=“xss”>\n", OK),
        Case("plain", _xml(), OK),
        Case("comment", "<!-- c -->" + _xml(), OK),
        Case("processing_instruction", '<?xml version="1.0"?>' + _xml(), OK),
        Case("numeric_reference", _xml('MaxAttacks="&#49;"'), OK),
        Case("doctype", '<!DOCTYPE r [<!ENTITY a "b">]>' + _xml(), PlanError),
        Case("entity", _xml('MaxAttacks="&a;"'), PlanError),
        Case("external_entity", '<!ENTITY x SYSTEM "file:///etc/passwd">' + _xml(), PlanError),
        Case("xinclude", _xml(inner='<xi:include href="/etc/passwd"/>'), PlanError),
        Case("cdata", _xml(inner="<![CDATA[x]]>"), PlanError),
        Case("billion_laughs", '<!DOCTYPE l [<!ENTITY l "l">' + '<!ENTITY l1 "&l;&l;">' * 9 + "]>" + _xml(), PlanError),
        Case("unclosed_comment", "<!--" + "x" * 1000, PlanError),
        Case("unclosed_pi", "<?xml" + " " * 1000, PlanError),
        Case("no_request", "<Plan/>", PlanError),
        Case("empty", "", PlanError),
        Case("only_text", "hello", PlanError),
        Case("nul", _xml() + "\x00", OK),
        Case("lone_surrogate", _xml('MaxAttacks="\ud800"'), PlanError),
        Case("bytes_bom", ("\ufeff" + _xml()).encode("utf-8"), OK),
        Case("bytes_invalid_utf8", b"<Request MaxAttacks='\xff'/>", PlanError),
        Case("over_limit_bytes", b" " * (MAX_XML_BYTES + 1), PlanError),
        Case("over_limit_text", " " * (MAX_XML_BYTES + 1), PlanError),
        Case("over_limit_multibyte_text", "\u00e9" * (MAX_XML_BYTES // 2 + 1), PlanError),
        Case("too_deep", "<Request>" + "<Headers>" * 40, PlanError),
        Case("too_many_elements", "<Request>" + "<Body/>" * 10_001, PlanError),
        Case("twice_same_attribute", '<Request MaxAttacks="1" MaxAttacks="2"/>', PlanError),
        Case("two_roots", "<Request/><Request/>", PlanError),
    ]
    for size in (1_000, 50_000, 500_000):  # issue 17: 50,000 spaces took 17-21 s to refuse
        cases += [
            Case(f"attribute_of_spaces_{size}", '<Request MaxAttacks="' + " " * size + '"/>', PlanError),
            Case(f"attribute_of_spaces_then_equals_{size}", '<Request MaxAttacks="' + " " * size + '="/>', PlanError),
            Case(f"runaway_quote_{size}", '<Request MaxAttacks="1' + " " * size + 'A="2"/>', PlanError),
            Case(f"unclosed_curly_quote_{size}", "<Request MaxAttacks=“" + " " * size, PlanError),
            Case(f"unquoted_value_{size}", "<Request MaxAttacks=" + "1" * size + "/>", PlanError),
            Case(f"many_attributes_{size}", "<Request " + 'a="1" ' * (size // 6) + "/>", PlanError),
            Case(f"many_lines_{size}", "<Request>" + "\n" * size + "</Request>", OK),
            Case(f"many_unknown_closes_{size}", "<Request>" + "</X>" * (size // 4), OK),
            Case(f"text_outside_{size}", _xml() + "x" * size, OK),
            Case(f"tag_never_ends_{size}", "<Request" + " " * size, PlanError),
            Case(f"name_of_equals_{size}", "<Request " + "=" * size + ">", PlanError),
            Case(f"many_lt_{size}", "<" * size, PlanError),
            Case(f"many_amp_{size}", _xml(inner="&" * size), PlanError),
            Case(f"quotes_{size}", _xml('MaxAttacks="' + '"' * size), PlanError),
        ]
    return cases


def _parse_xml_plan(value: Any) -> Any:
    """The XML form as a run or the CLI reads it: tokenized, then the plan document checked."""
    document, _, locations = xml_plan_document(value, "plan.xml")
    return parse_plan(document, "plan.xml", None, (), locations)


XML = Parser(
    "xml",
    _parse_xml_plan,
    _xml_cases(),
    {
        "attribute_of_spaces": (lambda n: '<Request MaxAttacks="' + " " * n + '"/>', 25_000),
        "attribute_of_spaces_then_equals": (lambda n: '<Request MaxAttacks="' + " " * n + 'A ="/>', 25_000),
        "runaway_quote": (lambda n: '<Request MaxAttacks="1' + " A" * (n // 2) + '="2"/>', 25_000),
        "many_attributes": (lambda n: "<Request " + 'a="1" ' * (n // 6) + "/>", 25_000),
        "many_lines": (lambda n: "<Request>" + "<Body/>\n" * (n // 8) + "</Request>", 25_000),
    },
)


# ---- YAML (plans, models, attack set files) ----------------------------------------------------------------


def _alias_bomb(levels: int, width: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _yaml_cases() -> list[Case]:
    cases = [
        Case("plain_mapping", "name: p\nmax_attacks: 1\n", OK),
        Case("flow_mapping", "{name: p, max_attacks: 1}", OK),
        Case("empty", "", OK),
        Case("comment_only", "# nothing\n", OK),
        Case("alias_bomb_9x9", _alias_bomb(9, 9), PlanError),  # issue 17: 520 bytes, past 800 MB
        Case("alias_bomb_7x7", _alias_bomb(7, 7), PlanError),
        Case("one_anchor", "a: &x 1\n", PlanError),
        Case("one_alias", "a: 1\nb: *x\n", PlanError),
        Case("merge_key", "base: &b {a: 1}\nc:\n  <<: *b\n", PlanError),
        Case("anchor_on_mapping", "a: &m\n  b: 1\n", PlanError),
        Case("python_object_tag", "a: !!python/object/apply:os.system ['true']", PlanError),
        Case("python_name_tag", "a: !!python/name:os.system", PlanError),
        Case("unknown_tag", "a: !custom 1", PlanError),
        Case("binary_tag", "a: !!binary aGVsbG8=", OK),
        Case("unclosed_flow", "a: [b", PlanError),
        Case("bad_indentation", "a:\n  b: 1\n c: 2\n", PlanError),
        Case("tab_indentation", "a:\n\tb: 1\n", PlanError),
        Case("duplicate_documents", "a: 1\n---\nb: 2\n", PlanError),
        Case("nul", "a: \x00\n", PlanError),
        Case("lone_surrogate", "a: \ud800\n", PlanError),
        Case("bytes_invalid_utf8", b"a: \xff\n", PlanError),
        Case("bytes_bom", "\ufeffa: 1\n".encode(), OK),
        Case("huge_integer", "a: " + "9" * 5000 + "\n", PlanError),  # int() refuses over 4300 digits
        Case("integer_of_4300_digits", "a: " + "9" * 4300 + "\n", OK),
        Case("huge_float", "a: 1e999999\n", OK),
        Case("over_limit_bytes", b"a: 1\n" + b"#" * MAX_DOCUMENT_BYTES, PlanError),
        Case("over_limit_text", "a: 1\n" + "#" * MAX_DOCUMENT_BYTES, PlanError),
        Case("deep_flow_nesting", "[" * 100_000 + "]" * 100_000, PlanError),
        Case("deep_block_nesting", "".join(f"{' ' * i}a:\n" for i in range(2000)), PlanError),
        Case("nesting_at_the_limit", "[" * 64 + "]" * 64, OK),
        Case("nesting_past_the_limit", "[" * 65 + "]" * 65, PlanError),
    ]
    for size in (1_000, 10_000, 60_000):  # the pure-Python loader is slow (linear) under tracemalloc
        cases += [
            Case(f"long_plain_scalar_{size}", "a: " + "x" * size + "\n", OK),
            Case(f"scalar_of_spaces_{size}", "a: x" + " " * size + "y\n", OK),
            Case(f"long_quoted_scalar_{size}", 'a: "' + "x " * (size // 2) + '"\n', OK),
            Case(f"unclosed_quote_{size}", 'a: "' + "x" * size, PlanError),
            Case(f"many_keys_{size}", "".join(f"k{i}: {i}\n" for i in range(size // 8)), OK),
            Case(f"long_list_{size}", "a: [" + "1, " * (size // 3) + "1]\n", OK),
            Case(f"many_comments_{size}", "#\n" * (size // 2) + "a: 1\n", OK),
            Case(f"many_blank_lines_{size}", "\n" * size + "a: 1\n", OK),
            Case(f"long_key_{size}", "k" * size + ": 1\n", OK if size <= 1024 else PlanError),  # YAML's limit
            Case(f"many_aliases_{size}", "a: &a 1\nb: [" + "*a, " * (size // 4) + "*a]\n", PlanError),
            Case(f"many_documents_{size}", "---\n" * (size // 4), PlanError),
        ]
    return cases


YAML = Parser(
    "yaml",
    lambda value: load_yaml(value, "plan.yaml", PlanError),
    _yaml_cases(),
    {
        "scalar_of_spaces": (lambda n: "a: x" + " " * n + "y\n", 10_000),
        "long_quoted_scalar": (lambda n: 'a: "' + "x " * (n // 2) + '"\n', 10_000),
        "many_keys": (lambda n: "".join(f"k{i}: {i}\n" for i in range(n // 8)), 10_000),
        "deep_flow_nesting": (lambda n: "[" * n + "]" * n, 20_000),
        "many_aliases": (lambda n: "a: &a 1\nb: [" + "*a, " * (n // 4) + "*a]\n", 10_000),
    },
)


# ---- JSON (plans, models as text; the HAR) -----------------------------------------------------------------


def _json_cases() -> list[Case]:
    cases = [
        Case("object", '{"name": "p"}', OK),
        Case("array", "[1, 2]", OK),
        Case("nan", '{"a": NaN}', PlanError),
        Case("infinity", '{"a": Infinity}', PlanError),
        Case("negative_infinity", '{"a": -Infinity}', PlanError),
        Case("float_overflow", '{"a": 1e400}', OK),
        Case("huge_integer_4300", '{"a": ' + "9" * 4300 + "}", OK),
        Case("huge_integer_5000", '{"a": ' + "9" * 5000 + "}", PlanError),
        Case("trailing_comma", '{"a": 1,}', PlanError),
        Case("single_quotes", "{'a': 1}", PlanError),
        Case("comment", '{"a": 1} // x', PlanError),
        Case("two_documents", '{"a": 1}{"b": 2}', PlanError),
        Case("empty", "", PlanError),
        Case("lone_surrogate_escape", '{"a": "\\ud800"}', OK),
        Case("lone_surrogate_text", '{"a": "\ud800"}', OK),
        Case("bytes_invalid_utf8", b'{"a": "\xff"}', PlanError),
        Case("bytes_utf16", '{"a": 1}'.encode("utf-16"), OK),
        Case("bytes_bom", '\ufeff{"a": 1}'.encode(), OK),  # bytes: the encoding is detected, BOM included
        Case("nul_in_string", '{"a": "\x00"}', PlanError),
        Case("duplicate_keys", '{"a": 1, "a": 2}', OK),
        Case("control_character_in_string", '{"a": "\x1b[31m"}', PlanError),
        Case("escaped_control_character", '{"a": "\\u001b[31m"}', OK),
        Case("over_limit_bytes", b'"' + b"x" * MAX_DOCUMENT_BYTES + b'"', PlanError),
        Case("over_limit_text", '"' + "x" * MAX_DOCUMENT_BYTES + '"', PlanError),
        Case("over_limit_multibyte", '"' + "\u00e9" * (MAX_DOCUMENT_BYTES // 2) + '"', PlanError),
    ]
    for depth in (10, 1_000, 10_000, 100_000, 400_000):
        cases += [
            Case(f"nested_arrays_{depth}", "[" * depth + "]" * depth, OK if depth <= 10 else PlanError),
            Case(f"nested_objects_{depth}", '{"a":' * depth + "1" + "}" * depth, OK if depth <= 10 else PlanError),
            Case(f"unclosed_arrays_{depth}", "[" * depth, PlanError),
        ]
    for size in (1_000, 100_000, 900_000):
        cases += [
            Case(f"long_string_{size}", '"' + "x" * size + '"', OK),
            Case(f"escapes_{size}", '"' + "\\u0041" * (size // 6) + '"', OK),
            Case(f"whitespace_{size}", " " * size + "1", OK),
            Case(f"long_array_{size}", "[" + "1," * (size // 2) + "1]", OK),
            Case(f"many_keys_{size}", "{" + ",".join(f'"k{i}":1' for i in range(size // 10)) + "}", OK),
            Case(f"unterminated_string_{size}", '"' + "x" * size, PlanError),
            Case(f"long_number_{size}", "0." + "1" * size, OK),
        ]
    return cases


JSON = Parser(
    "json",
    lambda value: load_json(value, "plan.json", PlanError),
    _json_cases(),
    {
        "long_string": (lambda n: '"' + "x" * n + '"', 100_000),
        "long_array": (lambda n: "[" + "1," * (n // 2) + "1]", 100_000),
        "nested_arrays": (lambda n: "[" * n + "]" * n, 50_000),
    },
)


# ---- HAR import ----------------------------------------------------------------------------------------------

ALLOWLIST = Allowlist.from_document(["api.shop.example", "127.0.0.1"])


def _har(*entries: Any) -> str:
    return json.dumps({"log": {"version": "1.2", "entries": list(entries)}})


def _entry(url: str, method: str = "GET", **request: Any) -> dict[str, Any]:
    return {"request": {"method": method, "url": url, "headers": [], **request}}


def _parse_har(value: Any) -> Any:
    return import_har(load_json(value, "session.har", ModelError, MAX_HAR_BYTES), ALLOWLIST, source="session.har")


def _har_cases() -> list[Case]:
    good = "https://api.shop.example/cart"
    cases = [
        Case("one_entry", _har(_entry(good)), OK),
        Case("credentials_in_url", _har(_entry("http://user:secret@api.shop.example/login")), OK),
        Case("user_only_in_url", _har(_entry("http://user@api.shop.example/login")), OK),
        Case("off_allowlist_only", _har(_entry("https://evil.example/")), SafetyError),
        Case("no_entries", json.dumps({"log": {}}), ModelError),
        Case("not_an_object", "[]", ModelError),
        Case("entry_not_object", _har("x"), ModelError),
        Case("url_not_string", _har({"request": {"url": 5}}), ModelError),
        Case("url_port_99999", _har(_entry("https://api.shop.example:99999/")), ModelError),
        Case("url_two_ports", _har(_entry("https://api.shop.example:1:2/")), ModelError),
        Case("url_broken_ipv6", _har(_entry("http://[::1/")), ModelError),
        Case("url_negative_port", _har(_entry("http://127.0.0.1:-1/")), ModelError),
        Case("javascript_url", _har(_entry("javascript:alert(1)"), _entry(good)), OK),
        Case("data_url", _har(_entry("data:text/plain,x"), _entry(good)), OK),
        Case("secret_headers", _har(_entry(good, headers=[{"name": "Authorization", "value": "Bearer s"}])), OK),
        Case("cookies", _har(_entry(good, cookies=[{"name": "sid", "value": "s"}])), OK),
        Case("headers_not_list", _har(_entry(good, headers="x")), OK),
        Case("json_body", _har(_entry(good, "POST", postData={"text": '{"a": 1}'})), OK),
        Case("deep_json_body", _har(_entry(good, "POST", postData={"text": "[" * 100_000})), OK),
        Case("bytes_invalid_utf8", b'{"log": {"entries": ["\xff"]}}', ModelError),
        Case("nan", '{"log": {"entries": NaN}}', ModelError),
        Case("deep_nesting", '{"log": ' * 100_000, ModelError),
        Case("over_limit", b" " * (MAX_HAR_BYTES + 1), ModelError),
        Case("empty", "", ModelError),
    ]
    for count in (10, 1_000, 5_000):
        long = "https://api.shop.example/" + "p" * 70  # alike in their first 60 characters: the same base name
        cases += [
            Case(f"entries_same_base_{count}", _har(*(_entry(f"{long}/{i}") for i in range(count))), OK),
            Case(f"entries_same_url_{count}", _har(*(_entry(good) for _ in range(count))), OK),
            Case(f"entries_distinct_{count}", _har(*(_entry(f"{good}/{i}") for i in range(count))), OK),
            Case(
                f"entries_off_allowlist_{count}",
                _har(*(_entry(f"https://h{i}.example/") for i in range(count))),
                SafetyError,
            ),
            Case(
                f"entries_with_credentials_{count}",
                _har(*(_entry(f"https://u:p{i}@api.shop.example/{i}") for i in range(count))),
                OK,
            ),
            Case(
                f"entries_many_headers_{count}",
                _har(_entry(good, headers=[{"name": f"h{i}", "value": "v"} for i in range(count)])),
                OK,
            ),
            Case(
                f"entries_many_query_{count}",
                _har(_entry(good, queryString=[{"name": "q", "value": str(i)} for i in range(count)])),
                OK,
            ),
            Case(f"entries_mixed_methods_{count}", _har(*(_entry(good, method=f"M{i}") for i in range(count))), OK),
            Case(f"entries_bad_entries_{count}", _har(*([_entry(good)] + [{"request": {}}] * count)), ModelError),
            Case(
                f"entries_punctuation_paths_{count}",
                _har(*(_entry(good + "/" + "!" * (i + 1)) for i in range(count))),
                OK,
            ),
            Case(f"long_url_{count}", _har(_entry(good + "/" + "a" * count * 10)), OK),
            Case(f"long_body_{count}", _har(_entry(good, "POST", postData={"text": "x" * count * 100})), OK),
        ]
    return cases


HAR = Parser(
    "har",
    _parse_har,
    _har_cases(),
    {
        "entries_same_base": (
            lambda n: _har(*(_entry("https://api.shop.example/" + "p" * 70 + f"/{i}") for i in range(n))),
            500,
        ),
        "entries_punctuation_paths": (
            lambda n: _har(*(_entry("https://api.shop.example/" + "!" * (i + 1)) for i in range(n))),
            300,
        ),
    },
)


# ---- the testers API's cursor ---------------------------------------------------------------------------------


def _b64(raw: str | bytes) -> str:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _cursor_cases() -> list[Case]:
    cases = [
        Case("of_this_api", encode_cursor("user#qa-1"), OK),
        Case("of_this_api_unicode", encode_cursor("user#qa-\u00e9"), OK),
        Case("of_this_api_padded", encode_cursor("user#qa-1") + "==", OK),
        Case("nested_arrays_1536", _b64("[" * 1536), InvalidTesterError),  # issue 17: a RecursionError escaped
        Case("nested_objects", _b64('{"after":' * 700), InvalidTesterError),
        Case("empty", "", InvalidTesterError),
        Case("not_base64", "!!!", InvalidTesterError),
        Case("not_json", _b64("hello"), InvalidTesterError),
        Case("json_list", _b64('["user#a"]'), InvalidTesterError),
        Case("after_number", _b64('{"after":1}'), InvalidTesterError),
        Case("after_no_hash", _b64('{"after":"user"}'), InvalidTesterError),
        Case("after_bad_type", _b64('{"after":"us er#a"}'), InvalidTesterError),
        Case("after_control", _b64('{"after":"user#a\\nb"}'), InvalidTesterError),
        Case("after_bidi", _b64('{"after":"user#a\\u202eb"}'), InvalidTesterError),
        Case("after_zero_width", _b64('{"after":"user#a\\u200bb"}'), InvalidTesterError),
        Case("after_lone_surrogate", _b64('{"after":"user#a\\ud800"}'), InvalidTesterError),
        Case("after_huge_number", _b64('{"after":' + "9" * 1400 + "}"), InvalidTesterError),
        Case("after_nan", _b64('{"after":NaN}'), InvalidTesterError),
        Case("invalid_utf8", _b64(b'{"after":"user#\xff"}'), InvalidTesterError),
        Case("dynamodb_key", _b64('{"pk":{"S":"user#a"}}'), InvalidTesterError),
        Case("extra_keys", _b64('{"after":"user#a","x":1}'), OK),
        Case("spaces_in_json", _b64('{ "after" : "user#a" }'), InvalidTesterError),
        Case("over_limit", "A" * 2049, InvalidTesterError),
        Case("at_limit", "A" * 2048, InvalidTesterError),
        Case("percent_encoded", "%7B%22after%22", InvalidTesterError),
        Case("over_limit_huge", "A" * 10_000_000, InvalidTesterError),
    ]
    for size in (10, 100, 500, 1_000, 1_500):
        cases += [
            Case(f"nested_arrays_{size}", _b64("[" * size), InvalidTesterError),
            Case(f"long_key_{size}", encode_cursor("user#" + "k" * min(size, 250)), OK),
            Case(
                f"key_over_limit_{size}", _b64(json.dumps({"after": "user#" + "k" * (size + 250)})), InvalidTesterError
            ),
            Case(f"garbage_{size}", "x" * size, InvalidTesterError),
            Case(f"whitespace_{size}", _b64(" " * size), InvalidTesterError),
            Case(f"escapes_{size}", _b64('{"after":"user#' + "\\u0041" * (size // 6) + '"}'), OK),
            Case(f"after_then_nesting_{size}", _b64('{"after":' + "[" * size), InvalidTesterError),
        ]
    return cases


CURSOR = Parser(
    "cursor",
    decode_cursor,
    _cursor_cases(),
    {"nested_arrays": (lambda n: _b64("[" * n), 150), "garbage": (lambda n: "A" * n * 1000, 1000)},
)


# ---- the CLI's duration (testers add --for) and rate (traffic run --rate) ------------------------------------


def _duration_cases() -> list[Case]:
    cases = [
        Case(text.replace(" ", "_") or "empty", text, expected)
        for text, expected in [
            ("90s", OK),
            ("30m", OK),
            ("2h", OK),
            ("7d", OK),
            ("1h30m", OK),
            ("1h 30m", OK),
            (" 2H ", OK),
            ("0s", OK),
            ("", UsageError),
            ("s", UsageError),
            ("1", UsageError),
            ("1w", UsageError),
            ("1.5h", UsageError),
            ("-1h", UsageError),
            ("1h-", UsageError),
            ("h1", UsageError),
            ("1e3s", UsageError),
            ("0x10s", UsageError),
            ("one hour", UsageError),
            ("1h;rm", UsageError),
            ("1h\x00", UsageError),
            ("1h\n2m", UsageError),
            ("\u0661h", OK),  # an Arabic-Indic digit: int() reads it as 1
            ("1\u202eh", UsageError),
            ("9" * 12 + "s", OK),
            ("9" * 13 + "s", UsageError),
            ("9" * 4301 + "s", UsageError),  # int() refuses over 4300 digits: refused before it
            ("9" * 100_000 + "s", UsageError),
        ]
    ]
    for count in (1, 5, 10, 50, 100, 1_000, 10_000):
        cases += [
            Case(f"repeated_units_{count}", "1s" * count, OK if count * 2 <= 64 else UsageError),
            Case(f"spaces_{count}", " " * count + "1s", OK),
            Case(f"inner_spaces_{count}", "1" + " " * count + "s", OK if count + 2 <= 64 else UsageError),
            Case(f"digits_{count}", "1" * count + "s", OK if count <= 12 else UsageError),
            Case(f"junk_{count}", "x" * count, UsageError),
        ]
    return cases


DURATION = Parser(
    "duration",
    parse_duration,
    _duration_cases(),
    {"digits": (lambda n: "1" * n + "s", 200_000), "repeated_units": (lambda n: "1s" * n, 100_000)},
)


def _rate_cases() -> list[Case]:
    cases = [
        Case(text.replace("/", "_per_").replace(" ", "_") or "empty", text, expected)
        for text, expected in [
            ("50/s", OK),
            ("600/m", OK),
            ("1.5/sec", OK),
            (" 10 / second ", OK),
            ("60/minute", OK),
            ("0.06/m", OK),
            ("0/s", SafetyError),
            ("-1/s", SafetyError),
            ("", SafetyError),
            ("50", SafetyError),
            ("50/h", SafetyError),
            ("/s", SafetyError),
            ("1e3/s", SafetyError),
            ("nan/s", SafetyError),
            ("inf/s", SafetyError),
            ("0x10/s", SafetyError),
            ("50/s/s", SafetyError),
            ("50/s\x00", SafetyError),
            ("50/S", SafetyError),
            ("0.00001/s", SafetyError),  # below the minimum: per-worker arithmetic would underflow toward 0
            ("0." + "0" * 30 + "1/s", SafetyError),
            ("9" * 30 + "/s", OK),
            ("9" * 400 + "/s", SafetyError),  # float() is inf: refused by its length first
            ("5\u202e0/s", SafetyError),
            ("\u0665\u0660/s", OK),  # Arabic-Indic digits: float() reads "50"
        ]
    ]
    for count in (1, 10, 30, 100, 1_000, 100_000):
        cases += [
            Case(f"digits_{count}", "1" * count + "/s", OK if count + 2 <= 40 else SafetyError),
            Case(f"fraction_digits_{count}", "1." + "5" * count + "/s", OK if count + 4 <= 40 else SafetyError),
            Case(f"spaces_{count}", "1" + " " * count + "/s", OK if count + 3 <= 40 else SafetyError),
            Case(f"junk_{count}", "x" * count, SafetyError),
            Case(f"zeros_{count}", "0" * count + "/s", SafetyError),
            Case(f"leading_zeros_{count}", "0" * count + "5/s", OK if count + 3 <= 40 else SafetyError),
        ]
    return cases


RATE = Parser(
    "rate",
    parse_rate,
    _rate_cases(),
    {"digits": (lambda n: "1" * n + "/s", 200_000), "spaces": (lambda n: "1" + " " * n + "/s", 200_000)},
)

PARSERS = [XML, YAML, JSON, HAR, CURSOR, DURATION, RATE]


def _case_params() -> list[Any]:
    return [pytest.param(parser, case, id=f"{parser.name}:{case.name}") for parser in PARSERS for case in parser.cases]


def _scaling_params() -> list[Any]:
    return [
        pytest.param(parser, make, size, id=f"{parser.name}:{name}")
        for parser in PARSERS
        for name, (make, size) in parser.worst.items()
    ]


@pytest.mark.parametrize(("parser", "case"), _case_params())
def test_hostile_input_ends_in_its_outcome_within_50_mb(parser: Parser, case: Case) -> None:
    # When the parser reads the hostile input
    result, peak = peak_memory(parser.parse, case.value)

    # Then: exactly the expected outcome (a result, or the parser's own error in one line), under 50 MB
    if case.expected is OK:
        assert not isinstance(result, Exception), f"{case.name}: {type(result).__name__}: {str(result)[:300]}"
    else:
        assert isinstance(result, case.expected), f"{case.name}: expected {case.expected.__name__}, got {result!r}"[
            :500
        ]
        message = str(result)
        assert message.strip() and "\n" not in message and len(message) < 2000, message[:300]
    assert peak < MAX_PEAK_BYTES, f"{case.name}: {peak / 1e6:.1f} MB"


@pytest.mark.parametrize(("parser", "make", "size"), _scaling_params())
def test_the_worst_inputs_scale_linearly(parser: Parser, make: Callable[[int], Any], size: int) -> None:
    # Given an input that made a parser quadratic, at two sizes a factor apart
    # Then the parse's CPU time grows about as the input, not as its square
    ratio = scaling_ratio(parser.parse, make, size)
    assert ratio < MAX_SCALING_RATIO, f"{parser.name}: {ratio:.1f}x the CPU time for 8x the input"


def test_every_parser_has_enough_cases() -> None:
    for parser in PARSERS:
        names = [case.name for case in parser.cases]
        assert len(names) >= MIN_CASES_PER_PARSER, (parser.name, len(names))
        assert len(set(names)) == len(names), f"duplicate case names in {parser.name}"


def test_a_har_import_drops_url_credentials() -> None:
    # Given a HAR whose entry logs in with credentials in its URL (issue 17, class 7)
    har = _har(
        _entry("http://user:secret@api.shop.example/login", "POST"),
        _entry("https://u2:p%40ss@api.shop.example:8443/a"),
    )

    # When it is imported
    imported = _parse_har(har)

    # Then the model's URLs carry no credentials, in its YAML or JSON form, and the warning says they were dropped
    import yaml

    urls = [request["url"] for request in imported.model["requests"]]
    assert urls == ["http://api.shop.example/login", "https://api.shop.example:8443/a"]
    for text in (json.dumps(imported.model), yaml.safe_dump(imported.model)):
        assert "secret" not in text and "user" not in text and "p%40ss" not in text and "@" not in text
    assert any("URL credentials" in warning for warning in imported.warnings), imported.warnings


def test_cursor_outcomes_match_what_the_api_answers() -> None:
    # A cursor this API made is read back as the id it names; anything else is the one refusal
    assert decode_cursor(encode_cursor("user#qa-7")) == "user#qa-7"
    assert isinstance(outcome(decode_cursor, _b64("[" * 1536)), InvalidTesterError)
