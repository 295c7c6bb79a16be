"""What a difference is named by, bounded by what shows: a body compared as text names the first differing line as
splitting both texts into lines would, from the first differing character (an ASCII body read as its own bytes);
a field's label is its JSON pointer clipped, long keys escaped only as far as they show. Plain data."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shadow_addon.compare import diff
from shadow_addon.compare.config import CompareConfig
from shadow_addon.compare.diff import compare
from shadow_addon.compare.fields import ROOT, pointer
from shadow_addon.compare.render import MAX_LABEL, MAX_VALUE, clip, render
from shadow_addon.compare.reply import Reply


def split_lines_reference(a: str, b: str) -> tuple[str, str]:
    """The first differing line found by splitting both texts into lines (what the comparison did before)."""
    la, lb = a.split("\n"), b.split("\n")
    lo = 0
    while lo < min(len(la), len(lb)) and la[lo] == lb[lo]:
        lo += 1
    x = render(la[lo][: MAX_VALUE + 1]) if lo < len(la) else "missing"
    y = render(lb[lo][: MAX_VALUE + 1]) if lo < len(lb) else "missing"
    return f"line {lo + 1}: {x}", y


TEXT = st.text(alphabet="ab\n\r\u00e9", max_size=40)


@given(TEXT, TEXT)
def test_the_first_differing_line_is_the_one_splitting_into_lines_names(a: str, b: str) -> None:
    if a == b:
        return
    assert diff._first_line(a, b) == split_lines_reference(a, b)


@given(st.text(alphabet="ab\n\r", max_size=40), st.text(alphabet="ab\n\r", max_size=40), st.integers(0, 300))
def test_ascii_as_bytes_names_the_same_line_as_the_text(a: str, b: str, pad: int) -> None:
    a, b = "x" * pad + a, "x" * pad + b  # prefixes past the first slice compared
    if a == b:
        return
    assert diff._first_line(a.encode(), b.encode()) == diff._first_line(a, b) == split_lines_reference(a, b)


def test_a_difference_deep_in_long_texts_is_named_and_clipped() -> None:
    head = "same line\n" * 50_000  # 500 KB of equal lines
    a = head + "p" * 300 + "\n" + "tail"
    b = head + "p" * 150 + "s" + "p" * 149 + "\n" + "tail"
    expect = split_lines_reference(a, b)
    assert expect[0].startswith("line 50001: ") and len(expect[1]) == MAX_VALUE
    assert diff._first_line(a, b) == expect
    assert diff._first_line(a.encode(), b.encode()) == expect
    assert diff._common_prefix(a, b) == len(head) + 150


def test_one_text_ending_where_the_other_starts_a_line_lacks_that_line() -> None:
    assert diff._first_line("x", "x\n") == ("line 2: missing", '""')
    assert diff._first_line("x\nyy", "x") == ('line 2: "yy"', "missing")
    assert diff._first_line(b"x\n\n", b"x\n") == ('line 3: ""', "missing")


def reply(body: bytes, ctype: str) -> Reply:
    return Reply.of(200, [("content-type", ctype)], body)


def test_ascii_bodies_in_an_ascii_compatible_charset_are_compared_as_their_bytes() -> None:
    for ctype in ("text/plain", "text/plain; charset=US-ASCII", "text/csv; charset=latin-1", "application/json"):
        p, s = reply(b"a\nb\nc", ctype), reply(b"a\nB\nc", ctype)
        assert diff._text(p) == b"a\nb\nc"
        assert compare(p, s, CompareConfig()).diffs == ['body: line 2: "b" -> "B"']
    # Other charsets, non-ASCII bytes, unknown charsets: as Reply.text reads them.
    assert diff._text(reply(b"a\x00b\x00", "text/plain; charset=utf-16-le")) == "ab"
    assert diff._text(reply("é\n".encode(), "text/plain")) == "é\n"
    assert diff._text(reply(b"a", "text/plain; charset=nonesuch")) is None
    assert diff._text(reply(b"a", "application/octet-stream")) is None


def test_an_ascii_body_against_a_text_that_is_not_ascii_names_the_line() -> None:
    p, s = reply(b"a\nb", "text/plain"), reply("a\n\u00e9".encode(), "text/plain")
    assert compare(p, s, CompareConfig()).diffs == ['body: line 2: "b" -> "\u00e9"']
    # The same text in other bytes is still told apart from a different text.
    latin = reply("\u00e9".encode("latin-1"), "text/plain; charset=latin-1")
    utf8 = reply("\u00e9".encode(), "text/plain")
    diffs = compare(latin, utf8, CompareConfig()).diffs
    assert any(d.startswith("body: the same text in other bytes: ") for d in diffs)


def test_a_large_json_answer_over_the_parse_limit_names_its_first_line_clipped() -> None:
    """The benchmark's `wide` pair: a small JSON answer against ~1 MB of JSON on one line, compared as text."""
    small = b'{"id":4711,"name":"bench widget"}\n'
    wide = b"{" + b",".join(b'"%02d%s":%d' % (i, b"k" * 50_000, i) for i in range(20)) + b"}"
    c = compare(reply(small, "application/json"), reply(wide, "application/json"), CompareConfig())
    assert c.result == "mismatch" and len(c.diffs) == 1
    assert c.diffs[0].startswith('body: line 1: "{\\"id\\":4711') and c.diffs[0].endswith("kkkk...")
    assert len(c.diffs[0]) <= len("body: line 1: ") + 2 * MAX_VALUE + len(" -> ")


SEGMENT = st.one_of(st.none(), st.text(alphabet="a~/", max_size=12))


@given(st.lists(SEGMENT, max_size=8), st.integers(len("..."), 30))
def test_a_pointer_built_up_to_a_limit_clips_as_the_whole_pointer(path: list[str | None], limit: int) -> None:
    whole = pointer(path)
    assert clip(pointer(path, limit), limit) == clip(whole, limit)
    assert len(pointer(path, limit)) <= max(len(ROOT), 2 * (limit + 1) + 1)  # a bounded prefix: at most doubled
    if len(whole) <= limit:
        assert pointer(path, limit) == whole


def test_labels_of_fields_under_long_keys_are_clipped_pointers() -> None:
    key = "k/" * 25_000  # 50 KB, each "/" escaped as ~1
    p = reply(json.dumps({key: {key: 1}}).encode(), "application/json")
    s = reply(json.dumps({key: {key: 2}}).encode(), "application/json")
    c = compare(p, s, CompareConfig())
    assert [d.field for d in c.differences] == [clip("/" + "k~1" * 25_000 + "/" + "k~1" * 25_000, MAX_LABEL)]
    assert len(c.differences[0].field) == MAX_LABEL and c.diffs[0].startswith("/k~1k~1")
