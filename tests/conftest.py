from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FaultServer, Proxy, Upstream, start_proxy


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    """Factory for recording HTTP servers; all are stopped after the test."""
    made: list[Upstream] = []

    def make(name: str, **kw: object) -> Upstream:
        u = Upstream(name, **kw)  # type: ignore[arg-type]
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Factory for mitmdump processes with the addon; every one is stopped after the test."""
    made: list[Proxy] = []

    def make(reverse: str, **kw: object) -> Proxy:
        p = start_proxy(tmp_path, reverse, **kw)  # type: ignore[arg-type]
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def fault() -> Iterator[Callable[..., FaultServer]]:
    """Factory for misbehaving shadow services; all are stopped after the test."""
    made: list[FaultServer] = []

    def make(mode: str, delay: float = 0.0) -> FaultServer:
        f = FaultServer(mode, delay)
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()
