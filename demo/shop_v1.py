"""Release v1 of the demo shop: what production runs today (see shop_common.py for the API)."""

from shop_common import Shop, serve

if __name__ == "__main__":
    serve(Shop())
