"""The mitmproxy addon: options, their parsing, the hooks, and the wiring of the other modules."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.log import ALERT
from mitmproxy.net import encoding
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs
from mitmproxy.utils import human

from . import admin, compare, dashboard, diag, flowview, mappings, metrics, replay, report, routing
from .metrics import PRODUCTION, Metrics
from .pairing import Pairing
from .report import REVERSE_TARGET
from .sender import Copy, Outcome, Sender

logger = logging.getLogger("shadow")

MARKER = b"x-mitmproxy-shadow"  # carried by every copy: a copy reaching any shadowing proxy is not copied again
WATCH_INTERVAL = 1.0  # s between polls of the Mapping files
_UPGRADE_METHODS = frozenset({"CONNECT"})


@dataclass(slots=True)
class Pending:
    """What `requestheaders` decided for a flow, used by `request`, `response` and `error`."""

    route: routing.Route
    tee: bytearray | None = None  # streamed body copy, when mitmproxy streams the request
    tee_over: bool = False
    sent: bool = False  # the copy was handed to the sender (or deliberately not: dropped and counted)


def _parse_header_specs(option: str, values: Sequence[str]) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for spec in values:
        name, sep, value = spec.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
            raise exceptions.OptionsError(f"{option}: expected 'Name: value', got {spec!r}")
        out.append((name.strip().encode(), value.strip().encode()))
    return tuple(out)


CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


def _parse_remove_specs(values: Sequence[str]) -> frozenset[bytes]:
    names: set[bytes] = set()
    for v in values:
        v = v.strip()
        if not v or any(c in v for c in " \t\r\n:"):
            raise exceptions.OptionsError(f"shadow_remove_headers: expected a header name, got {v!r}")
        if v.lower() == "@credentials":  # preset: production credentials never reach the test service
            names.update(h.encode() for h in CREDENTIAL_HEADERS)
        else:
            names.add(v.lower().encode())
    return frozenset(names)


class Shadow:
    """Routes requests by Emissary Mappings and copies them to shadow services."""

    def __init__(self) -> None:
        self.table = routing.Table()
        self.metrics = Metrics()
        self.sender: Sender | None = None
        self.overrides: tuple[routing.ServiceOverride, ...] = ()
        self.add_headers: tuple[tuple[bytes, bytes], ...] = ()
        self.remove_headers: frozenset[bytes] = frozenset()
        self.sample_key = ""
        self.body_limit = 1024 * 1024
        self.host_suffix = True
        self.timeout_override = 0.0
        self.pending: dict[str, Pending] = {}
        self.loaded: mappings.LoadResult | None = None
        self.loaded_at = 0.0
        self._signature: tuple[object, ...] | None = None
        self._running = False
        self._watcher: asyncio.Task[None] | None = None
        self._listen_ports: set[int] = set()
        self.reload_errors: list[str] = []
        self.admin: admin.AdminServer | None = None
        self.pairing: Pairing | None = None
        self.compare_limit = 0
        self._flows: bool | None = None
        self.replay = replay.Replay(self, MARKER)

    # ------------------------------------------------------------------ options

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "mappings",
            str,
            "",
            "Emissary Mapping YAML: a file, or a directory of *.yaml/*.yml files. Empty: pass everything through.",
        )
        loader.add_option(
            "mapping_services",
            Sequence[str],
            [],
            "Replace a Mapping service's address: NAME=[scheme://]HOST:PORT. NAME matches with or without its "
            ".namespace and port (e.g. myservice=127.0.0.1:8081). Repeatable.",
        )
        loader.add_option(
            "shadow_host_suffix",
            bool,
            True,
            "Insert -shadow before the port in the copy's Host header, as Envoy does (foo:80 -> foo-shadow:80).",
        )
        loader.add_option(
            "shadow_add_headers",
            Sequence[str],
            [],
            "Headers added to every copy, as 'Name: value' (e.g. 'x-shadow: 1'). Repeatable.",
        )
        loader.add_option(
            "shadow_remove_headers",
            Sequence[str],
            [],
            "Headers stripped from every copy. '@credentials' stands for Authorization, Cookie and "
            "Proxy-Authorization. Repeatable.",
        )
        loader.add_option(
            "shadow_sample_key",
            str,
            "",
            "Header whose value decides sampling (same value, same decision). Empty: random per request.",
        )
        loader.add_option(
            "shadow_body_limit",
            str,
            "1m",
            "Largest request body copied (e.g. 512k, 1m); a larger one is not copied and counted as body_limit.",
        )
        loader.add_option(
            "shadow_max_inflight", int, 64, "Copies in flight per shadow service; more wait in the backlog."
        )
        loader.add_option(
            "shadow_max_backlog",
            int,
            256,
            "Copies that may wait per shadow service; beyond it copies are dropped and counted as overload.",
        )
        loader.add_option(
            "shadow_flows",
            str,
            "auto",
            "Show each shadow exchange as its own flow (marked, commented 'shadow of <id>'): auto = in mitmweb and "
            "the console; on = also log one line per copy in mitmdump; off = never.",
            choices=["auto", "on", "off"],
        )
        loader.add_option(
            "shadow_compare",
            bool,
            False,
            "Compare each shadow response with production's (status, headers, body; JSON field by field) and count "
            "match, mismatch, noise or skipped. The client never waits: a record of production's reply is kept.",
        )
        loader.add_option(
            "shadow_compare_headers", Sequence[str], ["content-type"], "Response headers compared (repeatable)."
        )
        loader.add_option(
            "shadow_compare_ignore",
            Sequence[str],
            [],
            "Ignored in comparisons: JSON pointers with * for any one segment (/meta/timestamp, /items/*/id) or "
            "header names. Repeatable.",
        )
        loader.add_option(
            "shadow_compare_body_limit",
            str,
            "1m",
            "Bodies up to this size are compared field by field; larger ones by size and hash only.",
        )
        loader.add_option(
            "shadow_compare_report", str, "", "Append each mismatch as a JSON line to this file (for CI pipelines)."
        )
        loader.add_option(
            "shadow_admin",
            str,
            "127.0.0.1:8877",
            "Admin server HOST:PORT for /metrics (Prometheus), /diag (JSON) and / (dashboard). Empty: off.",
        )
        loader.add_option(
            "shadow_admin_allow_remote",
            bool,
            False,
            "Allow shadow_admin on a non-loopback address (it has no authentication).",
        )
        loader.add_option(
            "shadow_timeout",
            str,
            "",
            "Seconds a copy may take (e.g. 1.5). Empty: the production Mapping's timeout_ms (Emissary default 3000 "
            "ms), as Envoy gives the mirror the route's timeout.",
        )
        replay.add_options(loader)

    def configure(self, updated: set[str]) -> None:
        o = ctx.options
        self._flows = None
        if "mapping_services" in updated:
            overrides = []
            for spec in o.mapping_services:
                try:
                    name, addr, given = mappings.parse_service_override(spec)
                except ValueError as e:
                    raise exceptions.OptionsError(f"mapping_services: {e}") from None
                overrides.append(routing.ServiceOverride(name, addr, given))
            self.overrides = tuple(overrides)
        if "shadow_add_headers" in updated:
            self.add_headers = _parse_header_specs("shadow_add_headers", o.shadow_add_headers)
        if "shadow_remove_headers" in updated:
            self.remove_headers = _parse_remove_specs(o.shadow_remove_headers)
        if "shadow_sample_key" in updated:
            self.sample_key = o.shadow_sample_key.strip()
        if "shadow_host_suffix" in updated:
            self.host_suffix = o.shadow_host_suffix
        if "shadow_body_limit" in updated:
            try:
                limit = human.parse_size(o.shadow_body_limit)
            except ValueError:
                raise exceptions.OptionsError(
                    f"shadow_body_limit: expected a size such as 512k or 1m, got {o.shadow_body_limit!r}"
                ) from None
            self.body_limit = limit if limit is not None else 1024 * 1024
        if "shadow_admin" in updated and ctx.options.shadow_admin:
            try:
                host, _ = admin.parse_listen(ctx.options.shadow_admin)
            except ValueError as e:
                raise exceptions.OptionsError(f"shadow_admin: {e}") from None
            if not admin.is_loopback(host) and not ctx.options.shadow_admin_allow_remote:
                raise exceptions.OptionsError(
                    f"shadow_admin: {host} is not a loopback address; the admin server has no authentication "
                    "(set shadow_admin_allow_remote=true to allow it)"
                )
        self.replay.configure(updated)
        if "shadow_timeout" in updated:
            try:
                t = float(o.shadow_timeout) if o.shadow_timeout.strip() else 0.0
            except ValueError:
                t = -1.0
            if not t >= 0 or t == float("inf"):
                raise exceptions.OptionsError(f"shadow_timeout must be a number of seconds, got {o.shadow_timeout!r}")
            self.timeout_override = t
        if {"shadow_max_inflight", "shadow_max_backlog"} & updated:
            if o.shadow_max_inflight < 1 or o.shadow_max_backlog < 0:
                raise exceptions.OptionsError("shadow_max_inflight must be >= 1 and shadow_max_backlog >= 0")
        compare_opts = {
            "shadow_compare",
            "shadow_compare_headers",
            "shadow_compare_ignore",
            "shadow_compare_body_limit",
            "shadow_compare_report",
        }
        if compare_opts & updated:
            self._configure_compare()
        if {"mode", "listen_port"} & updated:
            self._listen_ports = self._proxy_ports()
        if {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "shadow_max_inflight", "shadow_max_backlog"} & updated:
            self._rebuild_sender()
        if {"mappings", "mapping_services", "mode", "listen_port", "keep_host_header"} & updated:
            self.reload(explicit=True)

    def _configure_compare(self) -> None:
        o = ctx.options
        old = self.pairing
        if not o.shadow_compare:
            self.pairing = None
        else:
            try:
                limit = human.parse_size(o.shadow_compare_body_limit)
            except ValueError:
                value = o.shadow_compare_body_limit
                raise exceptions.OptionsError(
                    f"shadow_compare_body_limit: expected a size such as 512k or 1m, got {value!r}"
                ) from None
            try:
                config = compare.CompareConfig(
                    headers=tuple(h.strip().lower() for h in o.shadow_compare_headers),
                    ignore=tuple(o.shadow_compare_ignore),
                    body_limit=limit or compare.BODY_LIMIT,
                )
            except ValueError as e:
                raise exceptions.OptionsError(f"shadow_compare: {e}") from None
            try:
                self.pairing = Pairing(self.metrics, config, o.shadow_compare_report)
            except OSError as e:
                raise exceptions.OptionsError(
                    f"shadow_compare_report: cannot open {o.shadow_compare_report}: {e.strerror or e}"
                ) from None
            self.compare_limit = config.body_limit
        if old is not None:
            old.close()

    def _proxy_ports(self) -> set[int]:
        ports = set()
        for spec in ctx.options.mode:
            try:
                port = mode_specs.ProxyMode.parse(spec).listen_port(ctx.options.listen_port)
            except ValueError:
                continue
            if port:
                ports.add(port)
        return ports

    def _ssl_context(self) -> ssl.SSLContext:
        o = ctx.options
        c = ssl.create_default_context(cafile=o.ssl_verify_upstream_trusted_ca or None)
        if o.ssl_insecure:  # follow mitmproxy's own upstream verification setting
            c.check_hostname = False
            c.verify_mode = ssl.CERT_NONE
        return c

    def _rebuild_sender(self) -> None:
        o = ctx.options
        old = self.sender
        self.sender = Sender(
            self.metrics, o.shadow_max_inflight, o.shadow_max_backlog, self._ssl_context(), on_result=self._on_result
        )
        if old is not None:
            old.close()

    # ------------------------------------------------------------------ configuration loading

    def _self_loop_errors(self, table: routing.Table) -> list[str]:
        """A shadow pointed at this proxy would copy its own copies: refuse it at configuration time."""
        errs = []
        for g in table.groups:
            if g.shadow is None:
                continue
            a = table.addresses[g.shadow.key]
            if a.port not in self._listen_ports:
                continue
            host = a.host.lower()
            try:
                local = ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
            except ValueError:
                local = host == "localhost"
            if local or host == (ctx.options.listen_host or "").lower():
                errs.append(
                    f"{g.shadow.source} (Mapping {g.shadow.key}): service {a} is this proxy's own "
                    "listen address; a shadow must be another service"
                )
        return errs

    def reload(self, explicit: bool = False) -> bool:
        """Load the Mapping files and swap the routing table in one assignment. Returns success.

        At start-up an error is logged (mitmdump then exits with it, no traceback); an explicit `--set` later
        raises OptionsError (the option is rolled back); a file change keeps the last good table.
        """
        return self._install(*read_mappings(ctx.options.mappings, self.overrides), explicit=explicit)

    def _install(
        self,
        signature: tuple[object, ...],
        result: mappings.LoadResult,
        table: routing.Table | None,
        explicit: bool = False,
    ) -> bool:
        """Install what `read_mappings` produced, on the event loop: one assignment of the routing table."""
        path = ctx.options.mappings
        self._signature = signature
        errors = list(result.errors)
        if table is not None:
            errors += self._self_loop_errors(table)
        if errors:
            self.metrics.record_reload(False)
            self.reload_errors = errors
            if explicit and self._running:
                raise exceptions.OptionsError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
            for e in errors:
                logger.error(e)
            if self._running:
                logger.error("mappings: reload failed; the previous configuration keeps serving")
            return False
        assert table is not None
        for n in result.notices:
            logger.info(n)
        for e in table.errors:
            logger.warning("Mapping %s: %s", e.mapping, e.message)
        if not ctx.options.keep_host_header and any(routing.host_match(m) for m in table.mappings):
            logger.warning(
                "mappings: some Mappings match on host, but mitmproxy replaces the client's Host with "
                "the reverse target before addons see it; run with --set keep_host_header=true"
            )
        self.reload_errors = []
        self.table = table  # one assignment: a request sees the old table or the new one, never a mix
        self.loaded, self.loaded_at = result, time.time()
        self.metrics.config_errors = len(table.errors)
        self.metrics.record_reload(True)
        if path:
            n_shadow = sum(1 for g in table.groups if g.shadow)
            logger.info(
                "mappings: %d Mappings in %d groups (%d with a shadow) from %s",
                len(table.mappings),
                len(table.groups),
                n_shadow,
                path,
            )
        return True

    async def _watch(self) -> None:
        # Files are read and parsed in a thread (a large file must not stall traffic), one reload at a time, and
        # installed here on the loop. Nothing may end this task: hot reload would silently stop.
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            path = ctx.options.mappings
            if not path:
                continue
            try:
                if await asyncio.to_thread(files_signature, path) == self._signature:
                    continue
                loaded = await asyncio.to_thread(read_mappings, path, self.overrides)
                if ctx.options.mappings == path:  # else `configure` already loaded the new path
                    self._install(*loaded)
            except Exception as e:
                logger.error("mappings: reload of %s failed: %s: %s", path, type(e).__name__, e)

    # ------------------------------------------------------------------ lifecycle (sync, see design.md)

    def running(self) -> None:
        self._running = True
        if self.sender is None:
            self._rebuild_sender()
        loop = asyncio.get_running_loop()
        self._watcher = loop.create_task(self._watch())
        self._start_admin(loop)
        self.replay.running()

    def _start_admin(self, loop: asyncio.AbstractEventLoop) -> None:
        spec = ctx.options.shadow_admin
        if not spec or self.admin is not None:
            return
        host, port = admin.parse_listen(spec)
        server = admin.AdminServer(
            {
                "/": self._page_dashboard,
                "/metrics": self._page_metrics,
                "/diag": self._page_diag,
                "/report": self._page_report,
                "/report.json": self._page_report_json,
                "/diffs": self._page_diffs,
            }
        )
        try:
            server.bind(host, port)
        except OSError as e:
            # Logged as an error during start-up, mitmdump exits with this line (errorcheck).
            logger.error(
                "shadow_admin: cannot listen on %s: %s (set shadow_admin=HOST:PORT, or empty to disable)",
                spec,
                e.strerror or e,
            )
            return
        self.admin = server
        loop.create_task(server.serve())
        logger.info("shadow admin: dashboard on http://%s/ (also /metrics, /diag, /report, /diffs)", spec)

    def _page_metrics(self) -> tuple[str, bytes]:
        gauges = self.sender.gauges() if self.sender else []
        if self.pairing is not None:
            gauges.append(
                (
                    "shadow_compare_pending",
                    "Production replies held until their shadow answers.",
                    {},
                    float(len(self.pairing.pairs)),
                )
            )
        return "text/plain; version=0.0.4; charset=utf-8", metrics.render(self.metrics, gauges).encode()

    def _page_diag(self) -> tuple[str, bytes]:
        d = diag.snapshot(self.table, self.loaded, self.loaded_at, self.reload_errors)
        return "application/json", json.dumps(d, indent=1).encode()

    def snapshot(self) -> dict[str, object]:
        """Everything the dashboard shows, as plain data."""
        return {
            "generated_at": time.time(),
            "diag": diag.snapshot(self.table, self.loaded, self.loaded_at, self.reload_errors),
            "comparison": report.comparison(self.table, self.metrics),
            "compare": self.metrics.compare_counts() if self.pairing else None,
            "diffs": self.pairing.store.to_json() if self.pairing else None,
        }

    def _page_dashboard(self) -> tuple[str, bytes]:
        return "text/html; charset=utf-8", dashboard.render(self.snapshot()).encode()

    def _page_report(self) -> tuple[str, bytes]:
        return "text/plain; charset=utf-8", self.report_text().encode()

    def _page_report_json(self) -> tuple[str, bytes]:
        return "application/json", json.dumps(report.comparison(self.table, self.metrics), indent=1).encode()

    def _page_diffs(self) -> tuple[str, bytes]:
        diffs = self.pairing.store.to_json() if self.pairing else {"enabled": False, "records": [], "groups": []}
        return "application/json", json.dumps(diffs, indent=1).encode()

    def report_text(self) -> str:
        counts = self.metrics.compare_counts() if self.pairing else None
        diffs = self.pairing.store.to_json() if self.pairing else None
        return report.text_table(report.comparison(self.table, self.metrics), counts, diffs)

    # ------------------------------------------------------------------ commands

    @command.command("shadow.report")
    def shadow_report(self) -> str:
        """The production-vs-shadow comparison table."""
        text = self.report_text()
        logger.log(ALERT, "\n" + text)
        return text

    @command.command("shadow.reload")
    def shadow_reload(self) -> None:
        """Reload the Mapping files now."""
        if not self.reload():
            raise exceptions.CommandError(self.reload_errors[0] if self.reload_errors else "reload failed")

    def done(self) -> None:
        # mitmdump's summary at exit, once: only after traffic, and not when asked to be quiet (-q).
        quiet = getattr(ctx.options, "termlog_verbosity", "info") == "error"
        if self._running and self.metrics.upstream and any(g.shadow for g in self.table.groups) and not quiet:
            print(self.report_text(), end="", flush=True)
        self._running = False
        self.replay.done()
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        if self._watcher is not None:
            self._watcher.cancel()
        if self.sender is not None:
            self.sender.close()
        self.pending.clear()
        if self.pairing is not None:
            self.pairing.close()

    # ------------------------------------------------------------------ hooks

    def route_of(self, req: http.Request, routed: str | None = None) -> routing.Route | None:
        """Where a request goes: the canary pick, and the shadow if this request is sampled. `routed`: the Mapping
        that routed this request already (a replayed or recorded flow), whose route it keeps."""
        shadow_draw = random.random() * 100.0
        if self.sample_key:
            sticky = routing.sample_draw(req.headers.get(self.sample_key))
            shadow_draw = sticky if sticky is not None else shadow_draw
        if routed is not None:
            return replay.route_routed(self.table, routed, req.path, shadow_draw)
        view = routing.RequestView(req.method, req.path, req.host_header or "", req.headers)
        return routing.resolve(self.table, view, random.random() * 100.0, shadow_draw)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Recorded flows (`-r`) are played in `request`; a client replay (`-C`) is routed like a live request,
        # unless this addon routed it already (its path may be rewritten): it then keeps that route.
        if not flow.live or flow.response or flow.error or not self.table.groups:
            return
        req = flow.request
        routed = flow.metadata.get("shadow_mapping") if flow.is_replay else None
        route = self.route_of(req, routed)
        if route is None:
            return
        if route.mapping is not None and routed is None:
            self._apply(flow, route)
        p = self.pending[flow.id] = Pending(route)
        if route.shadow is not None:
            if req.method in _UPGRADE_METHODS or "upgrade" in req.headers:
                self._skip_copy(p, "upgrade")  # Envoy mirrors no CONNECT/upgrade
            elif MARKER.decode() in req.headers:
                self._skip_copy(p, "loop")
            elif req.stream:
                p.tee = bytearray()
                req.stream = self._tee(p)

    def _skip_copy(self, p: Pending, reason: str) -> None:
        """This request will not be copied: count why, and keep the route for production's metrics."""
        assert p.route.shadow is not None
        self.metrics.record_drop(p.route.shadow.name, reason)
        p.route = dataclasses.replace(p.route, shadow=None, shadow_address=None)

    def _apply(self, flow: http.HTTPFlow, route: routing.Route) -> None:
        """Re-route the production request to the picked Mapping's service."""
        req, m, a = flow.request, route.mapping, route.address
        assert m is not None and a is not None
        keep_host = ctx.options.keep_host_header
        req.scheme = a.scheme
        # data.host/port re-route without touching Host (mitmproxy-internals.md section 5).
        req.data.host, req.data.port = a.host, a.port
        if m.host_rewrite:
            req.host_header = m.host_rewrite
        elif not keep_host:
            # mitmproxy already replaced the client's Host with its reverse target; follow the re-route.
            req.host_header = url.hostport(a.scheme, a.host, a.port)
        req.path = route.path
        if m.remove_request_headers or m.add_request_headers:
            routing.edit_headers(req.headers, m.remove_request_headers, m.add_request_headers)
        flow.metadata["shadow_mapping"] = m.name

    def _tee(self, p: Pending):  # type: ignore[no-untyped-def]
        limit = self.body_limit

        def tee(chunk: bytes) -> bytes:
            if not p.tee_over and p.tee is not None:
                if len(p.tee) + len(chunk) > limit:
                    p.tee_over, p.tee = True, None  # past the limit: free what was kept
                else:
                    p.tee += chunk
            return chunk

        return tee

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if not flow.live:
            # A recorded flow: copied as it would have been live. mitmproxy awaits what this returns (the wait for
            # the shadow's room, or the recorded pace), which holds back the reading of the capture.
            return self.replay.recorded(flow)
        p = self.pending.get(flow.id)
        if p is None or p.route.shadow is None or self.sender is None:
            return None
        req = flow.request
        body = req.raw_content
        if body is None:
            if p.tee is not None:
                body = bytes(p.tee)
            else:
                self._skip_copy(p, "body_limit" if p.tee_over else "streamed")
                return None
        if len(body) > self.body_limit:
            self._skip_copy(p, "body_limit")
            return None
        self.submit_copy(flow.id, req, p.route, body, self.pairing is not None)
        p.tee, p.sent = None, True
        return None

    def copy_timeout(self, route: routing.Route) -> float:
        return self.timeout_override or route.timeout_ms / 1000.0

    def submit_copy(self, key: str, req: http.Request, route: routing.Route, body: bytes, paired: bool) -> None:
        """Shape the copy of `req` (production's request, already transformed) and hand it to the sender."""
        shadow = route.shadow
        assert shadow is not None and route.shadow_address is not None and self.sender is not None
        host = req.host_header or url.hostport(req.scheme, req.host, req.port)
        timeout = self.copy_timeout(route)
        keep = self.body_limit if self._flows_wanted() else 0
        if self.pairing is not None and paired:
            keep = max(keep, self.compare_limit)
            summary = {"method": req.method, "path": req.path, "host": host, "size": len(body)}
            self.pairing.expect(key, shadow.name, compare.endpoint(req.method, req.path), summary)
        self.sender.submit(
            Copy(
                mapping=shadow.name,
                service=shadow.service,
                address=route.shadow_address,
                method=req.method,
                path=req.path,
                host=routing.shadow_host(host) if self.host_suffix else host,
                fields=req.headers.fields,
                body=body,
                timeout=timeout,
                add=((MARKER, b"1"), *self.add_headers),
                remove=self.remove_headers,
                keep_body=keep,
                hash_body=self.pairing is not None and paired,
                context=key,
            )
        )

    def _flows_wanted(self) -> bool:
        if self._flows is None:  # decided once per configuration: this runs for every copy
            mode = ctx.options.shadow_flows
            self._flows = mode == "on" or (mode == "auto" and ctx.master.addons.get("view") is not None)
        return self._flows

    def _on_result(self, c: Copy, out: Outcome) -> None:
        """Called by the sender once per copy, delivered or failed: never raises into the sender."""
        try:
            self.replay.settled(c)
            flows = self._flows_wanted()
            if self.pairing is not None:
                reply = None
                if out.status is not None:
                    # Over the limit only size and hash count: both sides then hash the bytes as sent.
                    whole = out.body_size <= self.compare_limit
                    body = _decoded(out.body, out.headers) if whole else out.body
                    reply = compare.Reply.of(
                        out.status,
                        out.headers,
                        body,
                        self.compare_limit,
                        size=None if whole else out.body_size,
                        sha256=None if whole else out.body_sha256,
                    )
                show = (lambda result: self._show(c, out, result)) if flows else None
                if self.pairing.shadow(str(c.context), reply, out.reason, show):
                    return
            if flows:
                self._show(c, out, None)
        except Exception:  # comparison and the flow view are conveniences: they must not affect copies
            logger.exception("shadow: could not record the shadow's result")

    def _show(self, c: Copy, out: Outcome, result: compare.Comparison | None) -> None:
        view = ctx.master.addons.get("view")
        if view is not None:
            f = flowview.shadow_flow(c, out, str(c.context))
            if result is not None and result.result != "skipped":
                f.comment += f" {result.result}" + (": " + "; ".join(result.diffs[:5]) if result.diffs else "")
            view.add([f])
        else:
            outcome = out.status if out.status is not None else out.reason
            verdict = f" {result.result}" if result is not None else ""
            logger.info(
                "shadow %s %s -> %s: %s%s (%.1f ms)", c.method, c.path, c.address, outcome, verdict, out.seconds * 1e3
            )

    def response(self, flow: http.HTTPFlow) -> None:
        p = self.pending.pop(flow.id, None)
        if p is None:
            if flow.is_replay or not flow.live or not self.table.groups:
                return
            self._record_production(flow, "", REVERSE_TARGET)
            return
        m = p.route.mapping
        if m is not None and (m.add_response_headers or m.remove_response_headers) and flow.response:
            routing.edit_headers(flow.response.headers, m.remove_response_headers, m.add_response_headers)
        label, service = self._production_labels(p.route)
        self._record_production(flow, label, service)
        if self.pairing is not None and p.route.group.shadow is not None:
            self._compare_production(flow, p.route.group.shadow.name)

    def _compare_production(self, flow: http.HTTPFlow, shadow_mapping: str) -> None:
        resp, req = flow.response, flow.request
        assert self.pairing is not None and resp is not None
        if resp.raw_content is None:  # a streamed response: nothing to compare against
            self.pairing.production(flow.id, None, "response streamed")
            return
        raw = resp.raw_content
        body = raw if len(raw) > self.compare_limit else _decoded(raw, resp.headers.fields)
        reply = compare.Reply.of(resp.status_code, resp.headers.fields, body, self.compare_limit)
        # Noise is learned from production's own answers to identical requests (the caller's identity included).
        vary = [req.headers.get(h, "") for h in ("authorization", "cookie", "accept")]
        key = compare.request_key(req.method, req.path, req.raw_content or b"", vary)
        self.pairing.learn(shadow_mapping, key, reply)
        self.pairing.production(flow.id, reply)

    def error(self, flow: http.HTTPFlow) -> None:
        p = self.pending.pop(flow.id, None)
        if p is None:
            return
        label, service = self._production_labels(p.route)
        self.metrics.record_upstream(label, service, PRODUCTION, "error", None)
        if self.pairing is not None:
            self.pairing.production(flow.id, None, "error")
        if p.route.shadow is not None and not p.sent:
            # The client went away (or the request failed) before the request was complete: nothing to copy.
            self.metrics.record_drop(p.route.shadow.name, "client_error")

    def _production_labels(self, route: routing.Route) -> tuple[str, str]:
        if route.mapping is not None:
            return route.mapping.name, route.mapping.service
        # Implicit production: labelled with the group's first Mapping (its shadow in a shadow-only group).
        return route.group.members[0].name, REVERSE_TARGET

    def _record_production(self, flow: http.HTTPFlow, mapping: str, service: str) -> None:
        resp = flow.response
        if resp is None:
            return
        seconds = None
        if resp.timestamp_end and flow.request.timestamp_end:
            seconds = max(0.0, resp.timestamp_end - flow.request.timestamp_end)
        self.metrics.record_upstream(mapping, service, PRODUCTION, resp.status_code, seconds)


