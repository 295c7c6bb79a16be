"""What to compare: the compared headers, ignore rules, gRPC descriptors and the bounds of a comparison (body and
parse limits, the share of the event loop, the report file's cap), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from .descriptors import Descriptors
from .descriptors import load as load_descriptors
from .fields import IgnoreRules, is_header_name, parse_ignore
from .reply import BODY_LIMIT

PARSE_LIMIT = 256 * 1024  # bytes of a body parsed as JSON per pair; a larger body is compared as bytes
LOOP_SHARE = 0.05  # the share of the event loop's time comparison may take, by default
REPORT_MAX = 64 * 1024 * 1024  # bytes of the report file before it is moved aside, by default


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare. Validated on construction: a bad entry raises ValueError with a one-line message."""

    headers: tuple[str, ...] = ("content-type",)
    ignore: tuple[str, ...] = ()
    body_limit: int = BODY_LIMIT
    descriptors: str = ""  # a FileDescriptorSet file: gRPC fields by name instead of number
    parse_limit: int = PARSE_LIMIT  # bytes of one body parsed as JSON; larger ones compare as bytes
    loop_share: float = LOOP_SHARE  # of the event loop's time, for comparing; past it pairs are skipped
    report_max: int = REPORT_MAX  # bytes of the report file before it is rotated; 0: unbounded
    rules: IgnoreRules = field(init=False, repr=False, compare=False)
    names: Descriptors | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = []
        for h in self.headers:
            if not is_header_name(h.strip()):
                raise ValueError(f"compared header {h!r} is not a header name")
            names.append(h.strip().lower())
        for name in ("body_limit", "parse_limit", "report_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', ' ')} must be 0 or more bytes, got {getattr(self, name)}")
        if not 0 <= self.loop_share <= 1:
            raise ValueError(f"the comparison's share of the event loop must be 0% to 100%, got {self.loop_share:.0%}")
        object.__setattr__(self, "headers", tuple(dict.fromkeys(names)))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "rules", parse_ignore(self.ignore))
        object.__setattr__(self, "names", load_descriptors(self.descriptors) if self.descriptors else None)
