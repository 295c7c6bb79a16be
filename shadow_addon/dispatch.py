"""A request's copy handed to the sender, and what comes of it: the copy shaped (with its secondary's), the
question at its answer's head (read on kept, or not), and its outcome given to the comparison's pair, the replay
and mitmweb's flow view. Functions over the addon's rooms (`Rooms`), as `pages` reads them."""

from __future__ import annotations

import logging
from typing import Protocol

from mitmproxy import ctx, http

from . import compare, copies, flowview, routing, secondary
from .compare.endpoints import naming_fields
from .compare.pairing import Pairing
from .copyrequest import Copy, Outcome
from .httpsyntax import FieldView
from .sender import Sender
from .settings import Settings

logger = logging.getLogger("shadow")


class Settled(Protocol):
    def settled(self, c: Copy) -> None: ...


class Rooms(Protocol):
    """What the copy's way reads and counts: the addon's rooms."""

    settings: Settings
    sender: Sender | None
    pairing: Pairing | None
    writes: dict[str, int]  # copies of requests other than reads, per shadow Mapping

    @property
    def replay(self) -> Settled: ...

    def flows_wanted(self) -> bool: ...


def submit(
    r: Rooms,
    key: str,
    req: http.Request,
    route: routing.Route,
    body: bytes,
    paired: bool,
    via: str | None = None,
    position: int | None = None,
) -> None:
    """Shape the copy of `req` (as production got it) and hand it to the sender; `paired`: compare its answer
    with production's, which `Pairing.production_answered` gives under the same key; `position`: the request's in
    a replayed capture."""
    s, pairing = r.settings, r.pairing
    assert route.shadow is not None and r.sender is not None
    keep = s.body_limit if r.flows_wanted() else 0
    to_secondary = None
    # With comparison on, every answer is read as a compared one is, kept or not: a pair skipped for the
    # comparison's share must not turn a healthy shadow's answers into capped ones (dropped, backed off).
    read = pairing.config.body_limit if pairing is not None and paired else 0
    if pairing is not None and paired:
        summary = {"method": req.method, "path": req.path, "host": copies.host_of(req), "size": len(body)}
        to_secondary = secondary.address_for(s.secondaries, route.mapping, route.address)
        fields = req.headers.fields
        if pairing.order is not None and position is not None:  # named when judged, in the capture's order
            name, naming = "", (req.method, req.path, naming_fields(fields))
        else:
            name, naming = pairing.namer.name(req.method, req.path, FieldView(fields)), None
        # False when comparison's share of the event loop is spent: the copy goes out as an uncompared one.
        paired = pairing.expect(
            key, route.shadow.name, name, summary, to_secondary is not None, position if naming else None, naming
        )
        if paired:
            keep = max(keep, pairing.config.body_limit)
        else:
            to_secondary = None
    if req.method.upper() not in copies.READS:
        r.writes[route.shadow.name] = r.writes.get(route.shadow.name, 0) + 1
    hash_body = pairing is not None and paired
    c = copies.make_copy(
        req, route, body, s, keep_body=keep, hash_body=hash_body, context=key, via=via, read_limit=read
    )
    r.sender.submit(c)
    if to_secondary is not None and pairing is not None and pairing.secondary_wanted(key):
        r.sender.submit(secondary.copy_for(c, to_secondary, copies.host_of(req)))


def on_result(r: Rooms, c: Copy, out: Outcome) -> None:
    """Called by the sender once per copy, delivered or failed: never raises into the sender."""
    try:
        if (key := secondary.primary_key(c.context)) is not None:
            if r.pairing is not None:
                r.pairing.secondary_answered(key, out)
            return
        r.replay.settled(c)
        flows = r.flows_wanted()
        show = (lambda result: _show(c, out, result)) if flows else None
        if r.pairing is not None and r.pairing.shadow_answered(str(c.context), out, show):
            return
        if flows:
            _show(c, out, None)
    except Exception:  # comparison and the flow view are conveniences: they must not affect copies
        logger.exception("shadow: could not record the shadow's result")


def at_head(r: Rooms, c: Copy, status: int, length: int | None) -> tuple[int, bool] | None:
    """The head of a kept answer has arrived: a compared copy whose pair comparison has given up meanwhile is
    read on without being kept for comparison or hashed (kept only for the flow view, if that is on)."""
    if r.pairing is None or not c.hash_body or secondary.primary_key(c.context) is not None:
        return None
    if r.pairing.shadow_wanted(str(c.context), length):
        return None
    return (r.settings.body_limit if r.flows_wanted() else 0), False


def _show(c: Copy, out: Outcome, result: compare.Comparison | None) -> None:
    flowview.show(ctx.master.addons.get("view"), c, out, result)
