"""RE2 rewrite strings: one scanner for validation and for applying them."""

from __future__ import annotations

import re

import pytest

from shadow_addon import regex


@pytest.mark.parametrize(
    ("subst", "parts"),
    [
        ("/v2/\\1", [("text", "/v2/"), ("group", "1")]),
        ("a\\\\b", [("text", "a"), ("text", "\\"), ("text", "b")]),
        ("\\0", [("group", "0")]),
        ("\\x/", [("bad", "\\x"), ("text", "x/")]),
        ("end\\", [("text", "end"), ("bad", "\\")]),
        ("\\\u00b2", [("bad", "\\\u00b2"), ("text", "\u00b2")]),  # a superscript digit is no group
        ("", []),
    ],
)
def test_rewrite_parts_follow_re2(subst: str, parts: list[tuple[str, str]]) -> None:
    assert regex.rewrite_parts(subst) == parts


def test_the_template_applies_what_validation_accepts_and_keeps_other_backslashes_literal() -> None:
    rx = regex.compile("/rx/(.*)")
    assert regex.substitute(rx, "/v2/\\1", "/rx/a") == "/v2/a"
    assert regex.substitute(rx, "\\\\\\1", "/rx/a") == "\\a"
    assert re.sub("(a)", regex.python_template("\\x\\1"), "a") == "\\xa"
