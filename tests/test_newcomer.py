"""A newcomer's first hour, as they meet it: real mitmdump processes, real servers on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    ADDON,
    MITMDUMP,
    Process,
    free_port,
    mapping,
    names_resolve_on_host_files_only,
    run_process,
    started,
    wait_until,
    write_mappings,
)

from shadow_addon import mappings, routing, servicenames


def test_routed_requests_work_with_the_reverse_target_down(tmp_path: Path, upstream, proxy) -> None:
    """mitmproxy dials the reverse target eagerly, before the addon re-routes: routed requests must not need it."""
    app, app_shadow = upstream("app"), upstream("app-v2")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("app", prefix="/app/", service="app.default:8080"),
        mapping("app-shadow", prefix="/app/", service="app-v2.default:8080", shadow=True),
    )
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    p = proxy(
        dead, sets={"mappings": str(m), "mapping_services": [f"app={app.address}", f"app-v2={app_shadow.address}"]}
    )
    for i in range(5):
        status, _, body = p.request("GET", f"/app/item/{i}")
        assert status == 200, (status, body[:200], p.log[-2000:])
    assert app.count() == 5
    assert app_shadow.wait_for(5)
    assert "connection_strategy=lazy" in p.log
    status, _, _ = p.request("GET", "/elsewhere")  # unrouted: the reverse target is down, mitmproxy says so
    assert status == 502


def test_a_mapping_services_name_matching_no_service_is_named_at_start_up(tmp_path: Path, upstream, proxy) -> None:
    app = upstream("app")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("myapp", prefix="/myapp/", service="myapp.default:8080"),
        mapping("myapp-shadow", prefix="/myapp/", service="myapp-v2.default:8080", shadow=True),
    )
    p = proxy(
        app.address,
        sets={"mappings": str(m), "mapping_services": [f"myapp={app.address}", "myapp-shadow=127.0.0.1:1"]},
    )
    line = "mapping_services: myapp-shadow matches no Mapping's service; myapp-shadow is a Mapping's name, its service is myapp-v2.default:8080 (services: myapp-v2.default:8080, myapp.default:8080)"  # noqa: E501
    assert wait_until(lambda: line in p.log, 10), p.log
    status, body = p.admin("/diag")
    assert status == 200 and line in json.loads(body)["notices"]


def test_a_reload_says_what_changed(tmp_path: Path, upstream, proxy) -> None:
    app = upstream("app")
    path = tmp_path / "m.yaml"
    write_mappings(path, mapping("a", prefix="/a/", service="app"), mapping("b", prefix="/b/", service="app"))
    p = proxy(app.address, sets={"mappings": str(path), "mapping_services": [f"app={app.address}"]})
    assert wait_until(lambda: "mappings: 2 Mappings in 2 groups (0 with a shadow) from" in p.log, 10), p.log
    write_mappings(
        path,
        mapping("a", prefix="/a/", service="app", rewrite="/x/"),
        mapping("c", prefix="/c/", service="app"),
    )
    want = "1 added (c.default), 1 removed (b.default), 1 changed (a.default); now 2 Mappings in 2 groups"
    assert wait_until(lambda: want in p.log, 15), p.log[-2000:]
    assert "mappings: reloaded " in p.log


@contextlib.contextmanager
def mitmdump(tmp: Path, *args: str) -> Iterator[tuple[Process, Path]]:
    """mitmdump with exactly these arguments (no admin server), stopped on exit."""
    log = tmp / "mitmdump.log"
    cmd = [str(MITMDUMP), "--listen-host", "127.0.0.1", "-p", str(free_port()), "--set", "shadow_admin=", *args]
    with started(cmd, log) as proc:
        yield proc, log


@pytest.mark.e2e
def test_without_reverse_mode_the_start_up_says_what_to_do(tmp_path: Path, upstream) -> None:
    app = upstream("app")
    m = write_mappings(tmp_path / "m.yaml", mapping("a", prefix="/a/", service="app"))
    sets = ["--set", f"mappings={m}", "--set", f"mapping_services=app={app.address}"]
    with mitmdump(tmp_path, "-s", str(ADDON), *sets) as (_, log):
        assert wait_until(lambda: "not in reverse-proxy mode" in log.read_text(), 20), log.read_text()
        assert "--mode reverse:http://HOST:PORT" in log.read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("script", ["shadow.py", "__init__.py"])
def test_another_s_target_in_the_package_says_which_file_is_the_entry(tmp_path: Path, script: str) -> None:
    """mitmproxy loads a script without `addons` silently: `-s shadow_addon/shadow.py` (or `__init__.py`) would
    run a proxy that shadows nothing. It ends mitmdump's start-up with one line naming `addon.py` instead."""
    target = Path(ADDON).parent / script
    cmd = [str(MITMDUMP), "--listen-host", "127.0.0.1", "-p", str(free_port()), "-s", str(target)]
    r = run_process([*cmd, "--mode", "reverse:http://127.0.0.1:9"], 60)
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    want = f"{target} is a module of the addon, not its entry script: load the addon with -s {ADDON}"
    assert want in text and "Traceback" not in text, text
    assert "mappings:" not in text  # nothing of the addon ran


