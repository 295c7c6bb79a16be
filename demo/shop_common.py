"""What both releases of the demo shop share: the catalogue, the carts, orders, and a small JSON HTTP server.

A release is a `Shop` subclass (shop_v1.py, shop_v2.py) answering four API routes:

    GET  /api/products[?q=word]   the catalogue, or the products whose name contains `word`
    GET  /api/products/{id}       one product, with its stock
    GET  /api/cart/{user}         a user's cart and its total
    POST /api/orders              place an order: {"user": "alice", "items": [{"product_id": 3, "qty": 2}]}

plus GET /_stats (requests served, orders stored), which the demo driver asks each process directly.

Every JSON answer carries "served_at", the time it was made: it differs on every call in every release, the
kind of field a response comparison has to learn to ignore. Orders live in the memory of the process that
took them, so the shadow release's orders never reach production's store.

Run one release on its own: `python demo/shop_v1.py --port 8081`, then `curl localhost:8081/api/products`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import re
import signal
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)

_COLOURS = ("Blue", "Green", "Red", "Black", "White", "Yellow")
_THINGS = ("Mug", "Teapot", "Notebook", "Lamp", "Backpack", "Scarf", "Umbrella", "Candle", "Poster", "Bottle")


def _make_catalogue() -> dict[int, dict[str, Any]]:
    """60 products, "Blue Mug" to "Yellow Bottle": computed, so every process (every release) has the same."""
    names = [f"{colour} {thing}" for thing in _THINGS for colour in _COLOURS]
    return {
        i: {"id": i, "name": name, "price": round(4.99 + i * 37 % 90 + 0.5 * (i % 2), 2)}
        for i, name in enumerate(names, start=1)
    }


CATALOGUE = _make_catalogue()
STOCK = {i: 0 if i % 7 == 0 else 3 + i % 11 for i in CATALOGUE}  # units in the warehouse
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
SEARCH_WORDS = tuple(w.lower() for w in _COLOURS + _THINGS)


def cart_items(user: str) -> list[dict[str, Any]]:
    """A user's cart: a few products picked from the user name, the same in every process."""
    rng = random.Random(user)  # a str seed is hashed with SHA-512: stable across processes, unlike hash()
    ids = rng.sample(sorted(CATALOGUE), rng.randint(0, 4)) if user in USERS else []
    return [
        {"product_id": i, "name": CATALOGUE[i]["name"], "qty": rng.randint(1, 3), "price": CATALOGUE[i]["price"]}
        for i in ids
    ]


def total_of(items: list[dict[str, Any]]) -> float:
    return round(sum(it["price"] * it["qty"] for it in items), 2)


class BadRequest(Exception):
    """The client sent something the API cannot take: answered with 400 and the message."""


@dataclass
class Order:
    order_id: str
    user: str
    items: list[dict[str, Any]]
    total: float


class Shop:
    """Release v1 of the shop. Later releases subclass it and change what they change."""

    version = "v1"

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the server answers each connection on its own thread
        self.orders: list[Order] = []  # this process's own store
        self.requests = 0

    # ---- the API; each method returns (status, JSON body)

    def search(self, query: str) -> Reply:
        found = [p for p in CATALOGUE.values() if query.lower() in p["name"].lower()]
        return 200, {"query": query, "count": len(found), "products": found[:20]}

    def product(self, product_id: int) -> Reply:
        p = CATALOGUE.get(product_id)
        if p is None:
            return 404, {"error": f"no product {product_id}"}
        return 200, {**p, "in_stock": STOCK[product_id] > 0}

    def cart(self, user: str) -> Reply:
        items = cart_items(user)
        return 200, {"user": user, "items": items, "total": total_of(items)}

    def place_order(self, body: dict[str, Any]) -> Reply:
        user, wanted = body.get("user"), body.get("items")
        if not isinstance(user, str) or not isinstance(wanted, list) or not wanted:
            raise BadRequest('expected {"user": NAME, "items": [{"product_id": ID, "qty": N}, ...]}')
        items = []
        for it in wanted:
            p = CATALOGUE.get(it.get("product_id")) if isinstance(it, dict) else None
            qty = it.get("qty", 1) if isinstance(it, dict) else 0
            if p is None or not isinstance(qty, int) or qty < 1:
                raise BadRequest(f"bad order line {it!r}")
            items.append({"product_id": p["id"], "qty": qty, "price": p["price"]})
        order = Order(uuid.uuid4().hex[:12], user, items, total_of(items))
        with self.lock:
            self.orders.append(order)
        return 201, {"order_id": order.order_id, "user": user, "items": items, "total": order.total}

    def stats(self) -> Reply:
        with self.lock:
            return 200, {"version": self.version, "requests": self.requests, "orders": len(self.orders)}

    # ---- routing: (method, path) -> method call

    def route(self, method: str, target: str, body: bytes) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/_stats" and method == "GET":
            return self.stats()
        with self.lock:
            self.requests += 1
        if path == "/api/products" and method == "GET":
            return self.search(query.get("q", [""])[0])
        if m := re.fullmatch(r"/api/products/(\d+)", path):
            return self.product(int(m[1])) if method == "GET" else (405, {"error": "GET only"})
        if m := re.fullmatch(r"/api/cart/([a-z]+)", path):
            return self.cart(m[1]) if method == "GET" else (405, {"error": "GET only"})
        if path == "/api/orders":
            if method != "POST":
                return 405, {"error": "POST only"}
            try:
                order = json.loads(body)
            except ValueError:
                raise BadRequest("the body is not JSON") from None
            if not isinstance(order, dict):
                raise BadRequest("the body must be a JSON object")
            return self.place_order(order)
        return 404, {"error": f"no route for {method} {path}"}


def make_handler(shop: Shop) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the proxy reuses its connections
        disable_nagle_algorithm = True  # head and body are two writes: avoid a 40 ms delayed-ACK stall
        server_version = f"demo-shop/{shop.version}"

        def _answer(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(size) if size else b""
            try:
                status, doc = shop.route(self.command, self.path, body)
            except BadRequest as e:
                status, doc = 400, {"error": str(e)}
            except Exception:  # a bug: answer 500 as a web framework would, and log it
                traceback.print_exc(file=sys.stderr)
                status, doc = 500, {"error": "internal server error"}
            doc["served_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per request: the demo sends thousands

    return Handler


def serve(shop: Shop) -> None:
    """Command-line entry of a release: listen, print the address on the first line, serve until stopped."""
    ap = argparse.ArgumentParser(description=f"The demo shop, release {shop.version}.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 (the default): any free port; the first line says which")
    ap.add_argument("--name", default=f"shop-{shop.version}", help="what the first line calls this process")
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer((args.host, args.port), make_handler(shop))
    server.daemon_threads = True  # idle keep-alive connections must not hold up the exit
    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(f"{args.name} ({shop.version}) listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (the demo stopping us) ends serve_forever the same way Ctrl-C does."""
    raise KeyboardInterrupt
