"""What a replay says at its end, without I/O: why no request of the capture was copied, and the copies that timed
out, with the options that decide each."""

from __future__ import annotations

from collections.abc import Sequence

from .routing import Group

PREFIXES_SHOWN = 10  # prefixes named when no request of a capture went to a shadow


def _first(names: list[str]) -> str:
    return ", ".join(names[:PREFIXES_SHOWN]) + (", ..." if len(names) > PREFIXES_SHOWN else "")


def nothing_copied(
    read: int, copies: int, to_shadow: int, sampled_out: int, example: str, groups: Sequence[Group]
) -> str | None:
    """Why no request of the capture was copied, when none was: how many were read, one of them, and the
    prefixes the Mappings route (a capture recorded behind the ingress holds paths already rewritten).
    `to_shadow`: requests whose route has a shadow; `sampled_out`: of those, the ones its weight did not sample."""
    if copies or not read:
        return None
    if to_shadow and sampled_out < to_shadow:
        return None  # not copied for their own reasons (body_limit, streamed, ...), counted as drops
    if to_shadow:
        return (
            f"replay: {to_shadow} of {read} recorded requests went to a route with a shadow, but its "
            "weight sampled none of them; shadow_replay_every_request=true (mitmshadow replay "
            "--every-request) copies every one, unless the weight is 0"
        )
    shadowed = sorted({g.members[0].prefix for g in groups if g.shadow is not None and g.routes})
    others = sorted({g.members[0].prefix for g in groups if g.shadow is None} - set(shadowed))
    shown = _first(shadowed) or "none"
    if others:
        shown += f" (without a shadow: {_first(others)})"
    return (
        f"replay: no request of the capture went to a shadow: {read} read (e.g. {example or '-'}); "
        f"prefixes with a shadow: {shown}. A capture taken in front of the service itself holds paths its "
        "Mapping already rewrote: record requests as clients send them (README: Test a release against "
        "recorded traffic)"
    )


def timeouts(timed_out: int, copies: int) -> str | None:
    """The copies that timed out, and the options that decide it, when some did."""
    if not timed_out or not copies:
        return None
    return (
        f"replay: {timed_out} of {copies} copies timed out: the shadow did not answer within the copy timeout "
        "(shadow_timeout; default the production Mapping's timeout_ms). A development server takes few "
        "connections at once: lower shadow_max_inflight (a capture sends 4 at a time unless it is set)"
    )
