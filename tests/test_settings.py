"""The options table: what `load` declares, what a change triggers, and parsing that imports none of the rooms."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions

from shadow_addon import settings
from shadow_addon.compare import options as compare_options

ROOT = Path(settings.__file__).parent


def test_every_option_is_declared_once_with_its_help() -> None:
    names = [o.name for o in settings.OPTIONS]
    assert len(names) == len(set(names))
    assert all(n.startswith(("shadow_", "mapping")) for n in names)
    assert all(o.help.endswith((".", ")")) for o in settings.OPTIONS)


def test_what_a_change_triggers() -> None:
    assert settings.triggered({"mappings"}, settings.RELOAD)
    assert settings.triggered({"listen_port"}, settings.RELOAD)
    assert settings.triggered({"shadow_max_backlog"}, settings.SENDER)
    assert settings.triggered({"ssl_insecure"}, settings.SENDER)
    assert settings.triggered({"shadow_grpc_descriptors"}, settings.COMPARE)
    assert not settings.triggered({"shadow_body_limit", "shadow_timeout"}, settings.RELOAD | settings.SENDER)
    assert not settings.triggered({"mappings"}, settings.COMPARE)
    compare = {o.name for o in settings.OPTIONS if settings.COMPARE <= o.triggers}
    assert compare == {n for n in compare if n.startswith(("shadow_compare", "shadow_grpc"))}


def options(**changed: object) -> SimpleNamespace:
    """The options as `configure` reads them: the table's defaults, mitmproxy's keep_host_header, the changes."""
    return SimpleNamespace(**({o.name: o.default for o in settings.OPTIONS} | {"keep_host_header": False} | changed))


def test_parsing_the_tables_values() -> None:
    s = settings.parse(options(shadow_body_limit="2k", shadow_methods=["get"]))
    assert (s.body_limit, s.methods, s.response_limit) == (2048, frozenset({"GET"}), 64 * 1024)
    assert dataclasses.replace(settings.parse(options()), admin=None) == settings.Settings()  # defaults agree
    fields = compare_options.parse(options(shadow_compare=True))
    assert fields["compare"] is not None and fields["judge"].relative == 20.0
    with pytest.raises(exceptions.OptionsError, match="shadow_admin: 0.0.0.0 is not a loopback address"):
        settings.parse(options(shadow_admin="0.0.0.0:8877"))


def test_settings_is_a_leaf() -> None:
    """At run time settings imports the address and HTTP-syntax helpers only, and they import no room."""
    roots = {
        "settings": ROOT / "settings.py",
        "addresses": ROOT / "addresses.py",
        "httpsyntax": ROOT / "httpsyntax.py",
        "optiontable": ROOT / "optiontable.py",
    }
    for name, path in roots.items():
        tree = ast.parse(path.read_text())
        imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level > 0}
        allowed = {"addresses", "httpsyntax", "optiontable", "words"} if name == "settings" else {"words"}
        assert imported <= allowed, (name, imported)
