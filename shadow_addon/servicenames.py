"""Service names checked for resolving, off the event loop: a service no `mapping_services` entry replaces and
whose name does not resolve would fail every request routed to it, so the log says so, with the option that fixes
it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence

from . import mappings, routing, selfloop

RESOLVE_TIMEOUT = 3.0  # s the check of service names waits for them to resolve
RESOLVE_MOST = 32  # service names checked per load


def names_to_resolve(
    table: routing.Table, overrides: Sequence[routing.ServiceOverride]
) -> dict[tuple[str, int], list[mappings.Mapping]]:
    """The (host, port) of every service no `mapping_services` entry replaces, given by name (an IP address needs
    no resolving), with the Mappings that use it."""
    out: dict[tuple[str, int], list[mappings.Mapping]] = {}
    replaced: dict[tuple[str, str], bool] = {}  # per service and namespace: many Mappings share one
    for m in table.mappings:
        r = replaced.get((m.service, m.namespace))
        if r is None:
            r = replaced[(m.service, m.namespace)] = any(
                mappings.override_matches(o.name, m.service, m.namespace) for o in overrides
            )
        if r:
            continue
        a = table.addresses[m.key]
        if a.host.lower() == "localhost" or selfloop.addresses(a.host, resolve_names=False):
            continue
        out.setdefault((a.host, a.port), []).append(m)
    return out


def unresolved_line(host: str, users: Sequence[mappings.Mapping], why: str) -> str:
    """The warning for a service name that does not resolve, with the option that fixes it."""
    m = users[0]
    name = host.removesuffix(f".{m.namespace}") if "." in host else host
    keys = ", ".join(u.key for u in users[:4]) + (", ..." if len(users) > 4 else "")
    return (
        f"mappings: service {m.service} (Mapping {keys}) does not resolve ({why}) and no mapping_services entry "
        f"names it: its requests will fail; point it at a local process with --set mapping_services={name}=HOST:PORT"
    )


def _resolve_in_thread(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[str | None], host: str, port: int) -> None:
    """Resolve on a daemon thread (getaddrinfo cannot be interrupted; a hung resolver must not delay exit)."""

    def run() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            why: str | None = None
        except (OSError, UnicodeError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        try:
            loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(why))
        except RuntimeError:  # the loop has closed: mitmdump is exiting, and nobody waits for the answer
            pass

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()


async def check_names(names: dict[tuple[str, int], list[mappings.Mapping]]) -> list[str]:
    """One warning per name that does not resolve within RESOLVE_TIMEOUT, resolved off the event loop, in
    parallel, at most RESOLVE_MOST names."""
    loop = asyncio.get_running_loop()
    futs: dict[asyncio.Future[str | None], tuple[str, int]] = {}
    for host, port in list(names)[:RESOLVE_MOST]:
        fut: asyncio.Future[str | None] = loop.create_future()
        _resolve_in_thread(loop, fut, host, port)
        futs[fut] = (host, port)
    if not futs:
        return []
    await asyncio.wait(futs, timeout=RESOLVE_TIMEOUT)
    out = []
    for fut, (host, port) in futs.items():
        why = fut.result() if fut.done() else f"no answer within {RESOLVE_TIMEOUT:g} s"
        if why is not None:
            out.append(unresolved_line(host, names[(host, port)], why))
    return out
