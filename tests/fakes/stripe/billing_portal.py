"""The customer portal: POST /v1/billing_portal/sessions and the hosted portal page
(/p/session/{token}) where the customer changes plan, cancels, or just goes back."""

from __future__ import annotations

import html
import re
import time

from tests.fakes.stripe.customers import Customers
from tests.fakes.stripe.subscriptions import Subscriptions
from tests.fakes.stripe.webhooks import make_event
from tests.fakes.stripe.wire import Json, Reply, StripeError, copy, missing, new_id, no_such, route


class BillingPortal(Customers, Subscriptions):
    @route("POST", "/v1/billing_portal/sessions")
    def _create_portal(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        customer_id = form.get("customer")
        if not customer_id:
            raise missing("customer")
        self._customer(customer_id, param="customer")
        token = new_id("test_", 40)
        portal: Json = {
            "id": new_id("bps_"),
            "object": "billing_portal.session",
            "configuration": "bpc_" + "fake" + new_id("", 20),
            "created": int(time.time()),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": form.get("locale"),
            "on_behalf_of": None,
            "return_url": form.get("return_url"),
            "url": f"{self.base_url}/p/session/{token}",
        }
        flow = form.get("flow_data")
        if flow:
            kind = flow.get("type")
            if kind not in ("subscription_update", "subscription_cancel", "payment_method_update"):
                raise StripeError(400, f"Invalid flow_data[type]: {kind}", param="flow_data[type]")
            subscription_id = (flow.get(kind) or {}).get("subscription")
            if kind != "payment_method_update":
                if not subscription_id:
                    raise missing(f"flow_data[{kind}][subscription]")
                if subscription_id not in self.subscriptions:
                    raise no_such("subscription", subscription_id, param=f"flow_data[{kind}][subscription]")
            portal["flow"] = {
                "type": kind,
                kind: {"subscription": subscription_id},
                "after_completion": flow.get("after_completion") or {"type": "portal_homepage"},
            }
        self.portal_sessions[portal["id"]] = portal
        self._portal_tokens[token] = portal["id"]
        return Reply(200, portal)

    def _portal(self, token: str) -> Json:
        portal_id = self._portal_tokens.get(token)
        if portal_id is None:
            raise no_such("billing_portal.session", token)
        return self.portal_sessions[portal_id]

    @route("GET", "/p/session/{id}", public=True)
    def _portal_page(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        portal = self._portal(match["id"])
        flow = portal.get("flow") or {}
        parts = ["<!doctype html><title>Fake Stripe customer portal</title><h1>Billing portal</h1>"]
        if flow.get("type") == "subscription_update":
            parts.append("<h2>Change plan</h2>")
            for price in self.portal_prices:
                parts.append(
                    "<form method='post'><input type='hidden' name='action' value='update'>"
                    f"<input type='hidden' name='price' value='{html.escape(price['price'])}'>"
                    f"<button type='submit' id='choose-{html.escape(price['price'])}'>{html.escape(price['name'])}"
                    "</button></form>"
                )
        elif flow.get("type") == "subscription_cancel":
            parts.append(
                "<h2>Cancel your subscription</h2><form method='post'><input type='hidden' name='action' "
                "value='cancel'><button type='submit' id='confirm-cancel'>Cancel subscription</button></form>"
            )
        parts.append(f"<a id='return' href='{html.escape(portal.get('return_url') or '')}'>Return</a>")
        return Reply(200, raw="".join(parts).encode("utf-8"), content_type="text/html; charset=utf-8")

    @route("POST", "/p/session/{id}", public=True)
    def _portal_act(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        portal = self._portal(match["id"])
        flow = portal.get("flow") or {}
        kind = flow.get("type")
        subscription = self.subscriptions.get((flow.get(kind) or {}).get("subscription") or "")
        if subscription is None:
            raise StripeError(400, "This portal session has no subscription to change.")
        now = int(time.time())
        if form.get("action") == "update" and kind == "subscription_update":
            item = subscription["items"]["data"][0]
            item["price"] = {"id": form.get("price"), "object": "price"}
            subscription["items"]["data"] = [item]
            subscription["items"]["total_count"] = 1
            event = make_event("customer.subscription.updated", copy(subscription), created=now)
        elif form.get("action") == "cancel" and kind == "subscription_cancel":
            subscription.update(status="canceled", canceled_at=now, ended_at=now)
            event = make_event("customer.subscription.deleted", copy(subscription), created=now)
        else:
            raise StripeError(400, "Unknown portal action.")
        self.events.append(event)
        self._deliver_in_background(event)
        after = flow.get("after_completion") or {}
        target = ((after.get("redirect") or {}).get("return_url")) or portal.get("return_url") or "/"
        return Reply(303, raw=b"", headers={"Location": target}, content_type="text/plain")