@pytest.mark.e2e
def test_pip_on_an_older_python_says_which_python_is_needed(tmp_path: Path) -> None:
    """pip on Python 3.11 said only "No matching distribution found for mitmproxy>=12"; the build backend, which
    pip runs first, now names the interpreter. Run here under a stand-in for an older version."""
    backend = Path(ADDON).parents[1] / "build_backend"
    code = "import sys; sys.version_info = (3, 11, 7, 'final', 0); "
    code += f"sys.path.insert(0, {str(backend)!r}); import python_check"
    r = run_process([sys.executable, "-c", code], 30)
    assert r.returncode == 1
    assert r.stderr.startswith("mitmproxy-shadow needs Python >= 3.12 (as mitmproxy 12 does); this is Python 3.11.7")


@pytest.mark.e2e
def test_mitmshadow_web_on_a_busy_ui_port_says_so_in_one_line(tmp_path: Path) -> None:
    """A service on mitmweb's UI port (8081 by default) made mitmweb end in a 20-line traceback."""
    mitmshadow = Path(MITMDUMP).parent / "mitmshadow"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [str(mitmshadow), "--web", "--web-port", str(port), "--web-host", "127.0.0.1", "-p", "0"]
        r = run_process(cmd, 60, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip().splitlines() == [
        f"mitmshadow: mitmweb's UI port 127.0.0.1:{port} is not free (Address already in use); "
        "choose one with --web-port PORT"
    ]


@pytest.mark.e2e
def test_mitmshadow_help_is_its_own(tmp_path: Path) -> None:
    mitmshadow = Path(MITMDUMP).parent / "mitmshadow"
    r = run_process([str(mitmshadow), "--help"], 60, cwd=tmp_path)
    assert r.returncode == 0 and len(r.stdout.splitlines()) < 40
    assert "mappings" in r.stdout and "mapping_services" in r.stdout and "--help-mitmdump" in r.stdout
    full = run_process([str(mitmshadow), "--help-mitmdump"], 60)
    assert "--listen-port" in full.stdout and "--set" in full.stdout  # mitmdump's own help (it exits 1, as mitmdump)


def test_a_shadow_prefix_that_nearly_matches_is_named_in_the_log_and_every_view(tmp_path: Path, upstream, proxy):
    app = upstream("app")
    path = tmp_path / "m.yaml"
    write_mappings(
        path,
        mapping("orders", prefix="/orders/", service="app"),
        mapping("orders-next", prefix="/orders", service="app", shadow=True, weight=50),
    )
    p = proxy(app.address, sets={"mappings": str(path), "mapping_services": [f"app={app.address}"]})
    line = (
        "mappings: shadow orders-next.default is alone in its group: it has no route, so it copies nothing; it was "
        "probably meant for orders.default: prefix /orders/ vs /orders"
    )
    assert wait_until(lambda: line in p.log, 10), p.log
    status, body = p.admin("/diag")
    assert [m["active_shadow"] for m in json.loads(body)["mappings"] if m["shadow"]] == [False]
    status, page = p.admin("/")
    assert status == 200 and b"gets a copy of nothing: its group has no production route" in page
    assert b"% of requests" not in page
    write_mappings(
        path,
        mapping("orders", prefix="/orders/", service="app"),
        mapping("orders-v3", prefix="/Orders/", service="app", shadow=True),
    )
    again = "shadow orders-v3.default is alone in its group: it has no route, so it copies nothing; it was probably "
    assert wait_until(lambda: again in p.log, 15), p.log[-2000:]  # said again on reload


def test_a_service_that_does_not_resolve_is_named_at_start_up(tmp_path: Path, upstream, proxy) -> None:
    """Found before the first request (which would get 502); names are resolved off the event loop, bounded."""
    app = upstream("app")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("orders", prefix="/orders/", service="orders.default:8080"),
        mapping("orders-next", prefix="/orders/", service="orders-v2.invalid", shadow=True),
        mapping("local", prefix="/local/", service="127.0.0.1:9"),
    )
    prefix = names_resolve_on_host_files_only(tmp_path)  # the lookup never leaves this host
    p = proxy(app.address, prefix=prefix, sets={"mappings": str(m), "mapping_services": [f"orders={app.address}"]})
    line = (
        "mappings: service orders-v2.invalid (Mapping orders-next.default) does not resolve (Name or service not "
        "known) and no mapping_services entry names it: its requests will fail; point it at a local process with "
        "--set mapping_services=orders-v2.invalid=HOST:PORT"
    )
    assert wait_until(lambda: "does not resolve" in p.log, 15), p.log
    assert line in p.log, p.log
    assert p.log.count("does not resolve") == 1  # orders has an entry, 127.0.0.1 is an address
    status, body = p.admin("/diag")
    assert line in json.loads(body)["notices"]
    assert p.request("GET", "/orders/1")[0] == 200  # production serves meanwhile


