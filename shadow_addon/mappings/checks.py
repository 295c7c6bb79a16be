"""Validators of one Mapping field's value: each returns the value or raises FieldError naming the field, with
the value shown bounded (`words.show`). Strings that go on the wire are refused if they would split an HTTP message."""

from __future__ import annotations

import json
from typing import Any

from .. import regex
from ..httpsyntax import breaks_line, is_field_name
from ..words import clean as _clean
from ..words import show as _show
from ..words import type_name as _type_name
from .fields import CORE_KEYS, REDIRECT_CODES
from .model import FieldError, HeaderAdd, Redirect


def _no_breakers(key: str, v: str) -> str:
    if breaks_line(v):
        raise FieldError(key, f"{key} must not contain CR, LF or NUL, got {_show(v)}")
    return v


def _no_space(key: str, v: str) -> str:
    """A path or a host: no whitespace or control characters (they would corrupt the request line or Host)."""
    if any(c.isspace() or not c.isprintable() for c in v):
        raise FieldError(key, f"{key} must not contain whitespace or control characters, got {_show(v)}")
    return v


def _str(spec: dict[str, Any], key: str, *, required: bool = False, empty_ok: bool = True) -> str | None:
    if key not in spec or spec[key] is None:
        if required:
            raise FieldError(key, f"{key} is required")
        return None
    v = spec[key]
    if not isinstance(v, str):
        raise FieldError(key, f"{key} must be a string, got {_type_name(v)} {_show(v)}")
    if not empty_ok and not v:
        raise FieldError(key, f"{key} must not be empty")
    return v


def _bool(spec: dict[str, Any], key: str, default: bool) -> bool:
    if key not in spec or spec[key] is None:
        return default
    v = spec[key]
    if not isinstance(v, bool):
        raise FieldError(key, f"{key} must be a boolean (true or false), got {_type_name(v)} {_show(v)}")
    return v


