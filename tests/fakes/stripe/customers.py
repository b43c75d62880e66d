"""Customers: POST /v1/customers, GET and POST /v1/customers/{id}."""

from __future__ import annotations

import re
import secrets
import string
import time

from tests.fakes.stripe.state import StripeState
from tests.fakes.stripe.wire import Json, Reply, new_id, no_such, route


class Customers(StripeState):
    def _insert_customer(self, form: Json, now: int) -> Json:
        customer: Json = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": now,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": form.get("description"),
            "email": form.get("email"),
            "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(form.get("metadata") or {}),
            "name": form.get("name"),
            "phone": form.get("phone"),
            "preferred_locales": list(form.get("preferred_locales") or []),
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _customer(self, customer_id: str, param: str = "id") -> Json:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise no_such("customer", customer_id, param)
        return customer

    @route("POST", "/v1/customers")
    def _create_customer(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        return Reply(200, self._insert_customer(form, int(time.time())))

    @route("GET", "/v1/customers/{id}")
    def _get_customer(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        return Reply(200, self._customer(match["id"]))

    @route("POST", "/v1/customers/{id}")
    def _update_customer(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        customer = self._customer(match["id"])
        for field in ("email", "name", "description", "phone"):
            if field in form:
                customer[field] = form[field] or None
        for key, value in (form.get("metadata") or {}).items():
            # Stripe unsets a metadata key when it is sent empty.
            if value == "":
                customer["metadata"].pop(key, None)
            else:
                customer["metadata"][key] = value
        return Reply(200, customer)
