"""API shapes of billing."""

from typing import Any

from rest_framework import serializers

from billing.models import Plan
from core.platform.fields import StrictIntegerField


class PlanSerializer(serializers.ModelSerializer):
    monthly_price = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = (
            "slug",
            "name",
            "monthly_price",
            "monthly_price_cents",
            "included_tokens",
            "hard_limit",
            "allowed_models",
        )

    def get_monthly_price(self, plan: Plan) -> str:
        return f"{plan.monthly_price_cents / 100:.2f}"


class UsageSummarySerializer(serializers.Serializer):
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    used = serializers.IntegerField()
    included = serializers.IntegerField()
    remaining = serializers.IntegerField()
    hard_limit = serializers.BooleanField()
    cost_micros = serializers.IntegerField()
    by_feature = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))


class SessionUrlSerializer(serializers.Serializer):
    url = serializers.URLField()


class WebhookOutcomeSerializer(serializers.Serializer):
    received = serializers.SerializerMethodField()
    event_id = serializers.CharField()
    type = serializers.CharField()
    duplicate = serializers.BooleanField()
    outcome = serializers.CharField()

    def get_received(self, outcome: object) -> bool:
        return True


# --- Stripe event payloads: the shape and ranges of every field the webhook handlers read -------
# A signed body can still be malformed (a test event, a future API version, a bug): anything the
# handlers would trip over is refused with a 400 before the event is stored or acted on.

# 2000-01-01 .. 2100-01-01: a Unix time Stripe could have written (10**15 is not one).
STRIPE_TIMESTAMP_MIN = 946_684_800
STRIPE_TIMESTAMP_MAX = 4_102_444_800


def _stripe_id() -> serializers.CharField:
    return serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)


def _stripe_time() -> StrictIntegerField:
    return StrictIntegerField(
        min_value=STRIPE_TIMESTAMP_MIN, max_value=STRIPE_TIMESTAMP_MAX, required=False, allow_null=True
    )


class StripePriceSerializer(serializers.Serializer[Any]):
    id = _stripe_id()


class StripeItemSerializer(serializers.Serializer[Any]):
    price = StripePriceSerializer(required=False, allow_null=True)
    current_period_end = _stripe_time()


class StripeItemListSerializer(serializers.Serializer[Any]):
    data = StripeItemSerializer(many=True, required=False, allow_null=True)  # type: ignore[assignment]


class StripeMetadataSerializer(serializers.Serializer[Any]):
    subdomain = _stripe_id()
    plan = _stripe_id()  # the plan a Checkout Session sold (signup or an upgrade from the billing page)


class StripeSubscriptionDetailsSerializer(serializers.Serializer[Any]):
    subscription = _stripe_id()


class StripeInvoiceParentSerializer(serializers.Serializer[Any]):
    subscription_details = StripeSubscriptionDetailsSerializer(required=False, allow_null=True)


class StripeObjectSerializer(serializers.Serializer[Any]):
    """The fields of a Checkout Session, Subscription or Invoice that Strata reads."""

    id = _stripe_id()
    customer = _stripe_id()
    subscription = _stripe_id()
    client_reference_id = _stripe_id()
    status = _stripe_id()
    payment_status = _stripe_id()
    metadata = StripeMetadataSerializer(required=False, allow_null=True)
    items = StripeItemListSerializer(required=False, allow_null=True)
    current_period_end = _stripe_time()
    parent = StripeInvoiceParentSerializer(required=False, allow_null=True)


class StripeEventDataSerializer(serializers.Serializer[Any]):
    object = StripeObjectSerializer()


class StripeEventSerializer(serializers.Serializer[Any]):
    id = serializers.RegexField(r"^[A-Za-z0-9_]+\Z", max_length=100)
    type = serializers.RegexField(r"^[a-z0-9_.]+\Z", max_length=100)
    created = StrictIntegerField(min_value=STRIPE_TIMESTAMP_MIN, max_value=STRIPE_TIMESTAMP_MAX)
    data = StripeEventDataSerializer()  # type: ignore[assignment]  # the payload's key, not Serializer.data
