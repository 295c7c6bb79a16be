"""The copy is made and written once production's request is out: after the loop step of the `request` hooks, in
which mitmproxy writes production's request. Production does not wait for the copy, and the copy has what the
hooks after the Shadow addon's did to the request (Envoy mirrors the request as its route sent it). Whatever
needs the copy before that step ends (an answer, an error, the addon's end) makes it first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpErrorHook, HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow, tutils
from support import mapping, write_mappings

from shadow_addon.copyrequest import Copy
from shadow_addon.reasons import DropReason
from shadow_addon.shadow import Shadow


class Later:
    """An addon after the Shadow addon in mitmproxy's chain, which edits the request in its own `request` hook."""

    def request(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["x-later"] = "edited"


class Handed:
    """The sender's stand-in: what was handed over, and whether production's request had gone out by then."""

    def __init__(self, sh: Shadow) -> None:
        self.sh = sh
        self.copies: list[Copy] = []
        self.after_production: list[bool] = []
        self.closed = False

    def submit(self, c: Copy) -> None:
        p = self.sh.pending.get(str(c.context))
        self.after_production.append(p is None or p.marks.sent > 0)
        self.copies.append(c)

    def close(self) -> None:
        self.closed = True


@contextlib.contextmanager
def _proxy(
    tmp_path: Path, *after: object, run: bool = True, **options: object
) -> Iterator[tuple[Shadow, taddons.context]]:
    """The Shadow addon copying / to a shadow, in mitmproxy's addon chain before `after`; `run`: started as
    mitmproxy starts it (which needs an event loop)."""
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/", service="127.0.0.1:9"),
        mapping("api-shadow", prefix="/", service="127.0.0.1:10", shadow=True),
    )
    sh = Shadow()
    with taddons.context(sh, *after, Proxyserver()) as tctx:
        tctx.configure(sh, mappings=str(m), shadow_admin="", **options)
        if run:
            sh.running()
        yield sh, tctx


async def _requested(sh: Shadow, tctx: taddons.context) -> http.HTTPFlow:
    """A request through the Shadow addon's `requestheaders` and the whole chain's `request` hooks."""
    f = tflow.tflow(req=tutils.treq(path=b"/x"), resp=False)
    sh.requestheaders(f)
    await tctx.master.addons.handle_lifecycle(HttpRequestHook(f))
    return f


async def test_the_copy_goes_after_the_request_step_with_what_later_hooks_did(tmp_path: Path) -> None:
    with _proxy(tmp_path, Later()) as (sh, tctx):
        handed = sh.sender = Handed(sh)  # type: ignore[assignment]
        f = await _requested(sh, tctx)
        assert handed.copies == []  # the request hooks' step: mitmproxy writes production's request in it
        await asyncio.sleep(0)
        assert len(handed.copies) == 1 and handed.after_production == [True]  # after production's mark
        assert (b"x-later", b"edited") in handed.copies[0].fields
        f.response = tutils.tresp()
        await tctx.master.addons.handle_lifecycle(HttpResponseHook(f))
        await asyncio.sleep(0)
        assert len(handed.copies) == 1 and sh.pending == {}
        sh.done()


async def test_an_answer_within_the_request_step_makes_the_copy_first_and_once(tmp_path: Path) -> None:
    with _proxy(tmp_path, shadow_compare=True) as (sh, tctx):
        handed = sh.sender = Handed(sh)  # type: ignore[assignment]
        assert sh.pairing is not None
        f = await _requested(sh, tctx)
        f.response = tutils.tresp()  # answered in the same step (as by an addon): the copy must be there first
        await tctx.master.addons.handle_lifecycle(HttpResponseHook(f))
        assert len(handed.copies) == 1
        assert f.id in sh.pairing.pairs  # the pair was expected before production's side of it came
        await asyncio.sleep(0)
        assert len(handed.copies) == 1  # the step's own call finds the copy gone
        sh.done()


async def test_an_error_within_the_request_step_still_copies_the_complete_request(tmp_path: Path) -> None:
    with _proxy(tmp_path) as (sh, tctx):
        handed = sh.sender = Handed(sh)  # type: ignore[assignment]
        f = await _requested(sh, tctx)
        f.error = tflow.terr()
        await tctx.master.addons.handle_lifecycle(HttpErrorHook(f))
        await asyncio.sleep(0)
        assert len(handed.copies) == 1
        assert sh.metrics.drops(DropReason.CLIENT_ERROR) == {}  # the client's request was whole: it was copied
        sh.done()


async def test_a_copy_due_when_the_addon_ends_is_handed_over_before_the_sender_closes(tmp_path: Path) -> None:
    with _proxy(tmp_path) as (sh, tctx):
        real = sh.sender
        assert real is not None
        await _requested(sh, tctx)
        sh.done()  # before the step's end: the copy is handed over, then cancelled with the copies in flight
        assert real.closed
        assert sh.metrics.drops(DropReason.CANCELLED) == {"api-shadow": 1}
        await asyncio.sleep(0)
        assert sh.metrics.drops(DropReason.CANCELLED) == {"api-shadow": 1}  # and only once


def test_hooks_called_outside_an_event_loop_copy_at_once(tmp_path: Path) -> None:
    with _proxy(tmp_path, run=False) as (sh, _):
        handed = sh.sender = Handed(sh)  # type: ignore[assignment]
        f = tflow.tflow(req=tutils.treq(path=b"/x"), resp=False)
        sh.requestheaders(f)
        sh.request(f)
        assert len(handed.copies) == 1  # no step to wait for (a test, a tool driving the hooks by hand)
        sh.done()
