"""API shapes of billing."""

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
_ID = {"max_length": 255, "required": False, "allow_null": True, "allow_blank": True}
_TIMESTAMP = {
    "min_value": STRIPE_TIMESTAMP_MIN,
    "max_value": STRIPE_TIMESTAMP_MAX,
    "required": False,
    "allow_null": True,
}


class StripePriceSerializer(serializers.Serializer):
    id = serializers.CharField(**_ID)


class StripeItemSerializer(serializers.Serializer):
    price = StripePriceSerializer(required=False, allow_null=True)
    current_period_end = StrictIntegerField(**_TIMESTAMP)


class StripeItemListSerializer(serializers.Serializer):
    data = StripeItemSerializer(many=True, required=False, allow_null=True)


class StripeMetadataSerializer(serializers.Serializer):
    subdomain = serializers.CharField(**_ID)


class StripeSubscriptionDetailsSerializer(serializers.Serializer):
    subscription = serializers.CharField(**_ID)


class StripeInvoiceParentSerializer(serializers.Serializer):
    subscription_details = StripeSubscriptionDetailsSerializer(required=False, allow_null=True)


class StripeObjectSerializer(serializers.Serializer):
    """The fields of a Checkout Session, Subscription or Invoice that Strata reads."""

    id = serializers.CharField(**_ID)
    customer = serializers.CharField(**_ID)
    subscription = serializers.CharField(**_ID)
    client_reference_id = serializers.CharField(**_ID)
    status = serializers.CharField(**_ID)
    payment_status = serializers.CharField(**_ID)
    metadata = StripeMetadataSerializer(required=False, allow_null=True)
    items = StripeItemListSerializer(required=False, allow_null=True)
    current_period_end = StrictIntegerField(**_TIMESTAMP)
    parent = StripeInvoiceParentSerializer(required=False, allow_null=True)


class StripeEventDataSerializer(serializers.Serializer):
    object = StripeObjectSerializer()


class StripeEventSerializer(serializers.Serializer):
    id = serializers.RegexField(r"^[A-Za-z0-9_]+\Z", max_length=100)
    type = serializers.RegexField(r"^[a-z0-9_.]+\Z", max_length=100)
    created = StrictIntegerField(min_value=STRIPE_TIMESTAMP_MIN, max_value=STRIPE_TIMESTAMP_MAX)
    data = StripeEventDataSerializer()
