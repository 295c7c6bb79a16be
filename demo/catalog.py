"""The demo shop's price service over gRPC (grpcio, raw protobuf bytes, no generated code): `shop.Catalog/Price`
takes a product id (field 1) and answers the id, its price in cents (field 2) and the currency (field 3).

Release v2 (`--version v2`), the candidate run as the shadow, changed the way real releases change: prices now
include VAT (field 2 differs on every answer), and ids above 50 are not in its new price table yet (NOT_FOUND).

Usage: python demo/catalog.py --name NAME --version v1|v2; prints "NAME vN listening on http://127.0.0.1:PORT".
"""

import argparse
import signal
import sys
from concurrent import futures

import grpc

SERVICE = "shop.Catalog"


def varint(v: int) -> bytes:
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def product_id(request: bytes) -> int:
    """Field 1 of the request (a varint), 0 when absent."""
    if not request or request[0] != 0x08:
        return 0
    n, shift = 0, 0
    for b in request[1:11]:
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return n


def price(version: str, request: bytes, context: grpc.ServicerContext) -> bytes:
    pid = product_id(request)
    cents = 499 + 100 * (pid % 20)
    if version == "v2":
        if pid > 50:
            context.abort(grpc.StatusCode.NOT_FOUND, f"product {pid} is not in the price table")
        cents = cents * 120 // 100  # VAT included now
    return b"\x08" + varint(pid) + b"\x10" + varint(cents) + b"\x1a\x03EUR"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--version", choices=("v1", "v2"), required=True)
    args = ap.parse_args()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Price": grpc.unary_unary_rpc_method_handler(lambda r, c: price(args.version, r, c))}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"{args.name} {args.version} listening on http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    sys.exit(0)


if __name__ == "__main__":
    main()