def files_signature(path: str) -> tuple[object, ...]:
    """What identifies the files' current content: names, stat data and a hash (a same-size rewrite within one
    timestamp tick still counts as a change)."""
    sig: list[object] = []
    try:
        for f in mappings.mapping_files(path):
            st = os.stat(f)
            with open(f, "rb") as fh:
                digest = hashlib.sha256(fh.read(mappings.MAX_FILE_BYTES + 1)).hexdigest()
            sig.append((f, st.st_mtime_ns, st.st_size, st.st_ino, digest))
    except OSError:
        sig.append(("missing", path))
    return tuple(sig)


def read_mappings(
    path: str, overrides: Sequence[routing.ServiceOverride]
) -> tuple[tuple[object, ...], mappings.LoadResult, routing.Table | None]:
    """Read, validate and build: no mitmproxy state, safe in a thread. The signature is taken first, so a change
    during the read is seen again by the next poll."""
    signature = files_signature(path) if path else ()
    result = mappings.load_path(path) if path else mappings.LoadResult()
    table = routing.build_table(result.mappings, overrides) if not result.errors else None
    return signature, result, table


def _decoded(body: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The body without its content-encoding (gzip, br, ...), as compared; the raw bytes if it cannot be decoded."""
    enc = next((v for k, v in headers if k.lower() == b"content-encoding"), b"").decode("latin-1").strip()
    if not enc or enc == "identity":
        return body
    try:
        return encoding.decode(body, enc)
    except ValueError:
        return body