def test_only_named_services_without_an_entry_are_resolved() -> None:
    t = routing.build_table(
        [
            mappings.build_mapping("a", "default", "t", {"prefix": "/a/", "service": "a:8080"}),
            mappings.build_mapping("b", "shop", "t", {"prefix": "/b/", "service": "b"}),
            mappings.build_mapping("c", "default", "t", {"prefix": "/c/", "service": "10.0.0.1:80"}),
            mappings.build_mapping("d", "default", "t", {"prefix": "/d/", "service": "localhost:81"}),
        ]
    )
    overrides = [routing.ServiceOverride("a", mappings.service_address("127.0.0.1:1"), False)]
    names = servicenames.names_to_resolve(t, overrides)
    assert {k: [m.key for m in v] for k, v in names.items()} == {("b.shop", 80): ["b.shop"]}
    assert servicenames.unresolved_line("b.shop", names[("b.shop", 80)], "boom").endswith(
        "--set mapping_services=b=HOST:PORT"
    )


def test_a_service_with_the_annotation_routes_and_shadows(tmp_path: Path, upstream, proxy) -> None:
    """Emissary's original form: Mappings in a Service's getambassador.io/config, the Service's namespace theirs."""
    app, app_next = upstream("app"), upstream("app-next")
    svc = tmp_path / "service.yaml"
    svc.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\n  namespace: shop\n  annotations:\n"
        "    getambassador.io/config: |\n"
        "      ---\n      apiVersion: ambassador/v1\n      kind: Mapping\n      name: shop\n"
        "      prefix: /shop/\n      service: shop:8080\n"
        "      ---\n      apiVersion: ambassador/v1\n      kind: Mapping\n      name: shop-next\n"
        "      prefix: /shop/\n      service: shop-next:8080\n      shadow: true\n"
        "spec:\n  ports: [{port: 8080}]\n"
    )
    services = [f"shop.shop={app.address}", f"shop-next.shop={app_next.address}"]
    p = proxy(f"http://{app.address}", sets={"mappings": str(svc), "mapping_services": services})
    assert wait_until(lambda: "mappings: 2 Mappings in 1 group (1 with a shadow)" in p.log, 10), p.log
    status, _, body = p.request("GET", "/shop/cart")
    assert status == 200 and json.loads(body)["path"] == "/cart"
    assert app_next.wait_for(1) and app_next.seen[0].path == "/cart"