def _int(spec: dict[str, Any], key: str, lo: int, hi: int, what: str, too_big: str | None = None) -> int | None:
    if key not in spec or spec[key] is None:
        return None
    v = spec[key]
    shown = _show(v) if isinstance(v, str | int | float | bool) else _type_name(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (v > hi and too_big is None):
        raise FieldError(key, f"{key} must be {what}, got {shown}")
    if v > hi:
        raise FieldError(key, f"{key} must be {too_big}, got {shown}")
    return v


def _regex(key: str, pattern: str, case_sensitive: bool = True) -> str:
    try:
        regex.compile(pattern, case_sensitive)
    except ValueError as e:
        # RE2's reason quotes the pattern raw (newlines and all): cleaned and cut to keep one short line.
        reason = _clean(str(e))
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        raise FieldError(key, f"{key} is not a valid RE2 regular expression {_show(pattern)}: {reason}") from None
    return pattern


def _match_map(spec: dict[str, Any], key: str, *, regex: bool, v2: bool = False) -> tuple[tuple[str, str | None], ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise FieldError(key, f"{key} must be a mapping of name: value, got {_type_name(raw)}")
    out: list[tuple[str, str | None]] = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise FieldError(key, f"{key} has a name that is not a string: {_show(name)}")
        if value is True and not regex:
            out.append((name, None))  # v0-v2: `true` means "must be present" (irhttpmapping.py)
        elif value is False and v2 and not regex:
            continue  # handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec drops `false`
        elif isinstance(value, str):
            out.append((name, _regex(f"{key}.{_clean(name)}", value) if regex else value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not regex:
            out.append((name, str(value)))  # YAML reads `x-version: 2` as a number; Emissary compares text
        else:
            raise FieldError(
                f"{key}.{_clean(name)}",
                f"{key}.{_clean(name)} must be a string, got {_type_name(value)} {_show(value)}",
            )
    return tuple(out)


def _header_adds(spec: dict[str, Any], key: str) -> tuple[HeaderAdd, ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise FieldError(key, f"{key} must be a mapping of header: value, got {_type_name(raw)}")
    out = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise FieldError(key, f"{key} has a header name that is not a string: {_show(name)}")
        if not is_field_name(name):
            raise FieldError(key, f"{key} has an invalid header name {_show(name)}")
        if isinstance(value, dict):  # {value: ..., append: ...}
            _known_keys(f"{key}.{name}", value, ("value", "append"))
            v, append = value.get("value"), value.get("append", True)
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                raise FieldError(f"{key}.{name}.value", f"{key}.{name}.value must be a string, got {_type_name(v)}")
            if not isinstance(append, bool):
                raise FieldError(
                    f"{key}.{name}.append", f"{key}.{name}.append must be a boolean, got {_type_name(append)}"
                )
            out.append(HeaderAdd(name, _no_breakers(f"{key}.{name}.value", str(v)), append))
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            out.append(HeaderAdd(name, _no_breakers(f"{key}.{name}", str(value))))
        else:
            raise FieldError(
                f"{key}.{name}", f"{key}.{name} must be a string or {{value, append}}, got {_type_name(value)}"
            )
    return tuple(out)


def _name_list(spec: dict[str, Any], key: str) -> tuple[str, ...]:
    raw = spec.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise FieldError(key, f"{key} must be a list of header names")
    return tuple(raw)


def _regex_rewrite(spec: dict[str, Any]) -> tuple[str, str] | None:
    raw = spec.get("regex_rewrite")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FieldError(
            "regex_rewrite", f"regex_rewrite must be a mapping with pattern and substitution, got {_type_name(raw)}"
        )
    _known_keys("regex_rewrite", raw, ("pattern", "substitution"))
    pattern, subst = raw.get("pattern"), raw.get("substitution", "")
    if not isinstance(pattern, str) or not pattern:
        raise FieldError("regex_rewrite.pattern", "regex_rewrite.pattern must be a non-empty string")
    if not isinstance(subst, str):
        raise FieldError(
            "regex_rewrite.substitution", f"regex_rewrite.substitution must be a string, got {_type_name(subst)}"
        )
    _regex("regex_rewrite.pattern", pattern)
    _substitution(_no_space("regex_rewrite.substitution", subst), regex.compile(pattern).groups)
    return pattern, subst


def _substitution(subst: str, groups: int) -> None:
    """RE2 rewrite syntax, as Envoy's regex_rewrite uses it (re2.cc Rewrite/CheckRewriteString): a backslash
    is followed by a group digit (at most the pattern's group count) or by another backslash, nothing else."""
    for kind, value in regex.rewrite_parts(subst):
        if kind == "group" and int(value) > groups:
            raise FieldError(
                "regex_rewrite.substitution",
                f"regex_rewrite.substitution refers to group \\{value}, but the pattern has {groups} group(s)",
            )
        if kind == "bad":
            raise FieldError(
                "regex_rewrite.substitution",
                "regex_rewrite.substitution: a backslash must be followed by a group digit or a backslash, "
                f"got {_show(value)}",
            )


def _known_keys(key: str, raw: dict[Any, Any], known: tuple[str, ...]) -> None:
    """Nested objects refuse unknown keys as the spec does: `{value: x, apend: false}` must not pass."""
    for k in raw:
        if k not in known:
            raise FieldError(key, f"{key} has an unknown key {_show(k)} (expected {', '.join(known)})")


def _ambassador_ids(spec: dict[str, Any]) -> tuple[str, ...]:
    """config.py good_ambassador_id: `ambassadorId` is a synonym; a string or a list; default "default"."""
    key = "ambassadorId" if spec.get("ambassadorId") is not None else "ambassador_id"
    raw = spec.get(key)
    if raw is None:
        return ("default",)
    ids = [raw] if isinstance(raw, str) else raw
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise FieldError(key, f"{key} must be a string or a list of strings, got {_type_name(raw)} {_show(raw)}")
    return tuple(ids)


def _redirect(spec: dict[str, Any], service: str) -> Redirect | None:
    """v3route.py V3Route: host_redirect answers a redirect to `service`; path/prefix/regex_redirect (one of them,
    irhttpmapping.py _enforce_mutual_exclusion) set its path; redirect_response_code one of 301..308."""
    if not _bool(spec, "host_redirect", False):
        return None
    # v3route.py V3Route: `if path_redirect:` / `elif prefix_redirect:`, so "" is unset.
    path = _str(spec, "path_redirect") or None
    prefix = _str(spec, "prefix_redirect") or None
    regex_redirect = None
    if spec.get("regex_redirect") is not None:
        regex_redirect = _regex_rewrite({"regex_rewrite": spec["regex_redirect"]})
    code = _int(spec, "redirect_response_code", 0, 999, "one of 301, 302, 303, 307, 308")
    if code is not None and code not in REDIRECT_CODES:
        raise FieldError(
            "redirect_response_code", f"redirect_response_code must be one of 301, 302, 303, 307, 308, got {code}"
        )
    return Redirect(_no_space("service", service), path, prefix, regex_redirect, code or 301)


def _allow_upgrade(spec: dict[str, Any]) -> tuple[str, ...]:
    """allow_upgrade: a list of upgrade types; use_websocket adds "websocket" (irhttpmapping.py __init__)."""
    raw = spec.get("allow_upgrade")
    out: list[str] = []
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise FieldError(
                "allow_upgrade", f"allow_upgrade must be a list of upgrade types, got {_type_name(raw)} {_show(raw)}"
            )
        out = [x.lower() for x in raw]
    _bool(spec, "use_websocket", False)
    if "use_websocket" in spec and "websocket" not in out:  # irhttpmapping.py: the key's presence, whatever its value
        out.append("websocket")
    return tuple(out)


def _core(spec: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    out = []
    for k in CORE_KEYS:
        if k in spec:
            v = spec[k]
            out.append((k, json.dumps(v, sort_keys=True, default=str), _show_py(v)))
    return tuple(out)


def _show_py(v: Any) -> str:
    """A value as Emissary prints it in its messages (Python's str: True, not true)."""
    text = str(v)
    return text if len(text) <= 120 else text[:117] + "..."
