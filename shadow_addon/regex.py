"""Regular expressions as Envoy runs them: RE2 (linear time, no backtracking, no lookarounds/backreferences).

Emissary hands `prefix_regex`, `regex_headers`, `host_regex` and `regex_rewrite` to Envoy's `safe_regex`, which is
RE2; using the same engine here means a pattern behaves identically, and no pattern can freeze the proxy.
"""

from __future__ import annotations

import functools
from typing import Any

import re2


def _options(case_sensitive: bool = True) -> Any:
    o = re2.Options()
    o.log_errors = False  # errors are reported once, as our own one-line message
    o.case_sensitive = case_sensitive
    return o


@functools.lru_cache(maxsize=4096)  # patterns come from configuration: a bounded set, compiled once
def compile(pattern: str, case_sensitive: bool = True) -> Any:  # noqa: A001 - mirrors re.compile
    """Compile with RE2; raise ValueError with RE2's reason."""
    try:
        return re2.compile(pattern, options=_options(case_sensitive))
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(reason) from None
    except TypeError as e:  # e.g. a pattern RE2 cannot take as text
        raise ValueError(str(e)) from None


def substitute(compiled: Any, substitution: str, text: str) -> str:
    """Replace every match as Envoy's regex_rewrite and regex_redirect do (RE2::GlobalReplace): `\\0` is the whole
    match, `\\1`..`\\9` a group, `\\\\` a backslash. (Python's replacement rules differ: there `\\0` is a NUL.)

    Unlike Python's `re.sub`, an empty match right where the previous match ended is not replaced, so `(.*)` ->
    `/v2\\1` turns `/rx/a` into `/v2/rx/a`, not `/v2/rx/a/v2`.
    """
    # Envoy source/common/common/regex.h CompiledGoogleReMatcher::replaceAll calls re2.cc RE2::GlobalReplace.
    template = python_template(substitution)
    out: list[str] = []
    p, last_end, n, count = 0, -1, len(text), 0
    while p <= n:
        m = compiled.search(text, p)
        if m is None:
            break
        start, end = m.span()
        if p < start:
            out.append(text[p:start])
        if start == end == last_end:
            # re2.cc GlobalReplace: "Disallow empty match at end of last match: skip ahead" (one character).
            out.append(text[p : p + 1])
            p += 1
            continue
        out.append(m.expand(template))
        p = last_end = end
        count += 1
    if count == 0:
        return text
    out.append(text[p:])
    return "".join(out)


def rewrite_parts(substitution: str) -> list[tuple[str, str]]:
    """An RE2 rewrite string in parts (re2.cc Rewrite / CheckRewriteString): ("text", t), ("group", digit) for
    `\\N` (an ASCII digit), ("text", "\\") for `\\\\`, and ("bad", the backslash and what follows it) for any
    other backslash, which RE2 refuses (validation reports it; applying takes the backslash literally)."""
    out: list[tuple[str, str]] = []
    i = start = 0
    while i < len(substitution):
        if substitution[i] != "\\":
            i += 1
            continue
        if start < i:
            out.append(("text", substitution[start:i]))
        nxt = substitution[i + 1 : i + 2]
        if nxt.isascii() and nxt.isdigit():
            out.append(("group", nxt))
            i += 2
        elif nxt == "\\":
            out.append(("text", "\\"))
            i += 2
        else:
            out.append(("bad", substitution[i : i + 2]))
            i += 1
        start = i
    if start < len(substitution):
        out.append(("text", substitution[start:]))
    return out


@functools.lru_cache(maxsize=1024)
def python_template(substitution: str) -> str:
    """An RE2 rewrite string as a Python `re.sub` template."""
    out: list[str] = []
    for kind, value in rewrite_parts(substitution):
        if kind == "group":
            out.append(f"\\g<{value}>")
        else:  # a "bad" backslash is taken literally, and what follows it is read as usual
            out.append(value[:1].replace("\\", "\\\\") if kind == "bad" else value.replace("\\", "\\\\"))
    return "".join(out)
