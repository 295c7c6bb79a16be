"""Release v2 of the demo shop: the candidate, run as the shadow service (see shop_common.py for the API).

What changed since v1, the way real releases change (each one shows in the demo's report):
  * search has a new ranking step that costs ~40 ms a call (GET /api/products);
  * product pages read stock from the new inventory table, which so far holds products 1-50 only: ids above
    50 raise KeyError, answered 500 (GET /api/products/51 and up);
  * the cart's total moved to integer cents: "total": 59.97 became "total_cents": 5997 (GET /api/cart/{user}).
Orders (POST /api/orders) work as in v1, into v2's own store.
"""

import time

from shop_common import CATALOGUE, STOCK, Reply, Shop, cart_items, serve, total_of

NEW_INVENTORY = {i: n for i, n in STOCK.items() if i <= 50}  # the migration has not reached ids above 50 yet


class ShopV2(Shop):
    version = "v2"

    def search(self, query: str) -> Reply:
        time.sleep(0.040)  # the new ranking step
        return super().search(query)

    def product(self, product_id: int) -> Reply:
        p = CATALOGUE.get(product_id)
        if p is None:
            return 404, {"error": f"no product {product_id}"}
        return 200, {**p, "in_stock": NEW_INVENTORY[product_id] > 0}  # KeyError (-> 500) above 50

    def cart(self, user: str) -> Reply:
        items = cart_items(user)
        return 200, {"user": user, "items": items, "total_cents": round(total_of(items) * 100)}


if __name__ == "__main__":
    serve(ShopV2())
