"""Which fields differ more than noise explains, per endpoint: Diffy's judgement, without its three deployments.

Per (shadow Mapping, endpoint) it counts the pairs compared and, per field, how many of them the candidate (the
shadow) differed in; and the noise samples and, per field, how many of them differed: a noise sample is production
vs the secondary (a second instance of production's version, answering the same request) or, without one,
production vs its own earlier answer to the same request. A field is reported when its candidate difference rate
exceeds its noise rate by both thresholds, as Diffy's filter decides (ai/diffy/analysis/JoinedDifferences.scala,
DifferencesFilterFactory; rates rather than Diffy's raw counts, as noise samples and pairs need not be as many):
noise is a rate, re-judged with every pair, not a set learned for good.

Pure: no I/O. Bounded: `max_endpoints` per shadow Mapping (then its `(other)` endpoint), `max_fields` per endpoint
(then `(other fields)`), every entry counted in the shared memory budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..budget import MemoryBudget
from .noise import NoiseLearner
from .reply import Reply
from .result import Comparison

RELATIVE = 20.0  # percent: Diffy's default relative threshold
ABSOLUTE = 0.03  # percent: Diffy's default absolute threshold
MAX_ENDPOINTS = 500
MAX_FIELDS = 64
SHOWN = 50  # endpoints detailed field by field in `to_json` (/diffs, the dashboard): those with most reported
PROVISIONAL_BELOW = 3  # noise samples an endpoint needs before its judgement stops being provisional
OTHER = "(other)"
OTHER_FIELDS = "(other fields)"
UNLISTED = "(unlisted fields)"  # the differences past the diff's listing limit
ENDPOINT_BYTES = 400  # bookkeeping of one endpoint, besides its name
FIELD_BYTES = 200  # of one field, besides its name
NAME_LIMIT = 200  # characters of a field name kept

HINT_NO_SECONDARY = (
    "no noise measured yet for this endpoint: name a secondary (shadow_compare_secondary) or ignore fields that "
    "vary by themselves (shadow_compare_ignore)"
)
HINT_SECONDARY = "no answer from the secondary yet for this endpoint"


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """Thresholds in percent, as Diffy's `relativeThreshold` and `absoluteThreshold`."""

    relative: float = RELATIVE
    absolute: float = ABSOLUTE
    secondary: bool = False  # a secondary is configured (noise measured on every pair)


@dataclass(slots=True)
class FieldCounts:
    candidate: int = 0  # pairs in which production and the candidate differed here
    noise: int = 0  # noise samples in which this field differed


@dataclass(slots=True)
class EndpointCounts:
    compared: int = 0
    samples: int = 0  # noise samples
    fields: dict[str, FieldCounts] = field(default_factory=dict)


def _general(name: str) -> str:
    """A field name with array indices as `*` (`/items/3/ts` -> `/items/*/ts`), clipped."""
    if name.startswith("/"):
        name = "/".join("*" if s.isascii() and s.isdigit() else s for s in name.split("/"))
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 3] + "..."


def fields_of(c: Comparison) -> tuple[list[str], list[str]]:
    """The fields a comparison found different, generalised: (differences outside learned noise, differences in
    learned noise), each name once; UNLISTED stands for the differences past the comparison's field limit."""
    listed: dict[str, None] = {}
    noisy: dict[str, None] = {}
    for d in c.differences:
        (noisy if d.noise else listed)[_general(d.field)] = None
    if c.more_fields > c.more_noise:
        listed[UNLISTED] = None
    if c.more_noise:
        noisy[UNLISTED] = None
    return list(listed), list(noisy)


def _where(kind: str) -> str:
    """The part of the answer a difference of this kind is in (`Comparison.kinds`)."""
    return kind if kind in ("status", "header") else "body"


def verdict(e: EndpointCounts, f: FieldCounts, config: JudgeConfig) -> dict[str, Any]:
    """One field's figures and whether it is reported (rates as fractions, thresholds in percent)."""
    rate = f.candidate / e.compared if e.compared else 0.0
    noise = f.noise / e.samples if e.samples else 0.0
    absolute = rate - noise
    relative = absolute / rate if rate else 0.0
    reported = f.candidate > 0 and absolute * 100 > config.absolute and relative * 100 > config.relative
    return {
        "candidate": f.candidate,
        "noise": f.noise,
        "rate": rate,
        "noise_rate": noise,
        "absolute": absolute,
        "relative": relative,
        "reported": reported,
    }


