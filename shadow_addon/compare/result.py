"""A comparison's outcome: match, noise, mismatch, skipped or error, with its differences named by kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .render import MAX_LABEL, clip

Result = Literal["match", "mismatch", "noise", "skipped", "error"]
KINDS = ("value", "type", "missing", "extra", "array length", "order only", "status", "header", "body")


@dataclass(frozen=True, slots=True)
class Difference:
    """One differing field: its name as in the diff text (`status`, `header etag`, `body`, a JSON pointer), its
    kind (see KINDS), and whether learned noise covers it."""

    field: str
    kind: str
    noise: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """match: nothing differs; noise: only known-noisy fields differ; mismatch: something else differs (`kinds`
    says where: status, header, body); skipped: nothing to compare (the shadow failed, or a bound was reached);
    error: the comparison itself failed. `diffs`: one line per non-noise difference (at most MAX_LISTED, then
    "... and N more"); `noisy`: the names of the noisy fields that differed; `differences`: the first MAX_FIELDS
    differences with their kinds (`more_fields`: how many more there were, `more_noise` of them in noise)."""

    result: Result
    kinds: frozenset[str] = frozenset()
    diffs: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)
    differences: tuple[Difference, ...] = ()
    more_fields: int = 0
    reason: str = ""  # skipped: why, in one word of a fixed few (a metric label); error: "error"
    more_noise: int = 0  # of `more_fields`, those in learned noise


MATCH = Comparison("match")  # what every comparison that found nothing returns (nothing in it is ever changed)


def skipped(text: str, reason: str = "other") -> Comparison:
    """A pair not compared: `text` says why in the diff text, `reason` counts it (shadow, production, budget,
    memory, pending, decoding, size, error, other)."""
    return Comparison("skipped", diffs=[f"skipped: {clip(text, MAX_LABEL)}"], reason=reason)


def failed(text: str) -> Comparison:
    """A pair whose comparison raised: counted as `error`."""
    return Comparison("error", diffs=[f"error: {clip(text, MAX_LABEL)}"], reason="error")
