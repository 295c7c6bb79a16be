"""The mitmproxy addon class: its hooks and commands, wiring the rooms (settings, Mapping files, routing, copies,
sender, comparison, admin pages). `addon.py` is the `-s` script that loads it; given to `-s` itself, this module
loads nothing and says so."""

from __future__ import annotations

if __name__.startswith("__mitmproxy_script__"):
    # `-s shadow_addon/shadow.py`: the module imports from its package all the same, and its end says which file
    # is the entry script.
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "shadow_addon"

import dataclasses
import functools
import logging
import random
from collections.abc import Awaitable
from typing import Any

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.log import ALERT
from mitmproxy.proxy import layer, server_hooks

from . import (
    admin,
    compare,
    copies,
    dispatch,
    grpcflow,
    pages,
    production,
    replay,
    replaypolicy,
    routing,
    selfloop,
    settings,
)
from .budget import MemoryBudget, Tee
from .compare import options as compare_options
from .compare.pairing import Pairing
from .copies import Pending
from .ingress import Ingress
from .mappingfiles import MappingFiles, Source
from .metrics import Metrics
from .reasons import DropReason
from .reloading import Reloading
from .sender import Sender, client_context

logger = logging.getLogger("shadow")


class Shadow:
    """Routes requests by Emissary Mappings and copies them to shadow services."""

    def __init__(self) -> None:
        self.settings = settings.Settings()
        self.metrics = Metrics()
        self.files = MappingFiles(self.metrics)
        self.budget = MemoryBudget(settings.DEFAULT_MEMORY_LIMIT)  # one for the addon's life: holders keep accounts
        self.sender: Sender | None = None
        self.pairing: Pairing | None = None
        self.admin: admin.AdminServer | None = None
        self.pending: dict[str, Pending] = {}
        self.writes: dict[str, int] = {}  # copies of requests other than reads, per shadow Mapping
        self.listen = selfloop.Listen()  # where this proxy listens: a shadow there would copy its copies
        self._flows: bool | None = None
        self.replay = replay.Replay(self)
        self.ingress = Ingress()  # cleartext HTTP/2 clients, HTTP/2 to `grpc: true` services
        self.grpc_calls: dict[str, Tee | None] = {}  # streamed gRPC calls: their answer's tee, once known
        self.connections = production.Connections()  # when each open server connection's set-up step ended
        self.reloading = Reloading(self.files)

    @property
    def table(self) -> routing.Table:
        return self.files.table

    # ---------------------------------------- lifecycle (synchronous: an async `done` breaks `-s` hot reload)

    def load(self, loader: Any) -> None:
        settings.declare(loader)

    def configure(self, updated: set[str]) -> None:
        try:
            self._configure(updated)
        except exceptions.OptionsError as e:
            if self.files.running:
                raise  # a change at run time: mitmproxy rolls the option back and shows this line
            logger.error("%s", e)  # at start-up: one line (not a traceback), and mitmdump exits (errorcheck)

    def _configure(self, updated: set[str]) -> None:
        s = settings.parse(ctx.options)
        self.settings = s = dataclasses.replace(s, **compare_options.parse(ctx.options))
        self.budget.limit = s.memory_limit
        if self.sender is not None:
            self.sender.response_limit = s.response_limit
        self._flows = None
        if settings.triggered(updated, settings.COMPARE):
            self._configure_compare()
        if {"mode", "listen_host", "listen_port"} & updated:
            o = ctx.options
            self.listen = selfloop.Listen.from_options(o.mode, o.listen_host, o.listen_port)
        if settings.triggered(updated, settings.SENDER):
            self._rebuild_sender()
        if settings.triggered(updated, settings.RELOAD) and not self.reloading.restoring:
            self.reload(explicit=True)
        settings.fit_mitmproxy(ctx.options, updated)

    def running(self) -> None:
        # Every script has declared its options by now: what is still deferred is a typo.
        for line in settings.unknown_options(ctx.options.deferred, ctx.options.keys()):
            logger.warning(line)
        if self.sender is None:
            self._rebuild_sender()
        self.files.start()
        self._start_admin()
        self.replay.running()

    def done(self) -> None:
        # mitmdump's summary at exit, once: only after traffic, and not when asked to be quiet (-q).
        quiet = getattr(ctx.options, "termlog_verbosity", "info") == "error"
        part = self.replay.shard is not None and not self.replay.whole  # a part of a split replay: the first reports
        shown = self.files.running and self.metrics.upstream and any(g.shadow for g in self.table.groups)
        if shown and not quiet and not part:
            print(pages.report_text(self), end="", flush=True)
        self.files.stop()
        self.replay.done()
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        for p in self.pending.values():
            p.copy_now()  # handed over to be cancelled and counted with the copies in flight
        if self.sender is not None:
            self.sender.close()
        for p in self.pending.values():
            if p.tee is not None:
                p.tee.release()
        self.pending.clear()
        for tee in self.grpc_calls.values():
            if tee is not None:
                tee.release()
        self.grpc_calls.clear()
        if self.pairing is not None:
            self.pairing.close()

    def reload(self, explicit: bool = False) -> bool | None:
        """Load the Mapping files (`Reloading.load`): now before the proxy serves (True on success), else off the
        event loop (None)."""
        s = self.settings
        source = Source(s.mappings, s.overrides, self.listen, s.keep_host, s.ambassador_id, s.strict)
        return self.reloading.load(source, explicit)

    def _configure_compare(self) -> None:
        old, s = self.pairing, self.settings
        try:
            self.pairing = (
                Pairing(
                    self.metrics,
                    s.compare,
                    s.compare_report,
                    self.budget,
                    judge=s.judge,
                    namer=compare.EndpointNamer(s.endpoints, budget=self.budget),
                )
                if s.compare
                else None
            )
        except OSError as e:
            raise exceptions.OptionsError(
                f"shadow_compare_report: cannot open {s.compare_report}: {e.strerror}"
            ) from None
        if old is not None:
            old.close()
        if s.secondaries and not s.compare:
            logger.warning("shadow_compare_secondary: unused without shadow_compare=true (it serves comparison only)")

    def _rebuild_sender(self) -> None:
        o, s = ctx.options, self.settings
        old = self.sender
        self.sender = Sender(
            self.metrics,
            s.max_inflight,
            s.max_backlog,
            client_context(o.ssl_insecure, o.ssl_verify_upstream_trusted_ca),
            on_result=lambda c, out: dispatch.on_result(self, c, out),
            response_limit=s.response_limit,
            budget=self.budget,
            is_self=lambda ip, port: self.listen.is_self(ip, port),  # read each time: `listen` follows the options
            h2_ssl_context=client_context(o.ssl_insecure, o.ssl_verify_upstream_trusted_ca, ["h2"]),
            at_head=lambda c, status, length: dispatch.at_head(self, c, status, length),
        )
        if old is not None:
            old.close()

    def _start_admin(self) -> None:
        if self.settings.admin is not None and self.admin is None:
            self.admin = admin.start(self.settings.admin, pages.pages(self))

    # ------------------------------------------------------------------ commands

    @command.command("shadow.report")
    def shadow_report(self) -> str:
        """The production-vs-shadow comparison table."""
        text = pages.report_text(self)
        logger.log(ALERT, "\n" + text)
        return text

    @command.command("shadow.reload")
    def shadow_reload(self) -> str:
        """Reload the Mapping files now (off the event loop: the result is logged)."""
        if self.reload() is False:
            errors = self.files.errors
            raise exceptions.CommandError(errors[0] if errors else "reload failed")
        path = self.settings.mappings or "(no Mapping files)"
        return f"reloading {path}" if self.files.loading else f"reloaded {path}"

    # ------------------------------------------------------------------ hooks

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        self.ingress.next_layer(nextlayer, ctx.options.http2)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.ingress.server_connect(data, self.table)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if self.table.groups:
            self.connections.opened(data.server)

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.connections.closed(data.server)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Recorded flows (`-r`) are played in `request`; a client replay (`-C`) is routed like a live request,
        # unless this addon routed it already (its path may be rewritten): it then keeps that route.
        if not flow.live or flow.response or flow.error or not self.table.groups:
            return
        req, s = flow.request, self.settings
        routed = flow.metadata.get("shadow_mapping") if flow.is_replay else None
        headers = production.routing_headers(flow, s.envoy_headers, self.table) if routed is None else None
        route = self.route_of(req, routed, headers=headers)
        if route is None:
            return
        if routed is None:
            production.adopt_headers(flow, s.envoy_headers, headers)
        if production.answer_locally(flow, route, self.metrics):
            return
        if route.mapping is not None and routed is None:
            production.apply_route(flow, route, s.keep_host, s.envoy_headers)
        p = self.pending[flow.id] = Pending(route)
        if s.envoy_headers and flow.client_conn.sockname:
            p.via = str(flow.client_conn.sockname[0])
        if route.mapping is not None and route.mapping.grpc and grpcflow.is_call(req):
            # Passed on as it comes (streaming calls), kept up to shadow_body_limit for the copy and the flow.
            self.grpc_calls[flow.id] = None
            p.tee = req.stream = Tee(s.body_limit, self.budget)
        if route.shadow is not None:
            if reason := copies.not_copied(req, s.methods):
                self._skip_copy(p, reason)
            elif req.stream and p.tee is None:
                p.tee = req.stream = Tee(s.body_limit, self.budget)

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if not flow.live:
            # A recorded flow: copied as it would have been live. mitmproxy awaits what this returns (the wait for
            # the shadow's room, or the recorded pace), which holds back the reading of the capture.
            return self.replay.recorded(flow)
        p = self.pending.get(flow.id)
        if p is not None and p.tee is not None and flow.id in self.grpc_calls and flow.request.raw_content is None:
            kept = p.tee.take()
            if kept is not None:  # the streamed call whole, as if buffered: flow, capture, copy
                flow.request.raw_content, p.tee = kept, None
        if p is None:
            return None
        production.after_step(p.marks.stamp_sent)  # production's latency starts at its write, as the copy's
        if p.route.shadow is not None and self.sender is not None:
            # Made and written once mitmproxy has written production's request, in this loop step: production
            # does not wait for the copy, and the copy has what the hooks after this one did to the request.
            # Envoy's router, buffering the body, starts the mirror once the primary request is handed on
            # (router.cc onRequestComplete).
            p.due = functools.partial(self._copy, flow, p)
            if not production.after_step(p.copy_now):
                p.copy_now()
        return None

    def _copy(self, flow: http.HTTPFlow, p: Pending) -> None:
        if p.route.shadow is None or self.sender is None:
            return
        body = copies.body_of(flow.request, self.settings.body_limit, p)
        if isinstance(body, str):
            self._skip_copy(p, body)
        else:
            dispatch.submit(self, flow.id, flow.request, p.route, body, paired=self.pairing is not None, via=p.via)
            p.sent = True
        if p.tee is not None:
            p.tee.release()
            p.tee = None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        p = self.pending.get(flow.id)
        if p is None:
            return
        if self.grpc_calls and flow.id in self.grpc_calls and flow.response is not None:
            keep = self.pairing.config.body_limit if self.pairing is not None else 0
            tee = self.grpc_calls[flow.id] = Tee(max(keep, self.settings.body_limit), self.budget)
            flow.response.stream = tee
            production.edit_response(flow, p.route)  # the head goes out now: its edits cannot wait for `response`
        production.after_step(p.marks.stamp_head_step)  # the answer is held while the hooks run: not production's time

    def response(self, flow: http.HTTPFlow) -> None:
        streamed_call = False
        if self.grpc_calls and flow.id in self.grpc_calls:
            streamed_call, tee = True, self.grpc_calls.pop(flow.id)
            if tee is not None and flow.response is not None and flow.response.raw_content is None:
                flow.response.raw_content = tee.take()  # None past the limit: not compared ("response streamed")
            elif tee is not None:
                tee.release()
        p = self.pending.pop(flow.id, None)
        if p is None:
            if not flow.is_replay and flow.live and self.table.groups:
                production.record(self.metrics, flow, None)
            return
        p.copy_now()  # an answer in the request's own loop step (an addon's): the copy goes first
        if p.tee is not None:
            p.tee.release()
        if not streamed_call:
            production.edit_response(flow, p.route)
        p.marks.connected = self.connections.set_up(flow.server_conn)
        production.record(self.metrics, flow, p.route, p.marks)
        if streamed_call and p.route.shadow is not None and not p.sent:
            # A streamed call answered before its request ended (bidi): the copy, made at the request's end, is not.
            self.metrics.record_drop(p.route.shadow.name, DropReason.STREAMED)
            return
        if self.pairing is not None and p.route.group.shadow is not None:
            self.pairing.production_answered(flow, p.route.group.shadow.name)

    def error(self, flow: http.HTTPFlow) -> None:
        if (tee := self.grpc_calls.pop(flow.id, None)) is not None:
            tee.release()
        p = self.pending.pop(flow.id, None)
        if p is None:
            return
        p.copy_now()  # the request was complete: its copy goes, as it would have a step later
        if p.tee is not None:
            p.tee.release()
        production.record_error(self.metrics, p.route)
        if self.pairing is not None:
            self.pairing.production(flow.id, None, "error")
        if p.route.shadow is not None and not p.sent:
            # The client went away (or the request failed) before the request was complete: nothing to copy.
            self.metrics.record_drop(p.route.shadow.name, DropReason.CLIENT_ERROR)

    # ------------------------------------------------------------------ helpers of the hooks

    def route_of(
        self, req: http.Request, routed: str | None = None, every: bool = False, headers: http.Headers | None = None
    ) -> routing.Route | None:
        """Where a request goes: the canary pick, and the shadow if this request is sampled. `routed`: the Mapping
        that routed this request already (a replayed or recorded flow), whose route it keeps. `every`: the shadow
        takes the request whatever its weight (but 0). `headers`: the headers to route on, when not the request's
        own (`production.routing_headers`)."""
        shadow_draw = 0.0 if every else random.random() * 100.0
        if self.settings.sample_key and not every:
            sticky = routing.sample_draw(req.headers.get(self.settings.sample_key))
            shadow_draw = sticky if sticky is not None else shadow_draw
        if routed is not None:
            return replaypolicy.route_routed(self.table, routed, req.path, shadow_draw)
        view = routing.RequestView(
            req.method, req.path, copies.host_header(req) or "", req.headers if headers is None else headers
        )
        return routing.resolve(self.table, view, random.random() * 100.0, shadow_draw)

    def _skip_copy(self, p: Pending, reason: str) -> None:
        """This request will not be copied: count why, and keep the route for production's metrics."""
        assert p.route.shadow is not None
        self.metrics.record_drop(p.route.shadow.name, reason)
        p.route = dataclasses.replace(p.route, shadow=None, shadow_address=None)

    def flows_wanted(self) -> bool:
        """Whether copies are shown as flows (`shadow_flows`), decided once per configuration: asked per copy."""
        if self._flows is None:
            mode = ctx.options.shadow_flows
            self._flows = mode == "on" or (mode == "auto" and ctx.master.addons.get("view") is not None)
        return self._flows


if __name__.startswith("__mitmproxy_script__"):  # `-s shadow_addon/shadow.py`: not the entry, and it says so
    from . import not_the_entry

    not_the_entry(__file__)
