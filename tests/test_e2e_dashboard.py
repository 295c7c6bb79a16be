"""The dashboard in a real headless browser, served by a real mitmdump with the addon after real traffic."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from support import BROWSERS, Node, find_browser, mapping, parse, run_browser, wait_until, write_mappings

WINDOW = (1280, 1600)
HEADER_RGB = (0x1D, 0x24, 0x30)  # the page header's background (dashboard.CSS)
PRODUCTION_RGB = (0x2F, 0x6F, 0xDB)  # --prod: production's bars
SHADOW_RGB = (0xE0, 0x82, 0x2A)  # --shadow: the shadow's bars
SECOND_SHADOW = "cannot accept z-second as second shadow after api-shadow"


# ---------------------------------------------------------------------------------------------- the browser


@pytest.fixture
def browser() -> str:
    path = find_browser()
    if path is None:
        why = "no headless browser: none of " + ", ".join(BROWSERS) + " on PATH (Debian: apt-get install chromium)"
        if os.environ.get("SHADOW_REQUIRE_BROWSER") == "1":
            pytest.fail(why + "; SHADOW_REQUIRE_BROWSER=1 requires one")
        pytest.skip(why)
    return path


# ---------------------------------------------------------------------------------------------- PNG


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, pixels) of an 8-bit RGB/RGBA non-interlaced PNG, checking every CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, ihdr, idat = 8, b"", []
    for _ in range(100_000):  # bounded: a chunk per iteration
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + size
        if kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        base = y * (stride + 1)
        kind_of_filter, line = raw[base], bytearray(raw[base + 1 : base + 1 + stride])
        if kind_of_filter == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_of_filter == 2:  # Up
            line = bytearray(map(lambda a, b: (a + b) & 255, line, prev))
        elif kind_of_filter == 3:  # Average
            for i in range(stride):
                line[i] = (line[i] + (((line[i - bpp] if i >= bpp else 0) + prev[i]) >> 1)) & 255
        elif kind_of_filter == 4:  # Paeth
            for i in range(bpp):
                line[i] = (line[i] + prev[i]) & 255
            for i in range(bpp, stride):
                a, b, c = line[i - bpp], prev[i], prev[i - bpp]
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        else:
            assert kind_of_filter == 0, f"unknown filter {kind_of_filter}"
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return width, height, bpp, bytes(out)


def has_color(pixels: bytes, bpp: int, rgb: tuple[int, int, int]) -> bool:
    needle, start = bytes(rgb), 0
    for _ in range(len(pixels)):  # bounded: each round moves past one match
        i = pixels.find(needle, start)
        if i < 0:
            return False
        if i % bpp == 0:  # a match on a pixel boundary, not straddling two pixels
            return True
        start = i + 1
    return False


# ---------------------------------------------------------------------------------------------- the test


def figure(page: Node, role: str, metric: str) -> Node:
    return page.one("article", data_shadow_mapping="api-shadow").one("td", data_role=role, data_metric=metric)


def test_dashboard_in_a_headless_browser(tmp_path: Path, browser: str, upstream, proxy) -> None:
    reverse, api, shadow, second = upstream("reverse"), upstream("api"), upstream("shadow"), upstream("second")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api-svc"),
        mapping("api-shadow", prefix="/api/", service="shadow-svc", shadow=True),
        mapping("z-second", prefix="/api/", service="second-svc", shadow=True),
    )
    services = [f"api-svc={api.address}", f"shadow-svc={shadow.address}", f"second-svc={second.address}"]
    p = proxy(f"http://{reverse.address}", sets={"mappings": str(m), "mapping_services": services})

    def report() -> list[dict[str, Any]]:
        status, body = p.admin("/report.json")
        assert status == 200
        return json.loads(body)

    # 10 requests the shadow fails (503); once all 10 results are counted, 14 it answers, then 6 production fails.
    shadow.behaviour.status = 503
    for i in range(10):
        assert p.request("GET", f"/api/a{i}")[0] == 200
    assert wait_until(lambda: report()[0]["shadow"]["requests"] == 10)
    shadow.behaviour.status = 200
    for i in range(14):
        assert p.request("GET", f"/api/b{i}")[0] == 200
    api.behaviour.status = 500
    for i in range(6):
        assert p.request("GET", f"/api/c{i}")[0] == 500
    assert wait_until(lambda: report()[0]["shadow"]["requests"] == 30)
    assert second.count() == 0  # the second shadow is refused, never copied to

    rows = report()
    assert [r["shadow_mapping"] for r in rows] == ["api-shadow"]
    prod, sh = rows[0]["production"], rows[0]["shadow"]
    assert (prod["requests"], prod["errors"], sh["requests"], sh["errors"]) == (30, 6, 30, 10)

    url = f"http://127.0.0.1:{p.admin_port}/"
    console: list[str] = []
    dom = run_browser(browser, tmp_path / "profile-dom", ["--dump-dom"], url, console=console)
    page = parse(dom, strict=False)
    # The admin server's content security policy blocks nothing the page uses: no inline style, no script.
    assert not [line for line in console if "Content Security Policy" in line], console
    for role, side in (("production", prod), ("shadow", sh)):
        assert figure(page, role, "requests").text == str(side["requests"])
        assert int(figure(page, role, "requests").attrs["data-value"]) == side["requests"]
        assert float(figure(page, role, "error_rate").attrs["data-value"]) == side["error_rate"]
    assert figure(page, "production", "error_rate").text == "20.0 %"
    assert figure(page, "shadow", "error_rate").text == "33.3 %"

    svg = page.one("article", data_shadow_mapping="api-shadow").one("svg", class_="hist")
    for role, side in (("production", prod), ("shadow", sh)):
        rects = svg.find_all("rect", data_role=role)
        assert [int(r.attrs["data-count"]) for r in rects] == side["histogram"]["counts"]
        assert sum(1 for r in rects if float(r.attrs["height"]) > 0) >= 1
    assert SECOND_SHADOW in page.one("section", id="errors").text
    row = page.one("tr", data_mapping="z-second.default")
    assert "row-error" in row.attrs["class"].split() and SECOND_SHADOW in row.text

    shot = tmp_path / "shot.png"
    run_browser(
        browser, tmp_path / "profile-shot", [f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}"], url
    )
    width, height, bpp, pixels = read_png(shot)
    assert (width, height) == WINDOW
    assert tuple(pixels[:3]) == HEADER_RGB  # the page's own styles were applied
    sample = {pixels[i : i + 3] for i in range(0, len(pixels), bpp * 7)}
    assert len(sample) > 50, "the screenshot is (nearly) one color"
    assert has_color(pixels, bpp, PRODUCTION_RGB) and has_color(pixels, bpp, SHADOW_RGB)