class Judge:
    """The counts and the verdicts (see the module)."""

    def __init__(
        self,
        config: JudgeConfig | None = None,
        budget: MemoryBudget | None = None,
        max_endpoints: int = MAX_ENDPOINTS,
        max_fields: int = MAX_FIELDS,
        current: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config or JudgeConfig()
        self.current = current  # an endpoint's name as it would be given now (`EndpointNamer.current`)
        self.budget = budget
        self.max_endpoints = max_endpoints
        self.max_fields = max_fields
        self.endpoints: dict[tuple[str, str], EndpointCounts] = {}
        self.per_mapping: dict[str, int] = {}
        self.held = 0  # bytes taken from the budget
        self.untracked = 0  # observations not counted: the budget was full

    def close(self) -> None:
        if self.budget is not None and self.held:
            self.budget.release(self.held)
        self.held = 0
        self.endpoints.clear()
        self.per_mapping.clear()

    def _take(self, n: int) -> bool:
        if self.budget is not None and not self.budget.take(n):
            self.untracked += 1
            return False
        self.held += n
        return True

    def _endpoint(self, mapping: str, endpoint: str) -> EndpointCounts | None:
        key = (mapping, endpoint)
        e = self.endpoints.get(key)
        if e is not None:
            return e
        if self.per_mapping.get(mapping, 0) >= self.max_endpoints:
            key = (mapping, OTHER)
            e = self.endpoints.get(key)
            if e is not None:
                return e
        if not self._take(ENDPOINT_BYTES + len(key[0]) + len(key[1])):
            return None
        e = self.endpoints[key] = EndpointCounts()
        self.per_mapping[mapping] = self.per_mapping.get(mapping, 0) + 1
        return e

    def _field(self, e: EndpointCounts, name: str) -> FieldCounts | None:
        f = e.fields.get(name)
        if f is not None:
            return f
        if len(e.fields) >= self.max_fields:
            name = OTHER_FIELDS
            f = e.fields.get(name)
            if f is not None:
                return f
        if not self._take(FIELD_BYTES + len(name)):
            return None
        f = e.fields[name] = FieldCounts()
        return f

    # ------------------------------------------------------------ observations

    def noise(self, mapping: str, endpoint: str, fields: Iterable[str]) -> None:
        """One noise sample: the fields that differed between two answers of production's version."""
        e = self._endpoint(mapping, endpoint)
        if e is None:
            return
        e.samples += 1
        names = dict.fromkeys(_general(n) for n in fields)
        counted = {id(f): f for f in (self._field(e, n) for n in names) if f is not None}
        for f in counted.values():
            f.noise += 1

    def candidate(self, mapping: str, endpoint: str, c: Comparison) -> Comparison:
        """Count one comparison of production with the candidate and return it re-judged: as `noise` when every
        field that differed is judged noise for this endpoint (a field the secondary differs in as well), as a
        `mismatch` when a field in learned noise now differs far more often than production's version does."""
        if c.result == "skipped":
            return c
        e = self._endpoint(mapping, endpoint)
        if e is None:
            return c
        e.compared += 1
        if c.result == "match":
            return c
        listed, noisy = fields_of(c)
        names = list(dict.fromkeys(listed + noisy))
        counted = {id(f): f for f in (self._field(e, n) for n in names) if f is not None}  # `(other fields)` once
        for f in counted.values():
            f.candidate += 1
        if not all(n in e.fields for n in names):
            return c  # a field past a cap is not judged on its own: the pair stays as compared
        if c.result == "noise":
            return self._louder(e, c, noisy)
        if c.result != "mismatch" or not listed:
            return c
        if any(verdict(e, e.fields[n], self.config)["reported"] for n in listed):
            return c
        return dataclasses.replace(
            c,
            result="noise",
            kinds=frozenset(),
            diffs=[],
            noisy=[*c.noisy, *(d.field for d in c.differences if not d.noise)],
            differences=tuple(d if d.noise else dataclasses.replace(d, noise=True) for d in c.differences),
            more_noise=c.more_fields,
        )

    def _louder(self, e: EndpointCounts, c: Comparison, noisy: list[str]) -> Comparison:
        """A pair that differed only in learned noise: a mismatch when one of those fields is reported."""
        lines, loud = [], set()
        for n in noisy:
            v = verdict(e, e.fields[n], self.config)
            if v["reported"] and n != UNLISTED:
                rate, noise = round(v["rate"] * 100, 2), round(v["noise_rate"] * 100, 2)
                lines.append(f"{n}: differs in {rate:g} % of pairs, production's version in {noise:g} %")
                loud.add(n)
        if not lines:
            return c
        differences = tuple(
            dataclasses.replace(d, noise=False) if _general(d.field) in loud else d for d in c.differences
        )
        return dataclasses.replace(
            c,
            result="mismatch",
            kinds=frozenset(_where(d.kind) for d in differences if not d.noise),
            diffs=lines,
            noisy=[x for x in c.noisy if _general(x) not in loud],
            differences=differences,
        )

    # ------------------------------------------------------------ reading

    def provisional(self, e: EndpointCounts) -> bool:
        return e.samples < PROVISIONAL_BELOW

    def reported(self, e: EndpointCounts) -> int:
        return sum(1 for f in e.fields.values() if verdict(e, f, self.config)["reported"])

    def to_json(self, shown: int = SHOWN) -> list[dict[str, Any]]:
        """Per endpoint, its fields with their figures, reported ones first; endpoints with reported fields first.
        Only the first `shown` endpoints are listed (the page is read every few seconds)."""
        out: list[dict[str, Any]] = []
        hint = HINT_SECONDARY if self.config.secondary else HINT_NO_SECONDARY
        ranked = sorted(self._merged().items(), key=lambda kv: (-self.reported(kv[1]), kv[0]))
        for (mapping, endpoint), e in ranked[:shown]:
            fields: list[dict[str, Any]] = [{"field": n, **verdict(e, f, self.config)} for n, f in e.fields.items()]
            fields.sort(key=lambda r: (not r["reported"], -r["absolute"], -r["candidate"], r["field"]))
            provisional = self.provisional(e)
            out.append(
                {
                    "mapping": mapping,
                    "endpoint": endpoint,
                    "compared": e.compared,
                    "noise_samples": e.samples,
                    "reported": sum(1 for f in fields if f["reported"]),
                    "provisional": provisional,
                    "hint": hint if provisional else "",
                    "fields": fields,
                }
            )
        out.sort(key=lambda r: (-r["reported"], r["mapping"], r["endpoint"]))
        return out

    def _merged(self) -> dict[tuple[str, str], EndpointCounts]:
        """The endpoints by their current names: those named before a position became a variable join it."""
        if self.current is None:
            return self.endpoints
        out: dict[tuple[str, str], EndpointCounts] = {}
        summed: set[tuple[str, str]] = set()  # entries of `out` that are sums (copies), not the counts themselves
        for (mapping, name), e in self.endpoints.items():
            key = (mapping, self.current(name))
            m = out.get(key)
            if m is None:
                out[key] = e
                continue
            if key not in summed:
                summed.add(key)
                m = out[key] = _copy(m)
            m.compared += e.compared
            m.samples += e.samples
            for n, f in e.fields.items():
                g = m.fields.setdefault(n, FieldCounts())
                g.candidate += f.candidate
                g.noise += f.noise
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "relative_threshold": self.config.relative,
            "absolute_threshold": self.config.absolute,
            "secondary": self.config.secondary,
            "untracked": self.untracked,
            "tracked": len(self.endpoints),
            "endpoints": self.to_json(),
        }


def _copy(e: EndpointCounts) -> EndpointCounts:
    return EndpointCounts(e.compared, e.samples, {n: FieldCounts(f.candidate, f.noise) for n, f in e.fields.items()})


class CountingLearner(NoiseLearner):
    """The noise learner, whose answers production gives again are noise samples for the judge: the fields that
    changed since production's previous answer to the same request (an identical answer is a sample in which
    nothing differed)."""

    def sample(self, mapping: str, key: str, reply: Reply) -> list[str] | None:
        """Observe `reply`; returns the fields that changed since this request's previous answer (UNLISTED for
        those past the naming limit), or None when there was no previous answer (nothing to compare: not a
        sample)."""
        changes = self.observe(mapping, key, reply)
        if changes is None:
            return None
        return [*changes.fields, UNLISTED] if changes.more else list(changes.fields)
