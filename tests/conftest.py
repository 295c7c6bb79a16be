from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import FaultServer, Proxy, Upstream, start_proxy

# Two tiers. The fast one (`scripts/test`) is in-process: pure functions, taddons/tflow, byte-fed readers and
# loopback servers in threads. The e2e tier (`scripts/test --all`) adds every test that starts a process: a
# real mitmdump or mitmweb, the demo, the benchmark, the README's shell blocks. A test is e2e when its file is
# `test_e2e_*.py` or one of E2E_FILES, when it asks for the `proxy` fixture, or when it says
# `@pytest.mark.e2e`; an unmarked test that starts a process fails with a message saying so, so the fast
# tier stays fast as tests are added.
E2E_FILES = {"test_demo.py", "test_bench.py", "test_readme.py"}
E2E_FIXTURES = {"proxy"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        fixtures = set(getattr(item, "fixturenames", ()))
        if name.startswith("test_e2e_") or name in E2E_FILES or fixtures & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("e2e"):
        return

    def refuse(self: subprocess.Popen[bytes], args: object, *a: object, **kw: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args!r}): mark it @pytest.mark.e2e (it then runs with "
            "`scripts/test --all`), or test the logic in-process"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
