"""Endpoint names that group requests to the same handler: `GET /users/{id}/orders/{id}`, `GET /cart/{user}`.

In order: a `Canonical-Resource` request header names the endpoint as given (opendiffy's override); else the
first pattern the user gave (`shadow_compare_endpoints`) that matches; else the path with id-like segments made
`{id}`, the caller's own name made `{user}` (from Basic credentials or a bearer JWT's claims), and a position
below the first that has taken many different words under the same prefix made `{var}` (user names, slugs) from
then on (the first segment names a resource: `/products`, `/search`, `/health` stay apart).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from ..budget import MemoryBudget
from .fields import is_index

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{10,}")
_SWITCH = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")
_PREFIXED = re.compile(r"[A-Za-z]+[_-][0-9]{3,}")
_METHOD = re.compile(r"[A-Za-z]+|\*")
_VAR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

OVERRIDE_HEADER = "canonical-resource"  # opendiffy's header: the client names the endpoint itself
NAMED_BY = (OVERRIDE_HEADER.encode(), b"authorization")  # the request headers `EndpointNamer.name` reads


def naming_fields(fields: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """The request's header fields that name its endpoint (`NAMED_BY`): what a pair named later keeps of them."""
    return tuple(f for f in fields if f[0].lower() in NAMED_BY)


NAME_LIMIT = 200  # characters of an endpoint name given by a header
# Distinct words at one position (same method, prefix and depth) before it becomes `{var}`. Conservative: two
# handlers merged hide which one broke, while one handler split only spreads its figures.
MANY = 8
MAX_PREFIXES = 2000  # prefixes whose words are counted; beyond it new prefixes are not learned
WORD_LIMIT = 64  # longer segments are not counted (a long word is a slug or an id: shape rules see it)
TOKEN_LIMIT = 8192  # bytes of an Authorization value looked into for the caller's name
_CLAIMS = ("sub", "preferred_username", "username", "user", "email", "name")
CACHE = 4096  # names of recent paths, for requests that carry no name of their own (no header, no credentials)
CACHE_PATH = 256  # longer paths are named each time
SHAPES = 1024  # segments whose shape is kept (~200 KiB at most, outside the budget: too small to count)
PREFIX_BYTES = 300  # bookkeeping of one counted prefix, besides its text
WORD_BYTES = 80  # of one counted word, besides its text


def _id_like(seg: str) -> bool:
    """Conservative: digits; a UUID; 8+ hex characters with a digit; a prefixed number (`usr_123`, 3+ digits);
    a 10+ character token switching between letters and digits 3+ times (random ids do, words and versions such
    as `v1`, `oauth2`, `v1beta1`, `sha256` do not)."""
    if is_index(seg) or _UUID.fullmatch(seg) or _PREFIXED.fullmatch(seg):
        return True
    if _HEX.fullmatch(seg) and any(c.isdigit() for c in seg):
        return True
    return bool(_TOKEN.fullmatch(seg)) and len(_SWITCH.findall(seg)) >= 3


def _path_of(path: str) -> str:
    return path.split("?", 1)[0].split("#", 1)[0] or "/"


def endpoint(method: str, path: str) -> str:
    """`GET /users/{id}/orders/{id}`: method and path without query, id-like segments collapsed."""
    return f"{method.upper()} " + "/".join("{id}" if _id_like(s) else s for s in _path_of(path).split("/"))


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Pattern:
    """`[METHOD ]/cart/{user}`: `{name}` stands for any one segment; no method (or `*`) for any method."""

    method: str | None
    segments: tuple[str | None, ...]  # None: a `{name}`
    text: str  # the path as written, used in the name

    def matches(self, method: str, segs: Sequence[str]) -> bool:
        if self.method is not None and self.method != method:
            return False
        return len(segs) == len(self.segments) and all(
            p is None or p == s for p, s in zip(self.segments, segs, strict=True)
        )


def parse_patterns(entries: Iterable[str]) -> tuple[Pattern, ...]:
    """Endpoint patterns; raises ValueError with a one-line message naming the bad entry."""
    out = []
    for raw in entries:
        text = raw.strip()
        method: str | None = None
        if " " in text:
            m, _, text = text.partition(" ")
            text = text.strip()
            if not _METHOD.fullmatch(m):
                raise ValueError(f"endpoint pattern {raw!r}: {m!r} is not a method")
            method = None if m == "*" else m.upper()
        if not text.startswith("/"):
            raise ValueError(f"endpoint pattern {raw!r}: expected [METHOD ]/path with {{name}} segments")
        segs: list[str | None] = []
        for s in _path_of(text).split("/"):
            if _VAR.fullmatch(s):
                segs.append(None)
            elif "{" in s or "}" in s:
                raise ValueError(f"endpoint pattern {raw!r}: {s!r} must be a whole segment {{name}}")
            else:
                segs.append(s)
        out.append(Pattern(method, tuple(segs), _path_of(text)))
    return tuple(out)


def caller(authorization: str | None) -> frozenset[str]:
    """Names the caller goes by: the user of Basic credentials, the name claims of a bearer JWT (not verified:
    only used to name endpoints). Empty when there are none."""
    if not authorization or len(authorization) > TOKEN_LIMIT:
        return frozenset()
    scheme, _, cred = authorization.strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    try:
        if scheme == "basic":
            user = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")[0]
            return frozenset({user}) if user else frozenset()
        if scheme == "bearer" and cred.count(".") == 2:
            part = cred.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            if isinstance(claims, dict):
                names = {str(claims[c]) for c in _CLAIMS if isinstance(claims.get(c), str | int) and claims[c] != ""}
                names |= {n.partition("@")[0] for n in names if "@" in n}  # bob@example.com: also bob
                return frozenset(names)
    except (ValueError, UnicodeDecodeError, binascii.Error, RecursionError):
        pass
    return frozenset()


