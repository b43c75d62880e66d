"""Subscriptions: created when a subscription-mode Checkout Session is paid; GET and DELETE
/v1/subscriptions/{id}."""

from __future__ import annotations

import re
import time

from tests.fakes.stripe.webhooks import Webhooks, make_event
from tests.fakes.stripe.wire import Json, Reply, copy, new_id, no_such, route


class Subscriptions(Webhooks):
    def _insert_subscription(self, session: Json, customer_id: str, now: int) -> Json:
        subscription_id = new_id("sub_")
        period_end = now + 30 * 24 * 3600
        items = [
            {
                "id": new_id("si_", 14),
                "object": "subscription_item",
                "created": now,
                # Since API 2025-03-31 the billing period lives on the item, not the subscription.
                "current_period_end": period_end,
                "current_period_start": now,
                "metadata": {},
                "price": item["price"],
                "quantity": item["quantity"],
                "subscription": subscription_id,
            }
            for item in self._line_items.get(session["id"], [])
        ]
        metadata = self._subscription_metadata.get(session["id"], {})
        subscription: Json = {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": customer_id,
            "ended_at": None,
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": new_id("in_"),
            "livemode": False,
            "metadata": dict(metadata),
            "start_date": now,
            "status": "active",
            "trial_end": None,
            "trial_start": None,
        }
        self.subscriptions[subscription_id] = subscription
        return subscription

    @route("GET", "/v1/subscriptions/{id}")
    def _get_subscription(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        subscription = self.subscriptions.get(match["id"])
        if subscription is None:
            raise no_such("subscription", match["id"])
        return Reply(200, subscription)

    @route("DELETE", "/v1/subscriptions/{id}")
    def _cancel_subscription(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        subscription = self.subscriptions.get(match["id"])
        if subscription is None:
            raise no_such("subscription", match["id"])
        now = int(time.time())
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.events.append(make_event("customer.subscription.deleted", copy(subscription)))
        return Reply(200, subscription)
