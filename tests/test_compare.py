"""Response comparison, noise learning, endpoint naming and the mismatch store: plain data, no I/O."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import brotli
import pytest

from shadow_addon.budget import MemoryBudget
from shadow_addon.compare import (
    MAX_LISTED,
    MAX_VALUE,
    NOT_JSON,
    OTHER,
    CompareConfig,
    Comparison,
    MismatchStore,
    NoiseLearner,
    NoiseSet,
    Reply,
    building,
    compare,
    endpoint,
    parse_ignore,
    pointer,
    record_line,
    request_key,
    skipped,
)
from shadow_addon.compare import pairing as pairing_module
from shadow_addon.compare.endpoints import NAMED_BY, EndpointNamer, naming_fields
from shadow_addon.compare.fields import parse_pointer
from shadow_addon.compare.pairing import PAIR_BYTES, Pairing
from shadow_addon.compare.prints import MAX_DEPTH
from shadow_addon.compare.render import MAX_LABEL, clip
from shadow_addon.compare.reply import content_coding
from shadow_addon.compare.result import MATCH, Difference
from shadow_addon.httpsyntax import FieldView
from shadow_addon.metrics import Metrics

JSON = [("Content-Type", "application/json")]
CFG = CompareConfig()


def js(doc: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply.of(status, JSON if headers is None else headers, json.dumps(doc).encode())


def learn(n: NoiseSet, name: str) -> bool:
    """Teach a field named as in the diff text (`*`: any array index)."""
    if name in ("status", "body"):
        return n.learn(name)
    if name.startswith("header "):
        return n.learn("header", name[7:].lower())
    return n.learn("path", parse_pointer(name, wildcard=True))


def matches(n: NoiseSet, name: str) -> bool:
    """Whether a differing field, named as in the diff text, is noise."""
    if name in ("status", "body"):
        return getattr(n, name)
    if name.startswith("header "):
        return name[7:].lower() in n.headers
    return n.covers(tuple(s for s in parse_pointer(name, wildcard=False) if s is not None))


def learned(n: NoiseSet) -> list[str]:
    out = ["status"] * n.status + ["body"] * n.body + [f"header {h}" for h in sorted(n.headers)]
    return out + sorted(pointer(p) for p in n.paths)


def raw(body: bytes, ctype: str = "application/octet-stream", status: int = 200, limit: int = 1024) -> Reply:
    return Reply.of(status, [("content-type", ctype)], body, limit)


# ------------------------------------------------------------------------------------------ Reply.of


def test_reply_of_keeps_body_under_limit_and_hashes_it() -> None:
    r = Reply.of(201, [(b"X-A", b"1"), ("x-a", " 2 ")], b"hello", limit=5)
    assert (r.status, r.body, r.body_size) == (201, b"hello", 5)
    assert r.body_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert r.headers == [("X-A", "1"), ("x-a", " 2 ")]
    assert r.header("X-a") == "1, 2" and r.header("missing") is None


def test_content_coding_in_any_spelling_and_no_other_field() -> None:
    fields: list[tuple[str | bytes, str | bytes]] = [
        (b"Content-Encoding", b"gzip"),
        ("content-language", "de"),  # as long as the name looked for: not it
        (b"CONTENT-ENCODING", b"br"),
        ("x-content-encoding", "zstd"),
    ]
    assert content_coding(fields) == "gzip, br"
    assert content_coding([(b"content-type", b"text/plain")]) == "" and content_coding([]) == ""


def test_reply_header_asked_in_any_case_and_its_hashes_per_set_of_names() -> None:
    r = Reply.of(200, [(b"Content-Type", b"text/plain"), (b"ETag", b'"1"')], b"")
    assert r.header("content-type") == r.header("CONTENT-TYPE") == r.header("Content-Type") == "text/plain"
    assert r.header("etag") == '"1"' and r.header("ETAG") == '"1"' and r.header("x-none") is None
    one, two = ("content-type",), ("content-type", "etag")
    assert r.header_hashes(one) == (hash("text/plain"),)
    assert r.header_hashes(two) == (hash("text/plain"), hash('"1"'))  # other names: worked out again
    assert r.header_hashes(one) == (hash("text/plain"),)


def test_reply_of_over_limit_drops_body_but_keeps_size_and_hash() -> None:
    r = Reply.of(200, [], b"x" * 11, limit=10)
    assert r.body is None and r.body_size == 11
    assert r.body_sha256 == hashlib.sha256(b"x" * 11).hexdigest()


def test_reply_of_prefix_only_has_unknown_hash_unless_given() -> None:
    assert Reply.of(200, [], b"abc", limit=10, size=50).body_sha256 == ""
    r = Reply.of(200, [], b"abc", limit=10, size=50, sha256="ff" * 32)
    assert r.body is None and r.body_size == 50 and r.body_sha256 == "ff" * 32


def test_reply_media_type_and_charset() -> None:
    r = Reply.of(200, [("Content-Type", 'Text/HTML; Charset="ISO-8859-1"')], b"")
    assert r.media() == ("text/html", "ISO-8859-1")
    assert Reply.of(200, [], b"").media() == ("", None)


def test_reply_parses_json_once_and_only_json() -> None:
    r = js({"a": [1]})
    assert r.parsed() == {"a": [1]} and r.parsed() is r.parsed()
    assert Reply.of(200, [("content-type", "text/plain")], b"{}").parsed() is NOT_JSON
    assert Reply.of(200, JSON, b"{", 10).parsed() is NOT_JSON
    assert Reply.of(200, JSON, b"[1, 2]", limit=3).parsed() is NOT_JSON  # over the limit: not kept


# ------------------------------------------------------------------------------------------ config


def test_config_normalises_headers_and_parses_ignore() -> None:
    c = CompareConfig(headers=(" Content-Type", "ETag", "etag"), ignore=("/meta/ts", "X-Request-Id", "/items/*/id"))
    assert c.headers == ("content-type", "etag")
    assert c.rules.headers == frozenset({"x-request-id"})
    assert c.rules.pointers == (("meta", "ts"), ("items", None, "id"))


@pytest.mark.parametrize(
    "entry, message",
    [
        ("", "empty ignore entry"),
        ("  ", "empty ignore entry"),
        ("/a~2b", "'~' must be followed by 0 or 1"),
        ("/a~", "'~' must be followed by 0 or 1"),
        ("bad header", "neither a JSON pointer"),
        ("x:y", "neither a JSON pointer"),
    ],
)
def test_bad_ignore_entries_raise_one_line_errors(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        parse_ignore([entry])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):
        CompareConfig(ignore=(entry,))


def test_bad_config_values_raise() -> None:
    with pytest.raises(ValueError, match="not a header name"):
        CompareConfig(headers=("content type",))
    with pytest.raises(ValueError, match="body limit"):
        CompareConfig(body_limit=-1)


def test_ignore_pointer_unescapes_rfc6901() -> None:
    assert parse_ignore(["/a~1b/c~0d/~01"]).pointers == (("a/b", "c~d", "~1"),)


# ------------------------------------------------------------------------------------------ status and headers


def test_identical_replies_match() -> None:
    c = compare(js({"a": [1, {"b": None}]}), js({"a": [1, {"b": None}]}), CFG)
    assert c == Comparison("match", frozenset(), [], [])


def test_status_differs() -> None:
    c = compare(js({}, 200), js({}, 500), CFG)
    assert c.result == "mismatch" and c.kinds == {"status"}
    assert c.diffs == ["status: 200 -> 500"]


def test_configured_header_differs_case_insensitively_and_after_strip() -> None:
    p = Reply.of(200, [("Content-Type", "application/json"), ("ETag", '"1"')], b"{}")
    same = Reply.of(200, [("content-type", " application/json "), ("etag", '"1"')], b"{}")
    other = Reply.of(200, [("content-type", "text/html")], b"{}")
    assert compare(p, same, CompareConfig(headers=("content-type", "etag"))).result == "match"
    c = compare(p, other, CompareConfig(headers=("content-type", "etag")))
    assert c.kinds == {"header"}
    assert c.diffs == ["header content-type: application/json -> text/html", 'header etag: "1" -> missing']


def test_unconfigured_header_is_not_compared() -> None:
    p = Reply.of(200, [("x-a", "1")], b"")
    s = Reply.of(200, [("x-a", "2")], b"")
    assert compare(p, s, CFG).result == "match"
    assert compare(p, s, CompareConfig(headers=("x-a",))).result == "mismatch"


def test_ignored_header_is_not_compared() -> None:
    p = Reply.of(200, [("x-a", "1")], b"")
    s = Reply.of(200, [("x-a", "2")], b"")
    c = compare(p, s, CompareConfig(headers=("x-a",), ignore=("X-A",)))
    assert c == Comparison("match", frozenset(), [], [])


# ------------------------------------------------------------------------------------------ JSON bodies


def test_json_field_differs() -> None:
    c = compare(js({"price": 10, "name": "a"}), js({"price": 12, "name": "a"}), CFG)
    assert c.result == "mismatch" and c.kinds == {"body"}
    assert c.diffs == ["/price: 10 -> 12"]


def test_json_key_order_does_not_matter() -> None:
    p = Reply.of(200, JSON, b'{"a":1,"b":2}')
    s = Reply.of(200, JSON, b'{ "b" : 2, "a" : 1 }')
    assert compare(p, s, CFG).result == "match"


def test_array_order_differs_is_a_mismatch_named_order_only() -> None:
    c = compare(js({"tags": ["x", "y"]}), js({"tags": ["y", "x"]}), CFG)
    assert c.result == "mismatch"
    assert c.diffs == ['/tags: ["x","y"] -> ["y","x"]']
    assert c.differences == (Difference("/tags", "order only"),)
    c = compare(js({"tags": ["x", "y"]}), js({"tags": ["y", "y"]}), CFG)
    assert c.differences == (Difference("/tags/0", "value"),)
    # Arrays equal on both sides are no difference, walked beside another one or not.
    c = compare(
        js({"n": 1, "tags": ["x", "y"], "o": [[1], {"a": [2]}]}),
        js({"n": 2, "tags": ["x", "y"], "o": [[1], {"a": [2]}]}),
        CFG,
    )
    assert c.differences == (Difference("/n", "value"),)


def test_difference_kinds_are_named() -> None:
    p = js({"v": 1, "t": 1, "gone": 1, "list": [1, 2], "o": [{"a": 1}, {"b": 2}]})
    s = js({"v": 2, "t": "1", "new": 1, "list": [1, 2, 3], "o": [{"b": 2}, {"a": 1}]})
    kinds = {d.field: d.kind for d in compare(p, s, CFG).differences}
    assert kinds == {
        "/v": "value",
        "/t": "type",
        "/gone": "missing",
        "/new": "extra",
        "/list": "array length",
        "/o/0/a": "missing",
        "/o/0/b": "extra",
        "/o/1/b": "missing",
        "/o/1/a": "extra",
    }


def test_array_lengths_differ() -> None:
    c = compare(js({"items": [{"name": "a"}]}), js({"items": [{"name": "a"}, {"name": "b"}]}), CFG)
    assert c.diffs == ["/items: array length 1 -> 2"]
    assert c.differences == (Difference("/items", "array length"),)


def test_missing_and_extra_keys() -> None:
    c = compare(js({"a": 1, "gone": True}), js({"a": 1, "tags": ["x"]}), CFG)
    assert c.diffs == ["/gone: true -> missing", '/tags: missing -> ["x"]']


def test_number_one_equals_one_point_zero_but_not_true_or_string() -> None:
    p = Reply.of(200, JSON, b'{"n": 1, "m": 2.50}')
    assert compare(p, Reply.of(200, JSON, b'{"n": 1.0, "m": 2.5}'), CFG).result == "match"
    c = compare(p, Reply.of(200, JSON, b'{"n": true, "m": "2.5"}'), CFG)
    assert c.diffs == ["/n: 1 -> true", '/m: 2.50 -> "2.5"']  # numbers shown as written


def test_booleans_are_not_numbers_even_where_python_says_equal() -> None:
    p = Reply.of(200, JSON, b'{"flags": [true, 1], "off": 0}')
    s = Reply.of(200, JSON, b'{"flags": [1, true], "off": false}')
    assert p.parsed() == s.parsed()  # Python's view; JSON's differs
    assert compare(p, s, CFG).diffs == ["/flags: [true,1] -> [1,true]", "/off: 0 -> false"]
    s = Reply.of(200, JSON, b'{"flags": [1, 1], "off": 0}')
    assert compare(p, s, CFG).diffs == ["/flags/0: true -> 1"]


def test_type_change_is_one_difference_with_whole_values() -> None:
    c = compare(js({"a": {"b": 1}}), js({"a": [1]}), CFG)
    assert c.diffs == ['/a: {"b":1} -> [1]']


def test_root_difference() -> None:
    assert compare(js([1]), js({"a": 1}), CFG).diffs == ['(root): [1] -> {"a":1}']


def test_nested_pointer_escaping() -> None:
    c = compare(js({"a/b": {"c~d": {"~1": 1}}}), js({"a/b": {"c~d": {"~1": 2}}}), CFG)
    assert c.diffs == ["/a~1b/c~0d/~01: 1 -> 2"]


def test_plus_json_content_type_is_compared_structurally() -> None:
    h = [("content-type", "application/problem+json; charset=utf-8")]
    c = compare(js({"a": 1, "b": 1}, headers=h), js({"b": 1, "a": 2}, headers=h), CFG)
    assert c.diffs == ["/a: 1 -> 2"]


def test_unparseable_json_falls_back_to_text() -> None:
    c = compare(Reply.of(200, JSON, b'{"a": 1}'), Reply.of(200, JSON, b'{"a": 1'), CFG)
    assert c.kinds == {"body"} and c.diffs == ['body: line 1: "{\\"a\\": 1}" -> "{\\"a\\": 1"']


def test_json_nan_is_not_json() -> None:
    c = compare(Reply.of(200, JSON, b"[NaN]"), Reply.of(200, JSON, b"[NaN] "), CFG)
    assert c.diffs == ['body: line 1: "[NaN]" -> "[NaN] "']


def test_deeply_nested_json_is_walked_to_max_depth_then_compared_whole() -> None:
    deep = "[" * 900 + "1" + "]" * 900
    other = "[" * 900 + "2" + "]" * 900
    c = compare(Reply.of(200, JSON, deep.encode()), Reply.of(200, JSON, other.encode()), CFG)
    label, values = c.diffs[0].split(": ", 1)
    assert len(c.diffs) == 1 and label == clip("/0" * MAX_DEPTH, MAX_LABEL) and len(label) == MAX_LABEL
    assert values == clip("[" * 1000) + " -> " + clip("[" * 1000)


# ------------------------------------------------------------------------------------------ ignore rules


def test_ignore_pointer_exact_and_beneath() -> None:
    cfg = CompareConfig(ignore=("/meta",))
    c = compare(js({"meta": {"ts": 1}, "a": 1}), js({"meta": {"ts": 2, "x": 1}, "a": 1}), cfg)
    assert c == Comparison("match", frozenset(), [], [])


def test_ignore_pointer_with_wildcards() -> None:
    cfg = CompareConfig(ignore=("/items/*/id", "/*/ts"))
    p = js({"items": [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}], "x": {"ts": 1}, "y": {"ts": 1}})
    s = js({"items": [{"id": 7, "n": "a"}, {"id": 8, "n": "c"}], "x": {"ts": 2}, "y": {"ts": 3}})
    assert compare(p, s, cfg).diffs == ['/items/1/n: "b" -> "c"']


def test_wildcard_matches_exactly_one_segment() -> None:
    cfg = CompareConfig(ignore=("/*/id",))
    c = compare(js({"a": {"b": {"id": 1}}}), js({"a": {"b": {"id": 2}}}), cfg)
    assert c.diffs == ["/a/b/id: 1 -> 2"]


# ------------------------------------------------------------------------------------------ text and binary


def test_text_crlf_and_lf_differ() -> None:
    p = raw(b"a\r\nb\n", "text/plain")
    s = raw(b"a\nb\n", "text/plain")
    assert compare(p, s, CFG).diffs == ['body: line 1: "a\\r" -> "a"']


def test_text_difference_names_the_first_differing_line() -> None:
    c = compare(raw(b"a\nb\nc", "text/plain"), raw(b"a\nB\nc", "text/plain"), CFG)
    assert c.kinds == {"body"} and c.diffs == ['body: line 2: "b" -> "B"']
    c = compare(raw(b"a\nb", "text/plain"), raw(b"a", "text/plain"), CFG)
    assert c.diffs == ['body: line 2: "b" -> missing']


def test_charset_makes_a_type_textual_and_decodes() -> None:
    p = raw("é\nx".encode("latin-1"), "application/x-thing; charset=latin-1")
    s = raw("é\ny".encode("latin-1"), "application/x-thing; charset=latin-1")
    assert compare(p, s, CFG).diffs == ['body: line 2: "x" -> "y"']


def test_latin1_bodies_that_differ_in_one_byte_differ() -> None:
    p, s = raw(b"caf\xe9", "text/plain; charset=latin-1"), raw(b"caf\xe8", "text/plain; charset=latin-1")
    assert compare(p, s, CFG).diffs == ['body: line 1: "café" -> "cafè"']
    # Undeclared charset: UTF-8, in which both are invalid: compared as bytes, never as replacement characters.
    p, s = raw(b"caf\xe9", "text/plain"), raw(b"caf\xe8", "text/plain")
    c = compare(p, s, CFG)
    assert c.result == "mismatch" and c.diffs[0].startswith("body: 4 bytes sha256 ")


@pytest.mark.parametrize("charset", ["base64", "rot13", "hex", "zlib", "no-such-charset", "utf-16"])
def test_non_text_or_unknown_charset_compares_bytes(charset: str) -> None:
    p, s = raw(b"YWJj\n", f"text/plain; charset={charset}"), raw(b"YWJk\n", f"text/plain; charset={charset}")
    c = compare(p, s, CFG)
    assert c.result == "mismatch" and c.kinds == {"body"}
    assert compare(p, p, CFG).result == "match"


def test_same_text_in_other_bytes_is_a_mismatch() -> None:
    p = raw("é".encode("latin-1"), "text/plain; charset=latin-1")
    s = raw("é".encode(), "text/plain; charset=utf-8")
    c = compare(p, s, CompareConfig(headers=()))
    assert c.result == "mismatch" and c.diffs[0].startswith("body: the same text in other bytes")


def test_numbers_compare_exactly_as_written() -> None:
    assert compare(Reply.of(200, JSON, b"[1e400]"), Reply.of(200, JSON, b"[1e401]"), CFG).diffs == [
        "/0: 1E+400 -> 1E+401"
    ]
    p, s = Reply.of(200, JSON, b"[0.1000000000000000000001]"), Reply.of(200, JSON, b"[0.1]")
    assert compare(p, s, CFG).result == "mismatch"
    assert compare(Reply.of(200, JSON, b"[1e2, 1.0]"), Reply.of(200, JSON, b"[100, 1]"), CFG).result == "match"


def test_duplicate_json_keys_are_never_a_silent_match() -> None:
    p, s = Reply.of(200, JSON, b'{"a":1,"a":2}'), Reply.of(200, JSON, b'{"a":2}')
    assert p.parsed() is NOT_JSON
    c = compare(p, s, CFG)
    assert c.result == "mismatch" and c.diffs == ['body: line 1: "{\\"a\\":1,\\"a\\":2}" -> "{\\"a\\":2}"']


def test_binary_compared_by_hash_and_size() -> None:
    p, s = raw(b"\x00\x01\r\n"), raw(b"\x00\x01\n")
    c = compare(p, s, CFG)
    assert c.kinds == {"body"}
    assert c.diffs == [f"body: 4 bytes sha256 {p.body_sha256[:12]}.. -> 3 bytes sha256 {s.body_sha256[:12]}.."]
    assert compare(raw(b"\x00\x01"), raw(b"\x00\x01"), CFG).result == "match"


def test_over_limit_bodies_compared_by_size_and_hash() -> None:
    big = b"{" + b" " * 2000 + b"}"
    p = raw(big, "application/json", limit=100)
    assert p.body is None
    assert compare(p, raw(big, "application/json", limit=100), CFG).result == "match"
    other = raw(big[:-2] + b"x}", "application/json", limit=100)
    c = compare(p, other, CFG)
    assert c.result == "mismatch" and c.kinds == {"body"}
    assert c.diffs[0].startswith("body: 2002 bytes sha256 ") and "-> 2002 bytes sha256 " in c.diffs[0]


def test_over_limit_on_one_side_only_is_a_body_mismatch() -> None:
    c = compare(raw(b"a" * 50, limit=10), raw(b"a" * 5, limit=10), CFG)
    assert c.kinds == {"body"}


def test_over_limit_with_unknown_hash_compares_sizes() -> None:
    p = Reply.of(200, [], b"ab", limit=1, size=9)
    assert compare(p, Reply.of(200, [], b"cd", limit=1, size=9), CFG).result == "match"
    c = compare(p, Reply.of(200, [], b"cd", limit=1, size=8), CFG)
    assert c.diffs == ["body: 9 bytes sha256 ?.. -> 8 bytes sha256 ?.."]


# ------------------------------------------------------------------------------------------ diff text


def test_long_values_are_truncated() -> None:
    c = compare(js({"s": "a" * 500}), js({"s": "b"}), CFG)
    left = c.diffs[0].split(": ", 1)[1].split(" -> ")[0]
    assert len(left) == MAX_VALUE and left.endswith("...") and left.startswith('"aaa')


def test_long_header_values_are_truncated() -> None:
    p = Reply.of(200, [("x-a", "v" * 300)], b"")
    c = compare(p, Reply.of(200, [], b""), CompareConfig(headers=("x-a",)))
    assert c.diffs == ["header x-a: " + "v" * (MAX_VALUE - 3) + "... -> missing"]


def test_number_of_listed_differences_is_capped() -> None:
    c = compare(js(list(range(50))), js(list(range(1, 51))), CFG)
    assert len(c.diffs) == MAX_LISTED + 1
    last = MAX_LISTED - 1
    assert c.diffs[0] == "/0: 0 -> 1" and c.diffs[last] == f"/{last}: {last} -> {last + 1}"
    assert c.diffs[-1] == f"... and {50 - MAX_LISTED} more"


def test_number_of_listed_noisy_fields_is_capped() -> None:
    n = NoiseSet()
    learn(n, "/*")
    c = compare(js(list(range(30))), js(list(range(1, 31))), CFG, n)
    assert c.result == "noise" and c.diffs == [] and len(c.noisy) == MAX_LISTED + 1
    assert c.noisy[0] == "/0" and c.noisy[-1] == f"... and {30 - MAX_LISTED} more"


def test_every_difference_counts_towards_the_result_past_the_listing_cap() -> None:
    n = NoiseSet()
    learn(n, "/z")
    many = {f"k{i}": i for i in range(30)}
    c = compare(js({**many, "z": 1}), js({**{k: -1 for k in many}, "z": 2}), CompareConfig(ignore=("/k3",)), n)
    assert c.result == "mismatch" and c.noisy == ["/z"]
    assert len(c.diffs) == MAX_LISTED + 1 and c.diffs[-1] == f"... and {29 - MAX_LISTED} more"  # k0 equal, k3 ignored


def test_skipped() -> None:
    c = skipped("timeout")
    assert c.result == "skipped" and c.kinds == frozenset() and c.diffs == ["skipped: timeout"] and c.noisy == []


# ------------------------------------------------------------------------------------------ noise set


def test_noise_set_matches_exact_generalised_and_beneath() -> None:
    n = NoiseSet()
    assert learn(n, "/meta/ts") and learn(n, "/items/*/ts") and learn(n, "header date") and learn(n, "status")
    assert not learn(n, "/meta/ts")  # already known
    assert matches(n, "/meta/ts") and matches(n, "/meta/ts/nanos")
    assert matches(n, "/items/3/ts") and not matches(n, "/items/3/price") and not matches(n, "/items/x/ts")
    assert matches(n, "header Date") and matches(n, "status") and not matches(n, "body")
    assert not matches(n, "/meta") and not matches(n, "(root)")
    assert learned(n) == ["status", "header date", "/items/*/ts", "/meta/ts"]


def test_noise_set_root_covers_everything() -> None:
    n = NoiseSet()
    assert not matches(n, "(root)") and not matches(n, "/a")
    learn(n, "(root)")
    assert matches(n, "(root)") and matches(n, "/a/0")


def test_noise_set_capacity() -> None:
    n = NoiseSet(capacity=2)
    assert learn(n, "/a") and learn(n, "/b") and not learn(n, "/c")
    assert len(n) == 2 and not matches(n, "/c")


def test_compare_with_noise_set_sorts_noisy_fields() -> None:
    n = NoiseSet()
    learn(n, "/ts")
    assert compare(js({"ts": 1, "p": 1}), js({"ts": 2, "p": 1}), CFG, n) == Comparison(
        "noise", frozenset(), [], ["/ts"], (Difference("/ts", "value", noise=True),)
    )
    c = compare(js({"ts": 1, "p": 1}), js({"ts": 2, "p": 2}), CFG, n)
    assert (c.result, c.kinds, c.diffs, c.noisy) == ("mismatch", {"body"}, ["/p: 1 -> 2"], ["/ts"])


def test_status_noise_never_hides_a_shadow_server_error() -> None:
    n = NoiseSet()
    learn(n, "status")
    assert compare(js({}, 200), js({}, 404), CFG, n).result == "noise"
    assert compare(js({}, 200), js({}, 503), CFG, n).result == "mismatch"


def test_ignored_fields_are_neither_noise_nor_diffs() -> None:
    n = NoiseSet()
    learn(n, "/ts")
    c = compare(js({"ts": 1}), js({"ts": 2}), CompareConfig(ignore=("/ts",)), n)
    assert c == Comparison("match", frozenset(), [], [])


# ------------------------------------------------------------------------------------------ noise learning


def test_identical_answers_are_the_one_match_and_any_difference_is_not() -> None:
    same = compare(js({"a": 1}), js({"a": 1}), CompareConfig())
    assert same is MATCH and (same.diffs, same.noisy, same.kinds) == ([], [], frozenset())
    other = compare(js({"a": 1}), js({"a": 2}), CompareConfig())
    assert other.result == "mismatch" and other is not MATCH and MATCH.diffs == []
    n = NoiseSet()
    learn(n, "/a")
    noisy = compare(js({"a": 1}), js({"a": 2}), CompareConfig(), n)
    assert noisy.result == "noise" and noisy is not MATCH


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Host", b"a"), (b"Canonical-Resource", b"orders"), (b"Accept", b"*/*")],
        [(b"authorization", b"Basic YWxpY2U6eA=="), (b"Cookie", b"x=1")],
        [(b"AUTHORIZATION", b"Bearer t"), (b"canonical-resource", b" ")],
        [(b"User-Agent", b"x")],
        [],
    ],
)
def test_a_pair_named_later_keeps_the_fields_that_name_it(fields: list[tuple[bytes, bytes]]) -> None:
    kept = naming_fields(fields)
    assert all(k.lower() in NAMED_BY for k, _ in kept) and len(kept) == sum(k.lower() in NAMED_BY for k, _ in fields)
    for path in ("/users/alice/orders/7", "/a/b"):
        assert EndpointNamer().name("GET", path, FieldView(kept)) == EndpointNamer().name(
            "GET", path, FieldView(tuple(fields))
        )


def test_request_key_identity() -> None:
    k = request_key("get", "/a?x=1", b"")
    assert k == request_key("GET", "/a?x=1", b"") and len(k) == 32
    assert k != request_key("GET", "/a?x=2", b"")
    assert k != request_key("POST", "/a?x=1", b"")
    assert request_key("POST", "/a", b"1") != request_key("POST", "/a", b"2")
    assert request_key("GET", "/me", b"", ["alice"]) != request_key("GET", "/me", b"", ["bob"])


def test_timestamp_learned_as_noise_from_two_production_replies() -> None:
    learner = NoiseLearner()
    key = request_key("GET", "/price?id=1", b"")
    learner.observe("m", key, js({"price": 10, "meta": {"timestamp": "10:00:00"}}))
    assert len(learner.noise("m")) == 0  # one answer teaches nothing
    production = js({"price": 10, "meta": {"timestamp": "10:00:01"}})
    learner.observe("m", key, production)
    noise = learner.noise("m")
    assert learned(noise) == ["/meta/timestamp"]
    assert len(learner.noise("other")) == 0  # per mapping

    only_ts = compare(production, js({"price": 10, "meta": {"timestamp": "10:00:02"}}), CFG, noise)
    assert (only_ts.result, only_ts.diffs, only_ts.noisy) == ("noise", [], ["/meta/timestamp"])
    both = compare(production, js({"price": 12, "meta": {"timestamp": "10:00:02"}}), CFG, noise)
    assert (both.result, both.kinds, both.diffs, both.noisy) == (
        "mismatch",
        {"body"},
        ["/price: 10 -> 12"],
        ["/meta/timestamp"],
    )


def test_same_values_teach_nothing_and_different_keys_are_not_compared() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k1", js({"a": 1, "b": [1, 2]}))
    learner.observe("m", "k1", js({"b": [1, 2.0], "a": 1}))
    learner.observe("m", "k2", js({"a": 2}))
    assert learned(learner.noise("m")) == []


def test_changed_value_in_array_is_learned_for_every_index() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k", js({"items": [{"id": 1, "ts": 5}, {"id": 2, "ts": 6}]}))
    learner.observe("m", "k", js({"items": [{"id": 1, "ts": 5}, {"id": 2, "ts": 7}]}))
    noise = learner.noise("m")
    assert learned(noise) == ["/items/*/ts"]
    assert matches(noise, "/items/0/ts") and not matches(noise, "/items/0/id")


def test_field_present_once_is_learned_exactly_where_it_appears() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k", js({"a": 1, "list": [1]}))
    learner.observe("m", "k", js({"a": 1, "list": [1, 2], "debug": {"x": [1]}}))
    assert learned(learner.noise("m")) == ["/debug", "/list/1"]
    learner.observe("m", "k", js({"a": 1, "list": [1]}))  # they vanish again: nothing new
    assert learned(learner.noise("m")) == ["/debug", "/list/1"]


def test_status_change_teaches_status_only_and_server_errors_teach_nothing() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k", js({"a": 1}, 200))
    learner.observe("m", "k", js({"error": "x"}, 503))  # ignored, and not kept
    learner.observe("m", "k", js({"a": 1}, 200))
    assert learned(learner.noise("m")) == []
    learner.observe("m", "k", js({"b": 1}, 404))
    assert learned(learner.noise("m")) == ["status"]


def test_header_and_non_json_body_noise() -> None:
    learner = NoiseLearner(headers=("content-type", "etag"))
    learner.observe("m", "k", Reply.of(200, [("content-type", "text/html"), ("etag", "1")], b"<p>a</p>"))
    learner.observe("m", "k", Reply.of(200, [("content-type", "text/html"), ("etag", "2")], b"<p>b</p>"))
    noise = learner.noise("m")
    assert learned(noise) == ["body", "header etag"]
    c = compare(
        Reply.of(200, [("content-type", "text/html"), ("etag", "2")], b"<p>b</p>"),
        Reply.of(200, [("content-type", "text/html"), ("etag", "3")], b"<p>c</p>"),
        CompareConfig(headers=("content-type", "etag")),
        noise,
    )
    assert (c.result, c.noisy) == ("noise", ["header etag", "body"])


def test_learner_lru_evicts_least_recently_seen_key() -> None:
    learner = NoiseLearner(max_keys=2)
    learner.observe("m", "k1", js({"v": 1}))
    learner.observe("m", "k2", js({"w": 1}))
    learner.observe("m", "k1", js({"v": 1}))  # k1 is now the most recent
    learner.observe("m", "k3", js({"x": 1}))  # evicts k2
    assert len(learner.prints) == 2
    learner.observe("m", "k2", js({"w": 2}))  # k2 was forgotten: nothing to compare with; evicts k1
    assert learned(learner.noise("m")) == []
    learner.observe("m", "k3", js({"x": 2}))  # k3 was kept
    assert learned(learner.noise("m")) == ["/x"]
    learner.observe("m", "k1", js({"v": 2}))  # k1 was evicted by k2
    assert learned(learner.noise("m")) == ["/x"] and len(learner.prints) == 2


def test_learner_node_budget_bounds_memory() -> None:
    learner = NoiseLearner(max_keys=100, node_budget=10)
    learner.observe("m", "k1", js({"a": 1, "b": 2}))  # 3 nodes
    learner.observe("m", "k2", js({"a": 1, "b": 2, "c": 3}))  # 4 nodes
    learner.observe("m", "k3", js({"a": 1, "b": 2, "c": 3}))  # 4 nodes: 11 > 10, k1 goes
    assert len(learner.prints) == 2
    learner.observe("m", "k1", js({"a": 9, "b": 2}))
    assert learned(learner.noise("m")) == []


def test_json_of_exactly_max_nodes_keeps_field_detail() -> None:
    learner = NoiseLearner(max_nodes=5)
    learner.observe("m", "k", js([0, 0, 0, 0]))  # 5 nodes: the array and its 4 elements
    learner.observe("m", "k", js([0, 0, 0, 1]))
    assert learned(learner.noise("m")) == ["/*"]


def test_large_json_keeps_no_field_detail() -> None:
    learner = NoiseLearner(max_nodes=5)
    learner.observe("m", "k", js(list(range(10))))
    learner.observe("m", "k", js(list(range(1, 11))))
    assert learned(learner.noise("m")) == [] and len(learner.prints) == 1


def test_learner_noise_cap_per_mapping() -> None:
    learner = NoiseLearner(max_noise=3)
    learner.observe("m", "k", js({f"f{i}": i for i in range(10)}))
    learner.observe("m", "k", js({f"f{i}": -i for i in range(10)}))
    assert len(learner.noise("m")) == 3  # nine fields changed; only three are kept


def test_numeric_object_keys_generalise_like_array_indices() -> None:
    learner = NoiseLearner()
    learner.observe("m", "k", js({"by_year": {"2023": 1, "2024": 1}}))
    learner.observe("m", "k", js({"by_year": {"2023": 1, "2024": 2}}))
    assert learned(learner.noise("m")) == ["/by_year/*"]


# ------------------------------------------------------------------------------------------ endpoints


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("get", "/users/123/orders/5f3a9c2e", "GET /users/{id}/orders/{id}"),
        ("GET", "/v1/items", "GET /v1/items"),
        ("GET", "/v1/items?page=2#x", "GET /v1/items"),
        ("GET", "/items/550e8400-e29b-41d4-a716-446655440000", "GET /items/{id}"),
        ("GET", "/objects/507f1f77bcf86cd799439011", "GET /objects/{id}"),
        ("GET", "/blobs/deadbeef", "GET /blobs/deadbeef"),  # hex but no digit: a word
        ("GET", "/users/usr_1234/cart", "GET /users/{id}/cart"),
        ("GET", "/docs/page-2", "GET /docs/page-2"),
        ("GET", "/links/aB3dE5fG7hJ9kL1m", "GET /links/{id}"),
        ("GET", "/apis/v1beta1/oauth2/sha256", "GET /apis/v1beta1/oauth2/sha256"),
        ("GET", "/internationalization2", "GET /internationalization2"),
        ("GET", "", "GET /"),
        ("GET", "/a/", "GET /a/"),
    ],
)
def test_endpoint_collapses_id_like_segments(method: str, path: str, expected: str) -> None:
    assert endpoint(method, path) == expected


# ------------------------------------------------------------------------------------------ store


def mismatch() -> Comparison:
    return Comparison("mismatch", frozenset({"body", "status"}), ["status: 200 -> 500"], ["/ts"])


def test_store_keeps_recent_mismatches_newest_first() -> None:
    store = MismatchStore(capacity=3)
    p, s = js({"a": 1}), Reply.of(500, [("content-type", "text/plain")], b"boom")
    for i in range(5):
        assert store.add("m", "GET /a", {"path": f"/a?{i}"}, p, s, mismatch(), now=1000.0 + i) is not None
    out = store.to_json()
    assert out["capacity"] == 3
    assert [r["request"]["path"] for r in out["records"]] == ["/a?4", "/a?3", "/a?2"]
    rec = out["records"][0]
    assert rec["id"] == 5 and rec["time"] == 1004.0 and rec["at"] == "1970-01-01T00:16:44.000+00:00"
    assert rec["kinds"] == ["body", "status"] and rec["diffs"] == ["status: 200 -> 500"] and rec["noisy"] == ["/ts"]
    assert rec["production"]["status"] == 200 and rec["production"]["body_preview"] == '{"a": 1}'
    assert rec["shadow"]["headers"] == [["content-type", "text/plain"]] and rec["shadow"]["body_preview"] == "boom"
    assert out["groups"] == [
        {"mapping": "m", "endpoint": "GET /a", "compared": 5, "mismatches": 5, "noise": 0, "skipped": 0, "rate": 1.0}
    ]
    json.dumps(out)  # serialisable as is


def test_store_counts_every_result_but_records_only_mismatches() -> None:
    store = MismatchStore()
    p = js({})
    assert store.add("m", "GET /a", {}, p, p, Comparison("match")) is None
    assert store.add("m", "GET /a", {}, p, p, Comparison("noise", noisy=["/ts"])) is None
    assert store.add("m", "GET /a", {}, p, None, skipped("timeout")) is None
    store.add("m", "GET /a", {}, p, p, mismatch())
    store.add("n", "GET /b", {}, p, p, Comparison("match"))
    out = store.to_json()
    assert len(out["records"]) == 1
    assert out["groups"] == [
        {"mapping": "m", "endpoint": "GET /a", "compared": 3, "mismatches": 1, "noise": 1, "skipped": 1, "rate": 1 / 3},
        {"mapping": "n", "endpoint": "GET /b", "compared": 1, "mismatches": 0, "noise": 0, "skipped": 0, "rate": 0.0},
    ]


def test_store_group_counts_outlive_evicted_records_and_overflow_into_other() -> None:
    store = MismatchStore(capacity=1, max_groups=2)
    p = js({})
    for ep in ("GET /a", "GET /b", "GET /c", "GET /d", "GET /a"):
        store.add("m", ep, {}, p, p, mismatch())
    groups = {g["endpoint"]: g["mismatches"] for g in store.to_json()["groups"]}
    assert groups == {"GET /a": 2, "GET /b": 1, OTHER: 2}
    assert len(store.to_json()["records"]) == 1


def test_store_body_previews_are_bounded_and_decoded_where_possible() -> None:
    store = MismatchStore(preview=3)
    text = Reply.of(200, [("content-type", "text/plain; charset=utf-8")], "abé-more".encode())
    binary = Reply.of(200, [("content-type", "image/png")], b"\x89PNG\xff\xfe")
    over = Reply.of(200, [], b"x" * 10, limit=5)
    rec = store.add("m", "GET /", {}, text, binary, mismatch())
    assert rec is not None
    assert rec["production"]["body_preview"] == "ab" and rec["production"]["body_truncated"]  # é cut in half
    assert rec["shadow"]["body_preview"] is None and rec["shadow"]["body_binary"]
    rec = store.add("m", "GET /", {}, over, None, mismatch())
    assert rec is not None and rec["production"]["body_preview"] is None and rec["production"]["body_truncated"]
    assert rec["shadow"] is None


def test_record_line_is_one_json_object_without_previews() -> None:
    store = MismatchStore()
    rec = store.add("m", "GET /a", {"method": "GET", "path": "/a"}, js({"a": 1}), js({"a": 2}), mismatch(), now=0.0)
    assert rec is not None
    line = record_line(rec)
    assert line.endswith("\n") and line.count("\n") == 1
    obj = json.loads(line)
    assert obj["mapping"] == "m" and obj["endpoint"] == "GET /a" and obj["request"] == {"method": "GET", "path": "/a"}
    assert obj["diffs"] == ["status: 200 -> 500"] and obj["kinds"] == ["body", "status"] and obj["time"] == 0.0
    assert obj["at"] == "1970-01-01T00:00:00.000+00:00"
    assert obj["production"] == {"status": 200, "body_size": 8, "body_sha256": hashlib.sha256(b'{"a": 1}').hexdigest()}
    assert "body_preview" not in line


# ------------------------------------------------------------------------------------------ content-encoding


def gz(doc: Any, mtime: int = 0) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=mtime)


def encoded(body: bytes, coding: str, status: int = 200, limit: int = 1024 * 1024) -> Reply:
    return Reply.of(status, [*JSON, ("Content-Encoding", coding)], body, limit)


def test_encoded_body_is_compared_decoded_and_hashed_as_sent() -> None:
    r = encoded(gz({"a": 1}), "gzip")
    assert r.body == b'{"a": 1}' and r.encoded and r.parsed() == {"a": 1}
    assert (r.body_size, r.body_sha256) == (len(gz({"a": 1})), hashlib.sha256(gz({"a": 1})).hexdigest())
    assert r.digest() == (8, hashlib.sha256(b'{"a": 1}').hexdigest())
    assert compare(r, js({"a": 1}), CFG).result == "match"  # gzip on one side, identity on the other
    assert compare(encoded(gz({"a": 1}, mtime=1), "gzip"), encoded(gz({"a": 1}, mtime=2), "gzip"), CFG).result == (
        "match"
    )
    c = compare(r, encoded(brotli.compress(b'{"a": 2}'), "br"), CFG)
    assert (c.result, c.diffs) == ("mismatch", ["/a: 1 -> 2"])


def test_a_body_not_decodable_within_the_limit_makes_both_sides_compare_as_sent() -> None:
    bomb = gzip.compress(bytes(64 * 1024))  # 64 KiB of zeros in a few hundred bytes
    over = encoded(bomb, "gzip", limit=4096)
    assert over.body is None and over.body_size == len(bomb) < 4096
    plain = encoded(gz({"a": 1}), "gzip", limit=4096)
    c = compare(plain, over, CFG)
    # The decoded side is not weighed against an encoded one: both answers as sent.
    assert c.result == "mismatch" and c.diffs == [
        f"body: {len(gz({'a': 1}))} bytes sha256 {hashlib.sha256(gz({'a': 1})).hexdigest()[:12]}.. -> "
        f"{len(bomb)} bytes sha256 {hashlib.sha256(bomb).hexdigest()[:12]}.."
    ]
    assert compare(over, encoded(bomb, "gzip", limit=4096), CFG).result == "match"  # the same bytes as sent
    garbage = encoded(b"not gzip at all", "gzip")
    assert garbage.body is None and compare(garbage, encoded(b"not gzip at all", "gzip"), CFG).result == "match"
    assert compare(garbage, encoded(b"not gzip either", "gzip"), CFG).result == "mismatch"


def test_binary_bodies_that_differ_show_their_decoded_size() -> None:
    p = Reply.of(200, [("content-type", "image/png"), ("content-encoding", "gzip")], gzip.compress(b"\x89PNG1"))
    s = Reply.of(200, [("content-type", "image/png")], b"\x89PNG22")
    c = compare(p, s, CFG)
    assert c.diffs == [
        f"body: 5 bytes sha256 {hashlib.sha256(b'\x89PNG1').hexdigest()[:12]}.. -> "
        f"6 bytes sha256 {hashlib.sha256(b'\x89PNG22').hexdigest()[:12]}.."
    ]


def test_production_recompressed_differently_teaches_no_noise() -> None:
    learner = NoiseLearner()
    page = [("content-type", "text/html"), ("content-encoding", "gzip")]
    learner.observe("m", "k", Reply.of(200, page, gzip.compress(b"<p>a</p>", mtime=1)))
    learner.observe("m", "k", Reply.of(200, page, gzip.compress(b"<p>a</p>", mtime=2)))
    assert learned(learner.noise("m")) == []
    learner.observe("m", "k", Reply.of(200, page, gzip.compress(b"<p>b</p>", mtime=2)))
    assert learned(learner.noise("m")) == ["body"]


def test_stored_mismatch_shows_the_decoded_preview_and_the_size_as_sent() -> None:
    store = MismatchStore()
    p = encoded(gz({"a": 1}), "gzip")
    rec = store.add("m", "GET /", {}, p, js({"a": 2}), compare(p, js({"a": 2}), CFG), now=0.0)
    assert rec is not None and rec["production"]["body_preview"] == '{"a": 1}'
    assert rec["production"]["body_size"] == len(gz({"a": 1})) and not rec["production"]["body_truncated"]


# ------------------------------------------------------------------------------------------ pairing


def pairing(budget: MemoryBudget | None) -> Pairing:
    return Pairing(Metrics(), CFG, budget=budget)


def test_pairing_holds_replies_within_the_budget_and_gives_every_byte_back() -> None:
    body = js({"k": "x" * 30})
    n = PAIR_BYTES + len(body.body or b"")  # a held reply: its body and what goes with it
    budget = MemoryBudget(limit=10 * n)
    pr = pairing(budget)
    results: list[Comparison] = []
    pr.expect("1", "m", "GET /", {})
    pr.production("1", body)
    assert budget.held == n
    assert pr.shadow("1", body, None, results.append) and results[-1].result == "match"
    judged = pr.judge.held  # the judgement's counts of the endpoint, in the same budget
    assert budget.held == judged  # the reply is released when the pair completes
    budget.limit = judged + 2 * n + n // 2

    pr.expect("2", "m", "GET /", {})
    pr.production("2", body)
    pr.expect("3", "m", "GET /", {})
    pr.shadow("3", body, None, results.append)  # the shadow first: its reply is the one held
    assert budget.held == judged + 2 * n
    pr.expect("4", "m", "GET /", {})
    pr.production("4", body)  # 3n > the limit: not held, production unaffected
    assert budget.held == judged + 2 * n and "4" not in pr.pairs
    assert not pr.shadow("4", body, None)  # its shadow is then not compared
    assert pr.metrics.compared[("m", "skipped")] == 1
    assert pr.store.to_json()["groups"][0]["skipped"] == 1

    pr.production("3", None, "error")  # production failed: the held shadow reply goes
    assert results[-1].result == "skipped" and budget.held == judged + n
    pr.close()  # what is still held goes back on close
    assert budget.held == 0 and not pr.pairs


def test_pairing_releases_replies_evicted_past_max_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairing_module, "MAX_PAIRS", 2)
    budget = MemoryBudget(limit=10_000)
    pr = pairing(budget)
    for key in "abc":
        pr.expect(key, "m", "GET /", {})
        pr.production(key, js({"v": key}))
    held = PAIR_BYTES + len(b'{"v": "a"}')
    assert len(pr.pairs) == 2 and budget.held == 2 * held
    pr.expect("d", "m", "GET /", {})  # evicts b
    assert budget.held == held
    pr.shadow("c", None, "timeout")
    pr.shadow("d", js({"v": "d"}), None)  # held until production's side comes
    assert budget.held == held
    pr.production("d", None, "error")
    assert budget.held == 0 and not pr.pairs


def test_pairing_without_a_budget_holds_everything() -> None:
    pr = pairing(None)
    pr.expect("1", "m", "GET /", {})
    pr.production("1", js({"a": 1}))
    assert pr.pairs["1"].held == 0 and pr.shadow("1", js({"a": 2}), None)
    assert pr.metrics.compared[("m", "mismatch")] == 1


async def test_a_brotli_bomb_is_decoded_off_the_event_loop_once() -> None:
    """A brotli decoder with a 4 MiB window fills it before its output cap applies (tens of ms): the loop hands
    the body to the worker thread and the pair completes when it is done. The same body again is known refused
    and compared on the loop at once, as is a small brotli answer."""
    import asyncio

    from bombs import br_bomb

    from shadow_addon.sender import Outcome

    pr = pairing(None)
    results: list[Comparison] = []
    bomb = br_bomb(256 << 20) + b"\0"  # a body no other test decodes
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"br")]
    for key in ("1", "2"):
        pr.expect(key, "m", "GET /", {})
        pr.production(key, js({"a": 1}))
    assert pr.shadow_answered("1", Outcome(status=200, headers=headers, body=bomb, body_size=len(bomb)), results.append)
    assert results == [] and pr.decoding == 1  # not decoded on the loop
    for _ in range(500):  # <= 5 s
        if results:
            break
        await asyncio.sleep(0.01)
    assert [r.result for r in results] == ["mismatch"] and pr.decoding == 0  # compared as sent: size and hash
    assert pr.shadow_answered("2", Outcome(status=200, headers=headers, body=bomb, body_size=len(bomb)), results.append)
    assert [r.result for r in results] == ["mismatch", "mismatch"] and pr.decoding == 0
    for key, lgwin in (("3", 20), ("4", 22)):  # a 1 MiB window on the loop; a 4 MiB one in the worker
        small = brotli.compress(json.dumps({"a": 1}).encode(), lgwin=lgwin)
        pr.expect(key, "m", "GET /", {})
        pr.production(key, js({"a": 1}))
        out = Outcome(status=200, headers=headers, body=small, body_size=len(small))
        assert pr.shadow_answered(key, out, results.append)
        assert pr.decoding == (lgwin > 20), lgwin
        for _ in range(500):  # <= 5 s
            if len(results) == int(key):
                break
            await asyncio.sleep(0.01)
        assert [r.result for r in results][-1] == "match" and pr.decoding == 0, lgwin


async def test_decodings_waiting_for_the_worker_are_bounded_and_a_closed_pairing_ignores_them() -> None:
    import asyncio

    from bombs import br_bomb

    from shadow_addon.sender import Outcome

    pr = pairing(None)
    results: list[Comparison] = []
    headers = [(b"content-encoding", b"br")]
    n = building.MAX_DECODING + 2
    for i in range(n):
        bomb = br_bomb(64 << 20) + b"\0" * (i + 2)  # each new: none known refused yet
        pr.expect(str(i), "m", "GET /", {})
        pr.production(str(i), js({"a": 1}))
        pr.shadow_answered(str(i), Outcome(status=200, headers=headers, body=bomb, body_size=len(bomb)), results.append)
    assert pr.decoding == building.MAX_DECODING
    assert len(results) == 2 and all(any("overload (decoding)" in d for d in r.diffs) for r in results), results
    pr.close()
    for _ in range(500):  # <= 5 s
        if pr.decoding == 0:
            break
        await asyncio.sleep(0.01)
    assert pr.decoding == 0 and len(results) == 2  # the decodings ended; nothing compared after close


def test_an_identical_production_answer_is_not_looked_inside_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from shadow_addon.compare import noise as noise_module

    flattened = []
    real = noise_module.flatten
    monkeypatch.setattr(noise_module, "flatten", lambda doc, n: flattened.append(doc) or real(doc, n))
    learner = NoiseLearner()
    for _ in range(3):
        learner.observe("m", "k", js({"id": 1, "at": "10:00"}))
    assert len(flattened) == 1 and len(learner.noise("m")) == 0
    learner.observe("m", "k", js({"id": 1, "at": "10:01"}))
    assert len(flattened) == 2 and learner.noise("m").paths == {("at",)}


def _answers() -> list[tuple[str, Reply]]:
    """Production's answers as a capture holds them: a value that changes between answers to one request, the same
    body answering other requests, the same bytes under another content-type or content-encoding, text, a failure."""
    doc = {"id": 1, "items": [{"ts": "10:00"}, {"ts": "10:00"}]}
    zipped = gzip.compress(json.dumps(doc).encode(), mtime=0)
    out: list[tuple[str, Reply]] = []
    for i in range(3):
        out.append(("k1", js({"id": 1, "items": [{"ts": f"10:0{i}"}, {"ts": "10:00"}]})))
        out.append((f"k-other-{i}", js(doc)))
        out.append(("k2", js(doc, headers=[("content-type", "text/plain")])))
        out.append(("k6", js(doc, headers=[("content-type", "text/plain")])))
        out.append(("k6", js(doc)))  # the same bytes read as JSON now
        out.append(("k7", js(doc, headers=[("content-type", "text/plain")])))  # bytes another request had as JSON
        out.append(("k7", js({"id": 1, "items": [{"ts": "11:00"}, {"ts": "10:00"}]})))
        out.append(("k3", Reply.of(200, [*JSON, ("content-encoding", "gzip")], zipped)))
        out.append(("k3", js(doc)))
        out.append(("k4", raw(f"line {i % 2}".encode(), "text/plain")))
        out.append(("k5", js({"error": i}, status=503)))
        out.append(("k1", js({"id": 2, "items": [{"ts": "10:00"}]}, headers=[*JSON, ("etag", str(i))])))
    return out


def test_kept_prints_teach_what_fresh_ones_do() -> None:
    fresh = NoiseLearner(headers=("etag",), max_keys=4)  # the content-type is not a compared header here
    kept = NoiseLearner(headers=("etag",), max_keys=4)
    kept.keep_prints(1 << 20)
    seen: list[list[Any]] = [[], []]
    for _ in range(2):  # a replay reads its capture twice: to learn, then to compare
        for i, learner in enumerate((fresh, kept)):
            for key, reply in _answers():  # built anew for each reading, as a replay's reader does
                seen[i].append(learner.observe("m", key, reply))
    assert seen[0] == seen[1]
    assert learned(fresh.noise("m")) == learned(kept.noise("m"))
    assert learned(kept.noise("m"))  # the answers did teach noise
    assert (fresh.reused, kept.reused > 0) == (0, True)


def test_a_kept_print_spares_the_parse() -> None:
    learner = NoiseLearner()
    learner.keep_prints(1 << 20)
    learner.observe("m", "k1", js({"a": 1}))
    again = js({"a": 1})
    learner.observe("m", "k2", again)  # another request, the same answer
    assert learner.reused == 1 and again.will_parse()  # not parsed: its print was kept


def test_kept_prints_are_bounded() -> None:
    learner = NoiseLearner()
    learner.keep_prints(4096)
    for i in range(50):
        learner.observe("m", f"k{i}", js({"n": i, "pad": list(range(5))}))
    assert 0 < learner._by_content_bytes <= 4096
    assert learner.reused == 0
    learner.close()
    assert learner._by_content_bytes == 0


def test_an_offline_pairing_keeps_prints_for_the_second_reading() -> None:
    live, offline = Pairing(Metrics(), CFG), Pairing(Metrics(), CFG)
    offline.offline()
    for p in (live, offline):
        p.learner.observe("m", "k1", js({"a": 1}))
        p.learner.observe("m", "k2", js({"a": 1}))
    assert (live.learner.reused, offline.learner.reused) == (0, 1)