class EndpointNamer:
    """Names requests' endpoints (see the module). Bounded: it counts words for at most `max_prefixes` prefixes,
    at most `many` + 1 words each, of at most WORD_LIMIT characters, all held in `budget` when given (when it is
    full, nothing new is learned)."""

    def __init__(
        self,
        patterns: Sequence[Pattern] = (),
        many: int = MANY,
        max_prefixes: int = MAX_PREFIXES,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.patterns = tuple(patterns)
        self.many = many
        self.max_prefixes = max_prefixes
        self.budget = budget
        self.held = 0
        self.words: dict[str, set[str]] = {}  # prefix key -> words seen at the position after it
        self.varying: set[str] = set()  # prefix keys whose next position is a `{var}`
        # (method, path) -> name: naming runs for every compared request. Emptied when a position becomes a
        # variable; a repeated word changes nothing, so a cached name is the name.
        self.cache: dict[tuple[str, str], str] = {}
        self.cache_held = 0
        # segment -> whether it is id-like, for the words paths share (`/api/items/1`, `/api/items/2`): four
        # regexes a segment otherwise. Bounded (SHAPES, WORD_LIMIT); a number is told at once, never kept.
        self.shapes: dict[str, bool] = {}

    def _forget(self) -> None:
        self.cache.clear()
        if self.budget is not None:
            self.budget.release(self.cache_held)
        self.held -= self.cache_held
        self.cache_held = 0

    def _take(self, n: int) -> bool:
        if self.budget is not None and not self.budget.take(n):
            return False
        self.held += n
        return True

    def close(self) -> None:
        if self.budget is not None:
            self.budget.release(self.held)
        self.held = 0
        self.words.clear()
        self.varying.clear()
        self.shapes.clear()
        self._forget()

    def name(self, method: str, path: str, headers: Headers | None = None) -> str:
        """The endpoint of a request: the override header's name, else the path with its variable parts named (by
        `authorization` too). Reads no other header (`NAMED_BY`)."""
        method = method.upper()
        if headers is not None:
            given = headers.get(OVERRIDE_HEADER)
            if given and given.strip():
                return _CONTROL.sub("", given.strip())[:NAME_LIMIT]
        path = _path_of(path)
        authorization = headers.get("authorization") if headers is not None else None
        if authorization is None:
            cached = self.cache.get((method, path))
            if cached is not None:
                return cached
            name = self._name(method, path, frozenset())
            if len(path) <= CACHE_PATH:
                if len(self.cache) >= CACHE:
                    self._forget()
                n = WORD_BYTES + len(path) + len(name)
                if self._take(n):
                    self.cache_held += n
                    self.cache[(method, path)] = name
            return name
        return self._name(method, path, None, authorization)

    def _name(self, method: str, path: str, users: frozenset[str] | None, authorization: str | None = None) -> str:
        segs = path.split("/")
        for p in self.patterns:
            if p.matches(method, segs):
                return f"{method} {p.text}"
        out: list[str] = []
        depth = len(segs)
        for i, seg in enumerate(segs):
            if i == 0 or not seg:
                out.append(seg)
                continue
            if self._is_id(seg):
                out.append("{id}")
                continue
            if users is None:
                users = caller(authorization)
            if users and unquote(seg) in users:
                out.append("{user}")
                continue
            out.append(seg if i == 1 else self._word(f"{method} {depth} " + "/".join(out), seg))
        return f"{method} " + "/".join(out)

    def _is_id(self, seg: str) -> bool:
        """`_id_like`, with the shapes of shared words kept (`shapes`)."""
        if seg.isdigit() or len(seg) > WORD_LIMIT:
            return _id_like(seg)
        shape = self.shapes.get(seg)
        if shape is None:
            if len(self.shapes) >= SHAPES:
                self.shapes.clear()
            shape = self.shapes[seg] = _id_like(seg)
        return shape

    def current(self, name: str) -> str:
        """An endpoint name given earlier, as it would be named now: a position that has since become a variable is
        `{var}` (so `GET /cart/alice`, named before there were many users, joins `GET /cart/{var}`). Learns
        nothing."""
        method, sep, path = name.partition(" ")
        if not sep or not path.startswith("/") or not self.varying:
            return name
        segs = path.split("/")
        out: list[str] = []
        for i, seg in enumerate(segs):
            varying = i > 1 and seg and f"{method} {len(segs)} " + "/".join(out) in self.varying
            out.append("{var}" if varying else seg)
        return f"{method} " + "/".join(out)

    def _word(self, key: str, seg: str) -> str:
        """`seg`, or `{var}` once the position after `key` has taken more than `many` different words."""
        if key in self.varying:
            return "{var}"
        if len(seg) > WORD_LIMIT:
            return seg
        words = self.words.get(key)
        if words is None:
            if len(self.words) + len(self.varying) >= self.max_prefixes or not self._take(PREFIX_BYTES + len(key)):
                return seg
            words = self.words[key] = set()
        if seg in words:
            return seg
        if not self._take(WORD_BYTES + len(seg)):
            return seg
        words.add(seg)
        if len(words) > self.many:
            del self.words[key]  # its words' bytes stay held until close: the prefix key is kept as `varying`
            self.varying.add(key)
            self._forget()
            return "{var}"
        return seg
